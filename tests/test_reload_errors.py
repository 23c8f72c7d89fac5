"""Script reloading on mtime change, and failures that must give a 500 with
a useful error log while the child process goes on serving."""

import os

import pytest

import harness

CONFIG = r"""
WSGIHandlerScript reload @SCRIPTS@/reload.py
WSGIHandlerScript reloadglobal @SCRIPTS@/reloadglobal.py application-group=%{GLOBAL}
WSGIHandlerScript fixme @SCRIPTS@/fixme.py
WSGIHandlerScript good @SCRIPTS@/good.py
WSGIHandlerScript nohandler @SCRIPTS@/nohandler.py
WSGIHandlerScript importerr @SCRIPTS@/importerr.py
WSGIHandlerScript syntaxerr @SCRIPTS@/syntaxerr.py
WSGIHandlerScript missing @SCRIPTS@/missing.py
WSGIHandlerScript unreadable @SCRIPTS@/unreadable.py
WSGIHandlerScript apperr @SCRIPTS@/apperr.py
WSGIHandlerScript sysexitimport @SCRIPTS@/sysexitimport.py
WSGIHandlerScript sysexitapp @SCRIPTS@/sysexitapp.py
WSGIHandlerScript globalerr @SCRIPTS@/globalerr.py application-group=%{GLOBAL}
"""
for _n in ("reload", "reloadglobal", "fixme", "good", "nohandler", "importerr", "syntaxerr",
           "missing", "unreadable", "apperr", "sysexitimport", "sysexitapp", "globalerr"):
    CONFIG += "<Location /%s>\n    SetHandler %s\n</Location>\n" % (_n, _n)


def versioned(version):
    return '''\
import os
import sys

VERSION = %r
sys._reload_counts = getattr(sys, "_reload_counts", {})
sys._reload_counts[__file__] = sys._reload_counts.get(__file__, 0) + 1


def handle_request(environ, start_response):
    body = ("%%s imports=%%d pid=%%d" %% (VERSION, sys._reload_counts[__file__],
                                       os.getpid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
''' % version


SCRIPTS = {
    "good.py": versioned("good"),
    "nohandler.py": '''\
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"wrong callable"]
''',
    "importerr.py": '''\
raise RuntimeError("IMPORT-BOOM-MARKER")

def handle_request(environ, start_response):
    start_response("200 OK", [])
    return [b"unreachable"]
''',
    "syntaxerr.py": '''\
def handle_request(environ, start_response)
    return [b"no colon above"]
''',
    "apperr.py": '''\
def handle_request(environ, start_response):
    raise ValueError("APP-BOOM-MARKER")
''',
    "globalerr.py": '''\
def handle_request(environ, start_response):
    raise KeyError("GLOBAL-APP-BOOM-MARKER")
''',
    "sysexitimport.py": '''\
raise SystemExit(3)
''',
    "sysexitapp.py": '''\
import sys

def handle_request(environ, start_response):
    sys.exit(4)
''',
}


@pytest.fixture(scope="module", params=["event", "prefork"])
def server(request, module_apache_factory):
    mpm = request.param
    a = module_apache_factory(mpm=mpm, mpm_settings=harness.SINGLE_CHILD_SETTINGS[mpm])
    for name, text in SCRIPTS.items():
        a.write_script(name, text)
    a.write_script("reload.py", versioned("v1"))
    a.write_script("reloadglobal.py", versioned("v1"))
    a.write_script("fixme.py", SCRIPTS["syntaxerr.py"])
    a.write_script("unreadable.py", versioned("secret"), mode=0o600)
    a.start(CONFIG)
    yield a
    a.stop()


def text(a, path):
    st, _, body = a.get(path)
    return st, body.decode("latin-1")


def good_pid(a):
    st, body = text(a, "/good")
    assert st == 200, (body, a.error_log()[-3000:])
    return int(body.rsplit("pid=", 1)[1])


def parse(body):
    version, imports, pid = body.split()
    return version, int(imports.split("=")[1]), int(pid.split("=")[1])


# ------------------------------------------------------------------- reload
@pytest.mark.parametrize("handler", ["reload", "reloadglobal"])
def test_reload_on_mtime_change(server, handler):
    path = os.path.join(server.scripts, handler + ".py")
    server.write_script(handler + ".py", versioned("v1"))
    server.touch(path)
    st, body = text(server, "/" + handler)
    assert st == 200, body
    v, n1, pid = parse(body)
    assert v == "v1"
    # unchanged: no reload
    st, body = text(server, "/" + handler)
    assert parse(body) == ("v1", n1, pid)

    server.write_script(handler + ".py", versioned("v2"))
    server.touch(path)
    st, body = text(server, "/" + handler)
    assert st == 200, body
    v, n2, pid2 = parse(body)
    assert v == "v2"
    assert n2 == n1 + 1
    assert pid2 == pid, "process was restarted to reload the script"

    # only the mtime changes: reloaded again
    server.touch(path)
    st, body = text(server, "/" + handler)
    assert parse(body) == ("v2", n2 + 1, pid)


def test_reload_fixes_broken_script(server):
    path = os.path.join(server.scripts, "fixme.py")
    server.write_script("fixme.py", SCRIPTS["syntaxerr.py"])
    server.touch(path)
    st, _ = text(server, "/fixme")
    assert st == 500
    server.write_script("fixme.py", versioned("fixed"))
    server.touch(path)
    st, body = text(server, "/fixme")
    assert st == 200, (body, server.error_log()[-3000:])
    assert body.startswith("fixed ")
    # and breaking it again gives a 500 again
    server.write_script("fixme.py", SCRIPTS["importerr.py"])
    server.touch(path)
    st, _ = text(server, "/fixme")
    assert st == 500


# ------------------------------------------------------------------- errors
ERROR_CASES = [
    # (handler, log must contain each of these)
    ("nohandler", ["handle_request", "@SCRIPTS@/nohandler.py"]),
    ("importerr", ["Traceback", "IMPORT-BOOM-MARKER", "@SCRIPTS@/importerr.py"]),
    ("syntaxerr", ["SyntaxError", "@SCRIPTS@/syntaxerr.py"]),
    ("missing", ["@SCRIPTS@/missing.py"]),
    ("apperr", ["Traceback", "APP-BOOM-MARKER"]),
    ("globalerr", ["Traceback", "GLOBAL-APP-BOOM-MARKER"]),
    ("sysexitimport", ["@SCRIPTS@/sysexitimport.py"]),
    ("sysexitapp", ["SystemExit"]),
]


@pytest.mark.parametrize("handler,needles", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_error_gives_500_and_child_survives(server, handler, needles):
    pid = good_pid(server)
    for attempt in range(2):  # a failure is not cached as success, nor fatal
        mark = server.log_mark()
        st, body = text(server, "/" + handler)
        assert st == 500, (attempt, st, body)
        log = server.wait_log(server.subst(needles[0]), mark)
        for n in needles[1:]:
            assert server.subst(n) in log, (n, log)
    assert good_pid(server) == pid, "child process died"
    harness.assert_clean_log(server.error_log())


@pytest.mark.skipif(not harness.running_as_root(), reason="children run as www-data only when root")
def test_unreadable_script_500(server):
    pid = good_pid(server)
    mark = server.log_mark()
    st, body = text(server, "/unreadable")
    assert st == 500
    assert "secret" not in body
    server.wait_log(os.path.join(server.scripts, "unreadable.py"), mark)
    assert good_pid(server) == pid


def test_zz_error_log_clean(server):
    harness.assert_clean_log(server.error_log())


# -------------------------------------------------- WSGICallableObject
def test_wsgicallableobject_does_not_change_callable(apache_factory):
    a = apache_factory(mpm="event")
    a.write_script("both.py", '''\
def handle_request(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"handle_request"]

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"application"]
''')
    conf = ("WSGIHandlerScript both @SCRIPTS@/both.py\n"
            "WSGICallableObject application\n"
            "<Location /both>\n    SetHandler both\n</Location>\n")
    rc, out = a.configtest(conf)
    if rc != 0:
        pytest.skip("WSGICallableObject not accepted: " + out.strip())
    a.start(conf)
    st, _, body = a.get("/both")
    assert (st, body) == (200, b"handle_request")
