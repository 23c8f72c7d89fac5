"""Daemon mode across -k graceful / restart / stop, on event and prefork:
zero failed requests under bounded load during graceful restarts, a request
in flight completes, new daemons (new pids) take over and the old ones go,
stop is quick and leaves no daemon, restart/stop with a request in flight
stay within Apache's limits, the daemons go when the parent is killed; plus
the error log the restarts leave behind."""

import collections
import json
import os
import re
import signal
import threading
import time

import pytest

import daemonutil as du
import harness
import testutil

CONFIG = r"""
WSGIDaemonProcess g processes=2 threads=4
WSGIHandlerScript h @SCRIPTS@/app.py process-group=g application-group=%{GLOBAL}
<Location /h>
    SetHandler h
</Location>
"""

MPMS = ["event", "prefork"]
STOP_LIMIT = 2.0

RESTART_BAD = du.BAD_LOG


def start(factory, mpm, extra=""):
    a = factory(mpm=mpm)
    a.copy_app("daemon_app.py", "app.py")
    a.start(CONFIG + extra)
    return a


def assert_clean(a):
    harness.assert_clean_log(a.error_log(), RESTART_BAD)


def group_daemons(a, title="(wsgi:g)"):
    return [p for p in du.daemon_pids(a) if (du.cmdline(p) or "").startswith(title)]


def pids_serving(a, n=8):
    return {du.get_json(a, "/h")["pid"] for _ in range(n)}


class Load:
    """`clients` threads doing sequential GETs (fresh connections) until
    stopped; bounded by `max_seconds`."""

    def __init__(self, a, path, clients=4, max_seconds=20):
        self.a = a
        self.path = path
        self.results = []
        self.lock = threading.Lock()
        self.stop_at = time.monotonic() + max_seconds
        self.threads = [threading.Thread(target=self.run) for _ in range(clients)]

    def run(self):
        while time.monotonic() < self.stop_at:
            try:
                st, _, body = self.a.get(self.path, timeout=15)
                r = (st, json.loads(body)["pid"] if st == 200 else body[:200])
            except Exception as e:
                r = (repr(e), None)
            with self.lock:
                self.results.append(r)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_at = 0
        for t in self.threads:
            t.join(30)

    def failures(self):
        return [r for r in self.results if r[0] != 200]


def in_flight(a, path):
    out = []

    def run():
        try:
            st, _, body = a.get(path, timeout=20)
            out.append((st, json.loads(body)["pid"] if st == 200 else body[:200]))
        except Exception as e:
            out.append((repr(e), None))

    t = threading.Thread(target=run)
    t.start()
    return t, out


# ----------------------------------------------------------------- graceful
@pytest.mark.parametrize("mpm", MPMS)
def test_graceful_under_load_loses_nothing(apache_factory, mpm):
    a = start(apache_factory, mpm)
    old = pids_serving(a)
    old_daemons = set(group_daemons(a))
    assert old <= old_daemons
    mark = a.log_mark()
    slow, slow_out = in_flight(a, "/h?case=sleep&s=2")
    with Load(a, "/h?case=sleep&s=0.02") as load:
        time.sleep(0.5)
        a.graceful()
        time.sleep(1.0)
        mid = set(group_daemons(a))
        a.graceful()
        time.sleep(1.0)
    slow.join(20)
    counts = collections.Counter(r[0] for r in load.results)
    by_pid = collections.Counter(r[1] for r in load.results if r[0] == 200)
    print("graceful under load (%s): %d requests, statuses %s, per daemon %s"
          % (mpm, len(load.results), dict(counts), dict(by_pid)))
    assert not load.failures(), "%d of %d requests failed across 2 gracefuls: %s\n%s" % (
        len(load.failures()), len(load.results), load.failures()[:5],
        "\n".join(testutil.wsgi_rs_lines(a.log_since(mark))[-20:]))
    assert len(load.results) >= 40, "too little load: %d requests" % len(load.results)
    # the request in flight at the first graceful finished, in an old daemon
    assert slow_out and slow_out[0][0] == 200, slow_out
    assert slow_out[0][1] in old_daemons
    # three generations of daemons served
    new = pids_serving(a)
    assert not (new & old_daemons) and not (new & mid)
    assert len(set(by_pid) & old_daemons) >= 1 and len(set(by_pid) - old_daemons) >= 2
    # the old generations are gone, exactly processes=2 remain
    assert not harness.wait_pids_gone(old_daemons | mid, timeout=5)
    assert len(group_daemons(a)) == 2
    daemons = group_daemons(a)
    assert a.stop() < STOP_LIMIT
    assert not harness.wait_pids_gone(daemons, timeout=2)
    assert_clean(a)


@pytest.mark.parametrize("mpm", MPMS)
def test_graceful_under_heavy_load_zero_failures(apache_factory, mpm):
    """8 clients without pauses, 3 gracefuls: not one request may fail."""
    a = start(apache_factory, mpm)
    pids_serving(a, 4)
    mark = a.log_mark()
    with Load(a, "/h", clients=8) as load:
        for _ in range(3):
            time.sleep(0.6)
            a.graceful()
        time.sleep(0.5)
    counts = collections.Counter(r[0] for r in load.results)
    print("graceful under heavy load (%s): %d requests, statuses %s"
          % (mpm, len(load.results), dict(counts)))
    assert not load.failures(), "%d of %d requests failed: %s\n%s" % (
        len(load.failures()), len(load.results), dict(counts),
        "\n".join(l for l in testutil.wsgi_rs_lines(a.log_since(mark)) if ":error]" in l)[-3000:])
    a.stop()
    assert_clean(a)


@pytest.mark.parametrize("mpm", MPMS)
def test_graceful_in_flight_request_completes_in_old_daemon(apache_factory, mpm):
    a = start(apache_factory, mpm)
    pids_serving(a, 4)
    old = set(group_daemons(a))
    t, out = in_flight(a, "/h?case=sleep&s=2")
    time.sleep(0.5)
    a.graceful()
    # new requests go to new daemons while the old one still works
    elapsed, d = du.wait_serving(a, "/h", exclude=old, timeout=3)
    assert t.is_alive(), "the in-flight request ended before a new daemon served"
    t.join(20)
    assert out == [(200, out[0][1])] and out[0][1] in old, out
    assert not harness.wait_pids_gone(old, timeout=5)
    a.stop()
    assert_clean(a)


def test_graceful_timeout_bounds_old_daemons(apache_factory):
    """graceful-timeout=1: an old daemon still busy after 1 s goes (its
    request fails: 502 or truncated, not a hang), new ones serve meanwhile."""
    a = apache_factory(mpm="event")
    a.copy_app("daemon_app.py", "app.py")
    a.start(CONFIG.replace("threads=4", "threads=4 graceful-timeout=1"))
    pids_serving(a, 4)
    old = set(group_daemons(a))
    t, out = in_flight(a, "/h?case=sleep&s=6")
    time.sleep(0.5)
    t0 = time.monotonic()
    a.graceful()
    du.wait_serving(a, "/h", exclude=old, timeout=3)
    assert not harness.wait_pids_gone(old, timeout=4), "old daemons outlived graceful-timeout=1"
    assert time.monotonic() - t0 < 4
    t.join(20)
    assert out and out[0][0] != 200, out
    a.stop()
    assert_clean(a)


# ------------------------------------------------------------ restart/stop
@pytest.mark.parametrize("mpm", MPMS)
def test_restart_replaces_daemons(apache_factory, mpm):
    a = start(apache_factory, mpm)
    old = set(group_daemons(a))
    pids_serving(a, 4)
    t = a.restart()
    assert t < 3.0, "restart took %.2fs" % t
    new = pids_serving(a, 4)
    assert not (new & old)
    assert not harness.wait_pids_gone(old, timeout=2), "old daemons survived -k restart"
    assert len(group_daemons(a)) == 2
    a.stop()
    assert_clean(a)


@pytest.mark.parametrize("mpm", MPMS)
def test_stop_idle_is_quick_and_leaves_no_daemon(apache_factory, mpm):
    a = start(apache_factory, mpm, "WSGIDaemonProcess other processes=3 threads=2\n")
    pids_serving(a, 4)
    daemons = du.daemon_pids(a)
    assert len(daemons) == 5
    parent = a.pid
    t = a.stop()
    assert t < STOP_LIMIT, "idle stop took %.2fs" % t
    assert not harness.pid_alive(parent)
    assert not harness.wait_pids_gone(daemons, timeout=2), "daemons survived the stop"
    assert_clean(a)


@pytest.mark.parametrize("mpm", MPMS)
def test_stop_with_daemon_request_in_flight(apache_factory, mpm):
    """The daemon gets SIGTERM and at most shutdown-timeout (capped at 2 s)
    for the running request; Apache must not need to SIGKILL anything
    (AH00045/AH00046) and the stop stays under 3 s."""
    a = start(apache_factory, mpm)
    pids_serving(a, 2)
    daemons = du.daemon_pids(a)
    th, out = in_flight(a, "/h?case=sleep&s=10")
    time.sleep(0.5)
    t = a.stop()
    th.join(20)
    assert t < 3.0, "stop with a daemon request in flight took %.2fs" % t
    assert not harness.wait_pids_gone(daemons, timeout=2)
    assert out and out[0][0] != 200, out
    assert_clean(a)


def test_shutdown_timeout_shortens_stop(apache_factory):
    a = apache_factory(mpm="event")
    a.copy_app("daemon_app.py", "app.py")
    a.start(CONFIG.replace("threads=4", "threads=4 shutdown-timeout=0"))
    pids_serving(a, 2)
    daemons = du.daemon_pids(a)
    th, out = in_flight(a, "/h?case=sleep&s=10")
    time.sleep(0.5)
    t = a.stop()
    th.join(20)
    # Without shutdown-timeout=0 the daemon gives the request 2 s. Apache's
    # parent checks whether its processes are gone after about 0.02, 0.08,
    # 0.34 and 1.34 s, so a loaded machine that misses the 0.34 s check
    # still ends near 1.4 s.
    assert t < 1.5, "stop with shutdown-timeout=0 took %.2fs" % t
    assert not harness.wait_pids_gone(daemons, timeout=2)
    assert_clean(a)


def test_restart_with_daemon_request_in_flight(apache_factory):
    a = start(apache_factory, "event")
    old = set(group_daemons(a))
    pids_serving(a, 2)
    th, out = in_flight(a, "/h?case=sleep&s=10")
    time.sleep(0.5)
    t = a.restart()
    assert t < 3.5, "restart with a daemon request in flight took %.2fs" % t
    new = pids_serving(a, 4)
    assert not (new & old)
    th.join(20)
    assert not harness.wait_pids_gone(old, timeout=2)
    a.stop()
    assert_clean(a)


def test_daemons_exit_when_apache_parent_is_killed(apache_factory):
    """No daemon outlives Apache, even when the parent dies by SIGKILL."""
    a = start(apache_factory, "event")
    pids_serving(a, 2)
    daemons = du.daemon_pids(a)
    os.kill(a.pid, signal.SIGKILL)
    a.proc.wait(5)
    left = harness.wait_pids_gone(daemons, timeout=4)
    a.kill()  # reaps the rest of our process group (Apache children)
    assert not left, "daemons outlived their parent: %s" % left


# ------------------------------------------------------------ error log
# Daemons are Apache's children but not MPM workers: the MPM must never
# reap one it does not know ("long lost child came home", AH00488/AH00167)
# nor be told about one it has no record of (AH00546; prefork would even
# index its scoreboard with -1), and the module logs each old daemon's exit.
@pytest.mark.parametrize("mpm", MPMS)
def test_graceful_leaves_clean_log(apache_factory, mpm):
    a = start(apache_factory, mpm)
    old = set(group_daemons(a))
    pids_serving(a, 4)
    a.graceful()
    assert not harness.wait_pids_gone(old, timeout=5)
    time.sleep(1.2)  # the parent's maintenance pass
    log = a.error_log()
    a.stop()
    harness.assert_clean_log(log, RESTART_BAD)
    for pid in old:
        assert re.search(r"WSGI daemon process %d of group 'g' exited" % pid, log), \
            "no line about old daemon %d:\n%s" % (pid, "\n".join(testutil.wsgi_rs_lines(log)))


@pytest.mark.parametrize("mpm", MPMS)
def test_graceful_then_restart_and_stop_leave_clean_log(apache_factory, mpm):
    a = start(apache_factory, mpm)
    pids_serving(a, 4)
    a.graceful()
    pids_serving(a, 4)
    a.restart()
    pids_serving(a, 4)
    a.stop()
    harness.assert_clean_log(a.error_log(), RESTART_BAD)


def test_prefork_stop_leaves_clean_log(apache_factory):
    a = start(apache_factory, "prefork")
    pids_serving(a, 2)
    a.stop()
    harness.assert_clean_log(a.error_log(), RESTART_BAD)
