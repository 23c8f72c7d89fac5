"""Hostile and unusual clients (issue 7), in embedded and daemon mode, on
event and prefork: a body sent a few bytes at a time, clients that go away
in the middle of an upload or a download, oversized request heads, a body
over LimitRequestBody, pipelined requests, HTTP/1.0 with and without
keep-alive, several requests on one HTTP/1.1 connection.

Each time the request is answered correctly (or refused by Apache with its
own 4xx, without calling the app), the process that served it survives and
the server goes on serving, and the error log shows no crash."""

import hashlib
import json
import os
import socket
import struct
import time
import uuid

import pytest

import daemonutil as du
import harness
import testutil

MODES = ["embedded", "daemon"]
MPMS = ["event", "prefork"]

CONFIG = r"""
SetEnv WSGI_TEST_OUT @OUT@
WSGIDaemonProcess clients threads=4
WSGIHandlerScript ce @SCRIPTS@/client.py application-group=%{GLOBAL}
WSGIHandlerScript cd @SCRIPTS@/client.py process-group=clients application-group=%{GLOBAL}
<Location /embedded>
    SetHandler ce
    WSGIChunkedRequest On
</Location>
<Location /daemon>
    SetHandler cd
    WSGIChunkedRequest On
</Location>
<Location /limited/embedded>
    SetHandler ce
    WSGIChunkedRequest On
    LimitRequestBody 1000
</Location>
<Location /limited/daemon>
    SetHandler cd
    WSGIChunkedRequest On
    LimitRequestBody 1000
</Location>
"""

MIB = 1024 * 1024


@pytest.fixture(scope="module", params=MPMS)
def server(request, module_apache_factory):
    a = module_apache_factory(mpm=request.param)
    a.copy_app("client_app.py", "client.py")
    a.start(CONFIG)
    yield a
    daemons = du.daemon_pids(a)
    elapsed = a.stop()
    assert elapsed < 3.0, "stop took %.2fs" % elapsed
    assert not harness.wait_pids_gone(daemons, timeout=2)
    harness.assert_clean_log(a.error_log(), du.BAD_LOG)


@pytest.fixture(params=MODES)
def mode(request):
    return request.param


def new_tag():
    return uuid.uuid4().hex[:12]


def marker(a, tag, ext="called"):
    return os.path.join(a.out, "%s.%s" % (tag, ext))


def probe(a, mode):
    st, _, body = a.get("/%s?case=probe" % mode)
    assert st == 200, (st, body[:300], a.error_log()[-3000:])
    return json.loads(body)


def assert_process_survived(a, mode, tag):
    """The process that ran the request (pid written by the app) is alive,
    still one of ours, and the server serves the next request."""
    pid = int(testutil.wait_file(marker(a, tag)))
    time.sleep(0.1)
    assert harness.pid_alive(pid), "process %d died" % pid
    if mode == "embedded":
        assert pid in du.apache_children(a), "%d is no longer an Apache child" % pid
    else:
        assert pid in du.daemon_pids(a), "%d is no longer a daemon" % pid
        assert probe(a, mode)["pid"] == pid, "the daemon was replaced"
    probe(a, mode)


def rst_close(s):
    """Close with RST instead of FIN (the server's next I/O fails at once)."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


class Reader:
    """Reads HTTP responses one at a time off a connection (Content-Length,
    chunked, or to the end of the connection)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.eof = False

    def _fill(self):
        b = self.sock.recv(65536)
        if not b:
            self.eof = True
            raise EOFError("connection closed; buffered %r" % self.buf[:300])
        self.buf += b

    def _until(self, marker):
        while marker not in self.buf:
            self._fill()
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def _n(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def to_eof(self):
        try:
            while True:
                self._fill()
        except EOFError:
            pass
        except ConnectionResetError:
            self.eof = True
        out, self.buf = self.buf, b""
        return out

    def response(self):
        r = testutil.RawResponse(self._until(b"\r\n\r\n"))
        if r.chunked:
            parts = []
            while True:
                size = int(self._until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    self._until(b"\r\n")
                    break
                parts.append(self._n(size))
                self._n(2)
            return r, b"".join(parts)
        cl = r.header("Content-Length")
        if cl is not None:
            return r, self._n(int(cl))
        return r, self.to_eof()

    def closed_by_server(self, timeout=5.0):
        """True if the server closes the connection (nothing more arrives)."""
        self.sock.settimeout(timeout)
        try:
            return self.to_eof() == b"" and self.eof
        except socket.timeout:
            return False
        finally:
            self.sock.settimeout(testutil.READ_TIMEOUT)


# -------------------------------------------------------------- slow body
def _slow_send(s, pieces, gap=0.2):
    for p in pieces:
        s.sendall(p)
        time.sleep(gap)


def test_slow_body_sender(server, mode):
    """30 bytes, 6 bytes every 0.2 s: the app reads all of it, correctly."""
    body = b"abcdefghijklmnopqrstuvwxyz0123"
    t0 = time.monotonic()
    with testutil.connect(server.port) as s:
        s.sendall(testutil.request_bytes("POST", "/%s?case=upload" % mode, server.port,
                                         [("Content-Length", str(len(body)))]))
        _slow_send(s, [body[i:i + 6] for i in range(0, len(body), 6)])
        r, data = Reader(s).response()
    assert time.monotonic() - t0 >= 1.0
    assert r.status == 200
    d = json.loads(data)
    assert (d["length"], d["outcome"]) == (len(body), "ok"), d
    assert d["sha256"] == hashlib.sha256(body).hexdigest()


def test_slow_chunked_body_sender(server, mode):
    body = b"0123456789" * 5
    pieces = [body[i:i + 10] for i in range(0, len(body), 10)]
    data = testutil.chunk_encode(pieces)
    cut = [data[i:i + 17] for i in range(0, len(data), 17)]  # splits chunk lines too
    with testutil.connect(server.port) as s:
        s.sendall(testutil.request_bytes("POST", "/%s?case=upload" % mode, server.port,
                                         [("Transfer-Encoding", "chunked")]))
        _slow_send(s, cut, gap=1.0 / len(cut))
        r, out = Reader(s).response()
    assert r.status == 200
    d = json.loads(out)
    assert (d["length"], d["outcome"]) == (len(body), "ok"), d


# ------------------------------------------------------------ disconnects
def test_disconnect_mid_upload(server, mode):
    """Content-Length 1 MiB, 64 KiB sent, then a reset: the app's read fails
    with an OSError (not a silent end of the body), the process survives."""
    a = server
    tag = new_tag()
    mark = a.log_mark()
    s = testutil.connect(a.port)
    try:
        s.sendall(testutil.request_bytes("POST", "/%s?case=upload&tag=%s" % (mode, tag), a.port,
                                         [("Content-Length", str(MIB))], b"u" * 65536))
        testutil.wait_file(marker(a, tag))
        time.sleep(0.3)
    finally:
        rst_close(s)
    d = json.loads(testutil.wait_file(marker(a, tag, "result")))
    assert d["length"] <= 65536, d
    assert d["outcome"] != "ok", "a truncated upload read like a complete one: %r" % d
    assert d["outcome"].endswith("OSError=True"), "not an OSError: %r" % d
    assert_process_survived(a, mode, tag)
    log = a.log_since(mark)
    harness.assert_clean_log(log, du.BAD_LOG)
    assert "Traceback" not in log


def test_disconnect_mid_download(server, mode):
    """A client reads 256 KiB of a 256 MiB response and resets: the app's
    iteration stops early, close() is called, the process survives."""
    a = server
    tag = new_tag()
    mark = a.log_mark()
    s = testutil.connect(a.port)
    try:
        s.sendall(testutil.request_bytes(
            "GET", "/%s?case=download&size=%d&tag=%s" % (mode, 256 * MIB, tag), a.port))
        got = 0
        while got < 256 * 1024:
            b = s.recv(65536)
            assert b, "server closed first"
            got += len(b)
    finally:
        rst_close(s)
    text = testutil.wait_file(marker(a, tag, "close"), timeout=15)
    pulled = int(text.strip().split("=")[1])
    assert pulled < 4096 // 2, "iteration went on after the client left: %d pieces" % pulled
    assert_process_survived(a, mode, tag)
    log = a.log_since(mark)
    harness.assert_clean_log(log, du.BAD_LOG)
    assert "Traceback" not in log
    assert not testutil.wsgi_rs_lines(log, "error"), "client disconnect logged as an error"


# ------------------------------------------------------ oversized requests
@pytest.mark.parametrize("kind,status", [
    ("long_field", 400),        # one header over LimitRequestFieldSize (8190)
    ("many_fields", 400),       # over LimitRequestFields (100)
    ("long_line", 414),         # request line over LimitRequestLine (8190)
    ("huge_head", 400),         # 1 MiB of header lines
])
def test_oversized_request_head(server, mode, kind, status):
    a = server
    tag = new_tag()
    path = "/%s?case=probe&tag=%s" % (mode, tag)
    headers = []
    if kind == "long_field":
        headers = [("X-Long", "l" * 10000)]
    elif kind == "many_fields":
        headers = [("X-F%d" % i, "v") for i in range(150)]
    elif kind == "long_line":
        path += "&pad=" + "p" * 9000
    elif kind == "huge_head":
        headers = [("X-Big", "b" * 8000)] * 130
    mark = a.log_mark()
    r = testutil.raw_request(a.port, "GET", path, headers=headers)
    assert r.status == status, r.status_line
    time.sleep(0.2)
    assert not os.path.exists(marker(a, tag)), "the app was called"
    assert not testutil.wsgi_rs_lines(a.log_since(mark), "error")
    probe(a, mode)


# ------------------------------------------------------- LimitRequestBody
def test_body_over_limit_request_body(server, mode):
    """Content-Length over LimitRequestBody 1000: 413, the app not called."""
    a = server
    tag = new_tag()
    r = testutil.raw_request(a.port, "POST", "/limited/%s?case=upload&tag=%s" % (mode, tag),
                             headers=[("Content-Length", "5000")], body=b"x" * 5000)
    assert r.status == 413, r.status_line
    time.sleep(0.2)
    assert not os.path.exists(marker(a, tag)), "the app was called"
    # at the limit: served
    tag = new_tag()
    r = testutil.raw_request(a.port, "POST", "/limited/%s?case=upload&tag=%s" % (mode, tag),
                             headers=[("Content-Length", "1000")], body=b"x" * 1000)
    assert r.status == 200
    assert json.loads(r.body()[0])["length"] == 1000


def test_chunked_body_over_limit_request_body(server, mode):
    """A chunked body grows past LimitRequestBody while the app reads: the
    app never sees more than the limit, its read fails, the client gets a
    413 (or an error status, never a 200 built on a cut body)."""
    a = server
    tag = new_tag()
    mark = a.log_mark()
    r = testutil.raw_request(a.port, "POST", "/limited/%s?case=upload&tag=%s" % (mode, tag),
                             headers=[("Transfer-Encoding", "chunked")],
                             body=testutil.chunk_encode([b"c" * 500] * 10))
    result = os.path.exists(marker(a, tag, "result")) and json.loads(
        testutil.wait_file(marker(a, tag, "result")))
    if result:
        assert result["length"] <= 1000, result
        assert result["outcome"] != "ok", "a body cut at the limit read like a complete one"
    assert r.status == 413, (r.status_line, result, a.log_since(mark)[-2000:])
    probe(a, mode)


# ------------------------------------------------------------- pipelining
def test_pipelined_requests(server, mode):
    """GET, POST with a body, GET (chunked response), sent in one piece:
    all three answered, in order, then the connection is closed."""
    a = server
    p = a.port
    data = (testutil.request_bytes("GET", "/%s?case=one&n=1" % mode, p, close=False)
            + testutil.request_bytes("POST", "/%s?case=upload" % mode, p,
                                     [("Content-Length", "5")], b"hello", close=False)
            + testutil.request_bytes("GET", "/%s?case=gen&n=3" % mode, p))
    with testutil.connect(p) as s:
        s.sendall(data)
        rd = Reader(s)
        r1, b1 = rd.response()
        r2, b2 = rd.response()
        r3, b3 = rd.response()
        assert rd.closed_by_server()
    assert (r1.status, b1) == (200, b"one:case=one&n=1")
    assert r2.status == 200 and json.loads(b2)["length"] == 5
    assert (r3.status, b3) == (200, b"gen:case=gen&n=3")
    assert r3.chunked


def test_pipelined_many_small_requests(server, mode):
    p = server.port
    n = 10
    data = b"".join(testutil.request_bytes("GET", "/%s?case=one&i=%d" % (mode, i), p,
                                           close=(i == n - 1)) for i in range(n))
    with testutil.connect(p) as s:
        s.sendall(data)
        rd = Reader(s)
        bodies = [rd.response()[1] for _ in range(n)]
    assert bodies == [b"one:case=one&i=%d" % i for i in range(n)]


# ------------------------------------------------------------- HTTP/1.0
@pytest.mark.parametrize("case", ["one", "gen"])
def test_http10_without_keepalive(server, mode, case):
    with testutil.connect(server.port) as s:
        s.sendall(testutil.request_bytes("GET", "/%s?case=%s" % (mode, case), server.port,
                                         close=False, http="HTTP/1.0"))
        data = testutil.recv_all(s)  # the server closes
    r = testutil.RawResponse(data)
    assert r.status_line.startswith("HTTP/1.1 200")
    assert not r.chunked
    assert r.rest == ("%s:case=%s" % (case, case)).encode()


def test_http10_keepalive(server, mode):
    """HTTP/1.0 with Connection: keep-alive: responses with a length keep
    the connection open; a response without one (a generator: no chunked
    encoding for 1.0) ends it."""
    p = server.port
    ka = [("Connection", "keep-alive")]
    with testutil.connect(p) as s:
        rd = Reader(s)
        for i in range(2):
            s.sendall(testutil.request_bytes("GET", "/%s?case=one&k=%d" % (mode, i), p, ka,
                                             close=False, http="HTTP/1.0"))
            r, body = rd.response()
            assert r.status == 200 and body == b"one:case=one&k=%d" % i
            assert (r.header("Connection") or "").lower() == "keep-alive", r.headers
        s.sendall(testutil.request_bytes("GET", "/%s?case=gen&k=2" % mode, p, ka,
                                         close=False, http="HTTP/1.0"))
        r, body = rd.response()
        assert r.status == 200 and not r.chunked
        assert body == b"gen:case=gen&k=2"
        assert rd.eof, "no end of body for an HTTP/1.0 response without a length"


# -------------------------------------------------------- HTTP/1.1 keep-alive
def test_http11_keepalive_several_requests(server, mode):
    p = server.port
    with testutil.connect(p) as s:
        rd = Reader(s)
        pids = set()
        for i in range(3):
            s.sendall(testutil.request_bytes("GET", "/%s?case=probe&i=%d" % (mode, i), p,
                                             close=False))
            r, body = rd.response()
            assert r.status == 200
            d = json.loads(body)
            assert d["query"] == "case=probe&i=%d" % i
            pids.add(d["pid"])
            s.sendall(testutil.request_bytes("POST", "/%s?case=upload" % mode, p,
                                             [("Content-Length", "3")], b"abc", close=False))
            r, body = rd.response()
            assert json.loads(body)["length"] == 3
            s.sendall(testutil.request_bytes("GET", "/%s?case=gen&i=%d" % (mode, i), p,
                                             close=False))
            r, body = rd.response()
            assert r.chunked and body == b"gen:case=gen&i=%d" % i
        s.sendall(testutil.request_bytes("GET", "/%s?case=one&last=1" % mode, p))
        r, body = rd.response()
        assert body == b"one:case=one&last=1"
        assert rd.closed_by_server()
    if mode == "embedded":
        assert len(pids) == 1, "one connection served by several processes: %s" % pids


def test_zz_log_clean(server):
    harness.assert_clean_log(server.error_log(), du.BAD_LOG)
