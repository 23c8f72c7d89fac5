"""Daemon mode basics, on event and prefork: the spec's example verbatim,
daemon processes distinct from Apache's, their title, user/group, threads,
processes, home/umask/python-path, WSGIProcessGroup defaults vs the
handler's process-group=, application groups and script reload inside a
daemon, the socket's ownership."""

import grp
import os
import pwd
import stat
import threading
import time

import pytest

import daemonutil as du
import harness

ROOT = harness.running_as_root()

CONFIG = r"""
# --- the spec's example, verbatim ---
WSGIDaemonProcess mygroup
WSGIHandlerScript wsgi-resource @SCRIPTS@/resource.wsgi process-group=mygroup application-group=%{GLOBAL}
AddHandler wsgi-resource .myext
# ------------------------------------

WSGIDaemonProcess four threads=4 display-name=custom-four-title
WSGIDaemonProcess one threads=1
WSGIDaemonProcess opts processes=2 threads=3 home=@OUT@ umask=0027 python-path=@ROOT@/pylib display-name=%{GROUP}
WSGIDaemonProcess pgdefault threads=2
""" + ("WSGIDaemonProcess asnobody threads=2 user=nobody group=nogroup\n" if ROOT else "") + r"""
WSGIHandlerScript app @SCRIPTS@/app.py
WSGIHandlerScript appfour @SCRIPTS@/app.py process-group=four
WSGIHandlerScript reload @SCRIPTS@/reload.py process-group=mygroup application-group=%{GLOBAL}

<Location /emb>
    SetHandler app
</Location>
<Location /four>
    SetHandler appfour
</Location>
<Location /one>
    WSGIProcessGroup one
    SetHandler app
</Location>
<Location /opts>
    WSGIProcessGroup opts
    SetHandler app
</Location>
<Location /pg>
    WSGIProcessGroup pgdefault
    SetHandler app
</Location>
<Location /pgwin>
    WSGIProcessGroup pgdefault
    SetHandler appfour
</Location>
<Location /pgglobal>
    WSGIProcessGroup %{GLOBAL}
    SetHandler app
</Location>
<Location /named>
    WSGIProcessGroup mygroup
    WSGIApplicationGroup named
    SetHandler app
</Location>
<Location /global>
    WSGIProcessGroup mygroup
    WSGIApplicationGroup %{GLOBAL}
    SetHandler app
</Location>
<Location /reload>
    SetHandler reload
</Location>
""" + ("<Location /nobody>\n    WSGIProcessGroup asnobody\n    SetHandler app\n</Location>\n"
       if ROOT else "")


# Enough prefork children up front for the concurrency tests (prefork
# otherwise starts 2 and adds more only once a second).
PREFORK = """\
StartServers 8
MinSpareServers 8
MaxSpareServers 10
ServerLimit 10
MaxRequestWorkers 10
"""


@pytest.fixture(scope="module", params=["event", "prefork"])
def server(request, module_apache_factory):
    a = module_apache_factory(mpm=request.param,
                              mpm_settings=PREFORK if request.param == "prefork" else None)
    a.copy_app("daemon_app.py", "resource.wsgi")
    a.copy_app("daemon_app.py", "app.py")
    a.copy_app("daemon_app.py", "reload.py")
    a.write("htdocs/x.myext", "raw file, never served as is\n")
    a.write("pylib/daemon_pylib_marker.py", "X = 1\n")
    a.start(CONFIG)
    yield a
    daemons = du.daemon_pids(a)
    elapsed = a.stop()
    assert elapsed < 2.0, "stop took %.2fs" % elapsed
    assert not harness.wait_pids_gone(daemons, timeout=2), "daemons survived the stop"
    harness.assert_clean_log(a.error_log(), du.BAD_LOG)


def www_data_ids():
    if ROOT:
        pw = pwd.getpwnam("www-data")
        return pw.pw_uid, pw.pw_gid
    return os.getuid(), os.getgid()


def test_spec_example_served_by_daemon(server):
    d = du.get_json(server, "/x.myext")
    e = d["environ"]
    assert e["mod_wsgi.process_group"] == "mygroup"
    assert e["mod_wsgi.application_group"] == ""
    assert e["mod_wsgi.request_handler"] == "wsgi-resource"
    assert e["mod_wsgi.handler_script"] == os.path.join(server.scripts, "resource.wsgi")
    assert e["SCRIPT_NAME"] == "/x.myext"
    assert e["SCRIPT_FILENAME"] == os.path.join(server.htdocs, "x.myext")
    assert d["pid"] != server.pid
    assert d["ppid"] == server.pid
    assert d["pid"] not in du.apache_children(server)
    assert d["pid"] in du.daemon_pids(server)


def test_daemon_pid_distinct_from_apache(server):
    pids = {du.get_json(server, "/x.myext")["pid"] for _ in range(5)}
    assert len(pids) == 1, "one daemon (processes=1) expected, got %s" % pids
    pid = pids.pop()
    children = du.apache_children(server)
    assert children, "no Apache children found"
    assert pid not in children and pid != server.pid
    # the same request served embedded runs in an Apache child
    emb = du.get_json(server, "/emb")
    assert emb["environ"]["mod_wsgi.process_group"] == ""
    assert emb["pid"] in du.apache_children(server)


def test_process_titles(server):
    pid = du.get_json(server, "/x.myext")["pid"]
    assert du.ps_args(pid).startswith("(wsgi:mygroup)"), du.ps_args(pid)
    pid = du.get_json(server, "/four")["pid"]
    assert du.ps_args(pid).startswith("custom-four-title"), du.ps_args(pid)
    titles = [du.ps_args(p) for p in du.daemon_pids(server)]
    assert sum(t.startswith("(wsgi:opts)") for t in titles) == 2, titles
    # one daemon per group (mygroup, four, one, pgdefault[, asnobody]), opts has two
    assert len(titles) == (7 if ROOT else 6), titles


def test_default_identity_is_apache_user(server):
    d = du.get_json(server, "/x.myext")
    uid, gid = www_data_ids()
    assert (d["uid"], d["euid"], d["gid"], d["egid"]) == (uid, uid, gid, gid)


@pytest.mark.skipif(not ROOT, reason="user= needs root")
def test_user_and_group_options(server):
    d = du.get_json(server, "/nobody")
    assert d["environ"]["mod_wsgi.process_group"] == "asnobody"
    uid = pwd.getpwnam("nobody").pw_uid
    gid = grp.getgrnam("nogroup").gr_gid
    assert (d["uid"], d["euid"], d["gid"], d["egid"]) == (uid, uid, gid, gid)
    with open("/proc/%d/status" % d["pid"]) as f:
        groups = [line for line in f if line.startswith("Groups:")][0].split()[1:]
    assert set(int(g) for g in groups) <= {gid}, "supplementary groups kept: %s" % groups


@pytest.mark.skipif(not ROOT, reason="socket ownership needs root")
def test_socket_owned_by_apache_user(server):
    path = os.path.join(server.rundir, "wsgi-rs.mygroup.sock")
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    assert st.st_uid == www_data_ids()[0]


def test_multithread_multiprocess_flags(server):
    e = du.get_json(server, "/x.myext")["environ"]
    assert (e["wsgi.multithread"], e["wsgi.multiprocess"], e["wsgi.run_once"]) == (True, False, False)
    e = du.get_json(server, "/one")["environ"]
    assert e["mod_wsgi.process_group"] == "one"
    assert (e["wsgi.multithread"], e["wsgi.multiprocess"]) == (False, False)
    e = du.get_json(server, "/opts")["environ"]
    assert (e["wsgi.multithread"], e["wsgi.multiprocess"]) == (True, True)


def test_home_umask_python_path(server):
    d = du.get_json(server, "/opts")
    assert d["cwd"] == server.out
    assert d["umask"] == 0o027
    assert os.path.join(server.root, "pylib") in d["sys_path"]
    # the default home is /
    assert du.get_json(server, "/x.myext")["cwd"] == "/"


def concurrent(server, path, n, timeout=15):
    results = [None] * n

    def worker(i):
        try:
            results[i] = du.get_json(server, path, timeout=timeout)
        except Exception as e:
            results[i] = e

    ths = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    t0 = time.monotonic()
    for t in ths:
        t.start()
    for t in ths:
        t.join(timeout + 5)
    elapsed = time.monotonic() - t0
    errors = [r for r in results if not isinstance(r, dict)]
    assert not errors, errors
    return elapsed, results


def test_threads4_serves_four_slow_requests_concurrently(server):
    du.get_json(server, "/four")  # loaded
    elapsed, results = concurrent(server, "/four?case=sleep&s=1", 4)
    assert elapsed < 1.8, "4 x 1 s requests with threads=4 took %.2fs" % elapsed
    assert len({r["pid"] for r in results}) == 1
    assert len({r["thread"] for r in results}) == 4


def test_threads4_concurrent_while_threads_are_held(server):
    """While one thread serves, idle threads are held back from the socket
    (the serving thread takes the next request itself); a sentinel thread
    must still start waiting requests on the free threads.  So: one long
    request, a burst of quick ones (their threads come back while the long
    one runs, and are held), then 3 slow ones at once: they run
    concurrently on the 3 other threads, not one after the other."""
    du.get_json(server, "/four")  # loaded
    long_req = threading.Thread(target=du.get_json,
                                args=(server, "/four?case=sleep&s=2.5"), kwargs={"timeout": 15})
    long_req.start()
    time.sleep(0.3)
    concurrent(server, "/four", 8)
    elapsed, results = concurrent(server, "/four?case=sleep&s=1", 3)
    long_req.join(10)
    assert elapsed < 1.8, "3 x 1 s requests on 3 free threads took %.2fs" % elapsed
    assert len({r["thread"] for r in results}) == 3


def test_threads1_serialises(server):
    du.get_json(server, "/one")
    elapsed, results = concurrent(server, "/one?case=sleep&s=0.6", 2)
    assert elapsed >= 1.15, "threads=1 ran two requests at once (%.2fs)" % elapsed


def test_processes2_both_serve(server):
    du.get_json(server, "/opts")
    # 6 concurrent requests need both processes' 3 threads
    elapsed, results = concurrent(server, "/opts?case=sleep&s=0.8", 6)
    assert len({r["pid"] for r in results}) == 2, [r["pid"] for r in results]
    assert elapsed < 1.6 + 0.8, "6 requests on 2x3 threads took %.2fs" % elapsed


def test_process_group_defaults_and_override(server):
    assert du.get_json(server, "/pg")["environ"]["mod_wsgi.process_group"] == "pgdefault"
    # the handler's process-group= wins over WSGIProcessGroup
    assert du.get_json(server, "/pgwin")["environ"]["mod_wsgi.process_group"] == "four"
    # %{GLOBAL} = embedded
    d = du.get_json(server, "/pgglobal")
    assert d["environ"]["mod_wsgi.process_group"] == ""
    assert d["pid"] in du.apache_children(server)


def test_application_groups_in_daemon(server):
    n = du.get_json(server, "/named")
    g = du.get_json(server, "/global")
    x = du.get_json(server, "/x.myext")
    assert n["pid"] == g["pid"] == x["pid"]
    assert n["environ"]["mod_wsgi.application_group"] == "named"
    assert g["environ"]["mod_wsgi.application_group"] == ""
    assert n["test_id"] != g["test_id"], "named group ran in the main interpreter"
    assert g["test_id"] == x["test_id"]
    if n["interpreter_id"] is not None:
        assert n["interpreter_id"] != g["interpreter_id"]
        assert g["interpreter_id"] == 0
    # the named interpreter persists across requests
    assert du.get_json(server, "/named")["test_id"] == n["test_id"]


def test_script_reload_in_daemon(server):
    before = du.get_json(server, "/reload")
    assert before["version"] == "v1"
    path = os.path.join(server.scripts, "reload.py")
    with open(path) as f:
        src = f.read()
    server.write("scripts/reload.py", src.replace('VERSION = "v1"', 'VERSION = "v2"'))
    server.touch(path)
    after = du.get_json(server, "/reload")
    assert after["version"] == "v2"
    assert after["pid"] == before["pid"], "reload restarted the daemon instead of reloading in place"
    assert after["test_id"] == before["test_id"]
    with open(path) as f:
        src = f.read()
    server.write("scripts/reload.py", src.replace('VERSION = "v2"', 'VERSION = "v1"'))
    server.touch(path, delta=20)
    assert du.get_json(server, "/reload")["version"] == "v1"
