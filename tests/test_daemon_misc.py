"""Daemon mode odds and ends (event): WSGISocketPrefix, the daemon's peer
credential check, script load errors / SystemExit / KeyboardInterrupt in a
daemon (500, the daemon survives), pass-authorization and
WSGIScriptReloading Off forwarded to the daemon, a group defined inside a
<VirtualHost>, inactivity-timeout recycling."""

import os
import re
import stat
import subprocess
import sys
import time

import pytest

import daemonutil as du
import harness

ROOT = harness.running_as_root()

CONFIG = r"""
WSGISocketPrefix @ROOT@/socks/pfx
WSGIDaemonProcess g threads=4
WSGIDaemonProcess idle threads=2 inactivity-timeout=1
WSGIHandlerScript h @SCRIPTS@/app.py process-group=g application-group=%{GLOBAL}
WSGIHandlerScript bad @SCRIPTS@/bad.py process-group=g
WSGIHandlerScript exit @SCRIPTS@/exit.py process-group=g
WSGIHandlerScript kbi @SCRIPTS@/kbi.py process-group=g
WSGIHandlerScript nohandler @SCRIPTS@/nohandler.py process-group=g
WSGIHandlerScript missing @SCRIPTS@/missing.py process-group=g
WSGIHandlerScript auth @SCRIPTS@/app.py process-group=g pass-authorization=On
WSGIHandlerScript noreload @SCRIPTS@/noreload.py process-group=g
WSGIHandlerScript idle @SCRIPTS@/app.py process-group=idle
<Location /noreload>
    SetHandler noreload
    WSGIScriptReloading Off
</Location>
<VirtualHost 127.0.0.1:@PORT@>
    ServerName main.test
</VirtualHost>
<VirtualHost 127.0.0.1:@PORT@>
    ServerName other.test
    WSGIDaemonProcess vgroup threads=2
    WSGIHandlerScript vh @SCRIPTS@/app.py process-group=vgroup
    <Location /vh>
        SetHandler vh
    </Location>
</VirtualHost>
"""
for _n in ("h", "bad", "exit", "kbi", "nohandler", "missing", "auth", "idle"):
    CONFIG += "<Location /%s>\n    SetHandler %s\n</Location>\n" % (_n, _n)


@pytest.fixture(scope="module")
def server(module_apache_factory):
    a = module_apache_factory(mpm="event")
    a.copy_app("daemon_app.py", "app.py")
    a.copy_app("daemon_app.py", "noreload.py")
    a.write_script("bad.py", "def handle_request(environ, start_response):\n    return [b'x'\n")
    a.write_script("exit.py", "import sys\n\ndef handle_request(environ, start_response):\n"
                              "    sys.exit(3)\n")
    a.write_script("kbi.py", "def handle_request(environ, start_response):\n"
                             "    raise KeyboardInterrupt\n")
    a.write_script("nohandler.py", "def application(environ, start_response):\n    pass\n")
    a.write("socks/.keep", "")
    a.start(CONFIG)
    yield a
    a.stop()
    harness.assert_clean_log(a.error_log(), du.BAD_LOG)


def test_socket_prefix(server):
    d = du.get_json(server, "/h")
    assert d["environ"]["mod_wsgi.process_group"] == "g"
    p = os.path.join(server.root, "socks", "pfx.g.sock")
    assert stat.S_ISSOCK(os.stat(p).st_mode)
    assert not [n for n in os.listdir(server.rundir) if n.endswith(".sock")]


@pytest.mark.skipif(not ROOT, reason="needs root to connect as another user")
def test_daemon_refuses_other_peer_uid(server):
    """Even if the socket's mode let another user connect, the daemon checks
    the peer's uid and drops the connection without serving it."""
    du.get_json(server, "/h")
    p = os.path.join(server.root, "socks", "pfx.g.sock")
    mode = stat.S_IMODE(os.stat(p).st_mode)
    mark = server.log_mark()
    os.chmod(p, 0o666)
    try:
        code = ("import socket, sys\n"
                "s = socket.socket(socket.AF_UNIX)\n"
                "s.connect(sys.argv[1])\n"
                "s.settimeout(5)\n"
                "print(repr(s.recv(100)))\n")
        r = subprocess.run([sys.executable, "-c", code, p], user="nobody",
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=20)
    finally:
        os.chmod(p, mode)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "b''", r.stdout
    uid = __import__("pwd").getpwnam("nobody").pw_uid
    server.wait_log("refused a connection from uid %d" % uid, mark)
    du.get_json(server, "/h")


@pytest.mark.parametrize("path,needle", [
    ("/bad", "SyntaxError"),
    ("/exit", "SystemExit: 3"),
    ("/kbi", "KeyboardInterrupt"),
    ("/nohandler", "handle_request"),
    ("/missing", "missing.py"),
])
def test_script_failures_500_daemon_survives(server, path, needle):
    pid = du.get_json(server, "/h")["pid"]
    mark = server.log_mark()
    st, _, body = server.get(path)
    assert st == 500
    server.wait_log(needle, mark)
    time.sleep(0.1)
    assert du.get_json(server, "/h")["pid"] == pid, "the daemon was replaced"
    assert harness.pid_alive(pid)


def test_pass_authorization_forwarded(server):
    d = du.get_json(server, "/auth", headers={"Authorization": "Basic eDp5"})
    assert d["environ"]["HTTP_AUTHORIZATION"] == "Basic eDp5"
    d = du.get_json(server, "/h", headers={"Authorization": "Basic eDp5"})
    assert "HTTP_AUTHORIZATION" not in d["environ"]


def test_script_reloading_off_in_daemon(server):
    d = du.get_json(server, "/noreload")
    assert d["environ"]["mod_wsgi.script_reloading"] == "0"
    assert d["version"] == "v1"
    p = os.path.join(server.scripts, "noreload.py")
    with open(p) as f:
        src = f.read()
    server.write("scripts/noreload.py", src.replace('VERSION = "v1"', 'VERSION = "v2"'))
    server.touch(p)
    assert du.get_json(server, "/noreload")["version"] == "v1"


def test_group_defined_in_vhost_serves_that_vhost(server):
    d = du.get_json(server, "/vh", headers={"Host": "other.test"})
    assert d["environ"]["mod_wsgi.process_group"] == "vgroup"
    assert d["environ"]["SERVER_NAME"] == "other.test"
    st, _, _ = server.get("/vh", headers={"Host": "main.test"})
    assert st == 404


def test_inactivity_timeout_recycles_idle_daemon(server):
    mark = server.log_mark()
    pid = du.get_json(server, "/idle")["pid"]
    time.sleep(2.2)
    elapsed, d = du.wait_serving(server, "/idle", exclude={pid}, timeout=4)
    server.wait_log(re.compile(r"WSGI daemon process %d of group 'idle' idle for" % pid), mark)
    assert not harness.wait_pids_gone([pid], timeout=2)


# ------------------------------------------------------------------------
# A <VirtualHost> without any wsgi_rs directive shares the main server's
# module config (Apache points its vector entry at the base config): each
# server-level WSGIDaemonProcess must still be seen once (no "duplicates
# itself" error, one set of daemons).
PLAIN_VHOST_CONFIG = r"""
WSGIDaemonProcess g threads=2
WSGIHandlerScript h @SCRIPTS@/app.py process-group=g
<Location /h>
    SetHandler h
</Location>
<VirtualHost 127.0.0.1:@PORT@>
    ServerName plain.test
</VirtualHost>
"""


def test_server_group_with_plain_vhost_configtest(apache_factory):
    a = apache_factory(mpm="event")
    a.copy_app("daemon_app.py", "app.py")
    rc, out = a.configtest(PLAIN_VHOST_CONFIG)
    assert rc == 0, out


def test_server_group_with_plain_vhost_serves_with_one_daemon(apache_factory):
    a = apache_factory(mpm="event")
    a.copy_app("daemon_app.py", "app.py")
    a.start(PLAIN_VHOST_CONFIG)
    d = du.get_json(a, "/h", headers={"Host": "plain.test"})
    assert d["environ"]["mod_wsgi.process_group"] == "g"
    assert len(du.daemon_pids(a)) == 1, [du.cmdline(p) for p in du.daemon_pids(a)]
