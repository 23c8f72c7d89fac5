"""Daemon failures and how the client sees them, on event and prefork:
a daemon dying before the response head (502) or after it (truncated), app
exceptions before (500 + traceback) and after the head (truncated), no head
within socket-timeout / request-timeout (504), a head too large (502), an
unreachable socket (503), respawn after os._exit and kill -9, recycling by
maximum-requests; each with its error-log line naming group and pid."""

import collections
import json
import os
import re
import signal
import socket
import threading
import time
import uuid

import pytest

import daemonutil as du
import harness
import testutil

CONFIG = r"""
WSGIDaemonProcess fail threads=4 connect-timeout=1
WSGIDaemonProcess slow threads=2 socket-timeout=1
WSGIDaemonProcess rtimeout threads=2 request-timeout=1
WSGIDaemonProcess maxreq threads=2 maximum-requests=5
WSGIDaemonProcess maxreq2 processes=2 threads=2 maximum-requests=5
WSGIHandlerScript fail @SCRIPTS@/app.py process-group=fail application-group=%{GLOBAL}
WSGIHandlerScript slow @SCRIPTS@/app.py process-group=slow application-group=%{GLOBAL}
WSGIHandlerScript rtimeout @SCRIPTS@/app.py process-group=rtimeout application-group=%{GLOBAL}
WSGIHandlerScript maxreq @SCRIPTS@/app.py process-group=maxreq application-group=%{GLOBAL}
WSGIHandlerScript maxreq2 @SCRIPTS@/app.py process-group=maxreq2 application-group=%{GLOBAL}
"""
for _n in ("fail", "slow", "rtimeout", "maxreq", "maxreq2"):
    CONFIG += "<Location /%s>\n    SetHandler %s\n</Location>\n" % (_n, _n)

RESPAWN_LIMIT = 2.0


@pytest.fixture(scope="module")
def servers(module_apache_factory):
    """One server per MPM, started on first use, checked at the end."""
    started = {}

    def get(mpm):
        if mpm not in started:
            a = module_apache_factory(mpm=mpm)
            a.copy_app("daemon_app.py", "app.py")
            a.start(CONFIG)
            started[mpm] = a
        return started[mpm]

    yield get
    for a in started.values():
        daemons = du.daemon_pids(a)
        elapsed = a.stop()
        assert elapsed < 3.0, "stop took %.2fs" % elapsed
        assert not harness.wait_pids_gone(daemons, timeout=2), "daemons survived the stop"
        harness.assert_clean_log(a.error_log(), du.BAD_LOG)


@pytest.fixture(params=["event", "prefork"])
def server(request, servers):
    """The core cases run on event and prefork."""
    return servers(request.param)


@pytest.fixture
def event_server(servers):
    return servers("event")


def tag():
    return uuid.uuid4().hex[:10]


def raw(a, path, timeout=10):
    return testutil.raw_request(a.port, "GET", path, timeout=timeout)


def replacement_line(pid, group):
    return re.compile(r"WSGI daemon process %d of group '%s' exited .*starting a replacement"
                      % (pid, group))


# ------------------------------------------------------------------ deaths
def test_exit_before_head_is_502_and_respawned(server):
    pid = du.get_json(server, "/fail")["pid"]
    mark = server.log_mark()
    st, _, _ = server.get("/fail?case=exit_before")
    assert st == 502
    text = server.wait_log(re.compile(r"WSGI daemon process %d of group 'fail'.*502" % pid), mark)
    elapsed, d = du.wait_serving(server, "/fail", exclude={pid}, timeout=5)
    assert elapsed < RESPAWN_LIMIT, "replacement served after %.2fs" % elapsed
    server.wait_log(replacement_line(pid, "fail"), mark)
    assert not harness.pid_alive(pid)
    assert d["ppid"] == server.pid


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_request_whose_daemon_died_is_not_sent_again(server, method):
    """The app may have run a request whose daemon then died: it fails (502)
    and is never sent to another daemon, so the app runs it exactly once.
    (A bodiless request's READY travels with its response head, so the
    client must tell this apart from a daemon that never read the request.)"""
    pid = du.get_json(server, "/fail")["pid"]
    tag = "%s-%d-%d" % (method, pid, time.monotonic_ns())
    path = "/fail?case=exit_before&tag=" + tag
    if method == "GET":
        st, _, _ = server.get(path)
    else:
        st, _, _ = server.post(path, b"x" * 1000)
    assert st == 502
    du.wait_serving(server, "/fail", exclude={pid}, timeout=5)
    time.sleep(0.3)
    assert server.error_log().count("exit-before-" + tag) == 1, server.error_log()[-3000:]


def test_kill9_is_respawned(server):
    pid = du.get_json(server, "/fail")["pid"]
    mark = server.log_mark()
    os.kill(pid, signal.SIGKILL)
    elapsed, d = du.wait_serving(server, "/fail", exclude={pid}, timeout=5)
    assert elapsed < RESPAWN_LIMIT, "replacement served after %.2fs" % elapsed
    server.wait_log(replacement_line(pid, "fail"), mark)
    assert d["pid"] in du.daemon_pids(server)


def test_death_fails_only_the_requests_it_was_serving(server):
    """A daemon dies while serving a slow request: that one fails (502), the
    requests sent right after it wait for the replacement and succeed."""
    pid = du.get_json(server, "/fail")["pid"]
    results = {}

    def get(name, path):
        try:
            results[name] = server.get(path, timeout=15)
        except Exception as e:
            results[name] = e

    slow = threading.Thread(target=get, args=("slow", "/fail?case=sleep&s=3"))
    slow.start()
    time.sleep(0.5)
    st, _, _ = server.get("/fail?case=exit_before")
    assert st == 502
    after = [threading.Thread(target=get, args=("after%d" % i, "/fail")) for i in range(3)]
    for t in after:
        t.start()
    for t in after + [slow]:
        t.join(20)
    assert results["slow"][0] == 502, results["slow"]
    for i in range(3):
        r = results["after%d" % i]
        assert not isinstance(r, Exception) and r[0] == 200, (r, server.error_log()[-3000:])
    assert {json.loads(results["after%d" % i][2])["pid"] for i in range(3)}.isdisjoint({pid})


@pytest.mark.parametrize("cl", [False, True], ids=["chunked", "content-length"])
def test_exit_after_head_truncates(server, cl):
    mark = server.log_mark()
    r = raw(server, "/fail?case=exit_after&n=5000" + ("&cl=1" if cl else ""))
    assert r.status == 200
    body, complete = r.body()
    assert not complete, "a daemon that died mid-body gave a complete response: %r" % r.headers
    assert body == b"x" * 5000
    if cl:
        assert r.header("Content-Length") == "50000"
    else:
        assert r.chunked
    server.wait_log(re.compile(r"WSGI daemon process \d+ of group 'fail' failed after the "
                               r"response started.*truncated"), mark)
    du.wait_serving(server, "/fail", timeout=5)


# --------------------------------------------------------- app exceptions
def test_exception_before_body_is_500_with_traceback(server):
    pid = du.get_json(server, "/fail")["pid"]
    t = tag()
    mark = server.log_mark()
    st, _, body = server.get("/fail?case=raise_before&tag=" + t)
    assert st == 500
    assert t.encode() not in body, "traceback leaked to the client"
    text = server.wait_log("RuntimeError: raise-before-" + t, mark)
    assert "Traceback (most recent call last)" in text
    # the daemon goes on serving
    assert du.get_json(server, "/fail")["pid"] == pid


@pytest.mark.parametrize("cl", [False, True], ids=["chunked", "content-length"])
def test_exception_after_body_started_truncates(event_server, cl):
    pid = du.get_json(event_server, "/fail")["pid"]
    t = tag()
    mark = event_server.log_mark()
    r = raw(event_server, "/fail?case=raise_after&n=3000&tag=%s%s" % (t, "&cl=1" if cl else ""))
    assert r.status == 200
    body, complete = r.body()
    assert not complete, "an app failing mid-body gave a complete response"
    assert body == b"x" * 3000
    text = event_server.wait_log("RuntimeError: raise-after-" + t, mark)
    assert "Traceback (most recent call last)" in text
    assert du.get_json(event_server, "/fail")["pid"] == pid


# ---------------------------------------------------------------- timeouts
def test_socket_timeout_is_504(server):
    du.get_json(server, "/slow")
    mark = server.log_mark()
    t0 = time.monotonic()
    st, _, _ = server.get("/slow?case=sleep&s=3")
    elapsed = time.monotonic() - t0
    assert st == 504
    assert 0.9 <= elapsed < 2.5, "504 after %.2fs with socket-timeout=1" % elapsed
    server.wait_log(re.compile(r"WSGI daemon process \d+ of group 'slow'.*504"), mark)


def test_request_timeout_is_504(event_server):
    du.get_json(event_server, "/rtimeout")
    mark = event_server.log_mark()
    t0 = time.monotonic()
    st, _, _ = event_server.get("/rtimeout?case=sleep&s=3")
    elapsed = time.monotonic() - t0
    assert st == 504
    assert 0.9 <= elapsed < 2.5, "504 after %.2fs with request-timeout=1" % elapsed
    event_server.wait_log(re.compile(r"WSGI daemon process \d+ of group 'rtimeout'.*504"), mark)


def test_slow_body_after_head_is_not_504(event_server):
    """socket-timeout bounds silence, not the whole response: 4 pieces 0.6 s
    apart (each gap within the 1 s limit, 1.8 s in all) arrive complete."""
    t0 = time.monotonic()
    r = raw(event_server, "/slow?case=drip&n=4&d=0.6")
    assert r.status == 200
    assert r.body() == (b"drip\n" * 4, True)
    assert time.monotonic() - t0 >= 1.7


def test_response_head_too_large_is_500(event_server):
    """A 2 MB head never reaches the protocol: start_response refuses it in
    the daemon as in embedded mode (ValueError: 500 + traceback). The
    protocol's own 1 MiB limit (502) is covered by the decoder's unit tests."""
    pid = du.get_json(event_server, "/fail")["pid"]
    mark = event_server.log_mark()
    st, _, _ = event_server.get("/fail?case=headers&n=20&size=100000")
    assert st == 500
    event_server.wait_log(re.compile(r"ValueError: response headers too large"), mark)
    assert du.get_json(event_server, "/fail")["pid"] == pid


# -------------------------------------------------------- maximum-requests
def test_maximum_requests_recycles(event_server):
    """12 sequential requests, maximum-requests=5: no failure, at least 2
    processes serve, the first exactly 5."""
    a = event_server
    mark = a.log_mark()
    results = []
    for i in range(12):
        st, _, body = a.get("/maxreq", timeout=15)
        results.append((st, json.loads(body)["pid"] if st == 200 else None))
    assert all(st == 200 for st, _ in results), "failures %s:\n%s" % (
        results, "\n".join(testutil.wsgi_rs_lines(a.log_since(mark))[-10:]))
    pids = [p for _, p in results]
    assert len(set(pids)) >= 2, pids
    assert pids[:5] == [pids[0]] * 5 and pids[5] != pids[0], \
        "the first process did not serve exactly 5 requests: %s" % pids
    for p in set(pids):
        assert pids.count(p) <= 5, pids
    a.wait_log(re.compile(r"WSGI daemon process %d of group 'maxreq' reached maximum-requests=5"
                          % pids[0]), mark)
    a.wait_log(replacement_line(pids[0], "maxreq"), mark)


def test_maximum_requests_under_concurrency(event_server):
    """processes=2 maximum-requests=5, 4 clients x 8 requests: recycling
    fails nothing, and no process serves more than 5."""
    a = event_server
    mark = a.log_mark()
    results = []
    lock = threading.Lock()

    def worker():
        for _ in range(8):
            try:
                st, _, body = a.get("/maxreq2", timeout=15)
                r = (st, json.loads(body)["pid"] if st == 200 else body[:200])
            except Exception as e:
                r = (repr(e), None)
            with lock:
                results.append(r)

    ths = [threading.Thread(target=worker) for _ in range(4)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(60)
    assert len(results) == 32
    bad = [r for r in results if r[0] != 200]
    assert not bad, "%d of 32 requests failed: %s\n%s" % (
        len(bad), bad[:5], "\n".join(testutil.wsgi_rs_lines(a.log_since(mark))[-20:]))
    per_pid = collections.Counter(p for _, p in results)
    assert len(per_pid) >= 4, per_pid
    over = {p: n for p, n in per_pid.items() if n > 5}
    assert not over, "processes served more than maximum-requests=5: %s" % over


# ------------------------------------------------------------- unreachable
SOCK_CONFIG = r"""
WSGIDaemonProcess g threads=2 connect-timeout=1
WSGIHandlerScript h @SCRIPTS@/app.py process-group=g
<Location /h>
    SetHandler h
</Location>
"""


@pytest.fixture
def sock_server(apache_factory):
    a = apache_factory(mpm="event")
    a.copy_app("daemon_app.py", "app.py")
    a.start(SOCK_CONFIG)
    # No request yet: a served request would leave a pooled connection in the
    # Apache child, and that keeps working whatever happens to the socket file.
    deadline = time.monotonic() + 5
    while not os.path.exists(sock_path(a)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.path.exists(sock_path(a))
    return a


def sock_path(a):
    return os.path.join(a.rundir, "wsgi-rs.g.sock")


def test_socket_removed_is_503_quickly(sock_server):
    a = sock_server
    os.unlink(sock_path(a))
    mark = a.log_mark()
    t0 = time.monotonic()
    st, _, _ = a.get("/h")
    elapsed = time.monotonic() - t0
    assert st == 503
    assert elapsed < 1.5, "503 after %.2fs with connect-timeout=1" % elapsed
    a.wait_log(re.compile(r"connect to WSGI daemon process group 'g'.*503"), mark)


def test_connection_refused_is_503_after_connect_timeout(sock_server):
    """A stale socket file (nobody listening): retried for connect-timeout,
    then 503."""
    a = sock_server
    p = sock_path(a)
    os.unlink(p)
    s = socket.socket(socket.AF_UNIX)
    s.bind(p)
    s.close()
    os.chmod(p, 0o666)
    mark = a.log_mark()
    t0 = time.monotonic()
    st, _, _ = a.get("/h")
    elapsed = time.monotonic() - t0
    assert st == 503
    assert 0.8 <= elapsed < 2.5, "503 after %.2fs with connect-timeout=1" % elapsed
    a.wait_log(re.compile(r"connect to WSGI daemon process group 'g'.*refused.*503", re.I), mark)


@pytest.mark.parametrize("how", ["graceful", "restart"])
def test_removed_socket_recreated_by_restart(sock_server, how):
    """A socket file removed while Apache runs (e.g. by a tmp cleaner) is
    recreated by the next graceful or full restart."""
    a = sock_server
    os.unlink(sock_path(a))
    assert a.get("/h")[0] == 503
    getattr(a, how)()
    du.wait_serving(a, "/h", timeout=2)
