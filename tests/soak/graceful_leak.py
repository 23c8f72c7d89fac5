#!/usr/bin/python3
"""Leak soak: N consecutive ``apache2 -k graceful`` with the module loaded
and Python used in every generation; measures what each restart costs
Apache's parent process.

The configuration has an embedded handler and a daemon group; after each
graceful restart one request goes to each (both must answer 200 from a
process of the new generation).  Every generation the parent's VmRSS
(/proc/PID/status), its number of open descriptors (/proc/PID/fd) and how
many times the module's shared object is mapped (/proc/PID/maps, distinct
load addresses) are sampled.

Figures printed: time taken, RSS and fd count at the start, middle and end,
per-restart growth (least-squares slope over the second half, so that
start-up effects do not count), and the DSO mapping count.

Exit status 1 when a bound is exceeded:
  RSS slope   > --max-rss-growth bytes per restart (default 4096)
  fd slope    > 0.01 per restart (any steady fd growth), or more fds at the
                end than at the middle
  DSO         the module's .so mapped at more than one address, or more
                than one DSO mapping of libpython (a pinned image per
                generation)
  requests    any request that did not return 200

--modwsgi runs the same against Debian's mod_wsgi
(/usr/lib/apache2/modules/mod_wsgi.so, WSGIScriptAlias with an equivalent
embedded app and WSGIDaemonProcess group) for comparison.

Run as root (Apache's children run as www-data), from anywhere:
    /usr/bin/python3 tests/soak/graceful_leak.py --count 1000
    /usr/bin/python3 tests/soak/graceful_leak.py --count 200 --modwsgi
WSGI_RS_SO selects the module build, as for the test suite.
"""

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import harness  # noqa: E402
import loadutil  # noqa: E402

MODWSGI_SO = "/usr/lib/apache2/modules/mod_wsgi.so"

APP = r'''
import json
import os


def handle_request(environ, start_response):
    body = json.dumps({"pid": os.getpid(),
                       "group": environ.get("mod_wsgi.process_group")}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


application = handle_request
'''

OUR_CONFIG = r"""
WSGIDaemonProcess g processes=1 threads=2
WSGIHandlerScript e @SCRIPTS@/app.py application-group=%{GLOBAL}
WSGIHandlerScript d @SCRIPTS@/app.py process-group=g application-group=%{GLOBAL}
<Location /e>
    SetHandler e
</Location>
<Location /d>
    SetHandler d
</Location>
"""

MODWSGI_CONFIG = r"""
LoadModule wsgi_module %s
WSGISocketPrefix @ROOT@/run/wsgi
WSGIDaemonProcess g processes=1 threads=2
WSGIScriptAlias /e @SCRIPTS@/app.py
WSGIScriptAlias /d @SCRIPTS@/app.py
<Location /e>
    WSGIApplicationGroup %%{GLOBAL}
</Location>
<Location /d>
    WSGIProcessGroup g
    WSGIApplicationGroup %%{GLOBAL}
</Location>
""" % MODWSGI_SO


def maps_loads(pid, needle):
    """Distinct load addresses of mappings whose path contains `needle`
    (a shared object maps several segments; its first, offset 0, names it)."""
    bases = set()
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and needle in parts[5] and int(parts[2], 16) == 0:
                bases.add(parts[0].split("-")[0])
    return len(bases)


def request(a, path):
    """(error or None, seconds)."""
    t = time.monotonic()
    try:
        st, _, body = a.get(path, timeout=15)
    except Exception as e:
        return "%s: %r" % (path, e), time.monotonic() - t
    if st != 200:
        return "%s: status %s" % (path, st), time.monotonic() - t
    json.loads(body)["pid"]
    return None, time.monotonic() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=1000, help="graceful restarts (1000)")
    ap.add_argument("--modwsgi", action="store_true", help="Debian's mod_wsgi instead")
    ap.add_argument("--mpm", default="event", choices=sorted(harness.MPM_SETTINGS))
    ap.add_argument("--max-rss-growth", type=float, default=4096.0,
                    help="bound on the RSS slope, bytes per restart (4096)")
    ap.add_argument("--every", type=int, default=50, help="print a line every N restarts")
    ap.add_argument("--max-seconds", type=float, default=7200.0, help="stop after this long")
    args = ap.parse_args()

    if os.geteuid() != 0:
        sys.exit("run as root (Apache's children run as www-data)")
    if args.modwsgi:
        so = os.path.realpath(MODWSGI_SO)
        if not os.path.exists(so):
            sys.exit("Debian's mod_wsgi is not installed: %s" % MODWSGI_SO)
        a = harness.Apache(mpm=args.mpm, load_module=False)
        config = MODWSGI_CONFIG
        name = "mod_wsgi (%s)" % so
    else:
        so = os.path.realpath(harness.module_so())
        if not os.path.exists(so):
            sys.exit("module not built: %s" % so)
        a = harness.Apache(mpm=args.mpm)
        config = OUR_CONFIG
        name = "mod_wsgi_rs (%s)" % so
    so_needle = os.path.basename(so)

    rss, fds, dso, py = [], [], [], []
    lat = {"graceful": [], "/e": [], "/d": []}
    failures = []
    t0 = time.monotonic()
    done = 0
    try:
        a.write_script("app.py", APP)
        a.start(config)
        parent = a.pid
        for path, group in (("/e", ""), ("/d", "g")):
            st, _, body = a.get(path)
            if st != 200 or json.loads(body)["group"] != group:
                sys.exit("%s: %s %r (expected process group %r)\n%s"
                         % (path, st, body[:300], group, a.error_log()[-3000:]))
        print("%s, %s MPM, parent pid %d, %d graceful restarts" % (name, args.mpm, parent, args.count))
        print("%6s %10s %6s %5s %8s %8s" % ("gen", "VmRSS kB", "fds", "DSOs", "libpy", "s/restart"))
        consecutive_bad = 0
        for i in range(1, args.count + 1):
            if time.monotonic() - t0 > args.max_seconds:
                print("stopping after %.0fs (--max-seconds)" % (time.monotonic() - t0))
                break
            lat["graceful"].append(a.graceful(timeout=30))
            bad = False
            for path in ("/e", "/d"):
                err, t = request(a, path)
                lat[path].append(t)
                if err:
                    failures.append((i, err))
                    bad = True
            consecutive_bad = consecutive_bad + 1 if bad else 0
            rss.append(loadutil.rss_kib(parent) * 1024)
            fds.append(loadutil.fd_count(parent))
            dso.append(maps_loads(parent, so_needle))
            py.append(maps_loads(parent, "libpython3"))
            done = i
            if i % args.every == 0 or i == 1:
                print("%6d %10d %6d %5d %8d %8.2f" % (i, rss[-1] // 1024, fds[-1], dso[-1], py[-1],
                                                      (time.monotonic() - t0) / i), flush=True)
            if consecutive_bad >= 20:
                print("20 generations in a row failed requests; stopping")
                break
        a.stop()
    finally:
        log = a.error_log()
        a.cleanup()

    elapsed = time.monotonic() - t0
    if done < 4:
        sys.exit("too few restarts done (%d)" % done)
    half = done // 2
    rss_slope = loadutil.linear_slope(rss[half:])
    fd_slope = loadutil.linear_slope(fds[half:])
    print()
    print("== %s, %s MPM: %d graceful restarts in %.0fs (%.2fs each)"
          % (name, args.mpm, done, elapsed, elapsed / done))
    print("parent VmRSS: start %d kB, middle %d kB, end %d kB; growth over the second half "
          "%.0f bytes/restart (fit), %.0f bytes/restart (end-middle)"
          % (rss[0] // 1024, rss[half] // 1024, rss[-1] // 1024, rss_slope,
             (rss[-1] - rss[half]) / float(done - half)))
    print("parent fds: start %d, middle %d, end %d; growth over the second half %.3f/restart"
          % (fds[0], fds[half], fds[-1], fd_slope))
    print("module DSO load addresses in the parent: min %d max %d (end %d); "
          "libpython load addresses: max %d" % (min(dso), max(dso), dso[-1], max(py)))
    print("seconds per generation (mean/max): -k graceful until serving %.2f/%.2f, "
          "first embedded request %.3f/%.3f, first daemon request %.3f/%.3f"
          % tuple(f(lat[k]) for k in ("graceful", "/e", "/d")
                  for f in (lambda v: sum(v) / len(v), max)))
    print("requests failed: %d%s" % (len(failures), (" (first: %s)" % (failures[:3],)) if failures else ""))
    bad_lines = harness.find_bad_log_lines(log)
    if bad_lines:
        print("forbidden error-log lines: %d, e.g.\n  %s" % (len(bad_lines), "\n  ".join(bad_lines[:5])))

    verdict = []
    if rss_slope > args.max_rss_growth:
        verdict.append("RSS grows %.0f bytes/restart (> %.0f)" % (rss_slope, args.max_rss_growth))
    if fd_slope > 0.01 or fds[-1] > fds[half]:
        verdict.append("fds grow (%d -> %d over the second half, %.3f/restart)"
                       % (fds[half], fds[-1], fd_slope))
    if max(dso) > 1:
        verdict.append("the module's .so is mapped %d times (pinned per generation)" % max(dso))
    if max(py) > 1:
        verdict.append("libpython mapped %d times" % max(py))
    if failures:
        verdict.append("%d requests failed" % len(failures))
    if verdict:
        print("FAIL: " + "; ".join(verdict))
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
