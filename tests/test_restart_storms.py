"""Restart storms under continuous load, embedded and daemon mode, on event
and prefork: 20 consecutive ``-k graceful`` lose no request; repeated
``-k restart`` fail only the requests in flight and serve again within
about a second; ``-k stop`` under load leaves no process behind.

test_restarts.py and test_daemon_restarts.py check single restarts (a
request in flight, a few gracefuls with sequential clients); here the load
is continuous (keep-alive and new-connection clients, see loadutil.py) and
the restarts come one after the other.

What counts as a failure: any status but 200, a refused or reset new
connection, a truncated or wrong body, a timeout.  A keep-alive connection
that the server closes while the client sends its next request on it
(EOF or reset before any response byte, ``ka_closed``) is retried on a new
connection, as RFC 9112 9.3.1 allows and browsers do; the retry must
succeed, and these events are counted and reported.  (Apache without the
module, serving a static file under the same load and gracefuls, closes
keep-alive connections in the same way: ~25 per 20 gracefuls on event.)"""

import collections
import os
import re
import time

import pytest

import daemonutil as du
import harness
import loadutil
import testutil

EMBEDDED = loadutil.EMBEDDED_CONFIG
DAEMON = loadutil.DAEMON_CONFIG

CONFIGS = {"embedded": EMBEDDED, "daemon": DAEMON}
MPMS = ["event", "prefork"]
CLIENTS = ("ka", "ka", "new", "new")

GRACEFULS = 20
RESTARTS = 4
RESTART_LIMIT = 3.0   # seconds from "-k graceful|restart" until serving again
STOP_LIMIT = 2.0      # seconds from "-k stop" (short requests only) to the parent's exit
MIN_REQUESTS_PER_GENERATION = 10



def start(factory, mode, mpm):
    a = factory(mpm=mpm)
    a.copy_app("pid_app.py", "app.py")
    a.start(CONFIGS[mode])
    st, _, _ = a.get("/h")
    assert st == 200
    return a


def sock_path(a):
    return os.path.join(a.rundir, "wsgi-rs.g.sock")


def listening_unix_inodes(path):
    """Socket inodes of the listening Unix sockets bound to `path`
    (from /proc/net/unix: flag __SO_ACCEPTCON)."""
    out = []
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            parts = line.split()
            if len(parts) >= 8 and parts[7] == path and int(parts[3], 16) & 0x10000:
                out.append(int(parts[6]))
    return sorted(out)


def listener_identity(a):
    """(file inode of the socket path, listening socket inodes bound to it)."""
    p = sock_path(a)
    return os.stat(p).st_ino, listening_unix_inodes(p)


def all_server_pids(a):
    return set(du.apache_children(a)) | set(du.daemon_pids(a))


EVENT_STOP_SEGV = re.compile(r"AH00052: child pid (\d+) exit signal Segmentation fault")


def drop_event_stop_race(log, stopped_children):
    """The error log without the segfault lines of event-MPM children that
    were being stopped ungracefully, and how many there were.

    Apache's event MPM itself sometimes crashes such a child: at an
    ungraceful stop the main thread closes the workers' sockets while a
    worker is freeing its finished connection's pool (core: main thread in
    apr_os_sock_get, worker in apr_allocator_destroy).  It happens without
    this module loaded, serving a static file under the same load
    (tests/soak/event_stop_race.py: about 3 in 40 runs).  Only the children
    that this test sent SIGTERM are excused; any other crash still fails."""
    kept, tolerated = [], 0
    for line in log.splitlines():
        m = EVENT_STOP_SEGV.search(line)
        if m and int(m.group(1)) in stopped_children:
            tolerated += 1
        else:
            kept.append(line)
    return "\n".join(kept), tolerated


def fail_report(load, a, mark, extra=""):
    bad = load.failures()
    return "%s\n%d failures, first ones:\n%s\n--- module lines ---\n%s%s" % (
        load.summary(), len(bad), "\n".join(map(repr, bad[:8])),
        "\n".join(l for l in testutil.wsgi_rs_lines(a.log_since(mark))
                  if ":error]" in l or ":warn]" in l)[-3000:], extra)


# ------------------------------------------------------------------ graceful
def wait_new_generation(a, load, seen, t_signal, timeout=5.0):
    """Polls /h on new connections until a process not in `seen` answers;
    returns (seconds since t_signal, pid)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            st, _, body = a.get("/h", timeout=5)
            if st == 200:
                pid = loadutil.parse_pid(body)
                if pid not in seen:
                    return time.monotonic() - t_signal, pid
            last = st
        except Exception as e:
            last = repr(e)
        time.sleep(0.02)
    raise AssertionError("no new process served /h %.0fs after the restart (last %r): %s"
                         % (timeout, last, load.summary()))


def graceful_storm(a, mode, mpm):
    mark = a.log_mark()
    listener_before = listener_identity(a) if mode == "daemon" else None
    start_pids = all_server_pids(a)
    times = []        # -k graceful -> static file served by the new generation
    wsgi_times = []   # -k graceful -> /h answered by a new process
    seen = {loadutil.parse_pid(a.get("/h")[2])}
    load = loadutil.Load(a.port, "/h", clients=CLIENTS, max_seconds=150)
    with load:
        time.sleep(0.3)
        for i in range(GRACEFULS):
            seen |= {r.pid for r in load.ok()}
            t_signal = time.monotonic()
            times.append(a.graceful(timeout=10))
            t, pid = wait_new_generation(a, load, seen, t_signal)
            wsgi_times.append(t)
            seen.add(pid)
            time.sleep(0.1)
        time.sleep(0.3)
    results = load.snapshot()
    kinds = load.kinds_count()
    ok = load.ok()
    print("graceful storm %s/%s: %s; -k graceful -> static max %.2f mean %.2f s, "
          "-> WSGI from a new process max %.2f mean %.2f s"
          % (mode, mpm, load.summary(), max(times), sum(times) / len(times),
             max(wsgi_times), sum(wsgi_times) / len(wsgi_times)))

    # Not one request failed; every keep-alive close was retried successfully.
    assert not load.failures(), fail_report(load, a, mark)
    assert len(ok) >= GRACEFULS * MIN_REQUESTS_PER_GENERATION, load.summary()
    by_client = collections.defaultdict(list)
    for r in results:
        by_client[r.client].append(r)
    for client, rs in by_client.items():
        for prev, nxt in zip(rs, rs[1:]):
            if prev.kind == "ka_closed":
                assert nxt.ok and not nxt.reused, (prev, nxt)
    assert max(times) < RESTART_LIMIT, "slowest graceful %.2fs: %s" % (max(times), times)
    assert max(wsgi_times) < RESTART_LIMIT, \
        "slowest graceful until a new process served: %.2fs" % max(wsgi_times)

    # The old generations' processes went.
    current = all_server_pids(a)
    assert not harness.wait_pids_gone((seen | start_pids) - current, timeout=6)
    if mode == "daemon":
        du.wait_until(lambda: len(du.daemon_pids(a)) == 2, timeout=6,
                      what="exactly processes=2 daemons left")
        # The one socket clients connect to stayed the same.
        assert listener_identity(a) == listener_before, \
            "the daemon socket was replaced during the storm"
    return kinds, times


@pytest.mark.parametrize("mpm", MPMS)
@pytest.mark.parametrize("mode", [
    "embedded", "daemon"])
def test_graceful_storm_under_load(apache_factory, mode, mpm):
    a = start(apache_factory, mode, mpm)
    kinds, times = graceful_storm(a, mode, mpm)
    t = a.stop()
    assert t < STOP_LIMIT, "stop took %.2fs" % t
    harness.assert_clean_log(a.error_log(), du.BAD_LOG)


@pytest.mark.parametrize("how", ["graceful", "restart"])
def test_daemon_listener_survives_restarts(apache_factory, how):
    """README: each group listens on one Unix socket that stays open across
    restarts.  The socket file and the listening socket bound to it must be
    the same before and after each restart (no window in which connect()
    finds no file or a socket about to close)."""
    a = start(apache_factory, "daemon", "event")
    before = listener_identity(a)
    assert len(before[1]) == 1, before
    for i in range(3):
        getattr(a, how)()
        st, _, _ = a.get("/h")
        assert st == 200
        after = listener_identity(a)
        assert after == before, "%s #%d replaced the daemon socket: %s -> %s" % (
            how, i + 1, before, after)
    a.stop()




def fd_targets(pid):
    out = []
    d = "/proc/%d/fd" % pid
    for n in os.listdir(d):
        try:
            out.append(os.readlink(os.path.join(d, n)))
        except OSError:
            pass
    return sorted(out)


@pytest.mark.parametrize("mode", [
    "embedded", "daemon"])
def test_parent_descriptors_stable_across_gracefuls(apache_factory, mode):
    """After the first generation, graceful restarts must not add open
    descriptors to Apache's parent nor to the children and daemons it forks
    (tests/soak/graceful_leak.py runs this 1000 times)."""
    a = start(apache_factory, mode, "event")
    a.graceful()
    assert a.get("/h")[0] == 200
    du.wait_until(lambda: len(du.apache_children(a)) == 1, timeout=6, what="one child")
    parent0 = fd_targets(a.pid)
    # Children and daemons also hold daemon connections, as many as happen
    # to be pooled or parked: only their other descriptors must stay put.
    def non_sockets(pid):
        return len([t for t in fd_targets(pid) if not t.startswith("socket:")])
    def daemons_settled():
        # A daemon forked by the restart opens its descriptors while it
        # starts up: take the counts once two readings 0.3 s apart agree.
        before = sorted(non_sockets(p) for p in du.daemon_pids(a))
        time.sleep(0.3)
        return [before] if sorted(non_sockets(p) for p in du.daemon_pids(a)) == before else None
    child0 = non_sockets(du.apache_children(a)[0])
    daemon0 = du.wait_until(daemons_settled, timeout=6, what="daemon descriptors settled")[0]
    for i in range(5):
        a.graceful()
        assert a.get("/h")[0] == 200
    du.wait_until(lambda: len(du.apache_children(a)) == 1, timeout=6, what="one child")
    if mode == "daemon":
        du.wait_until(lambda: len(du.daemon_pids(a)) == 2, timeout=6, what="two daemons")
    parent1 = fd_targets(a.pid)
    assert len(parent1) == len(parent0), "parent descriptors after 5 gracefuls: %d -> %d\n%s\n%s" % (
        len(parent0), len(parent1), parent0, parent1)
    assert non_sockets(du.apache_children(a)[0]) == child0
    assert du.wait_until(daemons_settled, timeout=6, what="daemon descriptors settled")[0] == daemon0
    a.stop()


# -------------------------------------------------------- restart and stop
@pytest.mark.parametrize("mpm", MPMS)
@pytest.mark.parametrize("mode", ["embedded", "daemon"])
def test_restarts_then_stop_under_load(apache_factory, mode, mpm):
    """RESTARTS x ``-k restart`` then ``-k stop``, all under load.

    A request may fail only if it was in flight during a restart: it ended
    after the signal and started before the new generation served.  Every
    request started after that succeeds.  Serving resumes within
    RESTART_LIMIT (the static ready check and the WSGI app alike).  The stop
    leaves no process of our process group behind."""
    a = start(apache_factory, mode, mpm)
    mark = a.log_mark()
    windows = []      # (t_signal, t_ready)
    restart_s = []    # -k restart -> static file served
    wsgi_s = []       # -k restart -> first WSGI response from a new process
    stopped_children = set()  # Apache children sent SIGTERM by a restart or the stop
    load = loadutil.Load(a.port, "/h", clients=CLIENTS, max_seconds=120)
    load.start()
    try:
        time.sleep(0.4)
        for i in range(RESTARTS):
            old = all_server_pids(a)
            stopped_children |= set(du.apache_children(a))
            t_signal = time.monotonic()
            restart_s.append(a.restart(timeout=10))
            t_ready = time.monotonic()
            windows.append((t_signal, t_ready))
            first_new = du.wait_until(
                lambda: min((r.end for r in load.ok()
                             if r.start >= t_signal and r.pid not in old), default=None),
                timeout=5, what="a WSGI response from the new generation")
            wsgi_s.append(first_new - t_signal)
            time.sleep(0.6)
        # -k stop under load
        pids = all_server_pids(a) | {r.pid for r in load.ok()}
        stopped_children |= set(du.apache_children(a))
        parent = a.pid
        t_stop = time.monotonic()
        stop_s = a.stop()
    finally:
        load.stop()
    print("restarts %s/%s: %s; -k restart -> static %s s, -> WSGI %s s; stop %.2fs"
          % (mode, mpm, load.summary(), ["%.2f" % x for x in restart_s],
             ["%.2f" % x for x in wsgi_s], stop_s))

    results = load.snapshot()
    # requests started after -k stop fail, those in flight at it may
    bad = [r for r in results if r.kind != "ok" and r.end < t_stop]
    stray = [r for r in bad
             if not any(r.start < t_ready and r.end >= t_signal for t_signal, t_ready in windows)]
    assert not stray, "requests failed outside the restarts:\n%s" % fail_report(
        load, a, mark, "\n".join(map(repr, stray[:8])))
    per_restart = [sum(1 for r in bad if r.start < t_ready and r.end >= t_signal)
                   for t_signal, t_ready in windows]
    print("failed requests per restart (in flight):", per_restart)
    # each client has one request in flight, and may meet one more
    # connection accepted by a child that was already being stopped
    assert max(per_restart) <= 2 * len(CLIENTS), per_restart
    # serving again between restarts
    for t_signal, t_ready in windows:
        assert any(r.ok and r.start >= t_ready for r in results)
    assert max(restart_s) < RESTART_LIMIT, restart_s
    assert max(wsgi_s) < RESTART_LIMIT, wsgi_s
    assert stop_s < STOP_LIMIT, "stop under load took %.2fs" % stop_s

    # Nothing left: the parent, every child and daemon, anything in our
    # process group (the harness started Apache in a new session).
    assert not harness.pid_alive(parent)
    left = harness.wait_pids_gone(pids, timeout=3)
    assert not left, "processes left after -k stop: %s" % left
    assert not loadutil.process_group_members(parent), \
        "process group %d not empty after -k stop" % parent
    log = a.error_log()
    if mpm == "event":
        log, tolerated = drop_event_stop_race(log, stopped_children)
        print("event MPM child segfaults at an ungraceful stop (Apache's race):", tolerated)
    harness.assert_clean_log(log, du.BAD_LOG)
    assert log.count("resuming normal operations") == RESTARTS + 1
