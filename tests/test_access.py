"""Access control (issue 7): a daemon group's socket refuses every uid but
Apache's (other users cannot even connect; what an allowed peer sends out of
protocol does not hurt the daemon), daemons run with exactly the configured
identity (real, effective, saved and filesystem ids, no supplementary
groups, no capabilities, no way back to root), and a handler script that
lies under the DocumentRoot is never sent as static text, whatever the
spelling of its URL, the method or the MPM."""

import grp
import os
import pwd
import socket
import stat
import subprocess
import sys
import time
import uuid

import pytest

import daemonutil as du
import harness
import testutil

ROOT = harness.running_as_root()
needs_root = pytest.mark.skipif(not ROOT, reason="needs root (other uids, user=)")

MARKER = "SOURCE-MARKER-" + uuid.uuid4().hex

CONFIG = r"""
WSGIDaemonProcess acc threads=2
""" + ("WSGIDaemonProcess asnobody threads=2 user=nobody group=nogroup\n" if ROOT else "") + r"""
WSGIHandlerScript ids @SCRIPTS@/access.py process-group=acc application-group=%{GLOBAL}
<Location /ids>
    SetHandler ids
</Location>
""" + ("""WSGIHandlerScript idsnobody @SCRIPTS@/access.py process-group=asnobody
<Location /idsnobody>
    SetHandler idsnobody
</Location>
""" if ROOT else "") + r"""
# Handler scripts inside the DocumentRoot, mapped by extension.
WSGIHandlerScript src-e @HTDOCS@/emb/handler.wsgi
WSGIHandlerScript src-d @HTDOCS@/dmn/handler.wsgi process-group=acc
WSGIHandlerScript src-m @HTDOCS@/mv/handler.wsgi
WSGIHandlerScript src-i @HTDOCS@/idx/handler.wsgi process-group=acc
WSGIHandlerScript src-b @HTDOCS@/brk/handler.wsgi
<Directory @HTDOCS@/emb>
    AddHandler src-e .wsgi
</Directory>
<Directory @HTDOCS@/dmn>
    AddHandler src-d .wsgi
</Directory>
<Directory @HTDOCS@/mv>
    Options +MultiViews
    MultiViewsMatch Any
    AddHandler src-m .wsgi
</Directory>
<Directory @HTDOCS@/idx>
    DirectoryIndex handler.wsgi
    AddHandler src-i .wsgi
</Directory>
<Directory @HTDOCS@/brk>
    AddHandler src-b .wsgi
</Directory>
Alias /aliased @HTDOCS@/emb
"""


@pytest.fixture(scope="module", params=["event", "prefork"])
def server(request, module_apache_factory):
    a = module_apache_factory(mpm=request.param, extra_modules=["negotiation"])
    a.copy_app("access_app.py", "access.py")
    with open(os.path.join(harness.APPS, "access_app.py")) as f:
        src = f.read() + "# " + MARKER + "\n"
    for d in ("emb", "dmn", "mv", "idx"):
        a.write("htdocs/%s/handler.wsgi" % d, src)
        a.write("htdocs/%s/data.wsgi" % d, "data file " + MARKER + "\n")
    # A handler script that fails to compile on the line holding the marker.
    a.write("htdocs/brk/handler.wsgi", "x = (  # " + MARKER + "\n")
    a.start(CONFIG)
    yield a
    a.stop()
    harness.assert_clean_log(a.error_log(), du.BAD_LOG)


def socket_path(a, group):
    return os.path.join(a.rundir, "wsgi-rs.%s.sock" % group)


CONNECT_CODE = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("connect-failed", e.errno)
    sys.exit(0)
s.sendall(sys.argv[2].encode("latin-1"))
try:
    print("connected", repr(s.recv(100)))
except OSError as e:
    print("connected", "error", e.errno)
"""


def connect_as(path, user, group, data="x"):
    r = subprocess.run([sys.executable, "-c", CONNECT_CODE, path, data], user=user, group=group,
                       extra_groups=[], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


# --------------------------------------------------------- daemon sockets
@needs_root
@pytest.mark.parametrize("group", ["acc", "asnobody"])
@pytest.mark.parametrize("user,ugroup", [("nobody", "nogroup"), ("nobody", "www-data"),
                                         ("daemon", "daemon")])
def test_daemon_socket_refuses_other_uids(server, group, user, ugroup):
    """Another uid (even in Apache's group, even the uid the daemon itself
    runs as) cannot connect to a group's socket."""
    a = server
    du.get_json(a, "/ids" if group == "acc" else "/idsnobody")
    path = socket_path(a, group)
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) & 0o077 == 0, oct(st.st_mode)
    out = connect_as(path, user, ugroup)
    assert out[:2] == ["connect-failed", "13"], "uid %s got: %s" % (user, out)


GARBAGE = [
    ("random", os.urandom(64)),
    ("http", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    # a HELLO header announcing a 4 GiB payload
    ("huge-hello", b"\x01\xff\xff\xff\xff" + b"MWRS"),
    # a BODY frame of 16 MiB + 1 (over the frame limit) instead of HELLO
    ("huge-body", b"\x13\x01\x00\x00\x01" + b"b" * 1000),
    # REQUEST_HEAD without HELLO
    ("head-first", b"\x10\x00\x00\x00\x09" + b"\x00" * 9),
    # HELLO of another protocol version, then garbage
    ("bad-version", b"\x01\x00\x00\x00\x0e" + b"MWRS" + b"\x00\x63" + b"\x00" * 8 + b"zz"),
    # valid frame type, truncated payload, then EOF
    ("truncated", b"\x01\x00\x00\x00\x40MW"),
]


@needs_root
@pytest.mark.parametrize("name,data", GARBAGE, ids=[g[0] for g in GARBAGE])
def test_out_of_protocol_peer_does_not_hurt_the_daemon(server, name, data):
    """An allowed peer (root) that sends garbage, frames over the limits or
    frames out of order: the connection is dropped, nothing is served, the
    daemon process stays and goes on serving."""
    a = server
    pid = du.get_json(a, "/ids")["pid"]
    mark = a.log_mark()
    t0 = time.monotonic()
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(15)
        s.connect(socket_path(a, "acc"))
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)  # EOF after the data (mid-frame for some)
        except OSError:
            pass  # the daemon may already have dropped the connection
        got = b""
        try:
            while len(got) < 1 << 20:
                b = s.recv(65536)
                if not b:
                    break
                got += b
        except ConnectionResetError:
            pass
    assert time.monotonic() - t0 < 12, "the daemon held the connection"
    # At most a REJECT frame (type 0x03) comes back: no HELLO_ACK, no response.
    assert got == b"" or got[:1] == b"\x03", got[:200]
    assert b"HTTP/" not in got
    time.sleep(0.1)
    assert harness.pid_alive(pid)
    assert du.get_json(a, "/ids")["pid"] == pid, "the daemon was replaced"
    harness.assert_clean_log(a.log_since(mark), du.BAD_LOG)


# ------------------------------------------------------- daemon identity
def _ids(d):
    s = d["status"]
    return ([int(x) for x in s["Uid"]], [int(x) for x in s["Gid"]],
            [int(x) for x in s.get("Groups", [])])


@needs_root
@pytest.mark.parametrize("path,user,group", [("/ids", "www-data", "www-data"),
                                             ("/idsnobody", "nobody", "nogroup")])
def test_daemon_runs_as_configured_user(server, path, user, group):
    a = server
    d = du.get_json(a, path)
    uid = pwd.getpwnam(user).pw_uid
    gid = grp.getgrnam(group).gr_gid
    uids, gids, groups = _ids(d)
    assert uids == [uid] * 4, "Uid real/effective/saved/fs: %s" % uids
    assert gids == [gid] * 4, "Gid real/effective/saved/fs: %s" % gids
    assert set(groups) <= {gid}, "supplementary groups: %s" % groups
    for cap in ("CapPrm", "CapEff", "CapAmb"):
        assert int(d["status"][cap][0], 16) == 0, (cap, d["status"][cap])
    # No way back.
    for k in ("setuid0", "seteuid0", "setgid0", "setgroups0", "read_shadow"):
        assert d[k] == "PermissionError", (k, d[k])
    # /proc agrees with the app about which process this is.
    with open("/proc/%d/status" % d["pid"]) as f:
        uid_line = [line for line in f if line.startswith("Uid:")][0]
    assert [int(x) for x in uid_line.split()[1:]] == [uid] * 4
    assert d["pid"] in du.daemon_pids(a)


# ------------------------------------------- scripts never served as text
SPELLINGS = [
    "/{d}/handler.wsgi",
    "/{d}/handler.wsgi?",
    "/{d}/handler.wsgi?source",
    "/{d}/handler.wsgi?.txt",
    "/{d}/handler.wsgi/",
    "/{d}/handler.wsgi/extra/path.txt",
    "/{d}/handler.wsgi.",
    "/{d}/handler.wsgi%20",
    "/{d}/handler.wsgi%00",
    "/{d}/handler.wsgi%00.txt",
    "/{d}/handler.wsgi%2f",
    "/{d}/handler.wsgi::$DATA",
    "/{d}/handler.wsgi~",
    "/{d}/handler%2ewsgi",
    "/{d}/handler.wsg%69",
    "/{d}/%68andler.wsgi",
    "/{d}/./handler.wsgi",
    "/{d}//handler.wsgi",
    "//{d}/handler.wsgi",
    "/{d}/x/../handler.wsgi",
    "/{d}/%2e/handler.wsgi",
    "/{d}/%2e%2e/{d}/handler.wsgi",
    "/x/../{d}/handler.wsgi",
    "/{d}/HANDLER.WSGI",
    "/{d}/handler.WSGI",
    "/{d}/Handler.wsgi",
    "/{d}/handler",
    "/{d}/handler.*",
    "/{d}/",
    "/{d}/data.wsgi",
    "/{d}/data",
]
DIRS = ["emb", "dmn", "mv", "idx"]
METHODS = ["GET", "HEAD", "POST", "OPTIONS", "PUT", "DELETE", "PROPFIND", "TRACE", "BREW"]


def _request(a, raw_request):
    data = testutil.raw_exchange(a.port, raw_request, timeout=10)
    return data


def _check_not_source(a, data, what):
    assert MARKER.encode() not in data, "script source served for %s:\n%r" % (what, data[:600])
    assert b"def handle_request" not in data, "script source served for %s" % what
    if data.startswith(b"HTTP/1.1 200"):
        r = testutil.RawResponse(data)
        if r.header("Content-Type") == "message/http":
            return  # Apache's own TRACE echo
        body = r.body()[0]
        assert body.startswith(b"handled:") or body.startswith(b"{") or body == b"", \
            "a 200 that is not the app's output for %s: %r" % (what, data[:600])


def test_handler_scripts_never_served_as_text(server):
    """Every spelling in every directory (embedded, daemon, MultiViews,
    DirectoryIndex): whatever the status, never the script's text; the
    canonical URL runs the app."""
    a = server
    for d in DIRS:
        for sp in SPELLINGS:
            path = sp.format(d=d)
            req = ("GET %s?case=hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                   % path if "?" not in path else
                   "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path)
            data = _request(a, req.encode("latin-1"))
            _check_not_source(a, data, path)
    # The canonical spellings really ran the handler (so the above is no
    # vacuous pass).
    for path in ("/emb/handler.wsgi", "/dmn/handler.wsgi", "/mv/handler", "/idx/",
                 "/emb/data.wsgi", "/dmn/data.wsgi", "/emb/handler%2ewsgi"):
        st, _, body = a.get(path + "?case=hello")
        assert st == 200 and body.startswith(b"handled:"), (path, st, body[:300])
    assert a.get("/dmn/handler.wsgi?case=hello")[2] == b"handled:acc"


@pytest.mark.parametrize("method", METHODS)
def test_handler_script_any_method(server, method):
    a = server
    for path in ("/emb/handler.wsgi", "/dmn/handler.wsgi", "/mv/handler", "/idx/"):
        data = _request(a, ("%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                            "Connection: close\r\n\r\n" % (method, path)).encode())
        _check_not_source(a, data, "%s %s" % (method, path))


@pytest.mark.parametrize("headers", [
    "Range: bytes=0-100",
    "Range: bytes=-500",
    "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT",
    "If-None-Match: *",
    "Accept: text/plain",
    "Accept-Encoding: gzip",
    "Translate: f",
], ids=lambda h: h.split(":")[0])
def test_handler_script_with_conditional_and_range_headers(server, headers):
    a = server
    for path in ("/emb/handler.wsgi", "/dmn/handler.wsgi", "/aliased/handler.wsgi"):
        data = _request(a, ("GET %s HTTP/1.1\r\nHost: x\r\n%s\r\nConnection: close\r\n\r\n"
                            % (path, headers)).encode())
        _check_not_source(a, data, "%s with %s" % (path, headers))


@pytest.mark.parametrize("req", [
    b"GET /emb/handler.wsgi\r\n\r\n",                          # HTTP/0.9
    b"GET /emb/handler.wsgi HTTP/1.0\r\n\r\n",
    b"GET http://x/emb/handler.wsgi HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /emb/handler.wsgi HTTP/1.1\r\nHost: ../../\r\nConnection: close\r\n\r\n",
    b"GET /emb\\handler.wsgi HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /emb/handler.wsgi HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
], ids=["http09", "http10", "absolute-uri", "odd-host", "backslash", "cl-and-te"])
def test_handler_script_odd_requests(server, req):
    _check_not_source(server, _request(server, req), req[:40])


def test_broken_handler_script_error_page_has_no_source(server):
    """A script that fails to compile: 500, the offending line (with the
    marker) is in the error log, never in the response."""
    a = server
    mark = a.log_mark()
    data = _request(a, b"GET /brk/handler.wsgi HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 500"), data[:200]
    _check_not_source(a, data, "/brk/handler.wsgi")
    a.wait_log("SyntaxError", mark)
