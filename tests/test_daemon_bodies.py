"""Large bodies through a daemon: 50 MiB upload and download (sha256
checked) with bounded memory in the daemon and in the Apache child, flow
control against a slow app and a slow client, chunked uploads, and
wsgi.file_wrapper sending a real file without reading it through Python."""

import hashlib
import http.client
import json
import os
import random
import time

import pytest

import daemonutil as du
import harness
import testutil

MIB = 1024 * 1024
SIZE = 50 * MIB
# Growth of a process's peak RSS allowed while moving SIZE bytes.
GROWTH_LIMIT_KIB = 16 * 1024

CONFIG = r"""
WSGIDaemonProcess g threads=4
WSGIHandlerScript h @SCRIPTS@/app.py process-group=g application-group=%{GLOBAL}
<Location /h>
    SetHandler h
</Location>
<Location /hc>
    SetHandler h
    WSGIChunkedRequest On
</Location>
<Location /hs>
    SetHandler h
    EnableSendfile On
</Location>
"""


@pytest.fixture(scope="module", params=["event", "prefork"])
def server(request, module_apache_factory):
    # One Apache child, so that its memory can be watched.
    a = module_apache_factory(mpm=request.param,
                              mpm_settings=harness.SINGLE_CHILD_SETTINGS[request.param])
    a.copy_app("daemon_app.py", "app.py")
    a.start(CONFIG)
    yield a
    a.stop()
    harness.assert_clean_log(a.error_log(), du.BAD_LOG)


def random_pieces(seed, size, piece=MIB):
    rnd = random.Random(seed)
    left = size
    while left > 0:
        n = min(piece, left)
        yield rnd.randbytes(n)
        left -= n


def expected_sha(seed, size, piece=MIB):
    h = hashlib.sha256()
    for p in random_pieces(seed, size, piece):
        h.update(p)
    return h.hexdigest()


class Memory:
    """Peak-RSS growth of the daemon and of the (single) Apache child."""

    def __init__(self, a):
        self.a = a
        self.daemon = du.get_json(a, "/h?case=hwm")["pid"]
        children = du.apache_children(a)
        assert len(children) == 1, children
        self.child = children[0]
        self.before = self.read()

    def read(self):
        return (testutil.proc_status_kib(self.daemon, "VmHWM"),
                testutil.proc_status_kib(self.child, "VmHWM"))

    def rss(self):
        return (testutil.proc_status_kib(self.daemon, "VmRSS"),
                testutil.proc_status_kib(self.child, "VmRSS"))

    def check(self, what):
        after = self.read()
        growth = (after[0] - self.before[0], after[1] - self.before[1])
        print("%s: peak RSS growth daemon %d KiB, Apache child %d KiB" % ((what,) + growth))
        assert growth[0] < GROWTH_LIMIT_KIB, "daemon peak RSS grew %d KiB during %s" % (growth[0], what)
        assert growth[1] < GROWTH_LIMIT_KIB, "Apache child peak RSS grew %d KiB during %s" % (growth[1], what)


def download(a, query, read_pause=None, location="/h"):
    conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=30)
    try:
        conn.request("GET", location + "?" + query)
        r = conn.getresponse()
        h = hashlib.sha256()
        n = 0
        first = True
        while True:
            b = r.read(64 * 1024)
            if not b:
                break
            if first and read_pause:
                read_pause()
                first = False
            h.update(b)
            n += len(b)
        return r.status, r.getheader("Content-Length"), r.getheader("Transfer-Encoding"), n, h.hexdigest()
    finally:
        conn.close()


def upload(a, path, body_iter, headers, chunked=False):
    conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=60)
    try:
        conn.request("POST", path, body=body_iter, headers=headers, encode_chunked=chunked)
        r = conn.getresponse()
        data = r.read()
        assert r.status == 200, (r.status, data[:1000], a.error_log()[-3000:])
        return json.loads(data)
    finally:
        conn.close()


@pytest.mark.parametrize("cl", [True, False], ids=["content-length", "chunked"])
def test_download_50mib(server, cl):
    mem = Memory(server)
    st, length, te, n, sha = download(server, "case=download&seed=7&size=%d%s"
                                      % (SIZE, "&cl=1" if cl else ""))
    assert st == 200
    assert n == SIZE
    assert sha == expected_sha(7, SIZE)
    if cl:
        assert length == str(SIZE)
    else:
        assert te == "chunked"
    mem.check("a 50 MiB download")


def test_upload_50mib(server):
    mem = Memory(server)
    d = upload(server, "/h?case=upload", random_pieces(9, SIZE),
               {"Content-Length": str(SIZE), "Content-Type": "application/octet-stream"})
    assert d["pid"] == mem.daemon
    assert d["length"] == SIZE
    assert d["sha256"] == expected_sha(9, SIZE)
    mem.check("a 50 MiB upload")


def test_upload_to_slow_app_is_flow_controlled(server):
    """The app waits 1.5 s before reading: the body must wait in socket
    buffers (credit), not pile up in the Apache child or the daemon."""
    mem = Memory(server)
    d = upload(server, "/h?case=upload&delay=1.5&chunk=1048576", random_pieces(11, SIZE),
               {"Content-Length": str(SIZE)})
    assert d["length"] == SIZE and d["sha256"] == expected_sha(11, SIZE)
    mem.check("a 50 MiB upload to a slow reader")


def test_download_to_slow_client_is_flow_controlled(server):
    """The client stops reading for 1.5 s: the daemon must wait rather than
    push the whole body into the Apache child's memory."""
    mem = Memory(server)
    seen = {}

    def pause():
        time.sleep(1.5)
        seen["rss"] = mem.rss()

    st, _, _, n, sha = download(server, "case=download&seed=5&size=%d&cl=1" % SIZE, pause)
    assert st == 200 and n == SIZE and sha == expected_sha(5, SIZE)
    print("RSS while the client paused: daemon %d KiB, Apache child %d KiB" % seen["rss"])
    mem.check("a 50 MiB download to a paused client")


def test_chunked_upload(server):
    size = 8 * MIB + 12345
    d = upload(server, "/hc?case=upload", random_pieces(13, size, piece=100003),
               {"Transfer-Encoding": "chunked"}, chunked=True)
    assert d["length"] == size and d["sha256"] == expected_sha(13, size, 100003)


def test_chunked_upload_refused_without_wsgichunkedrequest(server):
    r = testutil.raw_request(server.port, "POST", "/h?case=upload",
                             headers=[("Transfer-Encoding", "chunked")],
                             body=testutil.chunk_encode([b"abc", b"def"]))
    assert r.status == 411


def test_upload_length_mismatch_client_gone(server):
    """A client that sends less than Content-Length and closes: the request
    fails without hurting the daemon (it serves the next one)."""
    pid = du.get_json(server, "/h")["pid"]
    with testutil.connect(server.port, timeout=10) as s:
        s.sendall(testutil.request_bytes("POST", "/h?case=upload", server.port,
                                         headers=[("Content-Length", str(MIB))],
                                         body=b"x" * 1000))
        s.shutdown(1)
        testutil.recv_all(s)
    assert du.get_json(server, "/h")["pid"] == pid


# ------------------------------------------------------------ file_wrapper
@pytest.fixture(scope="module")
def big_file(server):
    path = os.path.join(server.out, "big.bin")
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for p in random_pieces(21, 20 * MIB):
            f.write(p)
            h.update(p)
    os.chmod(path, 0o644)
    with open(path, "rb") as f:
        f.seek(1000)
        tail = hashlib.sha256(f.read()).hexdigest()
    return path, h.hexdigest(), tail


def bytes_read(pid):
    """rchar of /proc/PID/io: bytes the process got from read-like calls
    (read, pread; socket receives made with recv/recvmsg are not counted)."""
    with open("/proc/%d/io" % pid) as f:
        return int(next(line for line in f if line.startswith("rchar:")).split()[1])


@pytest.mark.parametrize("seek", [0, 1000])
def test_file_wrapper_sends_file_without_python_reads(server, big_file, seek):
    """The daemon hands the open file to the Apache child (SCM_RIGHTS), which
    sends it itself: neither Python nor the daemon reads the bytes."""
    path, full_sha, tail_sha = big_file
    reads = path + ".reads"
    if os.path.exists(reads):
        os.unlink(reads)
    mem = Memory(server)
    read_before = bytes_read(mem.daemon)
    st, length, te, n, sha = download(server, "case=file&path=%s&seek=%d" % (path, seek))
    assert st == 200
    assert n == 20 * MIB - seek
    assert sha == (tail_sha if seek else full_sha)
    count = testutil.wait_file(reads)
    assert count == "0", "file_wrapper read the file through Python (%s read() calls)" % count
    read = bytes_read(mem.daemon) - read_before
    assert read < MIB, "the daemon read %d bytes of a file it should have passed on" % read
    mem.check("a 20 MiB file_wrapper response")


def read_calls(pid):
    """syscr of /proc/PID/io: read-like system calls (sendfile counts as one)."""
    with open("/proc/%d/io" % pid) as f:
        return int(next(line for line in f if line.startswith("syscr:")).split()[1])


def test_file_wrapper_follows_enable_sendfile(server, big_file):
    """With EnableSendfile On where the request is, the Apache child sends the
    passed file with sendfile(2), as it would a static file: it counts the
    bytes as read (rchar) in a handful of calls, instead of mapping the file
    in 4 MiB pieces (the default, nothing counted)."""
    path, full_sha, _ = big_file
    child = Memory(server).child
    before = (bytes_read(child), read_calls(child))
    st, _, _, n, sha = download(server, "case=file&path=%s&seek=0" % path, location="/hs")
    assert (st, n, sha) == (200, 20 * MIB, full_sha)
    read, calls = bytes_read(child) - before[0], read_calls(child) - before[1]
    # Reading it would take 2600 calls (8000 bytes each).
    assert read >= 20 * MIB and calls < 1000, (read, calls)
