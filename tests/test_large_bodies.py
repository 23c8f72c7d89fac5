"""50 MiB uploads (Content-Length and chunked) and downloads (generator,
write(), declared Content-Length, wsgi.file_wrapper) arrive intact (sha256),
and the child's peak memory grows by far less than the body (no whole-body
buffering anywhere)."""

import hashlib
import http.client
import importlib.util
import json
import os
import warnings

import pytest

import harness
import testutil

SIZE = 50 * 1024 * 1024
MAX_GROWTH_KIB = 20 * 1024  # peak RSS growth allowed for one 50 MiB transfer

CONFIG = r"""
WSGIHandlerScript big @SCRIPTS@/bigbody_app.py
<Location /big>
    SetHandler big
    WSGIChunkedRequest On
</Location>
<Location /vbig>
    SetHandler big
    WSGIChunkedRequest On
    SetEnv WSGI_TEST_VALIDATE 1
</Location>
"""


def _load_app_module():
    spec = importlib.util.spec_from_file_location(
        "bigbody_app_for_tests", os.path.join(harness.APPS, "bigbody_app.py"))
    mod = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():  # the app turns warnings into errors
        spec.loader.exec_module(mod)
    return mod


generate = _load_app_module().generate


@pytest.fixture(scope="module")
def server(module_apache_factory):
    # A single child, so the pid the app reports is the one serving everything.
    a = module_apache_factory(mpm="event", mpm_settings=harness.SINGLE_CHILD_SETTINGS["event"])
    a.copy_app("bigbody_app.py")
    a.start(CONFIG)
    # Warm up: imports, interpreter, buffers.
    a.child_pid = upload(a, "/big?op=up", 1024 * 1024, b"warm")[0]["pid"]
    download(a, "/big?op=down&size=%d&seed=warm" % (1024 * 1024))
    yield a
    a.stop()
    harness.assert_clean_log(a.error_log())


def conn_for(a):
    return http.client.HTTPConnection("127.0.0.1", a.port, timeout=60)


def upload(a, path, size, seed, chunked=False):
    h = hashlib.sha256()

    def body():
        for b in generate(seed, size):
            h.update(b)
            yield b

    headers = {"Content-Type": "application/octet-stream"}
    if not chunked:
        headers["Content-Length"] = str(size)
    conn = conn_for(a)
    try:
        conn.request("POST", path, body=body(), headers=headers)
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    assert resp.status == 200, (resp.status, data[:2000], a.error_log()[-3000:])
    return json.loads(data), h.hexdigest()


def download(a, path):
    """(status, headers, size, sha256) of a streamed download."""
    conn = conn_for(a)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        h = hashlib.sha256()
        n = 0
        for _ in range(100000):
            b = resp.read(1024 * 1024)
            if not b:
                break
            h.update(b)
            n += len(b)
        return resp.status, resp.msg, n, h.hexdigest()
    finally:
        conn.close()


def expected_sha(seed, size):
    h = hashlib.sha256()
    for b in generate(seed, size):
        h.update(b)
    return h.hexdigest()


class PeakMemory:
    """VmHWM (peak resident set) of the child before and after a transfer."""

    def __init__(self, a):
        self.pid = a.child_pid

    def __enter__(self):
        self.before = testutil.proc_status_kib(self.pid, "VmHWM")
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            after = testutil.proc_status_kib(self.pid, "VmHWM")
            rss = testutil.proc_status_kib(self.pid, "VmRSS")
            growth = after - self.before
            assert growth < MAX_GROWTH_KIB, (
                "child %d peak memory grew by %d KiB during a %d MiB transfer "
                "(VmHWM %d -> %d KiB, VmRSS now %d KiB)"
                % (self.pid, growth, SIZE >> 20, self.before, after, rss))
        return False


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_upload_50mib(server, chunked):
    with PeakMemory(server):
        d, sha = upload(server, "/big?op=up", SIZE, b"up%d" % chunked, chunked=chunked)
    assert d["pid"] == server.child_pid
    assert d["len"] == SIZE
    assert d["sha256"] == sha
    assert d["content_length"] == (None if chunked else str(SIZE))


@pytest.mark.parametrize("extra", ["", "&via=write", "&cl=1"],
                         ids=["generator", "write", "content-length"])
def test_download_50mib(server, extra):
    seed = "down%d" % len(extra)
    with PeakMemory(server):
        st, hdrs, n, sha = download(server, "/big?op=down&size=%d&seed=%s%s" % (SIZE, seed, extra))
    assert st == 200
    assert int(hdrs["X-Pid"]) == server.child_pid
    assert n == SIZE
    assert sha == expected_sha(seed.encode(), SIZE)
    if extra == "&cl=1":
        assert hdrs["Content-Length"] == str(SIZE)
    else:
        assert hdrs["Transfer-Encoding"] == "chunked"


def test_download_50mib_file_wrapper(server):
    path = server.path("data/big50.bin")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        for b in generate(b"file", SIZE):
            f.write(b)
    os.chmod(path, 0o644)
    with PeakMemory(server):
        st, hdrs, n, sha = download(server, "/big?op=file&path=" + path)
    assert st == 200
    assert hdrs["Content-Length"] == str(SIZE)
    assert (n, sha) == (SIZE, expected_sha(b"file", SIZE))
    os.unlink(path)


def test_validated_large_transfers(server):
    size = 8 * 1024 * 1024 + 5
    mark = server.log_mark()
    d, sha = upload(server, "/vbig?op=up", size, b"vup", chunked=True)
    assert (d["len"], d["sha256"]) == (size, sha)
    st, _, n, sha = download(server, "/vbig?op=down&size=%d&seed=vdown" % size)
    assert (st, n, sha) == (200, size, expected_sha(b"vdown", size))
    log = server.log_since(mark)
    assert not testutil.wsgi_rs_lines(log, "error"), log


def test_zz_error_log_clean(server):
    harness.assert_clean_log(server.error_log())
