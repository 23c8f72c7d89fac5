"""A representative part of the PEP 3333 suite run through a daemon and in
embedded mode side by side (same script, same server): the environ, 
wsgi.input, start_response validation and exc_info, write(), Content-Length
rules, HEAD, status lines and headers, close(), chunked request bodies,
Expect: 100-continue, wsgi.errors/stdout/stderr, wsgi.file_wrapper.  Each
case must behave as PEP 3333 says and identically in both modes."""

import json
import os
import re
import socket
import time
import uuid

import pytest

import daemonutil as du
import harness
import testutil

CONFIG = r"""
SetEnv WSGI_TEST_OUT @OUT@
WSGIDaemonProcess pep threads=4
WSGIHandlerScript pe @SCRIPTS@/pep.py application-group=%{GLOBAL}
WSGIHandlerScript pd @SCRIPTS@/pep.py process-group=pep application-group=%{GLOBAL}
<Location /embedded>
    SetHandler pe
</Location>
<Location /daemon>
    SetHandler pd
</Location>
<Location /embedded-chunked>
    SetHandler pe
    WSGIChunkedRequest On
</Location>
<Location /daemon-chunked>
    SetHandler pd
    WSGIChunkedRequest On
</Location>
"""

MODES = ["embedded", "daemon"]
HOP = {"date", "server", "connection", "keep-alive"}


def _load_lists():
    ns = {}
    with open(os.path.join(harness.APPS, "daemon_pep3333.py")) as f:
        src = f.read()
    exec(src[src.index("BAD_STATUS = "):src.index("TEXT = ")], ns)
    return ns["BAD_STATUS"], ns["BAD_HEADERS"]


BAD_STATUS, BAD_HEADERS = _load_lists()


@pytest.fixture(scope="module")
def server(module_apache_factory):
    a = module_apache_factory(mpm="event")
    a.copy_app("daemon_pep3333.py", "pep.py")
    a.write("htdocs/static.txt", "s" * 50000)
    a.start(CONFIG)
    yield a
    a.stop()
    harness.assert_clean_log(a.error_log(), du.BAD_LOG)


@pytest.fixture(params=MODES)
def mode(request):
    return request.param


def raw(a, mode, query, method="GET", headers=(), body=b"", suffix=""):
    return testutil.raw_request(a.port, method, "/%s%s?%s" % (mode, suffix, query),
                                headers=headers, body=body)


def get_json(a, mode, query, **kw):
    r = raw(a, mode, query, **kw)
    assert r.status == 200, (r.status_line, r.rest[:2000], a.error_log()[-3000:])
    body, complete = r.body()
    assert complete
    return json.loads(body)


def summary(r):
    """What must match between embedded and daemon mode."""
    body, complete = r.body()
    headers = sorted((k.lower(), v) for k, v in r.headers if k.lower() not in HOP)
    return r.status_line, headers, body, complete


def same_in_both(a, query, **kw):
    e = raw(a, "embedded", query, **kw)
    d = raw(a, "daemon", query, **kw)
    assert summary(e) == summary(d), "embedded and daemon differ for %s:\n%r\n%r" % (
        query, summary(e), summary(d))
    return d


def tag():
    return uuid.uuid4().hex[:12]


# ------------------------------------------------------------------ environ
def test_environ_same_in_both_modes(server):
    q = "case=environ&x=%C3%A9&y=1"
    path = "/sub/p%C3%A4th"
    hdrs = [("X-Custom", "v1"), ("Cookie", "c=1"), ("Content-Type", "text/x-test")]
    e = json.loads(testutil.raw_request(server.port, "POST", "/embedded" + path + "?" + q,
                                        headers=hdrs + [("Content-Length", "3")], body=b"abc").body()[0])
    d = json.loads(testutil.raw_request(server.port, "POST", "/daemon" + path + "?" + q,
                                        headers=hdrs + [("Content-Length", "3")], body=b"abc").body()[0])
    differ = {"mod_wsgi.process_group", "mod_wsgi.request_handler", "SCRIPT_NAME",
              "REQUEST_URI", "REMOTE_PORT", "wsgi.input", "wsgi.errors",
              "wsgi.multithread", "wsgi.multiprocess", "UNIQUE_ID", "SCRIPT_FILENAME"}
    assert sorted(set(e) - differ) == sorted(set(d) - differ), (
        "keys only embedded: %s; only daemon: %s" % (sorted(set(e) - set(d)), sorted(set(d) - set(e))))
    for k in sorted(set(e) - differ):
        if k in ("wsgi.file_wrapper",):
            assert e[k][0] == d[k][0]
            continue
        assert e[k] == d[k], "environ[%r]: embedded %r, daemon %r" % (k, e[k], d[k])
    assert d["mod_wsgi.process_group"] == ["str", "pep"]
    assert e["mod_wsgi.process_group"] == ["str", ""]
    assert d["SCRIPT_NAME"] == ["str", "/daemon"]
    assert d["SCRIPT_FILENAME"] == ["str", os.path.join(server.htdocs, "daemon")]
    assert d["REQUEST_URI"] == ["str", "/daemon" + path + "?" + q]
    assert d["PATH_INFO"] == ["str", "/sub/p\u00c3\u00a4th"]  # latin-1 decoded bytes
    assert d["QUERY_STRING"] == ["str", q]
    assert d["REQUEST_METHOD"] == ["str", "POST"]
    assert d["CONTENT_LENGTH"] == ["str", "3"]
    assert d["CONTENT_TYPE"] == ["str", "text/x-test"]
    assert d["HTTP_X_CUSTOM"] == ["str", "v1"]
    assert d["SERVER_PORT"] == ["str", str(server.port)]
    assert d["SERVER_PROTOCOL"] == ["str", "HTTP/1.1"]
    assert d["WSGI_TEST_OUT"] == ["str", server.out]
    assert d["wsgi.version"] == ["tuple", [1, 0]]
    assert d["wsgi.url_scheme"] == ["str", "http"]
    assert d["wsgi.run_once"] == ["bool", False]
    assert d["wsgi.input_terminated"] == ["bool", True]
    for k, (typ, _) in d.items():
        if k.isupper():
            assert typ == "str", (k, typ)


# -------------------------------------------------------------------- input
BODY = b"abcdef\nsecond line\nthird\n\nlast-no-newline"


def test_input_operations(server, mode):
    d = get_json(server, mode, "case=input_ops", method="POST",
                 headers=[("Content-Length", str(len(BODY)))], body=BODY)
    assert d == ["abc", "def\n", "seco", "nd line\n", "", "third\n", "\n", "last-no-newline",
                 "", "", ""], d


def test_input_iteration(server, mode):
    d = get_json(server, mode, "case=input_iter", method="POST",
                 headers=[("Content-Length", str(len(BODY)))], body=BODY)
    assert d == ["abcdef\n", "second line\n", "third\n", "\n", "last-no-newline"]


@pytest.mark.parametrize("neg", [False, True], ids=["read()", "read(-1)"])
def test_input_read_all_never_past_body(server, mode, neg):
    body = b"0123456789" * 10000
    d = get_json(server, mode, "case=input_read_all" + ("&neg=1" if neg else ""), method="POST",
                 headers=[("Content-Length", str(len(body)))], body=body)
    assert d == {"len": len(body), "head": "01234567890123456789", "again": 0}


def test_input_empty_body(server, mode):
    d = get_json(server, mode, "case=input_read_all")
    assert d == {"len": 0, "head": "", "again": 0}


def test_chunked_request_body(server, mode):
    parts = [b"a" * 10, b"b" * 70000, b"\n", b"c" * 3]
    r = testutil.raw_request(server.port, "POST", "/%s-chunked?case=echo" % mode,
                             headers=[("Transfer-Encoding", "chunked")],
                             body=testutil.chunk_encode(parts))
    assert r.status == 200
    assert r.body() == (b"".join(parts), True)


def test_malformed_chunked_body(server, mode):
    """A broken chunked body: 400 for the client, and the app's read raises
    OSError, in both modes."""
    t = tag()
    r = testutil.raw_request(server.port, "POST", "/%s-chunked?case=read_report&tag=%s" % (mode, t),
                             headers=[("Transfer-Encoding", "chunked")],
                             body=b"5\r\nabcde\r\nZZ\r\nxx\r\n0\r\n\r\n")
    assert r.status == 400
    what = testutil.wait_file(os.path.join(server.out, t + ".read"))
    assert what.startswith("OSError"), what


def test_malformed_chunked_body_not_blamed_on_daemon(server):
    """The client's broken body is not logged as a daemon failure (502)."""
    mark = server.log_mark()
    r = testutil.raw_request(server.port, "POST", "/daemon-chunked?case=read_report&tag=" + tag(),
                             headers=[("Transfer-Encoding", "chunked")],
                             body=b"5\r\nabcde\r\nZZ\r\nxx\r\n0\r\n\r\n")
    assert r.status == 400
    time.sleep(0.3)
    text = server.log_since(mark)
    assert "status 502" not in text, text


def test_chunked_request_refused_by_default(server, mode):
    r = raw(server, mode, "case=echo", method="POST", headers=[("Transfer-Encoding", "chunked")],
            body=testutil.chunk_encode([b"abc"]))
    assert r.status == 411


def expect_100(a, mode, read_body):
    """Sends an Expect: 100-continue request head; returns whether an interim
    100 came within 1.5 s, then the final response."""
    body = b"x" * 1000
    q = "case=echo" if read_body else "case=one_item"
    with testutil.connect(a.port) as s:
        s.sendall(testutil.request_bytes("POST", "/%s?%s" % (mode, q), a.port,
                                         headers=[("Content-Length", str(len(body))),
                                                  ("Expect", "100-continue")]))
        s.settimeout(1.5)
        try:
            first = s.recv(65536)
        except socket.timeout:
            first = b""
        s.settimeout(10)
        got_100 = first.startswith(b"HTTP/1.1 100")
        if got_100 or not first:
            s.sendall(body)
        rest = testutil.recv_all(s)
    data = first + rest
    if got_100:
        data = data.split(b"\r\n\r\n", 1)[1]
    return got_100, testutil.RawResponse(data)


def test_expect_100_continue_sent_when_app_reads(server, mode):
    got_100, r = expect_100(server, mode, read_body=True)
    assert got_100, "no 100 Continue although the app reads the body"
    assert r.status == 200 and r.body() == (b"x" * 1000, True)


def test_expect_100_continue_not_sent_when_app_does_not_read(server, mode):
    got_100, r = expect_100(server, mode, read_body=False)
    assert not got_100, "100 Continue sent although the app never reads the body"
    assert r.status == 200


# ----------------------------------------------------------- start_response
@pytest.mark.parametrize("i", range(len(BAD_STATUS)), ids=lambda i: repr(BAD_STATUS[i]))
def test_bad_status_raises_in_app(server, mode, i):
    d = get_json(server, mode, "case=bad_status&i=%d" % i)
    assert d["raised"] is not None, "status %r accepted" % (BAD_STATUS[i],)
    want = "ValueError" if isinstance(BAD_STATUS[i], str) else "TypeError"
    assert d["raised"][0] == want, d


@pytest.mark.parametrize("i", range(len(BAD_HEADERS)), ids=lambda i: repr(BAD_HEADERS[i])[:40])
def test_bad_headers_raise_in_app(server, mode, i):
    d = get_json(server, mode, "case=bad_headers&i=%d" % i)
    assert d["raised"] is not None, "headers %r accepted" % (BAD_HEADERS[i],)
    assert d["raised"][0] in ("ValueError", "TypeError"), d


def test_bad_status_and_headers_same_exceptions_in_both(server):
    for i in range(len(BAD_STATUS)):
        same_in_both(server, "case=bad_status&i=%d" % i)
    for i in range(len(BAD_HEADERS)):
        same_in_both(server, "case=bad_headers&i=%d" % i)


def test_second_start_response_without_exc_info_raises(server, mode):
    r = raw(server, mode, "case=twice")
    assert r.status == 200
    d = json.loads(r.body()[0])
    assert d["raised"] and d["raised"][0] == "RuntimeError", d


def test_exc_info_before_head_replaces_status(server, mode):
    r = raw(server, mode, "case=exc_info_before")
    assert r.status_line.startswith("HTTP/1.1 503 Replaced")
    assert r.header("X-Replaced") == "yes"
    assert r.body() == (b"replaced body", True)


def test_exc_info_after_head_reraises_and_truncates(server, mode):
    t = tag()
    mark = server.log_mark()
    r = raw(server, mode, "case=exc_info_after&tag=" + t)
    assert r.status == 200
    body, complete = r.body()
    assert body == b"already sent" and not complete
    server.wait_log("ValueError: too-late-" + t, mark)


# ------------------------------------------------------------------- output
def test_write_then_iterable(server, mode):
    r = raw(server, mode, "case=write")
    assert r.status == 200 and r.body() == (b"abcdef", True)


def test_write_non_bytes_raises(server, mode):
    d = json.loads(raw(server, mode, "case=write_str").body()[0])
    assert d["raised"] and d["raised"][0] == "TypeError", d


def test_non_bytes_item_is_500(server, mode):
    mark = server.log_mark()
    r = raw(server, mode, "case=str_item")
    assert r.status == 500
    server.wait_log(re.compile(r"TypeError"), mark)


def test_content_length_short_aborts(server, mode):
    r = raw(server, mode, "case=cl_short")
    assert r.header("Content-Length") == "100"
    body, complete = r.body()
    assert body == b"0123456789" and not complete


def test_content_length_long_is_cut(server, mode):
    r = raw(server, mode, "case=cl_long")
    assert r.header("Content-Length") == "5"
    assert r.rest == b"01234"


def test_single_item_gets_content_length(server, mode):
    r = raw(server, mode, "case=one_item")
    assert r.header("Content-Length") == str(len(b"exactly one item"))
    assert r.body() == (b"exactly one item", True)


def test_generator_is_chunked(server, mode):
    r = raw(server, mode, "case=generator&n=2000")
    assert r.chunked
    assert r.body() == (b"".join(b"%d," % i for i in range(2000)), True)


def test_empty_iterable(server, mode):
    r = raw(server, mode, "case=empty")
    assert r.status == 200
    assert r.body() == (b"", True)


@pytest.mark.parametrize("s", ["299 Custom Reason", "404 Not Here", "204 No Content",
                               "304 Not Modified", "599 Whatever"])
def test_status_line_passed_through(server, mode, s):
    r = raw(server, mode, "case=status&s=" + s.replace(" ", "+"))
    assert r.status_line == "HTTP/1.1 " + s
    body, complete = r.body()
    if s[:3] in ("204", "304"):
        assert r.rest == b""
        assert r.header("Content-Length") is None or s[:3] == "304"
    else:
        assert body == b"status body"


def test_headers_order_case_and_latin1(server, mode):
    r = raw(server, mode, "case=headers")
    assert r.header_all("Set-Cookie") == ["a=1", "b=2"]
    assert r.header_all("X-Multi") == ["one", "two"] or r.header_all("X-Multi") == ["one, two"]
    assert r.header("X-Latin1") == "caf\u00e9"  # the byte 0xE9 on the wire
    assert b"X-Latin1: caf\xe9\r\n" in r.raw
    assert r.header("x-lower-case") == "v"


def test_output_same_in_both_modes(server):
    for q in ["case=write", "case=cl_long", "case=one_item", "case=generator&n=300",
              "case=empty", "case=headers", "case=status&s=299+Custom+Reason",
              "case=status&s=204+No+Content", "case=exc_info_before", "case=str_item",
              "case=file_wrapper_filelike"]:
        same_in_both(server, q)


def test_http10_response_same_in_both_modes(server):
    out = {}
    for mode in MODES:
        data = testutil.raw_exchange(server.port, testutil.request_bytes(
            "GET", "/%s?case=generator&n=500" % mode, server.port, close=False, http="HTTP/1.0"))
        r = testutil.RawResponse(data)
        assert not r.chunked
        assert r.rest == b"".join(b"%d," % i for i in range(500))
        out[mode] = summary(r)
    assert out["embedded"] == out["daemon"]


def test_keepalive_connection_reused_across_daemon_requests(server):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for q in ["case=generator&n=50", "case=one_item", "case=cl_long", "case=empty",
                  "case=write", "case=generator&n=5"]:
            conn.request("GET", "/daemon?" + q)
            r = conn.getresponse()
            body = r.read()
            assert r.status == 200, (q, r.status)
            assert not r.will_close or q == "case=generator&n=5", q
        assert body == b"0,1,2,3,4,"
    finally:
        conn.close()


# --------------------------------------------------------------------- HEAD
@pytest.mark.parametrize("case", ["one_item", "generator", "cl_long"])
def test_head_has_no_body(server, mode, case):
    g = raw(server, mode, "case=" + case)
    h = raw(server, mode, "case=" + case, method="HEAD")
    assert h.status == g.status == 200
    assert h.rest == b"", "HEAD response carries a body: %r" % h.rest[:200]
    if g.header("Content-Length"):
        assert h.header("Content-Length") in (g.header("Content-Length"), None)


def test_head_same_in_both_modes(server):
    for case in ["one_item", "generator", "cl_long", "headers"]:
        same_in_both(server, "case=" + case, method="HEAD")


# -------------------------------------------------------------------- close
def close_lines(a, t, expect, timeout=5.0):
    path = os.path.join(a.out, t + ".close")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path) and len(open(path).read().splitlines()) >= expect:
            break
        time.sleep(0.05)
    time.sleep(0.2)
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return len(f.read().splitlines())


def test_close_called_once(server, mode):
    t = tag()
    r = raw(server, mode, "case=close&tag=" + t)
    assert r.body() == (b"onetwo", True)
    assert close_lines(server, t, 1) == 1


def test_close_called_once_when_client_goes_away(server, mode):
    """The client reads a little of a 25 MiB stream and closes: the app's
    iteration stops and close() is called exactly once."""
    t = tag()
    with testutil.connect(server.port) as s:
        s.sendall(testutil.request_bytes("GET", "/%s?case=close_stream&tag=%s" % (mode, t),
                                         server.port))
        testutil.recv_until(s, b"\r\n\r\n")
        s.recv(65536)
    assert close_lines(server, t, 1, timeout=8) == 1


def test_close_called_once_when_iteration_fails(server, mode):
    t = tag()
    r = raw(server, mode, "case=close_error&tag=" + t)
    assert r.status == 200
    assert r.body()[1] is False
    assert close_lines(server, t, 1) == 1


# ------------------------------------------------------------------- errors
def test_errors_stdout_stderr_logged(server, mode):
    t = tag()
    mark = server.log_mark()
    get_json(server, mode, "case=errors&tag=" + t)
    text = server.wait_log("stdout-line " + t, mark)
    text = server.wait_log("stderr-line " + t, mark)
    lines = text.splitlines()

    def level_of(needle):
        ls = [l for l in lines if needle in l]
        assert ls, needle
        return re.search(r"\[wsgi_rs:(\w+)\]", ls[0]).group(1)

    assert level_of("wsgi-errors-line " + t) == "error"
    assert level_of("stderr-line " + t) == "error"
    assert level_of("stdout-line " + t) == "info"


# ------------------------------------------------------------- file_wrapper
@pytest.fixture(scope="module")
def small_file(server):
    p = os.path.join(server.out, "fw.bin")
    data = bytes(range(256)) * 400
    with open(p, "wb") as f:
        f.write(data)
    os.chmod(p, 0o644)
    return p, data


def test_file_wrapper(server, mode, small_file):
    p, data = small_file
    r = raw(server, mode, "case=file_wrapper&path=" + p)
    assert r.status == 200
    assert r.body() == (data, True)


def test_file_wrapper_content_length_limits(server, mode, small_file):
    p, data = small_file
    r = raw(server, mode, "case=file_wrapper&cl=1000&path=" + p)
    assert r.header("Content-Length") == "1000"
    assert r.rest == data[:1000]


def test_file_wrapper_filelike_object(server, mode):
    r = raw(server, mode, "case=file_wrapper_filelike")
    assert r.body() == (b"filelike-" * 1000, True)


def test_file_wrapper_head(server, mode, small_file):
    p, data = small_file
    r = raw(server, mode, "case=file_wrapper&path=" + p, method="HEAD")
    assert r.status == 200 and r.rest == b""
