"""pass-authorization: HTTP_AUTHORIZATION reaches the app only when the
handler's pass-authorization=On, or WSGIPassAuthorization On applies and the
handler leaves the option unset (the handler option wins both ways); default
Off; WSGIPassAuthorization in server, vhost, directory and .htaccess
(AllowOverride AuthConfig); one info-level hint per handler per process."""

import json
import re

import pytest

import harness
import testutil

AUTH = "Basic dXNlcjpwYXNz"

CONFIG = r"""
WSGIHandlerScript dflt @SCRIPTS@/environ_app.py
WSGIHandlerScript hon @SCRIPTS@/environ_app.py pass-authorization=On
WSGIHandlerScript hoff @SCRIPTS@/environ_app.py pass-authorization=Off
WSGIHandlerScript hquiet @SCRIPTS@/environ_app.py
WSGIHandlerScript hvalid @SCRIPTS@/environ_app.py pass-authorization=On

<VirtualHost 127.0.0.1:@PORT@>
    ServerName 127.0.0.1
</VirtualHost>
<VirtualHost 127.0.0.1:@PORT@>
    ServerName vh-on.test
    WSGIPassAuthorization On
</VirtualHost>
<VirtualHost 127.0.0.1:@PORT@>
    ServerName vh-off.test
    WSGIPassAuthorization Off
    <Location /vh-dir-on>
        WSGIPassAuthorization On
        SetHandler dflt
    </Location>
</VirtualHost>

<Location /dflt>
    SetHandler dflt
</Location>
<Location /hon>
    SetHandler hon
</Location>
<Location /hoff>
    SetHandler hoff
</Location>
<Location /hquiet>
    SetHandler hquiet
</Location>
<Location /hvalid>
    SetHandler hvalid
    SetEnv WSGI_TEST_VALIDATE 1
</Location>
<Location /loc-on>
    WSGIPassAuthorization On
    SetHandler dflt
</Location>
<Location /loc-on-hoff>
    WSGIPassAuthorization On
    SetHandler hoff
</Location>
<Location /loc-off>
    WSGIPassAuthorization Off
    SetHandler dflt
</Location>
<Location /loc-off-hon>
    WSGIPassAuthorization Off
    SetHandler hon
</Location>
<Directory @HTDOCS@/dir-on>
    WSGIPassAuthorization On
    SetHandler dflt
</Directory>
<Directory @HTDOCS@/fileinfo-only>
    AllowOverride FileInfo
</Directory>
"""

HTACCESS = {
    "ht-on": "WSGIPassAuthorization On\nSetHandler dflt\n",
    "ht-on-hoff": "WSGIPassAuthorization On\nSetHandler hoff\n",
    "ht-off": "WSGIPassAuthorization Off\nSetHandler dflt\n",
    "ht-off-hon": "WSGIPassAuthorization Off\nSetHandler hon\n",
    "fileinfo-only": "WSGIPassAuthorization On\nSetHandler dflt\n",
}


@pytest.fixture(scope="module")
def server(module_apache_factory):
    # One child, so that "once per process" is "once".
    a = module_apache_factory(mpm="event", mpm_settings=harness.SINGLE_CHILD_SETTINGS["event"])
    a.copy_app("environ_app.py")
    for d, text in HTACCESS.items():
        a.write("htdocs/%s/.htaccess" % d, text)
        a.write("htdocs/%s/app" % d, "")
    a.write("htdocs/dir-on/app", "")
    a.start(CONFIG)
    yield a
    a.stop()
    harness.assert_clean_log(a.error_log())


def passed(a, path, host=None, auth=AUTH):
    headers = {"Authorization": auth} if auth else {}
    if host:
        headers["Host"] = host
    st, _, body = a.get(path, headers=headers)
    assert st == 200, (path, host, st, body[:1000], a.error_log()[-3000:])
    e = json.loads(body)["environ"]
    assert "HTTP_PROXY_AUTHORIZATION" not in e
    if "HTTP_AUTHORIZATION" in e:
        assert e["HTTP_AUTHORIZATION"] == ["str", auth]
        return True
    return False


CASES = [
    # path, host, expected
    ("/dflt", None, False),            # default Off
    ("/hon", None, True),
    ("/hoff", None, False),
    ("/loc-on", None, True),           # <Location> On, handler unset
    ("/loc-on-hoff", None, False),     # handler Off wins over On
    ("/loc-off", None, False),
    ("/loc-off-hon", None, True),      # handler On wins over Off
    ("/dir-on/app", None, True),       # <Directory> On
    ("/ht-on/app", None, True),        # .htaccess On
    ("/ht-on-hoff/app", None, False),
    ("/ht-off/app", None, False),
    ("/ht-off-hon/app", None, True),
    ("/dflt", "vh-on.test", True),     # <VirtualHost> On
    ("/hoff", "vh-on.test", False),
    ("/hon", "vh-on.test", True),
    ("/ht-off/app", "vh-on.test", False),  # .htaccess Off below a vhost On
    ("/dflt", "vh-off.test", False),
    ("/hon", "vh-off.test", True),
    ("/vh-dir-on", "vh-off.test", True),   # <Location> On inside a vhost Off
]


@pytest.mark.parametrize("path,host,expected", CASES,
                         ids=["%s@%s" % (p, h or "main") for p, h, _ in CASES])
def test_authorization_passed(server, path, host, expected):
    assert passed(server, path, host) is expected


def test_no_authorization_header_nothing_passed(server):
    assert passed(server, "/hon", auth=None) is False


def test_htaccess_needs_authconfig_override(server):
    mark = server.log_mark()
    st, _, _ = server.get("/fileinfo-only/app", headers={"Authorization": AUTH})
    assert st == 500
    server.wait_log("WSGIPassAuthorization not allowed here", mark)


def test_validated_with_authorization(server):
    mark = server.log_mark()
    assert passed(server, "/hvalid") is True
    assert not testutil.wsgi_rs_lines(server.log_since(mark), "error")


def _hints(log, handler):
    return [line for line in log.splitlines()
            if "handler '%s'" % handler in line and "pass-authorization" in line]


def test_hint_logged_once_per_handler_per_process(server):
    for _ in range(3):
        passed(server, "/dflt")
        passed(server, "/hoff")
        passed(server, "/hon")
        passed(server, "/hquiet", auth=None)
    log = server.error_log()
    for handler in ("dflt", "hoff"):
        hints = _hints(log, handler)
        assert len(hints) == 1, hints
        assert "[wsgi_rs:info]" in hints[0], hints
        assert re.search(r"pass-authorization=On|WSGIPassAuthorization On", hints[0])
    assert _hints(log, "hon") == []
    assert _hints(log, "hquiet") == []  # no Authorization header was dropped


def test_server_level_directive(apache_factory):
    a = apache_factory(mpm="event")
    a.copy_app("environ_app.py")
    a.start("WSGIPassAuthorization On\n"
            "WSGIHandlerScript dflt @SCRIPTS@/environ_app.py\n"
            "WSGIHandlerScript hoff @SCRIPTS@/environ_app.py pass-authorization=Off\n"
            "<Location /dflt>\n    SetHandler dflt\n</Location>\n"
            "<Location /hoff>\n    SetHandler hoff\n</Location>\n"
            "<Location /loc-off>\n    WSGIPassAuthorization Off\n    SetHandler dflt\n"
            "</Location>\n")
    assert passed(a, "/dflt") is True
    assert passed(a, "/hoff") is False
    assert passed(a, "/loc-off") is False
    a.stop()
    harness.assert_clean_log(a.error_log())


def test_zz_error_log_clean(server):
    harness.assert_clean_log(server.error_log())
