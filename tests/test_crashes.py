"""Processes killed with SIGKILL under continuous load (loadutil.py),
embedded and daemon mode, on event and prefork.

* An Apache child: only the requests on that process fail — at most one
  per connection it held (its in-flight requests, and the next request
  on each of its idle keep-alive connections), plus new-connection requests
  already in flight when it died.  Connections held by the other children
  and every new connection made after the kill succeed; Apache starts a
  replacement child; daemons are not disturbed.
* A daemon process: only the requests it was serving fail (502, at most
  threads= of them, all started before the kill), the group's other daemon
  keeps serving, a replacement serves within RESPAWN_LIMIT, and the error
  log names the dead daemon (pid, group, status) and every failed request.

test_daemon_failures.py covers a daemon's death without load (respawn time,
the 502 of its one request); this file adds the load and the bounds."""

import collections
import http.client
import os
import re
import signal
import time

import pytest

import daemonutil as du
import harness
import loadutil

EMBEDDED = loadutil.EMBEDDED_CONFIG
DAEMON = loadutil.DAEMON_CONFIG

# Keep-alive connections live as long as their client: a connection's
# owner is looked up once, and Apache must not close it after 100 requests.
CONFIGS = {"embedded": EMBEDDED + "MaxKeepAliveRequests 0\n",
           "daemon": DAEMON + "MaxKeepAliveRequests 0\n"}

# Two event children that the MPM keeps (MinSpareThreads above one child's
# ThreadsPerChild: when one dies, the idle-server maintenance replaces it).
# Prefork: more spare children wanted than the load leaves idle, so the
# client whose child died takes a spare and the MPM forks another.
CRASH_MPM = {
    "event": """\
StartServers 2
ServerLimit 2
ThreadsPerChild 10
MaxRequestWorkers 20
MinSpareThreads 11
MaxSpareThreads 20
""",
    "prefork": """\
StartServers 8
MinSpareServers 6
MaxSpareServers 10
ServerLimit 16
MaxRequestWorkers 16
""",
}

RESPAWN_LIMIT = 2.5   # seconds from kill -9 of a daemon to a replacement serving
REPLACE_LIMIT = 4.0   # seconds until Apache has replaced a killed child
DAEMON_THREADS = 4


def start(factory, mode, mpm):
    a = factory(mpm=mpm, mpm_settings=CRASH_MPM[mpm])
    a.copy_app("pid_app.py", "app.py")
    a.start(CONFIGS[mode])
    for _ in range(4):
        st, _, _ = a.get("/h")
        assert st == 200
    return a


def open_spread(a, children, per_child, total, attempts=60):
    """Opens keep-alive connections (each has served GET /h) until every one
    of `children` holds `per_child` of them or `total` are open; returns
    [(conn, owner pid)]."""
    held = collections.defaultdict(list)
    out = []
    for _ in range(attempts):
        if len(out) >= total or all(len(held[c]) >= per_child for c in children):
            break
        conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=15)
        conn.request("GET", "/h")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
        owner = loadutil.socket_owner(a.port, conn.sock, du.apache_children(a))
        if owner is None or len(held[owner]) >= per_child:
            conn.close()
            continue
        held[owner].append(conn)
        out.append((conn, owner))
    return out


# ------------------------------------------------------------ Apache child
@pytest.mark.parametrize("mpm", ["event", "prefork"])
@pytest.mark.parametrize("mode", ["embedded", "daemon"])
def test_kill9_apache_child_under_load(apache_factory, mode, mpm):
    a = start(apache_factory, mode, mpm)
    children = du.apache_children(a)
    daemons = set(du.daemon_pids(a))
    if mpm == "event":
        assert len(children) == 2, children
        conns = open_spread(a, children, per_child=2, total=4)
        owners = collections.Counter(o for _, o in conns)
        assert len(owners) == 2, "keep-alive connections all on one child: %s" % owners
    else:
        # prefork: each connection holds its own child
        conns = open_spread(a, children, per_child=1, total=3)
        assert len({o for _, o in conns}) == 3, conns
    n_ka = len(conns)
    clients = ("ka",) * n_ka + ("new", "new")
    owner_of = {-1 - i: o for i, (_, o) in enumerate(conns)}  # conn id -> child pid

    def on_connect(client, conn_id, sock):
        for _ in range(3):
            owner = loadutil.socket_owner(a.port, sock, du.apache_children(a))
            if owner:
                owner_of[conn_id] = owner
                return
            time.sleep(0.01)

    load = loadutil.Load(a.port, "/h", clients=clients, max_seconds=60,
                         ka_conns={i: c for i, (c, _) in enumerate(conns)},
                         on_connect=on_connect)
    with load:
        time.sleep(0.6)
        victim = conns[0][1]
        victim_conns = {cid for cid, o in list(owner_of.items()) if o == victim}
        before = set(du.apache_children(a))
        os.kill(victim, signal.SIGKILL)
        t_kill = time.monotonic()
        assert not harness.wait_pids_gone([victim], timeout=3)
        # Apache starts a replacement child (a pid it did not have before)
        du.wait_until(lambda: set(du.apache_children(a)) - before, timeout=REPLACE_LIMIT,
                      what="a replacement Apache child")
        t_replaced = time.monotonic() - t_kill
        time.sleep(1.0)
    results = load.snapshot()
    print("kill -9 Apache child %s/%s: %s; victim held %d of %d keep-alive connections; "
          "replacement after %.2fs" % (mode, mpm, load.summary(), len(victim_conns), n_ka,
                                       t_replaced))

    bad = [r for r in results if not r.ok]
    detail = "\n".join(map(repr, bad[:10]))
    # Failures only on the victim: one per connection it held, or requests on
    # new connections that were in flight when it died.
    per_conn = collections.Counter(r.conn for r in bad)
    for r in bad:
        if owner_of.get(r.conn) == victim:
            continue
        assert r.start < t_kill, "a request started after the kill failed: %r\n%s" % (r, detail)
        assert owner_of.get(r.conn) is None, \
            "a request on another child's connection failed: %r\n%s" % (r, detail)
    assert all(n == 1 for n in per_conn.values()), per_conn
    bound = len(victim_conns) + clients.count("new")
    assert len(bad) <= bound, "%d failures, bound %d:\n%s" % (len(bad), bound, detail)
    print("failed requests: %d (bound %d)" % (len(bad), bound))

    # The victim's pre-opened connections each failed once (they died with
    # it); those on other children went on serving, without a failure.
    for i, (_, o) in enumerate(conns):
        cid = -1 - i
        if o == victim:
            assert per_conn[cid] == 1, "connection %d on the victim: %r" % (
                cid, [r for r in results if r.conn == cid][-3:])
        else:
            assert cid not in per_conn
            assert any(r.ok and r.conn == cid and r.start > t_kill for r in results), \
                "connection %d (child %d) stopped serving after the kill" % (cid, o)
    # Everything started after the kill, except on the victim's dead
    # keep-alive connections, succeeded.
    after = [r for r in results if r.start > t_kill and owner_of.get(r.conn) != victim]
    assert len(after) >= 20, load.summary()
    assert all(r.ok for r in after), [r for r in after if not r.ok][:5]
    if mode == "embedded":
        assert victim not in {r.pid for r in after}
    else:
        # the daemons did not notice
        assert set(du.daemon_pids(a)) == daemons
        assert {r.pid for r in after} <= daemons

    # (Apache logs nothing for a child killed by SIGKILL: ap_process_child_status
    # keeps quiet about SIGKILL, SIGTERM and SIGHUP.)
    a.stop()
    harness.assert_clean_log(a.error_log(), du.BAD_LOG)


# ------------------------------------------------------------------ daemon
@pytest.mark.parametrize("mpm", ["event", "prefork"])
def test_kill9_daemon_under_load(apache_factory, mpm):
    a = start(apache_factory, "daemon", mpm)
    daemons = set(du.daemon_pids(a))
    assert len(daemons) == 2
    clients = ("ka", "ka", "new", "new", "new", "new")
    load = loadutil.Load(a.port, "/h?sleep=0.1", clients=clients, max_seconds=60)
    mark = None
    with load:
        # A connection stays with the daemon that accepted it (for up to 64
        # requests), so wait until both daemons have served.
        du.wait_until(lambda: {r.pid for r in load.ok()} == daemons or None,
                      timeout=15, what="both daemons serving")
        served = collections.Counter(r.pid for r in load.ok())
        assert set(served) == daemons, served
        victim = max(daemons, key=lambda p: max(r.end for r in load.ok() if r.pid == p))
        survivor = (daemons - {victim}).pop()
        mark = a.log_mark()
        os.kill(victim, signal.SIGKILL)
        t_kill = time.monotonic()
        du.wait_until(lambda: set(du.daemon_pids(a)) - daemons, timeout=5,
                      what="a replacement daemon process")
        respawn = time.monotonic() - t_kill
        # Connections stay with their daemon for up to 64 requests, so the
        # replacement takes requests as connections are renewed.
        du.wait_until(
            lambda: min((r.end for r in load.ok() if r.pid not in daemons), default=None),
            timeout=20, what="the replacement daemon serving")
        time.sleep(1.0)
    results = load.snapshot()
    bad = [r for r in results if not r.ok]
    print("kill -9 daemon (%s): %s; %d failed; replacement started after %.2fs"
          % (mpm, load.summary(), len(bad), respawn))
    detail = "\n".join(map(repr, bad[:10]))

    # Only the victim's in-flight requests failed, with a 502 (it died
    # before the response head) — or cut short if it died while sending.
    for r in bad:
        assert r.start < t_kill <= r.end, "not in flight at the kill: %r\n%s" % (r, detail)
        assert r.status == 502 or (r.kind == "error" and "IncompleteRead" in r.detail), r
    assert len(bad) <= DAEMON_THREADS, "%d failures > threads=%d:\n%s" % (
        len(bad), DAEMON_THREADS, detail)
    after = [r for r in results if r.start >= t_kill]
    assert len(after) >= 10 and all(r.ok for r in after), load.summary()
    assert any(r.pid == survivor for r in after), "the other daemon stopped serving"
    assert respawn < RESPAWN_LIMIT, "replacement started after %.2fs" % respawn

    # The replacement is the group's second process; the victim is gone.
    assert not harness.wait_pids_gone([victim], timeout=2)
    now = set(du.daemon_pids(a))
    assert len(now) == 2 and survivor in now and victim not in now, now
    d = du.get_json(a, "/h")
    assert d["ppid"] == a.pid

    # The error log names the cause: the dead daemon (pid, group, status 9
    # = SIGKILL) and, for each failed request, the daemon that broke it.
    text = a.wait_log(re.compile(r"WSGI daemon process %d of group 'g' exited \(exit status or signal 9\); "
                                 r"starting a replacement" % victim), mark)
    lines_502 = [l for l in text.splitlines() if "(status 502)" in l]
    n_502 = sum(1 for r in bad if r.status == 502)
    assert len(lines_502) == n_502, "%d 502s, log lines:\n%s" % (n_502, "\n".join(lines_502))
    assert all("WSGI daemon process %d of group 'g'" % victim in l for l in lines_502), lines_502
    a.stop()
    harness.assert_clean_log(a.error_log(), du.BAD_LOG)
