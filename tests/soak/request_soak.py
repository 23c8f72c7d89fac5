#!/usr/bin/python3
"""Request soak: M requests (default 100000) over keep-alive connections
from a few client threads, against embedded mode (one Apache child) and
daemon mode (one daemon process), sampling the serving processes' VmRSS
every --sample-every requests.

The requests mix (per client, repeating): 6 small GETs, 2 GETs with a
16 KiB body streamed by a generator in 8 KiB pieces, 1 POST of 8 KiB read
in 16 KiB pieces, 1 GET that also reports the app's own VmRSS.  Every
response is checked (status 200, the expected length, the serving pid).

Figures printed per mode: time taken and rate, RSS of each process at
start, after warm-up, every sample and at the end, growth after warm-up
(end minus warm-up sample, and least-squares slope per 10 000 requests).

Exit status 1 when, in any mode, a sampled process grew by more than
--max-growth KiB (default 2048) after the warm-up (--warmup requests,
default 30% of --requests and at least 10000), a process was replaced
during the run, or any request failed.

The embedded-mode Apache child keeps growing for a few hundred thousand
requests before it levels off (a 1 000 000-request run levelled off at
about 20.2 MB after 300 000 requests and stayed there).  That is glibc's
per-thread malloc arenas filling up: requests run on any of the child's 16
worker threads, each of which gets an arena of its own.  With
--malloc-arena-max 1 (MALLOC_ARENA_MAX=1 for Apache) the same child is flat
from 10 000 requests on, so that setting separates a real leak from arena
growth; without it a 100 000-request run bounds a leak at roughly 30
bytes/request.

Run as root (Apache's children run as www-data):
    /usr/bin/python3 tests/soak/request_soak.py                  # both modes
    /usr/bin/python3 tests/soak/request_soak.py --mode daemon --requests 300000
WSGI_RS_SO selects the module build, as for the test suite.
"""

import argparse
import http.client
import json
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import daemonutil as du  # noqa: E402
import harness  # noqa: E402
import loadutil  # noqa: E402

CONFIGS = {
    "embedded": r"""
MaxKeepAliveRequests 0
WSGIHandlerScript h @SCRIPTS@/app.py application-group=%{GLOBAL}
<Location /h>
    SetHandler h
</Location>
""",
    "daemon": r"""
MaxKeepAliveRequests 0
WSGIDaemonProcess g processes=1 threads=4
WSGIHandlerScript h @SCRIPTS@/app.py process-group=g application-group=%{GLOBAL}
<Location /h>
    SetHandler h
</Location>
""",
}

# One Apache child (so there is one process to watch) with more worker
# threads than clients: the event MPM closes keep-alive connections when
# all its workers are busy, which would show up as failed requests.
SOAK_MPM = {
    "event": """\
StartServers 1
ServerLimit 1
ThreadsPerChild 16
MaxRequestWorkers 16
MinSpareThreads 1
MaxSpareThreads 16
""",
    "worker": """\
StartServers 1
ServerLimit 1
ThreadsPerChild 16
MaxRequestWorkers 16
MinSpareThreads 1
MaxSpareThreads 16
""",
    "prefork": harness.SINGLE_CHILD_SETTINGS["prefork"],
}

POST_BODY = b"p" * 8192
STREAM_SIZE = 16384


class Clients:
    def __init__(self, port, total, threads):
        self.port = port
        self.total = total
        self.count = 0
        self.errors = []
        self.pids = set()
        self.app_rss = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(k,), daemon=True)
                        for k in range(threads)]

    def take(self):
        with self.lock:
            if self.count >= self.total or len(self.errors) > 100:
                return None
            self.count += 1
            return self.count

    def run(self, k):
        conn = None
        i = k
        while True:
            n = self.take()
            if n is None:
                break
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            step = i % 10
            i += 1
            try:
                if step < 6:
                    conn.request("GET", "/h")
                    expect_extra = 0
                elif step < 8:
                    conn.request("GET", "/h?size=%d" % STREAM_SIZE)
                    expect_extra = STREAM_SIZE
                elif step == 8:
                    conn.request("POST", "/h", body=POST_BODY,
                                 headers={"Content-Type": "application/octet-stream"})
                    expect_extra = 0
                else:
                    conn.request("GET", "/h?rss=1")
                    expect_extra = 0
                resp = conn.getresponse()
                body = resp.read()
                if resp.status != 200:
                    raise AssertionError("status %d %r" % (resp.status, body[:200]))
                head, _, rest = body.partition(b"\n")
                d = json.loads(head)
                if len(rest) != expect_extra:
                    raise AssertionError("body %d bytes, expected %d" % (len(rest), expect_extra))
                if step == 8 and d["read"] != len(POST_BODY):
                    raise AssertionError("app read %d of %d" % (d["read"], len(POST_BODY)))
                with self.lock:
                    self.pids.add(d["pid"])
                    if step == 9:
                        self.app_rss.append((n, d["vmrss"]))
            except Exception as e:
                with self.lock:
                    self.errors.append((n, repr(e)))
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def start(self):
        for t in self.threads:
            t.start()

    def join(self, timeout):
        for t in self.threads:
            t.join(timeout)
        return not any(t.is_alive() for t in self.threads)


def soak(mode, args):
    a = harness.Apache(mpm=args.mpm, mpm_settings=SOAK_MPM[args.mpm])
    try:
        a.copy_app("pid_app.py", "app.py")
        a.start(CONFIGS[mode])
        st, _, _ = a.get("/h")
        assert st == 200, st
        children = du.apache_children(a)
        assert len(children) == 1, children
        procs = {"apache child %d" % children[0]: children[0]}
        if mode == "daemon":
            daemons = du.daemon_pids(a)
            assert len(daemons) == 1, daemons
            procs["daemon %d" % daemons[0]] = daemons[0]
        samples = {name: [(0, loadutil.rss_kib(pid))] for name, pid in procs.items()}
        clients = Clients(a.port, args.requests, args.threads)
        t0 = time.monotonic()
        clients.start()
        next_sample = args.sample_every
        deadline = t0 + args.max_seconds
        print("== %s mode, %s MPM: %d requests, %d keep-alive clients"
              % (mode, args.mpm, args.requests, args.threads))
        print("%9s %7s  %s" % ("requests", "secs", "  ".join("%22s" % n for n in procs)))
        while True:
            done = clients.count
            finished = not any(t.is_alive() for t in clients.threads)
            if done >= next_sample or finished:
                for name, pid in procs.items():
                    samples[name].append((done, loadutil.rss_kib(pid)))
                print("%9d %7.1f  %s" % (done, time.monotonic() - t0, "  ".join(
                    "%19d kB" % samples[n][-1][1] for n in procs)), flush=True)
                while next_sample <= done:
                    next_sample += args.sample_every
            if finished:
                break
            if time.monotonic() > deadline:
                print("stopping after --max-seconds")
                clients.total = 0
            time.sleep(0.05)
        elapsed = time.monotonic() - t0
        alive = {name: harness.pid_alive(pid) for name, pid in procs.items()}
        a.stop()
        bad_log = harness.find_bad_log_lines(a.error_log(), du.BAD_LOG)
    finally:
        a.cleanup()

    verdict = []
    print("-- %s: %d requests in %.1fs (%.0f/s), %d failed, serving pids %s"
          % (mode, clients.count, elapsed, clients.count / elapsed, len(clients.errors),
             sorted(clients.pids)))
    for name, s in samples.items():
        warm = [x for x in s if x[0] >= args.warmup]
        base = warm[0] if warm else s[-1]
        after = [x for x in s if x[0] >= base[0]]
        slope = 0.0
        if len(after) >= 2:
            xs = [x[0] for x in after]
            ys = [x[1] for x in after]
            mx = sum(xs) / len(xs)
            my = sum(ys) / len(ys)
            den = sum((x - mx) ** 2 for x in xs)
            slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den * 10000 if den else 0.0
        growth = s[-1][1] - base[1]
        print("   %s VmRSS: start %d kB, after %d requests %d kB, end %d kB; growth after "
              "warm-up %+d kB (%+.0f bytes/request), slope %+.1f kB per 10k requests"
              % (name, s[0][1], base[0], base[1], s[-1][1], growth,
                 growth * 1024.0 / max(1, s[-1][0] - base[0]), slope))
        if growth > args.max_growth:
            verdict.append("%s grew %d kB after warm-up (> %d)" % (name, growth, args.max_growth))
        if not alive[name]:
            verdict.append("%s died or was replaced" % name)
    if clients.app_rss:
        first = [r for n, r in clients.app_rss if n >= args.warmup][:1] or [clients.app_rss[0][1]]
        print("   app-reported VmRSS: after warm-up %d kB, end %d kB" % (first[0], clients.app_rss[-1][1]))
    if clients.errors:
        verdict.append("%d requests failed, e.g. %s" % (len(clients.errors), clients.errors[:3]))
        print("   failures:", clients.errors[:5])
    if len(clients.pids) != 1:
        verdict.append("served by %d processes (expected one)" % len(clients.pids))
    if bad_log:
        verdict.append("forbidden error-log lines: %s" % bad_log[:3])
    return verdict


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=100000)
    ap.add_argument("--mode", default="both", choices=["embedded", "daemon", "both"])
    ap.add_argument("--threads", type=int, default=4, help="keep-alive client threads (4)")
    ap.add_argument("--mpm", default="event", choices=sorted(harness.MPM_SETTINGS))
    ap.add_argument("--sample-every", type=int, default=10000)
    ap.add_argument("--warmup", type=int, default=None,
                    help="requests before the baseline sample (default 30%% of --requests, "
                         "at least 10000)")
    ap.add_argument("--max-growth", type=int, default=2048,
                    help="bound on RSS growth after warm-up, KiB (2048)")
    ap.add_argument("--max-seconds", type=float, default=3600.0)
    ap.add_argument("--malloc-arena-max", type=int, default=None,
                    help="run Apache with MALLOC_ARENA_MAX=N (see above)")
    args = ap.parse_args()
    if args.malloc_arena_max is not None:
        os.environ["MALLOC_ARENA_MAX"] = str(args.malloc_arena_max)  # inherited by apache2
    if args.warmup is None:
        args.warmup = max(10000, args.requests * 3 // 10)
    if os.geteuid() != 0:
        sys.exit("run as root (Apache's children run as www-data)")
    if not harness.module_available():
        sys.exit("module not built: %s" % harness.module_so())
    if args.mpm == "prefork" and args.threads > 1:
        print("note: prefork with one child serves one connection at a time; using 1 client")
        args.threads = 1
    modes = ["embedded", "daemon"] if args.mode == "both" else [args.mode]
    verdict = []
    t0 = time.monotonic()
    for mode in modes:
        verdict += ["%s: %s" % (mode, v) for v in soak(mode, args)]
    print("total %.0fs" % (time.monotonic() - t0))
    if verdict:
        print("FAIL: " + "; ".join(verdict))
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
