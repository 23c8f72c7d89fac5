"""PEP 3333 environ in embedded mode: CGI variables (latin-1 str), HTTP_*
headers, SetEnv, raw QUERY_STRING, the wsgi.* keys, mod_wsgi's
informational keys, HTTPS under mod_ssl, REMOTE_USER/AUTH_TYPE after
Apache authentication; and the validator finds nothing to complain about."""

import base64
import hashlib
import http.client
import json
import os
import re
import ssl
import subprocess

import pytest

import harness
import testutil

TLS_DIR = os.path.join(harness.APPS, "tls")

CONFIG = r"""
SetEnv WSGI_TEST_SETENV from-setenv
Listen 127.0.0.1:@SSLPORT@
WSGIHandlerScript env @SCRIPTS@/environ_app.py
WSGIHandlerScript envglobal @SCRIPTS@/environ_app.py application-group=%{GLOBAL}
WSGIHandlerScript envnamed @SCRIPTS@/environ_app.py application-group=named-group
<Location /env>
    SetHandler env
</Location>
<Location /venv>
    SetHandler env
    SetEnv WSGI_TEST_VALIDATE 1
</Location>
<Location /envglobal>
    SetHandler envglobal
</Location>
<Location /envnamed>
    SetHandler envnamed
</Location>
<Location /noreload>
    SetHandler env
    WSGIScriptReloading Off
</Location>
<Location /auth>
    SetHandler env
    SetEnv WSGI_TEST_VALIDATE 1
    AuthType Basic
    AuthName "wsgi-rs test"
    AuthBasicProvider file
    AuthUserFile @ROOT@/htpasswd
    Require valid-user
</Location>
<VirtualHost 127.0.0.1:@SSLPORT@>
    ServerName 127.0.0.1
    SSLEngine on
    SSLCertificateFile @ROOT@/tls/test-cert.pem
    SSLCertificateKeyFile @ROOT@/tls/test-key.pem
</VirtualHost>
"""


@pytest.fixture(scope="module")
def server(module_apache_factory):
    # One child: wsgi.multiprocess must then be False (threads: True).
    a = module_apache_factory(
        mpm="event", mpm_settings=harness.SINGLE_CHILD_SETTINGS["event"],
        extra_modules=["auth_basic", "authn_core", "authn_file", "authz_user",
                       "socache_shmcb", "ssl"])
    a.ssl_port = harness.free_port()
    a.copy_app("environ_app.py")
    for name in ("test-cert.pem", "test-key.pem"):
        with open(os.path.join(TLS_DIR, name), "rb") as f:
            a.write("tls/" + name, f.read(), mode=0o600)
    sha = base64.b64encode(hashlib.sha1(b"s3cret").digest()).decode()
    a.write("htpasswd", "alice:{SHA}%s\n" % sha)
    a.start(CONFIG.replace("@SSLPORT@", str(a.ssl_port)))
    yield a
    a.stop()
    harness.assert_clean_log(a.error_log())


def report(a, path, **kw):
    st, hdrs, body = a.get(path, **kw)
    assert st == 200, (st, body[:2000], a.error_log()[-3000:])
    return json.loads(body)


def env_of(a, path, **kw):
    return {k: v[1] for k, v in report(a, path, **kw)["environ"].items()}


def raw_report(a, path, headers=(), http="HTTP/1.1"):
    """GET over a raw socket (exact header bytes); returns (report, local port)."""
    with testutil.connect(a.port) as s:
        local_port = s.getsockname()[1]
        head = ["GET %s %s" % (path, http), "Host: 127.0.0.1:%d" % a.port, "Connection: close"]
        data = "\r\n".join(head).encode("latin-1")
        for k, v in headers:
            data += b"\r\n" + k + b": " + v
        s.sendall(data + b"\r\n\r\n")
        r = testutil.RawResponse(testutil.recv_all(s))
    assert r.status == 200, (r.status_line, r.rest[:2000])
    body, complete = r.body()
    assert complete
    return json.loads(body), local_port


def test_cgi_variables(server):
    d, local_port = raw_report(server, "/env/sub/path?a=1&b=two")
    e = {k: v[1] for k, v in d["environ"].items()}
    assert e["REQUEST_METHOD"] == "GET"
    assert e["SCRIPT_NAME"] == "/env"
    assert e["PATH_INFO"] == "/sub/path"
    assert e["QUERY_STRING"] == "a=1&b=two"
    assert e["REQUEST_URI"] == "/env/sub/path?a=1&b=two"
    assert e["SERVER_NAME"] == "127.0.0.1"
    assert e["SERVER_PORT"] == str(server.port)
    assert e["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert e["REMOTE_ADDR"] == "127.0.0.1"
    assert e["REMOTE_PORT"] == str(local_port)
    assert e["DOCUMENT_ROOT"] == server.htdocs
    assert e["GATEWAY_INTERFACE"] == "CGI/1.1"
    assert e["REQUEST_SCHEME"] == "http"
    assert "HTTPS" not in e
    # Every CGI variable (no dot in the name) is a native str.
    for k, (typ, _) in d["environ"].items():
        if "." not in k:
            assert typ == "str", (k, typ)
    assert d["environ_is_dict"] is True


def test_http_1_0_protocol(server):
    d, _ = raw_report(server, "/env", http="HTTP/1.0")
    assert d["environ"]["SERVER_PROTOCOL"] == ["str", "HTTP/1.0"]


def test_content_type_and_length(server):
    body = b"x" * 1234
    e = env_of(server, "/env", method="POST", body=body,
               headers={"Content-Type": "application/x-test; charset=latin-1"})
    assert e["CONTENT_TYPE"] == "application/x-test; charset=latin-1"
    assert e["CONTENT_LENGTH"] == "1234"
    assert "HTTP_CONTENT_TYPE" not in e
    assert "HTTP_CONTENT_LENGTH" not in e
    e = env_of(server, "/env")
    # PEP 3333: may be empty or absent when there is no body.
    assert e.get("CONTENT_LENGTH", "") in ("", "0")


def test_http_headers(server):
    d, _ = raw_report(server, "/env", headers=[
        (b"X-Custom-Header", b"custom value"),
        (b"X-Dup", b"first"),
        (b"X-Dup", b"second"),
        (b"Accept-Language", b"en"),
        (b"X-Spoof_Header", b"underscore names are dropped"),
    ])
    e = {k: v[1] for k, v in d["environ"].items()}
    assert e["HTTP_X_CUSTOM_HEADER"] == "custom value"
    assert e["HTTP_X_DUP"] == "first, second"
    assert e["HTTP_ACCEPT_LANGUAGE"] == "en"
    assert e["HTTP_HOST"] == "127.0.0.1:%d" % server.port
    # Apache drops header names with '_' from the CGI variables, so that they
    # cannot pose as another header (X-Spoof-Header); so must we.
    assert "HTTP_X_SPOOF_HEADER" not in e
    assert not [k for k in e if "SPOOF" in k]


def test_latin1_decoding(server):
    d, _ = raw_report(server, "/env/caf%C3%A9/%E9?q=caf%C3%A9&raw=%FF",
                      headers=[(b"X-Latin", b"caf\xe9 \xff\xa0end")])
    e = {k: v[1] for k, v in d["environ"].items()}
    # Header bytes decoded as latin-1, one code point per byte.
    assert e["HTTP_X_LATIN"] == "caf\xe9 \xff\xa0end"
    # Apache decodes %XX in the path; the bytes reach Python as latin-1.
    assert e["PATH_INFO"] == "/caf\xc3\xa9/\xe9"
    assert e["PATH_INFO"].encode("latin-1") == b"/caf\xc3\xa9/\xe9"
    assert e["REQUEST_URI"] == "/env/caf%C3%A9/%E9?q=caf%C3%A9&raw=%FF"
    assert e["QUERY_STRING"] == "q=caf%C3%A9&raw=%FF"


def test_setenv_variables(server):
    e = env_of(server, "/env")
    assert e["WSGI_TEST_SETENV"] == "from-setenv"
    e = env_of(server, "/venv")
    assert e["WSGI_TEST_VALIDATE"] == "1"


@pytest.mark.parametrize("query", ["a=%20b&c=%2F%2f&empty=&&x", "+plus+%2B", "q=%00", ";semi=1"])
def test_query_string_raw(server, query):
    e = env_of(server, "/env?" + query)
    assert e["QUERY_STRING"] == query


@pytest.mark.parametrize("path", ["/env", "/env?"])
def test_query_string_empty(server, path):
    d = report(server, path)
    assert d["environ"]["QUERY_STRING"] == ["str", ""]


def test_wsgi_keys(server):
    d = report(server, "/env")
    e = d["environ"]
    assert e["wsgi.version"] == ["tuple", [1, 0]]
    assert e["wsgi.url_scheme"] == ["str", "http"]
    assert e["wsgi.multithread"] == ["bool", True]
    assert e["wsgi.multiprocess"] == ["bool", False]  # ServerLimit 1
    assert e["wsgi.run_once"] == ["bool", False]
    assert e["wsgi.input_terminated"] == ["bool", True]
    assert "wsgi.input" in e and "wsgi.errors" in e
    assert d["input_methods"] == ["__iter__", "close", "read", "readline", "readlines"]
    assert d["errors_methods"] == ["flush", "write", "writelines"]
    assert d["file_wrapper_callable"] is True


def cargo_version():
    with open(os.path.join(harness.REPO, "Cargo.toml")) as f:
        text = f.read()
    m = re.search(r'^version\s*=\s*"(\d+)\.(\d+)\.(\d+)', text, re.M)
    return [int(x) for x in m.groups()]


def apache_version():
    out = subprocess.run([harness.APACHE_BIN, "-v"], stdout=subprocess.PIPE,
                         env=harness.child_env(), timeout=30).stdout.decode()
    m = re.search(r"Apache/(\d+)\.(\d+)\.(\d+)", out)
    return [int(x) for x in m.groups()]


def test_mod_wsgi_keys(server):
    script = os.path.join(server.scripts, "environ_app.py")
    e = report(server, "/env")["environ"]
    assert e["mod_wsgi.process_group"] == ["str", ""]
    assert e["mod_wsgi.application_group"][0] == "str"
    assert e["mod_wsgi.callable_object"] == ["str", "handle_request"]
    assert e["mod_wsgi.handler_script"] == ["str", script]
    assert e["mod_wsgi.request_handler"] == ["str", "env"]
    assert e["mod_wsgi.script_reloading"] == ["str", "1"]
    assert e["mod_wsgi.version"] == ["tuple", cargo_version()]
    assert e["apache.version"] == ["tuple", apache_version()]

    e = report(server, "/envglobal")["environ"]
    assert e["mod_wsgi.application_group"] == ["str", ""]
    assert e["mod_wsgi.request_handler"] == ["str", "envglobal"]
    e = report(server, "/envnamed")["environ"]
    assert e["mod_wsgi.application_group"] == ["str", "named-group"]
    e = report(server, "/noreload")["environ"]
    assert e["mod_wsgi.script_reloading"] == ["str", "0"]


def test_validator_finds_nothing(server):
    mark = server.log_mark()
    d = report(server, "/venv/x?y=1", headers={"X-A": "b"})
    assert d["environ"]["PATH_INFO"] == ["str", "/x"]
    d = report(server, "/venv", method="POST", body=b"z" * 20000,
               headers={"Content-Type": "application/octet-stream"})
    assert d["body_len"] == 20000
    # HEAD too: the validator checks the same rules for it.
    st, _, body = server.get("/venv", method="HEAD")
    assert st == 200 and body == b""
    log = server.log_since(mark)
    assert not testutil.wsgi_rs_lines(log, "error"), log


def test_https_under_mod_ssl(server):
    ctx = ssl.create_default_context(cafile=os.path.join(TLS_DIR, "test-cert.pem"))
    conn = http.client.HTTPSConnection("127.0.0.1", server.ssl_port, context=ctx, timeout=10)
    try:
        conn.request("GET", "/venv/tls?s=1")
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert resp.status == 200, (resp.status, body[:2000], server.error_log()[-3000:])
    e = {k: v[1] for k, v in json.loads(body)["environ"].items()}
    assert e["wsgi.url_scheme"] == "https"
    assert e["HTTPS"] == "on"
    assert e["REQUEST_SCHEME"] == "https"
    assert e["SERVER_PORT"] == str(server.ssl_port)
    assert e["PATH_INFO"] == "/tls"


def test_remote_user_after_apache_authentication(server):
    st, _, _ = server.get("/auth")
    assert st == 401
    cred = base64.b64encode(b"alice:s3cret").decode()
    e = env_of(server, "/auth/p", headers={"Authorization": "Basic " + cred})
    assert e["REMOTE_USER"] == "alice"
    assert e["AUTH_TYPE"] == "Basic"
    assert e["PATH_INFO"] == "/p"
    # pass-authorization is off by default: the credentials stay out.
    assert "HTTP_AUTHORIZATION" not in e
    st, _, _ = server.get("/auth", headers={"Authorization": "Basic " + base64.b64encode(
        b"alice:wrong").decode()})
    assert st == 401


def test_zz_error_log_clean(server):
    harness.assert_clean_log(server.error_log())
    assert not testutil.wsgi_rs_lines(server.error_log(), "error"), server.error_log()[-3000:]
