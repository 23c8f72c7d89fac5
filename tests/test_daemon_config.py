"""``apache2 -t`` and daemon-mode configuration: WSGIDaemonProcess options,
undefined / duplicate / cross-virtual-host process groups (file, line and
group name in the output), mod_wsgi options accepted with a warning,
WSGISocketPrefix placement."""

import re

import pytest


@pytest.fixture(scope="module")
def apache(module_apache_factory):
    a = module_apache_factory(mpm="event")
    a.copy_app("daemon_app.py", "app.py")
    return a


def assert_ok(a, conf):
    rc, out = a.configtest(conf)
    assert rc == 0, "apache2 -t failed for:\n%s\n--- output ---\n%s" % (conf, out)
    assert "Syntax OK" in out
    return out


def line_ref(a, needle, nth=1):
    """(path, line) of the nth line containing `needle` in the last -t config."""
    path = a.last_configtest_path
    seen = 0
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if needle in line:
                seen += 1
                if seen == nth:
                    return path, i
    raise AssertionError("%r (#%d) not in %s" % (needle, nth, path))


def mentions(out, path, line):
    return bool(re.search(r"(%s:%d\b|line %d of %s)" % (re.escape(path), line, line, re.escape(path)), out))


def assert_rejected(a, conf, needle, reason_re, nth=1):
    rc, out = a.configtest(conf)
    assert rc != 0, "apache2 -t accepted:\n%s\n--- output ---\n%s" % (conf, out)
    path, line = line_ref(a, needle, nth)
    assert mentions(out, path, line), "%s:%d not in output:\n%s" % (path, line, out)
    assert re.search(reason_re, out, re.I), "reason %r not in output:\n%s" % (reason_re, out)
    return out


VHOST = "<VirtualHost 127.0.0.1:@PORT@>\n    ServerName %s\n%s</VirtualHost>\n"


def vhost(name, body):
    return VHOST % (name, body)


# -------------------------------------------------------------------- valid
VALID = {
    "spec-example": "WSGIDaemonProcess mygroup\n"
                    "WSGIHandlerScript wsgi-resource @SCRIPTS@/app.py process-group=mygroup "
                    "application-group=%{GLOBAL}\nAddHandler wsgi-resource .myext\n",
    "defined-after-use": "WSGIHandlerScript h @SCRIPTS@/app.py process-group=later\n"
                         "<Location /x>\n    WSGIProcessGroup later2\n</Location>\n"
                         "WSGIDaemonProcess later\nWSGIDaemonProcess later2\n",
    "server-group-in-vhost": "WSGIDaemonProcess top\n" + vhost(
        "a.test", "    WSGIHandlerScript h @SCRIPTS@/app.py process-group=top\n"
                  "    <Location /x>\n        WSGIProcessGroup top\n    </Location>\n"),
    "vhost-group-in-same-vhost": vhost(
        "a.test", "    WSGIHandlerScript h @SCRIPTS@/app.py process-group=va\n"
                  "    WSGIDaemonProcess va\n"),
    "all-options": "WSGIDaemonProcess g processes=2 threads=3 user=nobody group=nogroup "
                   "display-name=my-title home=/tmp python-path=/a:/b maximum-requests=10 "
                   "request-timeout=5 socket-timeout=5 connect-timeout=2 inactivity-timeout=60 "
                   "graceful-timeout=5 shutdown-timeout=2 listen-backlog=50 umask=0022\n",
    "display-name-group": "WSGIDaemonProcess g display-name=%{GROUP}\n",
    "global-is-embedded": "WSGIHandlerScript h @SCRIPTS@/app.py process-group=%{GLOBAL}\n"
                          "<Location /x>\n    WSGIProcessGroup %{GLOBAL}\n</Location>\n",
    "socket-prefix": "WSGISocketPrefix @ROOT@/sockets/wsgi\nWSGIDaemonProcess g\n",
    "quoted": 'WSGIDaemonProcess "g" "threads=2" "display-name=a b"\n',
    "continuation": "WSGIDaemonProcess g \\\n    threads=2 \\\n    processes=1\n",
    "directory-process-group": "WSGIDaemonProcess g\n<Directory @HTDOCS@>\n"
                               "    WSGIProcessGroup g\n</Directory>\n",
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid(apache, name):
    assert_ok(apache, VALID[name])


# mod_wsgi options that real configurations carry: accepted, with a warning
# naming the option where they have no effect.
NO_EFFECT = ["lang=C.UTF-8", "locale=C.UTF-8", "deadlock-timeout=60", "queue-timeout=10",
             "supplementary-groups=www-data", "python-eggs=/tmp", "stack-size=524288",
             "eviction-timeout=5", "restart-interval=60", "socket-user=www-data",
             "cpu-time-limit=60", "memory-limit=1000000000", "virtual-memory-limit=1000000000",
             "response-buffer-size=65536", "response-socket-timeout=10",
             "header-buffer-size=32768", "send-buffer-size=65536",
             "receive-buffer-size=65536", "script-user=www-data", "startup-timeout=15",
             "server-metrics=On", "cpu-priority=0"]


@pytest.mark.parametrize("opt", NO_EFFECT)
def test_mod_wsgi_option_accepted_with_warning(apache, opt):
    out = assert_ok(apache, "WSGIDaemonProcess g %s\n" % opt)
    name = opt.split("=")[0]
    warn = [l for l in out.splitlines() if ":warn]" in l and name in l]
    assert warn, "no warning naming %r:\n%s" % (name, out)
    path, line = line_ref(apache, "WSGIDaemonProcess g")
    assert mentions(warn[0], path, line), warn[0]


# ---------------------------------------------------------- group references
def test_undefined_group_in_handler(apache):
    conf = "WSGIDaemonProcess other\nWSGIHandlerScript h @SCRIPTS@/app.py process-group=nosuchgroup\n"
    assert_rejected(apache, conf, "process-group=nosuchgroup", r"'nosuchgroup'.*not defined")


@pytest.mark.parametrize("section", ["Location /x", "Directory @HTDOCS@"])
def test_undefined_group_in_wsgiprocessgroup(apache, section):
    tag = section.split()[0]
    conf = "<%s>\n    WSGIProcessGroup missinggroup\n</%s>\n" % (section, tag)
    assert_rejected(apache, conf, "WSGIProcessGroup missinggroup", r"'missinggroup'.*not defined")


def test_duplicate_group_names_both_places(apache):
    conf = ("WSGIDaemonProcess dupgroup\nWSGIHandlerScript h @SCRIPTS@/app.py\n"
            "WSGIDaemonProcess dupgroup threads=2\n")
    out = assert_rejected(apache, conf, "WSGIDaemonProcess dupgroup", r"'dupgroup'.*duplicat", nth=2)
    path, first = line_ref(apache, "WSGIDaemonProcess dupgroup", 1)
    assert mentions(out, path, first), "first definition not named:\n" + out


def test_duplicate_group_server_and_vhost(apache):
    conf = "WSGIDaemonProcess dupgroup\n" + vhost("a.test", "    WSGIDaemonProcess dupgroup\n")
    out = assert_rejected(apache, conf, "WSGIDaemonProcess dupgroup", r"'dupgroup'.*duplicat", nth=2)
    path, first = line_ref(apache, "WSGIDaemonProcess dupgroup", 1)
    assert mentions(out, path, first), out


def test_duplicate_group_in_two_vhosts(apache):
    conf = (vhost("a.test", "    WSGIDaemonProcess dupgroup\n")
            + vhost("b.test", "    WSGIDaemonProcess dupgroup\n"))
    out = assert_rejected(apache, conf, "WSGIDaemonProcess dupgroup", r"'dupgroup'.*duplicat", nth=2)
    path, first = line_ref(apache, "WSGIDaemonProcess dupgroup", 1)
    assert mentions(out, path, first), out


def test_group_of_other_vhost_in_handler(apache):
    conf = (vhost("a.test", "    WSGIDaemonProcess vagroup\n")
            + vhost("b.test", "    WSGIHandlerScript h @SCRIPTS@/app.py process-group=vagroup\n"))
    out = assert_rejected(apache, conf, "process-group=vagroup", r"'vagroup'")
    path, where = line_ref(apache, "WSGIDaemonProcess vagroup")
    assert mentions(out, path, where), "the other vhost's definition is not named:\n" + out


def test_group_of_other_vhost_in_wsgiprocessgroup(apache):
    conf = (vhost("a.test", "    WSGIDaemonProcess vagroup\n")
            + vhost("b.test", "    <Location /x>\n        WSGIProcessGroup vagroup\n    </Location>\n"))
    assert_rejected(apache, conf, "WSGIProcessGroup vagroup", r"'vagroup'")


def test_vhost_group_not_usable_at_server_level(apache):
    conf = (vhost("a.test", "    WSGIDaemonProcess vagroup\n")
            + "WSGIHandlerScript h @SCRIPTS@/app.py process-group=vagroup\n")
    assert_rejected(apache, conf, "process-group=vagroup", r"'vagroup'")


# ------------------------------------------------------- WSGIDaemonProcess
INVALID = [
    ("bogus-option=1", r"unknown option 'bogus-option'"),
    ("threads", r"threads"),
    ("threads=abc", r"threads"),
    ("threads=0", r"threads"),
    ("processes=0", r"processes"),
    ("processes=-1", r"processes"),
    ("processes=1.5", r"processes"),
    ("maximum-requests=x", r"maximum-requests"),
    ("socket-timeout=abc", r"socket-timeout"),
    ("connect-timeout=-1", r"connect-timeout"),
    ("request-timeout=x", r"request-timeout"),
    ("inactivity-timeout=x", r"inactivity-timeout"),
    ("graceful-timeout=x", r"graceful-timeout"),
    ("shutdown-timeout=x", r"shutdown-timeout"),
    ("listen-backlog=x", r"listen-backlog"),
    ("umask=999", r"umask"),
    ("umask=abc", r"umask"),
    ("display-name=", r"display-name"),
    ("threads=2 threads=3", r"threads.*more than once"),
]


@pytest.mark.parametrize("opt,reason", INVALID, ids=[o for o, _ in INVALID])
def test_invalid_option(apache, opt, reason):
    assert_rejected(apache, "WSGIDaemonProcess g %s\n" % opt, "WSGIDaemonProcess g", reason)


def test_missing_group_name(apache):
    assert_rejected(apache, "WSGIDaemonProcess\n", "WSGIDaemonProcess", r"name")


def test_empty_group_name(apache):
    assert_rejected(apache, 'WSGIDaemonProcess ""\n', "WSGIDaemonProcess", r"name")


def test_empty_process_group_option(apache):
    assert_rejected(apache, "WSGIHandlerScript h @SCRIPTS@/app.py process-group=\n",
                    "process-group=", r"process-group")


def test_daemon_process_not_allowed_in_location(apache):
    assert_rejected(apache, "<Location /x>\n    WSGIDaemonProcess g\n</Location>\n",
                    "WSGIDaemonProcess g", r"not allowed")


def test_socket_prefix_not_allowed_in_vhost(apache):
    assert_rejected(apache, vhost("a.test", "    WSGISocketPrefix /tmp/x\n"),
                    "WSGISocketPrefix", r"WSGISocketPrefix")


# Values that are well-formed but cannot work (the daemons would never
# start): rejected when the configuration is read, as mod_wsgi does for an
# unknown user/group.
@pytest.mark.parametrize("opt,reason", [
    ("user=no-such-user-wsgirs", r"no-such-user-wsgirs"),
    ("group=no-such-group-wsgirs", r"no-such-group-wsgirs"),
    ("python-home=/no/such/python/home", r"python-home|/no/such/python/home"),
], ids=["unknown-user", "unknown-group", "python-home-missing"])
def test_unusable_value_fails_configtest(apache, opt, reason):
    assert_rejected(apache, "WSGIDaemonProcess g %s\n" % opt, "WSGIDaemonProcess g", reason)
