"""Continuous HTTP load for the restart, crash and soak suites
(tests/test_restart_storms.py, tests/test_crashes.py, tests/soak/).

`Load` runs client threads against one Apache (127.0.0.1 only), each
either reusing one keep-alive connection ("ka") or opening a new
connection per request ("new"), until stopped, bounded by time and by a
request count.  Every request is recorded as a `Result`: when it started
and ended (time.monotonic()), on which connection, whether that
connection had served a request before, and how it ended.

How a request ends (`Result.kind`):

  ok          200 with a complete body naming the serving pid (pid_app.py)
  status      any other status
  ka_closed   a reused keep-alive connection was closed (EOF or reset)
              before any byte of the response: the server closed an idle
              connection while the request was sent.  RFC 9112 9.3.1 lets
              clients retry such idempotent requests, and browsers do; the
              thread retries at once on a new connection (that retry is
              its own Result and must succeed).  Not a failure unless a
              test says so.
  error       anything else: refused, reset or EOF on a new connection or
              after part of the response, timeout, bad body.
"""

import http.client
import json
import os
import threading
import time


class Result:
    __slots__ = ("client", "conn", "reused", "start", "end", "kind", "status", "pid",
                 "detail")

    def __init__(self, client, conn, reused, start):
        self.client = client
        self.conn = conn
        self.reused = reused
        self.start = start
        self.end = None
        self.kind = None
        self.status = None
        self.pid = None
        self.detail = None

    @property
    def ok(self):
        return self.kind == "ok"

    def __repr__(self):
        return "<%s client=%s conn=%s reused=%s t=%.3f..%.3f status=%s pid=%s %s>" % (
            self.kind, self.client, self.conn, self.reused, self.start, self.end or -1,
            self.status, self.pid, (self.detail or "")[:200])


# Errors that mean "the connection was closed before any response byte".
_PRE_RESPONSE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                 ConnectionAbortedError)


def parse_pid(body):
    """The pid in a pid_app.py / info.py / daemon_app.py JSON body."""
    return json.loads(body.split(b"\n", 1)[0])["pid"]


class Load:
    """`clients` is a sequence of "ka" / "new"; each is one thread.

    Stops at stop(), after `max_seconds`, or after `max_requests` in all.
    `on_connect(client, conn_id, sock)` (optional) runs in the client thread
    after the first response on each new keep-alive connection, e.g. to find
    which server process owns it.  `ka_conns` (optional) maps a "ka" client's
    index to an open http.client connection that has served one request,
    which that client uses first (its conn id is -1 - index)."""

    def __init__(self, port, path, clients=("ka", "ka", "new", "new"), max_seconds=60,
                 max_requests=1000000, timeout=15, on_connect=None, pause=0.0,
                 ka_conns=None):
        self.port = port
        self.path = path
        self.kinds = tuple(clients)
        self.max_requests = max_requests
        self.deadline = time.monotonic() + max_seconds
        self.timeout = timeout
        self.on_connect = on_connect
        self.pause = pause
        self.results = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._conn_seq = 0
        self.ka_conns = dict(ka_conns or {})
        self.threads = [threading.Thread(target=self._run, args=(i, k), daemon=True)
                        for i, k in enumerate(self.kinds)]

    # ------------------------------------------------------------ lifecycle
    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self, join_timeout=None):
        self._stop.set()
        jt = join_timeout if join_timeout is not None else self.timeout + 5
        for t in self.threads:
            t.join(jt)
        alive = [t for t in self.threads if t.is_alive()]
        assert not alive, "%d load threads did not finish" % len(alive)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _running(self):
        return (not self._stop.is_set() and time.monotonic() < self.deadline
                and len(self.results) < self.max_requests)

    def _new_conn_id(self):
        with self.lock:
            self._conn_seq += 1
            return self._conn_seq

    def _record(self, r):
        with self.lock:
            self.results.append(r)

    # --------------------------------------------------------------- client
    def _run(self, client, kind):
        conn = None
        conn_id = None
        served_on_conn = 0
        if client in self.ka_conns:
            conn = self.ka_conns[client]
            conn_id = -1 - client
            served_on_conn = 1
        while self._running():
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                conn_id = self._new_conn_id()
                served_on_conn = 0
            r = Result(client, conn_id, served_on_conn > 0, time.monotonic())
            keep = self._one(conn, r, kind == "ka")
            r.end = time.monotonic()
            self._record(r)
            if r.ok:
                served_on_conn += 1
                if served_on_conn == 1 and kind == "ka" and self.on_connect:
                    try:
                        self.on_connect(client, conn_id, conn.sock)
                    except Exception:
                        pass
            if not (keep and r.ok):
                conn.close()
                conn = None
            if self.pause:
                time.sleep(self.pause)
        if conn is not None:
            conn.close()

    def _one(self, conn, r, keepalive):
        """One request on `conn`; fills `r`; returns whether `conn` may be reused."""
        headers = {} if keepalive else {"Connection": "close"}
        got_head = False
        try:
            conn.request("GET", self.path, headers=headers)
            resp = conn.getresponse()
            got_head = True
            r.status = resp.status
            body = resp.read()
            if resp.status != 200:
                r.kind = "status"
                r.detail = repr(body[:200])
                return False
            try:
                r.pid = parse_pid(body)
            except (ValueError, KeyError) as e:
                r.kind = "error"
                r.detail = "bad body %r: %r" % (e, body[:200])
                return False
            r.kind = "ok"
            return not resp.will_close
        except _PRE_RESPONSE as e:
            r.kind = "ka_closed" if (r.reused and not got_head) else "error"
            r.detail = repr(e)
            return False
        except Exception as e:  # timeout, IncompleteRead, refused, ...
            r.kind = "error"
            r.detail = repr(e)
            return False

    # -------------------------------------------------------------- figures
    def snapshot(self):
        with self.lock:
            return list(self.results)

    def ok(self):
        return [r for r in self.snapshot() if r.ok]

    def failures(self, allow_ka_closed=True):
        bad = ("status", "error") if allow_ka_closed else ("status", "error", "ka_closed")
        return [r for r in self.snapshot() if r.kind in bad]

    def kinds_count(self):
        out = {}
        for r in self.snapshot():
            out[r.kind] = out.get(r.kind, 0) + 1
        return out

    def summary(self):
        res = self.snapshot()
        if not res:
            return "no requests"
        span = max(r.end for r in res) - min(r.start for r in res)
        return "%d requests in %.1fs (%.0f/s), %s, %d connections, pids %d" % (
            len(res), span, len(res) / span if span else 0, self.kinds_count(),
            len({r.conn for r in res}), len({r.pid for r in res if r.pid}))


# --------------------------------------------------------------- /proc
def _tcp_inode(server_port, client_port):
    """Inode of the server-side socket of the 127.0.0.1 connection between
    `server_port` and `client_port` (from /proc/net/tcp), or None."""
    want_local = ":%04X" % server_port
    want_rem = ":%04X" % client_port
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[1].endswith(want_local) and parts[2].endswith(want_rem):
                return int(parts[9])
    return None


def socket_owner(server_port, client_sock, candidates):
    """Which of `candidates` (pids) holds the server side of `client_sock`."""
    inode = _tcp_inode(server_port, client_sock.getsockname()[1])
    if not inode:
        return None
    target = "socket:[%d]" % inode
    for pid in candidates:
        d = "/proc/%d/fd" % pid
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for n in names:
            try:
                if os.readlink(os.path.join(d, n)) == target:
                    return pid
            except OSError:
                continue
    return None


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def process_group_members(pgid):
    """Live (non-zombie) pids whose process group is `pgid`."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                data = f.read()
        except OSError:
            continue
        fields = data.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[3]) == pgid:
            out.append(int(name))
    return sorted(out)


def linear_slope(ys):
    """Least-squares slope of ys against 0..n-1 (per step)."""
    n = len(ys)
    if n < 2:
        return 0.0
    mx = (n - 1) / 2.0
    my = sum(ys) / float(n)
    num = sum((i - mx) * (y - my) for i, y in enumerate(ys))
    den = sum((i - mx) ** 2 for i in range(n))
    return num / den


# The app (pid_app.py as app.py) at /h, embedded or in a 2-process daemon group:
# the configurations the storm and crash tests put under load.
EMBEDDED_CONFIG = r"""
WSGIHandlerScript h @SCRIPTS@/app.py application-group=%{GLOBAL}
<Location /h>
    SetHandler h
</Location>
"""

DAEMON_CONFIG = r"""
WSGIDaemonProcess g processes=2 threads=4
WSGIHandlerScript h @SCRIPTS@/app.py process-group=g application-group=%{GLOBAL}
<Location /h>
    SetHandler h
</Location>
"""
