"""Sanity checks of the harness itself, with an Apache that does NOT load
the module (these run even before the module is built)."""

import os

import pytest

import harness

pytestmark = pytest.mark.nomodule


@pytest.mark.parametrize("mpm", ["event", "prefork"])
def test_static_server_starts_serves_and_stops(apache_factory, mpm):
    a = apache_factory(mpm=mpm, load_module=False)
    a.write("htdocs/hello.html", "<p>static hello</p>\n")
    a.start("")
    st, hdrs, body = a.get("/hello.html")
    assert st == 200
    assert body == b"<p>static hello</p>\n"
    assert hdrs["Content-Type"].startswith("text/html")
    st, _, _ = a.get("/missing.html")
    assert st == 404
    pid = a.pid
    t = a.graceful()
    assert t < 5
    assert a.get("/hello.html")[0] == 200
    t = a.stop()
    assert t < 5
    assert not harness.pid_alive(pid)
    assert not os.path.exists(a.pidfile)
    harness.assert_clean_log(a.error_log())


def test_configtest_reports_file_and_line(apache_factory):
    a = apache_factory(load_module=False)
    rc, out = a.configtest("")
    assert rc == 0, out
    assert "Syntax OK" in out
    rc, out = a.configtest("NoSuchDirectiveHere 1\n")
    assert rc != 0
    assert a.last_configtest_path in out
    assert "line %d" % a.line_of("NoSuchDirectiveHere") in out


def test_temp_dir_removed(apache_factory):
    a = apache_factory(load_module=False)
    root = a.root
    a.start("")
    a.cleanup()
    assert not os.path.exists(root)
