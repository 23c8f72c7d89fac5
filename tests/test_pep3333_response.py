"""start_response, write() and the response iterable in embedded mode:
status/header validation, start_response called again (with and without
exc_info), write() mixed with the iterable, when the head goes out, non-bytes
items, close() exactly once, Content-Length honoured (short: aborted, long:
cut), computed Content-Length, HEAD, client disconnects."""

import http.client
import json
import os
import re
import socket
import struct
import time
import uuid

import pytest

import harness
import testutil

CONFIG = r"""
WSGIHandlerScript resp @SCRIPTS@/response_app.py
SetEnv WSGI_TEST_OUT @OUT@
<Location /r>
    SetHandler resp
</Location>
<Location /vr>
    SetHandler resp
    SetEnv WSGI_TEST_VALIDATE 1
</Location>
"""


def _load_lists():
    ns = {}
    with open(os.path.join(harness.APPS, "response_app.py")) as f:
        src = f.read()
    start = src.index("BAD_STATUS = ")
    end = src.index("class Closing")
    exec(src[start:end], ns)
    return ns["BAD_STATUS"], ns["BAD_HEADERS"]


BAD_STATUS, BAD_HEADERS = _load_lists()


@pytest.fixture(scope="module")
def server(module_apache_factory):
    a = module_apache_factory(mpm="event", log_level="info wsgi_rs:debug")
    a.copy_app("response_app.py")
    a.start(CONFIG)
    yield a
    a.stop()
    harness.assert_clean_log(a.error_log())


def new_tag():
    return uuid.uuid4().hex[:12]


def get(a, query, **kw):
    return a.get("/r?" + query, **kw)


def get_json(a, query):
    st, _, body = get(a, query)
    assert st == 200, (st, body[:2000], a.error_log()[-3000:])
    return json.loads(body)


def close_count(a, tag, expect=1, timeout=5.0):
    """Waits (bounded) for close() markers; returns their lines."""
    path = os.path.join(a.out, tag + ".close")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                lines = f.read().splitlines()
            if len(lines) >= expect:
                break
        time.sleep(0.05)
    else:
        lines = []
    time.sleep(0.2)  # a second close() would come right after the first
    if os.path.exists(path):
        with open(path) as f:
            lines = f.read().splitlines()
    assert len(lines) == expect, "close() called %d times, expected %d" % (len(lines), expect)
    return lines


def raw(a, query, method="GET"):
    return testutil.raw_request(a.port, method, "/r?" + query)


# ------------------------------------------------------ start_response rules
def _status_id(i):
    return "%d-%r" % (i, BAD_STATUS[i])


@pytest.mark.parametrize("i", range(len(BAD_STATUS)), ids=_status_id)
def test_bad_status_raises_in_app(server, i):
    d = get_json(server, "case=bad_status&i=%d" % i)
    assert d["raised"] is not None, "status %r accepted" % (BAD_STATUS[i],)
    kind, message = d["raised"]
    want = "ValueError" if isinstance(BAD_STATUS[i], str) else "TypeError"
    assert kind == want, d
    assert message


def _header_id(i):
    return "%d-%r" % (i, BAD_HEADERS[i])


@pytest.mark.parametrize("i", range(len(BAD_HEADERS)), ids=_header_id)
def test_bad_headers_raise_in_app(server, i):
    d = get_json(server, "case=bad_headers&i=%d" % i)
    assert d["raised"] is not None, "headers %r accepted" % (BAD_HEADERS[i],)
    kind, message = d["raised"]
    h = BAD_HEADERS[i]
    well_typed = (type(h) is list and type(h[0]) is tuple and len(h[0]) == 2
                  and all(type(x) is str for x in h[0]))
    assert kind == ("ValueError" if well_typed else "TypeError"), d
    if well_typed and h[0][0]:
        # The message says which header was wrong.
        assert h[0][0].lower() in message.lower(), d
    if well_typed and h[0][0].lower() in ("connection", "keep-alive", "transfer-encoding",
                                          "te", "trailer", "upgrade", "proxy-authenticate",
                                          "proxy-authorization"):
        assert "hop-by-hop" in message, d


def test_bad_status_uncaught_gives_500_and_traceback(server):
    mark = server.log_mark()
    st, _, _ = get(server, "case=bad_status_uncaught")
    assert st == 500
    log = server.wait_log("ValueError", mark)
    assert "Exception occurred processing WSGI script" in log
    assert "Traceback (most recent call last)" in log
    assert re.search(r"""["']200["']""", log)  # says what was wrong


def test_bad_header_uncaught_gives_500(server):
    mark = server.log_mark()
    st, hdrs, _ = get(server, "case=bad_header_uncaught")
    assert st == 500
    log = server.wait_log("hop-by-hop", mark)
    assert "Connection" in log


def test_custom_reason_phrase(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", "/r?case=reason")
        resp = conn.getresponse()
        assert (resp.status, resp.reason, resp.read()) == (299, "Custom Reason Phrase", b"reason")
    finally:
        conn.close()


def test_header_tab_and_latin1_header_accepted(server):
    st, hdrs, body = get(server, "case=latin1_header")
    assert (st, body) == (200, b"latin")
    assert hdrs["X-Tab"] == "a\tb"


def test_latin1_status_and_header_bytes(server):
    # PEP 3333: a native string header value stands for the bytes of its
    # code points (latin-1), e.g. werkzeug's UTF-8 bytes carried in str.
    r = raw(server, "case=latin1_header")
    assert r.raw.startswith(b"HTTP/1.1 200 \xd6K\r\n"), r.raw[:200]
    assert b"\r\nX-Latin: caf\xe9 \xff\r\n" in r.raw, r.raw[:500]
    assert b"\r\nX-Tab: a\tb\r\n" in r.raw
    assert r.body() == (b"latin", True)


def test_http_1_0_client_streamed_response(server):
    # No chunked encoding for HTTP/1.0: the body ends with the connection.
    data = testutil.raw_exchange(server.port, testutil.request_bytes(
        "GET", "/r?case=write_mix&tag=" + new_tag(), server.port, http="HTTP/1.0"))
    r = testutil.RawResponse(data)
    assert r.status == 200 and not r.chunked
    assert r.rest == b"abcd"


def test_second_start_response_without_exc_info_raises(server):
    d = get_json(server, "case=second_call")
    assert d["raised"] and d["raised"][0] == "RuntimeError", d


def test_exc_info_before_head_replaces_status_and_headers(server):
    st, hdrs, body = get(server, "case=exc_info_before_head")
    assert st == 503
    assert hdrs["X-Second"] == "2"
    assert hdrs["X-First"] is None
    assert body == b"replaced"


def test_head_not_sent_at_empty_chunk(server):
    # Headers go out with the first non-empty chunk: after b"" they can still
    # be replaced.
    st, hdrs, body = get(server, "case=exc_info_after_empty_chunk")
    assert st == 503, body
    assert hdrs["X-Second"] == "2" and hdrs["X-First"] is None
    assert body == b"replaced after empty chunk"


def test_exc_info_after_head_reraises_same_exception(server):
    st, _, body = get(server, "case=exc_info_after_head")
    assert st == 200
    assert body == b"head-sent;reraised-same=1"


def test_exc_info_after_head_uncaught_truncates(server):
    mark = server.log_mark()
    r = raw(server, "case=exc_info_after_head_uncaught")
    assert r.status == 200
    payload, complete = r.body()
    assert payload == b"head-sent;"
    assert not complete, "an error after the body started must not look complete"
    server.wait_log("original-uncaught", mark)


def test_exc_info_none_is_no_exc_info(server):
    st, _, body = get(server, "case=exc_info_none")
    assert (st, body) == (200, b"exc_info None ok")


# ------------------------------------------------------------------ write()
def test_write_mixed_with_iterable(server):
    tag = new_tag()
    st, _, body = get(server, "case=write_mix&tag=" + tag)
    assert (st, body) == (200, b"abcd")
    close_count(server, tag)


def test_write_only(server):
    st, _, body = get(server, "case=write_only")
    assert st == 200
    assert body == b"".join(b"%03d\n" % k for k in range(100))


def test_write_non_bytes_raises_type_error(server):
    st, _, body = get(server, "case=write_non_bytes")
    assert st == 200
    d = json.loads(body)
    assert {k: v and v[0] for k, v in d.items()} == {"str": "TypeError", "int": "TypeError",
                                                     "none": "TypeError"}


def test_start_response_inside_generator(server):
    st, hdrs, body = get(server, "case=gen_start_inside")
    assert (st, body) == (200, b"started inside")
    assert hdrs["X-From"] == "generator"


def test_body_before_start_response_is_an_error(server):
    mark = server.log_mark()
    st, _, _ = get(server, "case=gen_before_start")
    assert st == 500
    server.wait_log("start_response", mark)


def test_no_start_response_gives_500(server):
    tag = new_tag()
    mark = server.log_mark()
    st, _, _ = get(server, "case=no_start_response&tag=" + tag)
    assert st == 500
    server.wait_log("without calling start_response", mark)
    close_count(server, tag)


def test_empty_iterable(server):
    st, _, body = get(server, "case=empty_list")
    assert (st, body) == (200, b"")


# ------------------------------------------------- non-bytes items, errors
@pytest.mark.parametrize("case", ["yield_str_first", "yield_int_first"])
def test_non_bytes_before_body_gives_500(server, case):
    tag = new_tag()
    mark = server.log_mark()
    st, _, _ = get(server, "case=%s&tag=%s" % (case, tag))
    assert st == 500
    log = server.wait_log("must yield bytes", mark)
    assert "TypeError" in log
    if case == "yield_str_first":
        close_count(server, tag)


def test_non_bytes_after_body_truncates_chunked(server):
    tag = new_tag()
    r = raw(server, "case=yield_str_later&tag=" + tag)
    assert r.status == 200 and r.chunked
    payload, complete = r.body()
    assert payload == b"good bytes;"
    assert not complete, "final chunk sent after an error: %r" % r.rest
    close_count(server, tag)


def test_non_bytes_after_body_truncates_content_length(server):
    tag = new_tag()
    r = raw(server, "case=yield_str_later_cl&tag=" + tag)
    assert r.status == 200 and r.header("Content-Length") == "100"
    payload, complete = r.body()
    assert payload == b"12345" and not complete
    close_count(server, tag)


def test_exception_before_body_gives_500_and_close(server):
    tag = new_tag()
    mark = server.log_mark()
    st, _, _ = get(server, "case=raise_first&tag=" + tag)
    assert st == 500
    log = server.wait_log("failure in iteration at item 0", mark)
    assert "Traceback (most recent call last)" in log
    close_count(server, tag)


def test_exception_after_body_truncates_and_close(server):
    tag = new_tag()
    mark = server.log_mark()
    r = raw(server, "case=raise_later&tag=" + tag)
    assert r.status == 200
    payload, complete = r.body()
    assert payload == b"first;second;" and not complete
    server.wait_log("failure in iteration at item 2", mark)
    assert close_count(server, tag) == ["closed pulled=2"]


def test_exception_in_app_gives_500(server):
    mark = server.log_mark()
    st, _, _ = get(server, "case=raise_in_app")
    assert st == 500
    log = server.wait_log("raised by the application itself", mark)
    assert "RuntimeError" in log and "[wsgi_rs:error]" in log


def test_close_called_once_on_success(server):
    tag = new_tag()
    st, _, body = get(server, "case=success&tag=" + tag)
    assert (st, body) == (200, b"one;two;three")
    assert close_count(server, tag) == ["closed pulled=3"]


# ---------------------------------------------------------- Content-Length
def test_content_length_short_aborts_connection(server):
    tag = new_tag()
    mark = server.log_mark()
    r = raw(server, "case=cl_short&tag=" + tag)
    assert r.status == 200 and r.header("Content-Length") == "100"
    payload, complete = r.body()
    assert payload == b"x" * 40 and not complete
    log = server.wait_log("declared Content-Length", mark)
    assert "[wsgi_rs:error]" in log
    close_count(server, tag)
    # http.client sees it as an incomplete read
    with pytest.raises(http.client.IncompleteRead):
        get(server, "case=cl_short&tag=" + new_tag())


def test_content_length_long_is_cut(server):
    tag = new_tag()
    mark = server.log_mark()
    r = raw(server, "case=cl_long&tag=" + tag)
    assert r.status == 200 and r.header("Content-Length") == "10"
    assert r.rest == b"0123456789"
    server.wait_log("more bytes than its Content-Length", mark)
    close_count(server, tag)
    st, _, body = get(server, "case=cl_long&tag=" + new_tag())
    assert (st, body) == (200, b"0123456789")


def test_content_length_exact_over_several_items(server):
    st, hdrs, body = get(server, "case=cl_exact_parts")
    assert (st, body, hdrs["Content-Length"]) == (200, b"abcdefghi", "9")


@pytest.mark.parametrize("case,body", [("one_list", b"one element"),
                                       ("one_tuple", b"one tuple element")])
def test_content_length_computed_for_one_element(server, case, body):
    r = raw(server, "case=" + case)
    assert r.status == 200
    assert r.header("Content-Length") == str(len(body))
    assert not r.chunked
    assert r.body() == (body, True)


@pytest.mark.parametrize("case,body", [("two_list", b"two elements"),
                                       ("one_gen", b"one generated element")])
def test_content_length_not_computed_otherwise(server, case, body):
    r = raw(server, "case=" + case)
    assert r.status == 200
    assert r.header("Content-Length") is None
    assert r.chunked
    assert r.body() == (body, True)


@pytest.mark.parametrize("code", [204, 304])
def test_no_content_length_for_bodiless_status(server, code):
    r = raw(server, "case=status_no_body&code=%d" % code)
    assert r.status == code
    assert r.header("Content-Length") is None
    assert r.rest == b""


# -------------------------------------------------------------------- HEAD
@pytest.mark.parametrize("style", ["list", "gen", "write"])
def test_head_runs_app_sends_no_body(server, style):
    tag = new_tag()
    q = "case=head_probe&style=%s&tag=%s" % (style, tag)
    get_r = raw(server, q)
    head_r = raw(server, q, method="HEAD")
    assert head_r.status == 200
    assert head_r.rest == b"", "HEAD response carried a body: %r" % head_r.rest[:200]
    assert head_r.header("X-Method") == "HEAD"
    assert head_r.header("Content-Type") == get_r.header("Content-Type")
    if style == "list":
        body = b"a body of known length\n" * 3
        assert get_r.header("Content-Length") == str(len(body))
        assert head_r.header("Content-Length") == str(len(body))
    with open(os.path.join(server.out, tag + ".ran")) as f:
        assert f.read().split() == ["GET", "HEAD"]
    if style == "gen":
        close_count(server, tag, expect=2)


# ------------------------------------------------------- client disconnect
def _start_and_reset(a, query, read_bytes=200000):
    s = testutil.connect(a.port)
    s.sendall(testutil.request_bytes("GET", "/r?" + query, a.port))
    got = 0
    while got < read_bytes:
        b = s.recv(65536)
        assert b, "server closed first"
        got += len(b)
    # RST instead of FIN: the server's next writes fail at once.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def _no_error_lines(log):
    errors = testutil.wsgi_rs_lines(log, "error")
    assert not errors, "client disconnect logged as an error:\n" + "\n".join(errors)
    assert "Traceback" not in log


def test_client_disconnect_write_raises_oserror_subclass(server):
    tag = new_tag()
    mark = server.log_mark()
    _start_and_reset(server, "case=disconnect_write&tag=" + tag)
    info = json.loads(testutil.wait_file(os.path.join(server.out, tag + ".result")))
    assert info["raised"], info
    module, name, is_oserror, mro = info["raised"]
    assert (module, name) == ("mod_wsgi_rs", "ClientDisconnected"), info
    assert is_oserror and "OSError" in mro
    assert info["writes"] < 4000
    close_count(server, tag)
    _no_error_lines(server.log_since(mark))


def test_client_disconnect_uncaught_logged_at_debug_only(server):
    mark = server.log_mark()
    _start_and_reset(server, "case=disconnect_write_uncaught")
    server.wait_log("client went away", mark)
    log = server.log_since(mark)
    assert "[wsgi_rs:debug]" in [line for line in log.splitlines()
                                 if "client went away" in line][0]
    _no_error_lines(log)


def test_client_disconnect_stops_iteration_and_closes(server):
    tag = new_tag()
    mark = server.log_mark()
    _start_and_reset(server, "case=disconnect_iter&tag=" + tag)
    lines = close_count(server, tag, timeout=10)
    pulled = int(lines[0].split("=")[1])
    assert pulled < 4000, "iteration went on after the client left"
    log = server.wait_log("[wsgi_rs:debug]", mark)
    _no_error_lines(log)


# ---------------------------------------------------------------- validator
@pytest.mark.parametrize("query,status,body", [
    ("case=write_mix", 200, b"abcd"),
    ("case=write_only", 200, b"".join(b"%03d\n" % k for k in range(100))),
    ("case=gen_start_inside", 200, b"started inside"),
    ("case=exc_info_before_head", 503, b"replaced"),
    ("case=exc_info_after_empty_chunk", 503, b"replaced after empty chunk"),
    ("case=success", 200, b"one;two;three"),
    ("case=one_list", 200, b"one element"),
    ("case=two_list", 200, b"two elements"),
    ("case=one_gen", 200, b"one generated element"),
    ("case=cl_exact_parts", 200, b"abcdefghi"),
    ("case=empty_list", 200, b""),
    ("case=reason", 299, b"reason"),
    ("case=status_no_body&code=204", 204, b""),
])
def test_validated_responses(server, query, status, body):
    mark = server.log_mark()
    st, _, data = server.get("/vr?%s&tag=%s" % (query, new_tag()))
    assert (st, data) == (status, body), server.log_since(mark)[-3000:]
    st, _, data = server.get("/vr?%s&tag=%s" % (query, new_tag()), method="HEAD")
    assert st == status and data == b""
    time.sleep(0.05)
    log = server.log_since(mark)
    assert not testutil.wsgi_rs_lines(log, "error"), log
    harness.assert_clean_log(log)


def test_zz_error_log_clean(server):
    harness.assert_clean_log(server.error_log())
