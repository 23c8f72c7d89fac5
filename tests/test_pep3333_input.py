"""wsgi.input in embedded mode: read(), read(n), readline(), readline(limit),
readlines(hint), iteration, close(); never reading past the body (nor
blocking there); reading with the GIL released; chunked request bodies with
WSGIChunkedRequest (Location and .htaccess); Expect: 100-continue sent only
when the app reads."""

import hashlib
import importlib.util
import io
import json
import os
import socket
import struct
import threading
import time
import warnings

import pytest

import harness
import testutil

CONFIG = r"""
SetEnv WSGI_TEST_OUT @OUT@
WSGIHandlerScript input @SCRIPTS@/input_app.py
WSGIHandlerScript inputg @SCRIPTS@/input_app.py application-group=%{GLOBAL}
<Location /input>
    SetHandler input
</Location>
<Location /ginput>
    SetHandler inputg
</Location>
<Location /vinput>
    SetHandler input
    SetEnv WSGI_TEST_VALIDATE 1
</Location>
<Location /chunked>
    SetHandler input
    WSGIChunkedRequest On
</Location>
<Location /chunked/off>
    WSGIChunkedRequest Off
</Location>
<Location /vchunked>
    SetHandler input
    SetEnv WSGI_TEST_VALIDATE 1
    WSGIChunkedRequest On
</Location>
<Directory @HTDOCS@/authonly>
    AllowOverride AuthConfig
    SetHandler input
</Directory>
"""


def _load_app_module():
    spec = importlib.util.spec_from_file_location(
        "input_app_for_tests", os.path.join(harness.APPS, "input_app.py"))
    mod = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():  # the app turns warnings into errors
        spec.loader.exec_module(mod)
    return mod


run_op = _load_app_module().run_op


@pytest.fixture(scope="module")
def server(module_apache_factory):
    # One child with several threads: concurrent requests share the process.
    a = module_apache_factory(mpm="event", mpm_settings=harness.SINGLE_CHILD_SETTINGS["event"])
    a.copy_app("input_app.py")
    a.write("htdocs/htchunk/.htaccess", "SetHandler input\nWSGIChunkedRequest On\n")
    a.write("htdocs/htchunk/app", "")
    a.write("htdocs/htplain/.htaccess", "SetHandler input\n")
    a.write("htdocs/htplain/app", "")
    a.write("htdocs/authonly/.htaccess", "WSGIChunkedRequest On\n")
    a.write("htdocs/authonly/app", "")
    a.start(CONFIG)
    yield a
    a.stop()
    harness.assert_clean_log(a.error_log())


def post_json(a, path, body, **kw):
    st, _, data = a.post(path, body, **kw)
    assert st == 200, (st, data[:2000], a.error_log()[-3000:])
    return json.loads(data)


def expected(op, body, n=0):
    return [p.decode("latin-1") for p in run_op(io.BytesIO(body), op, n)]


TEXT = (b"first line\nsecond\n\n\r\nfourth line is rather longer than the others\n"
        b"\xe9\xff latin bytes\nno newline at the end")
BINARY = bytes(range(256)) * 37 + b"\n" * 5 + os.urandom(70000)

OPS = [("read", 0), ("read_none", 0), ("read_minus1", 0), ("readn", 1), ("readn", 7),
       ("readn", 4096), ("read_zero", 0), ("readline", 0), ("readline_limit", 1),
       ("readline_limit", 5), ("readline_limit", 100), ("readlines", 0), ("iter", 0),
       ("mixed", 0), ("past_end", 0)]


@pytest.mark.parametrize("op,n", OPS)
def test_input_methods_match_bytesio(server, op, n):
    d = post_json(server, "/input?op=%s&n=%d" % (op, n), TEXT)
    assert d["pieces"] == expected(op, TEXT, n)
    assert d["types"] == ["bytes"]
    assert d["content_length"] == str(len(TEXT))


@pytest.mark.parametrize("op,n", [("read", 0), ("readn", 1000), ("readline", 0),
                                  ("readline_limit", 999), ("readlines", 0), ("iter", 0),
                                  ("mixed", 0), ("past_end", 0)])
def test_input_methods_binary_body(server, op, n):
    d = post_json(server, "/input?op=%s&n=%d" % (op, n), BINARY)
    assert d["pieces"] == expected(op, BINARY, n)


@pytest.mark.parametrize("op", ["read", "readn", "readline", "readlines", "iter", "mixed",
                                "past_end"])
def test_input_empty_body(server, op):
    d = post_json(server, "/input?op=%s&n=3" % op, b"")
    assert d["pieces"] == expected(op, b"", 3)
    # GET: no body at all
    st, _, data = server.get("/input?op=%s&n=3" % op)
    assert st == 200
    assert json.loads(data)["pieces"] == expected(op, b"", 3)


@pytest.mark.parametrize("hint", [1, 10, 100, 100000])
def test_readlines_hint(server, hint):
    body = b"".join(b"line number %d\n" % i for i in range(200)) + b"tail"
    d = post_json(server, "/input?op=readlines_hint&n=%d" % hint, body)
    calls = d["calls"]
    joined = "".join("".join(c) for c in calls)
    assert joined.encode("latin-1") == body
    for c in calls:
        for line in c[:-1]:
            assert line.endswith("\n")
    # Every line but the last one is whole.
    lines = [line for c in calls for line in c]
    assert all(line.endswith("\n") for line in lines[:-1]) and lines[-1] == "tail"


def test_close(server):
    d = post_json(server, "/input?op=close", b"0123456789")
    assert d["pieces"] == ["0123"]


def test_never_blocks_past_end_of_body(server):
    # read(len + 1 MB), read(10), readline(), read() at the end of a 3-byte
    # body must return at once, not wait for more data (Timeout is 20 s).
    t0 = time.monotonic()
    d = post_json(server, "/input?op=past_end&n=3", b"abc", timeout=5)
    assert time.monotonic() - t0 < 3
    assert d["pieces"] == ["abc", "", "", ""]
    assert d["seconds"] < 1.0


def _responses(data, count):
    """Splits `count` Content-Length-framed responses off a byte stream."""
    out = []
    for _ in range(count):
        r = testutil.RawResponse(data)
        n = int(r.header("Content-Length"))
        out.append((r, r.rest[:n]))
        data = r.rest[n:]
    return out, data


def test_pipelined_requests_do_not_leak_into_the_body(server):
    """Reading far past a keep-alive request's body must neither block nor
    consume the next request on the connection."""
    p = server.port
    data = (testutil.request_bytes("POST", "/input?op=past_end&n=3", p,
                                   [("Content-Length", "3")], b"abc", close=False)
            + testutil.request_bytes("POST", "/input?op=read", p,
                                     [("Content-Length", "5")], b"defgh", close=False)
            + testutil.request_bytes("GET", "/input?op=readline", p))
    t0 = time.monotonic()
    raw = testutil.raw_exchange(p, data, timeout=8)
    assert time.monotonic() - t0 < 5
    (r1, b1), (r2, b2), (r3, b3) = _responses(raw, 3)[0]
    assert (r1.status, r2.status, r3.status) == (200, 200, 200)
    assert json.loads(b1)["pieces"] == ["abc", "", "", ""]
    assert json.loads(b2)["pieces"] == ["defgh", ""]
    assert json.loads(b3)["pieces"] == [""]


def test_unread_body_is_discarded_on_keep_alive(server):
    """An app that ignores the body: the next request on the connection is
    parsed after the body, not from it."""
    p = server.port
    body = b"GET /input?op=read HTTP/1.1\r\nHost: x\r\n\r\n" + b"x" * 5000
    data = (testutil.request_bytes("POST", "/input?op=noread", p,
                                   [("Content-Length", str(len(body)))], body, close=False)
            + testutil.request_bytes("POST", "/input?op=read", p,
                                     [("Content-Length", "2")], b"ok"))
    raw = testutil.raw_exchange(p, data, timeout=8)
    (r1, b1), (r2, b2) = _responses(raw, 2)[0]
    assert (r1.status, r2.status) == (200, 200)
    assert json.loads(b2)["pieces"] == ["ok", ""]


def test_read_after_response_started(server):
    body = os.urandom(50000)
    st, _, data = server.post("/input?op=write_then_read", body)
    assert st == 200
    assert data == b"start;" + body + b";end"


def test_client_gone_while_app_reads_body(server):
    tag = "readcatch-%d" % time.time_ns()
    s = testutil.connect(server.port)
    try:
        s.sendall(testutil.request_bytes("POST", "/input?op=read_catch&tag=" + tag, server.port,
                                         [("Content-Length", "1000000")], b"x" * 20000))
        time.sleep(0.3)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        s.close()
    d = json.loads(testutil.wait_file(os.path.join(server.out, tag)))
    assert d["total"] <= 20000
    assert d["outcome"] != "eof", "a truncated body read like a complete one: %r" % d
    assert d["outcome"].endswith(": True"), "not an OSError: %r" % d


@pytest.mark.parametrize("path", ["/input", "/ginput"])
def test_reading_releases_the_gil(server, path):
    """While one request waits for the rest of its body, another request in
    the same process and interpreter is served."""
    with testutil.connect(server.port) as s:
        s.sendall(testutil.request_bytes("POST", path + "?op=read", server.port,
                                         [("Content-Length", "10")], b"01234"))
        time.sleep(0.5)  # the first app is now blocked in read()
        t0 = time.monotonic()
        d2 = post_json(server, path + "?op=read", b"other", timeout=5)
        assert time.monotonic() - t0 < 2.0
        assert d2["pieces"] == ["other", ""]
        s.sendall(b"56789")
        r = testutil.RawResponse(testutil.recv_all(s))
    assert r.status == 200
    d1 = json.loads(r.body()[0])
    assert d1["pieces"] == ["0123456789", ""]
    assert d1["pid"] == d2["pid"]
    assert d1["seconds"] >= 0.4


# ------------------------------------------------------------------ chunked
CHUNKS = [b"a", b"bc\n", os.urandom(100000), b"line\nline2\n", b"z" * 70000, b"end"]
CHUNKED_BODY = b"".join(CHUNKS)


def send_chunked(a, path, parts=CHUNKS, extra_headers=()):
    headers = [("Transfer-Encoding", "chunked")] + list(extra_headers)
    return testutil.raw_request(a.port, "POST", path, headers, testutil.chunk_encode(parts))


@pytest.mark.parametrize("path", ["/chunked", "/htchunk/app"])
def test_chunked_request_accepted_when_on(server, path):
    r = send_chunked(server, path + "?op=sha")
    assert r.status == 200, (r.status_line, r.rest[:2000])
    d = json.loads(r.body()[0])
    assert d["len"] == len(CHUNKED_BODY)
    assert d["sha256"] == hashlib.sha256(CHUNKED_BODY).hexdigest()
    assert d["content_length"] is None  # no CONTENT_LENGTH in environ
    assert d["input_terminated"] is True


@pytest.mark.parametrize("op,n", [("readline", 0), ("readn", 333), ("readlines", 0),
                                  ("past_end", 0), ("mixed", 0)])
def test_chunked_request_methods(server, op, n):
    r = send_chunked(server, "/chunked?op=%s&n=%d" % (op, n))
    assert r.status == 200, (r.status_line, r.rest[:2000])
    assert json.loads(r.body()[0])["pieces"] == expected(op, CHUNKED_BODY, n)


def test_chunked_empty_body(server):
    r = send_chunked(server, "/chunked?op=read", parts=[])
    assert r.status == 200
    assert json.loads(r.body()[0])["pieces"] == ["", ""]


@pytest.mark.parametrize("path", ["/input", "/chunked/off", "/htplain/app"])
def test_chunked_request_refused_by_default(server, path):
    mark = server.log_mark()
    r = send_chunked(server, path + "?op=sha")
    assert r.status == 411, (r.status_line, r.rest[:2000], server.log_since(mark))


def test_chunked_request_directive_needs_fileinfo_override(server):
    # AllowOverride AuthConfig only: WSGIChunkedRequest in .htaccess is refused.
    r = send_chunked(server, "/authonly/app?op=sha")
    assert r.status == 500
    server.wait_log("WSGIChunkedRequest not allowed here")


def test_chunked_directive_config_contexts(server):
    rc, out = server.configtest("WSGIChunkedRequest On\n<VirtualHost 127.0.0.1:@PORT@>\n"
                                "  WSGIChunkedRequest Off\n</VirtualHost>\n"
                                "<Directory @HTDOCS@>\n  WSGIChunkedRequest On\n</Directory>\n")
    assert rc == 0, out
    rc, out = server.configtest("WSGIChunkedRequest maybe\n")
    assert rc != 0 and "WSGIChunkedRequest" in out, out


# --------------------------------------------------------- 100-continue
def test_expect_100_not_sent_when_app_does_not_read(server):
    with testutil.connect(server.port, timeout=8) as s:
        s.sendall(testutil.request_bytes("POST", "/input?op=noread", server.port,
                                         [("Content-Length", "10"),
                                          ("Expect", "100-continue")]))
        t0 = time.monotonic()
        data = testutil.recv_all(s)
    assert time.monotonic() - t0 < 5
    first = data.split(b"\r\n", 1)[0]
    assert first.startswith(b"HTTP/1.1 200"), data[:500]
    assert b"100 Continue" not in data


@pytest.mark.parametrize("path", ["/input", "/vinput", "/chunked"])
def test_expect_100_sent_when_app_reads(server, path):
    body = b"payload after 100-continue\n" * 100
    chunked = path == "/chunked"
    headers = [("Expect", "100-continue")]
    headers.append(("Transfer-Encoding", "chunked") if chunked
                   else ("Content-Length", str(len(body))))
    with testutil.connect(server.port, timeout=8) as s:
        s.sendall(testutil.request_bytes("POST", path + "?op=readn&n=1000", server.port,
                                         headers))
        interim = testutil.recv_until(s, b"\r\n\r\n")
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n"), interim[:500]
        rest = interim.split(b"\r\n\r\n", 1)[1]
        s.sendall(testutil.chunk_encode([body[:1000], body[1000:]]) if chunked else body)
        r = testutil.RawResponse(rest + testutil.recv_all(s))
    assert r.status == 200, (r.status_line, r.rest[:2000])
    pieces = json.loads(r.body()[0])["pieces"]
    assert "".join(pieces).encode("latin-1") == body


# ------------------------------------------------------------ validator
@pytest.mark.parametrize("op,n", [("readn", 10), ("readline", 0), ("readline_limit", 7),
                                  ("readlines", 0), ("iter", 0), ("readlines_hint", 20)])
def test_validated_input(server, op, n):
    mark = server.log_mark()
    d = post_json(server, "/vinput?op=%s&n=%d" % (op, n), TEXT)
    if op == "readlines_hint":
        assert "".join("".join(c) for c in d["calls"]).encode("latin-1") == TEXT
    else:
        assert d["pieces"] == expected(op, TEXT, n)
    r = send_chunked(server, "/vchunked?op=sha")
    assert r.status == 200, r.rest[:2000]
    assert json.loads(r.body()[0])["sha256"] == hashlib.sha256(CHUNKED_BODY).hexdigest()
    log = server.log_since(mark)
    assert not testutil.wsgi_rs_lines(log, "error"), log


def test_zz_error_log_clean(server):
    harness.assert_clean_log(server.error_log())
