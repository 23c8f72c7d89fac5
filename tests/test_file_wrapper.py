"""wsgi.file_wrapper: a regular file is sent from its descriptor (from the
current position, up to Content-Length) without Python reading it; other
file-likes are iterated with read(blksize); close() reaches the object."""

import hashlib
import json
import os
import time
import uuid

import pytest

import daemonutil
import harness
import testutil

CONFIG = r"""
WSGIHandlerScript files @SCRIPTS@/file_app.py
SetEnv WSGI_TEST_OUT @OUT@
SetEnv WSGI_TEST_DATA @ROOT@/data
<Location /f>
    SetHandler files
</Location>
<Location /vf>
    SetHandler files
    SetEnv WSGI_TEST_VALIDATE 1
</Location>
<Location /sendfile>
    SetHandler files
    EnableSendfile On
</Location>
<Location /nommap>
    SetHandler files
    EnableMMAP Off
</Location>
<Location /wsgisendfile>
    SetHandler files
    WSGIEnableSendfile On
</Location>
<Location /sendfile/wsgioff>
    WSGIEnableSendfile Off
</Location>
"""

BIG = 5 * 1024 * 1024 + 333
MID = 2 * 1024 * 1024 + 77


@pytest.fixture(scope="module")
def server(module_apache_factory):
    a = module_apache_factory(mpm="event")
    a.copy_app("file_app.py")
    a.data = os.urandom(BIG)
    a.write("data/big.bin", a.data)
    a.write("data/empty.bin", b"")
    a.write("data/mid.bin", a.data[:MID])  # below APR's 4 MiB mmap limit
    a.start(CONFIG)
    yield a
    a.stop()
    harness.assert_clean_log(a.error_log())


def tag():
    return uuid.uuid4().hex[:12]


def close_markers(a, t, expect=1, timeout=5.0):
    path = os.path.join(a.out, t + ".close")
    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    assert os.path.exists(path), "close() did not reach the file-like object"
    with open(path) as f:
        lines = f.read().splitlines()
    assert len(lines) == expect, lines
    return [json.loads(x) for x in lines]


def assert_not_read_by_python(marker):
    assert marker["via_del"] is False, "closed by the garbage collector, not by the server"
    assert marker["reads"] == [], "the server read the file through Python: %r" % marker


@pytest.mark.parametrize("offset", [0, 12345, BIG - 1])
def test_regular_file_sent_from_descriptor(server, offset):
    t = tag()
    st, hdrs, body = server.get("/f?case=file&name=big.bin&offset=%d&tag=%s" % (offset, t))
    assert st == 200
    assert hdrs["Content-Length"] == str(BIG - offset)
    assert len(body) == BIG - offset
    assert hashlib.sha256(body).digest() == hashlib.sha256(server.data[offset:]).digest()
    assert_not_read_by_python(close_markers(server, t)[0])


def test_buffered_reader_from_open(server):
    st, hdrs, body = server.get("/f?case=buffered&name=big.bin&offset=7")
    assert st == 200
    assert hdrs["Content-Length"] == str(BIG - 7)
    assert body == server.data[7:]


def test_file_after_write(server):
    t = tag()
    st, _, body = server.get("/f?case=write_then_file&name=big.bin&offset=999&tag=" + t)
    assert st == 200
    assert body == b"prefix;" + server.data[999:]
    assert close_markers(server, t)[0]["via_del"] is False


def test_content_length_limits_what_is_sent(server):
    t = tag()
    r = testutil.raw_request(server.port, "GET",
                             "/f?case=file&name=big.bin&offset=100&cl=1000&tag=" + t)
    assert r.status == 200 and r.header("Content-Length") == "1000"
    assert r.rest == server.data[100:1100]
    assert_not_read_by_python(close_markers(server, t)[0])


def test_content_length_beyond_end_of_file_aborts(server):
    t = tag()
    mark = server.log_mark()
    r = testutil.raw_request(server.port, "GET",
                             "/f?case=file&name=big.bin&offset=%d&cl=5000&tag=%s"
                             % (BIG - 1000, t))
    assert r.status == 200 and r.header("Content-Length") == "5000"
    payload, complete = r.body()
    assert payload == server.data[-1000:] and not complete
    server.wait_log("declared Content-Length", mark)
    close_markers(server, t)


@pytest.mark.parametrize("name,offset", [("empty.bin", 0), ("big.bin", BIG)])
def test_nothing_left_to_send(server, name, offset):
    t = tag()
    st, hdrs, body = server.get("/f?case=file&name=%s&offset=%d&tag=%s" % (name, offset, t))
    assert (st, body) == (200, b"")
    assert hdrs["Content-Length"] == "0"
    close_markers(server, t)


def test_head_with_file_wrapper(server):
    t = tag()
    r = testutil.raw_request(server.port, "HEAD", "/f?case=file&name=big.bin&offset=10&tag=" + t)
    assert r.status == 200
    assert r.header("Content-Length") == str(BIG - 10)
    assert r.rest == b""
    close_markers(server, t)


def test_bytesio_is_iterated(server):
    st, _, body = server.get("/f?case=bytesio&n=1000&blksize=1000")
    assert st == 200
    assert body == bytes(range(256)) * 1000


@pytest.mark.parametrize("blksize,expected", [(1000, 1000), (None, 8192)])
def test_non_file_read_with_blksize_and_closed(server, blksize, expected):
    t = tag()
    q = "/f?case=reader&n=500&tag=" + t + ("&blksize=%d" % blksize if blksize else "")
    st, _, body = server.get(q)
    assert st == 200
    assert body == bytes(range(256)) * 500
    marker = close_markers(server, t)[0]
    assert marker["sizes"] == [expected]


@pytest.mark.parametrize("query", ["case=file&name=big.bin&offset=4321",
                                   "case=bytesio&n=300&blksize=4096",
                                   "case=reader&n=300&blksize=500"])
def test_validated_file_wrapper(server, query):
    t = tag()
    mark = server.log_mark()
    st, _, body = server.get("/vf?%s&tag=%s" % (query, t))
    assert st == 200, server.log_since(mark)[-3000:]
    if "big.bin" in query:
        assert body == server.data[4321:]
        # The validator hides the wrapper: it is iterated with read(blksize).
        marker = close_markers(server, t)[0]
        assert marker["via_del"] is False
        assert marker["reads"] and set(marker["reads"]) == {8192}
    else:
        assert body == bytes(range(256)) * 300
    time.sleep(0.05)
    log = server.log_since(mark)
    assert not testutil.wsgi_rs_lines(log, "error"), log
    harness.assert_clean_log(log)


def io_counts(a):
    """Bytes read and read-type system calls so far, over Apache's children.
    (mmap reads count in neither; sendfile counts its bytes, but few calls.)"""
    rchar = syscr = 0
    for pid in daemonutil.apache_children(a):
        with open("/proc/%d/io" % pid) as f:
            fields = dict(line.split(": ") for line in f.read().splitlines())
        rchar += int(fields["rchar"])
        syscr += int(fields["syscr"])
    return rchar, syscr


@pytest.mark.parametrize("prefix,how", [("/f", "mmap"), ("/sendfile", "sendfile"), ("/nommap", "read"),
                                        ("/wsgisendfile", "sendfile"), ("/sendfile/wsgioff", "mmap")])
def test_file_sent_as_apache_sends_static_files_here(server, prefix, how):
    # EnableSendfile / EnableMMAP of the request's directory decide, as for a
    # static file, unless WSGIEnableSendfile (mod_wsgi's switch) says.
    server.get(prefix + "?case=file&name=empty.bin&tag=" + tag())  # script loaded in this child
    offset = 4096  # page-aligned: mmap needs that
    before = io_counts(server)
    st, _, body = server.get("%s?case=file&name=mid.bin&offset=%d&tag=%s" % (prefix, offset, tag()))
    rchar, syscr = (b - a for a, b in zip(before, io_counts(server)))
    assert st == 200 and body == server.data[offset:MID]
    size = MID - offset
    # Apache reads a file in 8000-byte pieces; sendfile moves far more per call.
    if how == "mmap":
        assert rchar < size // 2, (rchar, syscr)
    elif how == "sendfile":
        assert rchar >= size and syscr < size // 16000, (rchar, syscr)
    else:
        assert rchar >= size and syscr > size // 16000, (rchar, syscr)


def test_zz_error_log_clean(server):
    harness.assert_clean_log(server.error_log())
