"""Python in Apache's children only where embedded mode can happen: by
default a child starts Python only if some WSGIHandlerScript may run
embedded (no process-group=, %{GLOBAL}, or a group computed per request);
`WSGIRestrictEmbedded On` (mod_wsgi's directive) never starts it, `Off`
always does. Daemon handlers work either way; an embedded request in a
child without Python is a 500 with the reason in the log, and so is an
embedded handler added by .htaccess."""

import contextlib

import pytest

import daemonutil as du
import harness

NOT_STARTED = "Python is not started in this child"

DAEMON_ONLY = r"""
WSGIDaemonProcess g threads=2
WSGIHandlerScript d @SCRIPTS@/app.py process-group=g application-group=%{GLOBAL}
<Location /d>
    SetHandler d
</Location>
"""

EMBEDDED = r"""
WSGIHandlerScript e @SCRIPTS@/app.py
<Location /e>
    SetHandler e
</Location>
"""


@contextlib.contextmanager
def serving(factory, mpm, conf, forbidden_log=()):
    """Apache with `conf` for the body of the `with`; then stopped, and its log
    must hold no bad line (du.BAD_LOG) nor any of `forbidden_log`."""
    a = factory(mpm=mpm, log_level="info wsgi_rs:debug")
    a.copy_app("daemon_app.py", "app.py")
    a.write("htdocs/ht-embedded/.htaccess", "WSGIHandlerScript hte %s/app.py\nSetHandler hte\n" % a.scripts)
    a.write("htdocs/ht-embedded/x", "")
    a.write("htdocs/ht-daemon/.htaccess",
            "WSGIHandlerScript htd %s/app.py process-group=g\nSetHandler htd\n" % a.scripts)
    a.write("htdocs/ht-daemon/x", "")
    a.start(conf)
    try:
        yield a
    finally:
        a.stop()
    harness.assert_clean_log(a.error_log(), du.BAD_LOG + tuple(forbidden_log))


def served_by_daemon(a, path):
    assert du.get_json(a, path)["pid"] in du.daemon_pids(a)


@pytest.fixture(params=["event", "prefork"])
def mpm(request):
    return request.param


def test_daemon_only_configuration_starts_no_python_in_children(module_apache_factory, mpm):
    with serving(module_apache_factory, mpm, DAEMON_ONLY, forbidden_log=("AH00529",)) as a:
        served_by_daemon(a, "/d")
        served_by_daemon(a, "/ht-daemon/x")
        assert NOT_STARTED in a.error_log()
        mark = a.log_mark()
        st, _, _ = a.get("/ht-embedded/x")
        assert st == 500
        assert "may run in embedded mode, but Python is not running" in a.log_since(mark)
        served_by_daemon(a, "/d")


def test_an_embedded_handler_starts_python_in_children(module_apache_factory, mpm):
    with serving(module_apache_factory, mpm, DAEMON_ONLY + EMBEDDED) as a:
        embedded = du.get_json(a, "/e")
        assert embedded["pid"] not in du.daemon_pids(a)
        du.get_json(a, "/ht-embedded/x")
        served_by_daemon(a, "/d")
        assert NOT_STARTED not in a.error_log()


def test_an_embedded_handler_in_a_virtual_host_starts_python(module_apache_factory):
    vhost = ("<VirtualHost 127.0.0.1:@PORT@>\n    ServerName 127.0.0.1\n"
             "    WSGIHandlerScript ve @SCRIPTS@/app.py\n"
             "    <Location /ve>\n        SetHandler ve\n    </Location>\n</VirtualHost>\n")
    with serving(module_apache_factory, "event", DAEMON_ONLY + vhost) as a:
        assert du.get_json(a, "/ve")["pid"] not in du.daemon_pids(a)
        assert NOT_STARTED not in a.error_log()


def test_restrict_embedded_on_refuses_embedded_requests(module_apache_factory, mpm):
    conf = "WSGIRestrictEmbedded On\n" + DAEMON_ONLY + EMBEDDED
    with serving(module_apache_factory, mpm, conf, forbidden_log=("AH00529",)) as a:
        served_by_daemon(a, "/d")
        assert NOT_STARTED in a.error_log()
        mark = a.log_mark()
        st, _, _ = a.get("/e")
        assert st == 500
        assert "handler 'e' runs in embedded mode here, but Python is not running" in a.log_since(mark)
        served_by_daemon(a, "/d")


def test_restrict_embedded_off_starts_python_anyway(module_apache_factory):
    with serving(module_apache_factory, "event", "WSGIRestrictEmbedded Off\n" + DAEMON_ONLY) as a:
        served_by_daemon(a, "/d")
        du.get_json(a, "/ht-embedded/x")
        assert NOT_STARTED not in a.error_log()


@pytest.mark.parametrize("conf, reason", [
    ("<VirtualHost 127.0.0.1:@PORT@>\n    WSGIRestrictEmbedded On\n</VirtualHost>\n",
     "cannot be used inside <VirtualHost>"),
    ("WSGIRestrictEmbedded maybe\n", "On or Off"),
    ("<Location /x>\n    WSGIRestrictEmbedded On\n</Location>\n", "not allowed in <Location> context"),
])
def test_restrict_embedded_config_errors(module_apache_factory, conf, reason):
    a = module_apache_factory(mpm="event")
    rc, out = a.configtest(conf)
    assert rc != 0, out
    assert reason in out, out
    assert "Syntax error on line" in out and a.last_configtest_path in out, out
