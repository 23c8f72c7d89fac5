"""The older test apps (info, echo, hello, closing, errors_stream, threads,
daemon_thread) served under wsgiref.validate.validator with warnings as
errors: the module gives them nothing to complain about."""

import json
import os
import time

import pytest

import harness
import testutil

APPS = ["info.py", "echo.py", "hello.py", "closing.py", "errors_stream.py", "threads.py",
        "daemon_thread.py"]

CONFIG = "WSGIHandlerScript validate @SCRIPTS@/validate_any.py application-group=validated\n"
for _app in APPS:
    CONFIG += ("<Location /%s>\n    SetHandler validate\n"
               "    SetEnv WSGI_TEST_WRAPPED @SCRIPTS@/%s\n</Location>\n" % (_app, _app))


@pytest.fixture(scope="module")
def server(module_apache_factory):
    a = module_apache_factory(mpm="event")
    a.copy_app("validate_any.py")
    for app in APPS:
        a.copy_app(app)
    a.start(CONFIG)
    yield a
    a.stop()
    harness.assert_clean_log(a.error_log())


def check(a, mark):
    time.sleep(0.05)
    log = a.log_since(mark)
    assert "AssertionError" not in log and "Warning" not in log, log
    harness.assert_clean_log(log)


def test_info(server):
    mark = server.log_mark()
    st, _, body = server.get("/info.py/x?a=1", headers={"X-H": "v"})
    assert st == 200, server.log_since(mark)
    assert json.loads(body)["environ"]["PATH_INFO"] == "/x"
    st, _, body = server.get("/info.py", method="HEAD")
    assert (st, body) == (200, b"")
    check(server, mark)


def test_echo(server):
    mark = server.log_mark()
    data = os.urandom(30000)
    st, _, body = server.post("/echo.py?chunk=1000", data)
    assert (st, body) == (200, data), server.log_since(mark)
    check(server, mark)


def test_hello(server):
    mark = server.log_mark()
    st, _, body = server.get("/hello.py")
    assert (st, body) == (200, b"hello from hello.py\n")
    check(server, mark)


def test_closing(server):
    mark = server.log_mark()
    name = "vclosed-%d" % time.time_ns()
    st, _, body = server.get("/closing.py?dir=%s&name=%s" % (server.out, name))
    assert (st, body) == (200, b"part1-part2-part3\n")
    testutil.wait_file(os.path.join(server.out, name))
    check(server, mark)


def test_errors_stream(server):
    mark = server.log_mark()
    st, _, body = server.get("/errors_stream.py?marker=validated")
    assert (st, body) == (200, b"logged\n")
    server.wait_log("WSGI-ERRORS validated", mark)
    check(server, mark)


@pytest.mark.parametrize("app", ["threads.py", "daemon_thread.py"])
def test_thread_apps(server, app):
    mark = server.log_mark()
    st, _, body = server.get("/" + app)
    assert st == 200, server.log_since(mark)
    assert json.loads(body)["pid"] > 0
    check(server, mark)
