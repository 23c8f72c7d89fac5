"""Real Flask and Django applications, installed from the package index into
a virtualenv that WSGIPythonHome points at, served unchanged (Flask:
``handle_request = app``; Django: ``get_wsgi_application()``), plain and
under wsgiref.validate.validator: routing, query strings, form POST, JSON,
multipart file upload, cookies, redirects, 404 and 500 pages."""

import hashlib
import http.client
import json
import os
import re
import shutil
import urllib.parse
import uuid

import pytest

import harness
import testutil
import venvcache

FW_APPS = os.path.join(harness.APPS, "frameworks")

CONFIG = r"""
WSGIPythonHome @VENV@
WSGIPythonPath @ROOT@/fwapps
WSGIHandlerScript flask @ROOT@/fwapps/flask.wsgi application-group=%{GLOBAL}
WSGIHandlerScript flaskv @ROOT@/fwapps/flask_validated.wsgi application-group=flaskv
WSGIHandlerScript django @ROOT@/fwapps/django.wsgi application-group=django
WSGIHandlerScript djangov @ROOT@/fwapps/django_validated.wsgi application-group=djangov
<Location /flask>
    SetHandler flask
</Location>
<Location /vflask>
    SetHandler flaskv
</Location>
<Location /django>
    SetHandler django
</Location>
<Location /vdjango>
    SetHandler djangov
</Location>
"""

MOUNTS = ["flask", "vflask", "django", "vdjango"]
# Werkzeug reads a urlencoded or JSON body with wsgi.input.read() and no size
# when wsgi.input_terminated is True (PEP 3333 lets a server offer that);
# wsgiref's validator insists on read(size) and fails such requests by
# itself.  Multipart uploads (read(size)) and Django's bodies do run under
# the validator.
BODY_MOUNTS = ["flask", "django", "vdjango"]


def framework(mount):
    return "flask" if "flask" in mount else "django"




@pytest.fixture(scope="module")
def venv():
    try:
        return venvcache.ensure_venv()
    except venvcache.VenvError as e:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("cannot build the Flask/Django virtualenv in CI: %s" % e)
        pytest.skip("cannot build the Flask/Django virtualenv (package index "
                    "unreachable?): %s" % e)


@pytest.fixture(scope="module")
def server(module_apache_factory, venv):
    a = module_apache_factory(mpm="event")
    shutil.copytree(FW_APPS, a.path("fwapps"))
    for dirpath, dirnames, filenames in os.walk(a.path("fwapps")):
        os.chmod(dirpath, 0o755)
        for n in filenames:
            os.chmod(os.path.join(dirpath, n), 0o644)
    a.start(CONFIG.replace("@VENV@", venv))
    yield a
    a.stop()
    harness.assert_clean_log(a.error_log())


def req(a, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=20)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, resp.msg, data
    finally:
        conn.close()


def ok_json(a, method, path, body=None, headers=None, status=200):
    st, hdrs, data = req(a, method, path, body, headers)
    assert st == status, (method, path, st, data[:3000], a.error_log()[-4000:])
    assert hdrs["Content-Type"].startswith("application/json"), hdrs["Content-Type"]
    return json.loads(data)


@pytest.mark.parametrize("mount", MOUNTS)
def test_index_and_routing(server, mount):
    st, hdrs, body = req(server, "GET", "/%s/" % mount)
    assert (st, body) == (200, ("%s index" % framework(mount)).encode()), body[:2000]
    assert hdrs["Content-Type"].startswith("text/html")
    # A UTF-8 path segment: PATH_INFO carries it as latin-1 text, the
    # framework turns it back into bytes and decodes UTF-8.
    st, _, body = req(server, "GET", "/%s/hello/w%%C3%%B6rld" % mount)
    assert (st, body.decode("utf-8")) == (200, "hello w\u00f6rld")


@pytest.mark.parametrize("mount", MOUNTS)
def test_query_string(server, mount):
    d = ok_json(server, "GET", "/%s/query?a=1&a=2&b=%%C3%%A9+x&c=%%26%%3D&empty=" % mount)
    assert d == {"a": ["1", "2"], "b": ["\u00e9 x"], "c": ["&="], "empty": [""]}


def _csrf(a, mount):
    """Django: a CSRF token and its cookie, as a browser gets them."""
    st, hdrs, data = req(a, "GET", "/%s/csrf" % mount)
    assert st == 200, data[:2000]
    token = json.loads(data)["token"]
    cookies = [c.split(";")[0] for c in hdrs.get_all("Set-Cookie")]
    assert any(c.startswith("csrftoken=") for c in cookies), cookies
    return token, "; ".join(cookies)


@pytest.mark.parametrize("mount", BODY_MOUNTS)
def test_form_post(server, mount):
    fields = [("name", "Z\u00fcrich"), ("tags", "a"), ("tags", "b & c"), ("empty", "")]
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if framework(mount) == "django":
        # Without the token, Django's CSRF protection refuses the POST.
        st, _, _ = req(server, "POST", "/%s/form" % mount,
                       urllib.parse.urlencode(fields), headers)
        assert st == 403
        token, cookie = _csrf(server, mount)
        fields.append(("csrfmiddlewaretoken", token))
        headers["Cookie"] = cookie
    d = ok_json(server, "POST", "/%s/form" % mount, urllib.parse.urlencode(fields), headers)
    d.pop("csrfmiddlewaretoken", None)
    assert d == {"name": ["Z\u00fcrich"], "tags": ["a", "b & c"], "empty": [""]}


@pytest.mark.parametrize("mount", BODY_MOUNTS)
def test_json_post(server, mount):
    payload = {"n": 1, "list": [1, 2, 3], "text": "\u263a", "nested": {"ok": True}}
    d = ok_json(server, "POST", "/%s/json" % mount, json.dumps(payload).encode(),
                {"Content-Type": "application/json"}, status=201)
    assert d == {"received": payload, "type": "dict"}


def multipart(fields, files):
    boundary = "wsgirs-" + uuid.uuid4().hex
    out = b""
    for name, value in fields:
        out += ("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n"
                % (boundary, name, value)).encode()
    for name, filename, data in files:
        out += ("--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n"
                % (boundary, name, filename)).encode() + data + b"\r\n"
    out += ("--%s--\r\n" % boundary).encode()
    return out, "multipart/form-data; boundary=" + boundary


@pytest.mark.parametrize("mount", MOUNTS)
def test_file_upload(server, mount):
    data = os.urandom(3 * 1024 * 1024 + 17)
    body, ctype = multipart([("note", "a note")], [("file", "blob.bin", data)])
    d = ok_json(server, "POST", "/%s/upload" % mount, body, {"Content-Type": ctype})
    assert d["filename"] == "blob.bin"
    assert d["size"] == len(data)
    assert d["sha256"] == hashlib.sha256(data).hexdigest()
    assert d["note"] == "a note"
    if framework(mount) == "django":
        # Bigger than FILE_UPLOAD_MAX_MEMORY_SIZE: streamed to a temporary file.
        assert d["handler"] == "TemporaryUploadedFile"


@pytest.mark.parametrize("mount", MOUNTS)
def test_cookies(server, mount):
    fw = framework(mount)
    st, hdrs, body = req(server, "GET", "/%s/setcookie" % mount)
    assert (st, body) == (200, b"cookies set")
    set_cookies = hdrs.get_all("Set-Cookie")
    assert len(set_cookies) == 2, set_cookies  # two headers, not merged into one
    names = sorted(c.split("=", 1)[0] for c in set_cookies)
    assert names == ["%s_a" % fw, "%s_b" % fw]
    assert any("HttpOnly" in c for c in set_cookies if c.startswith("%s_b=" % fw))
    cookie = "; ".join(c.split(";")[0] for c in set_cookies)
    d = ok_json(server, "GET", "/%s/getcookie" % mount, headers={"Cookie": cookie})
    assert d["%s_a" % fw] == "1"
    assert d["%s_b" % fw] == ("two words" if fw == "flask" else "two")


@pytest.mark.parametrize("mount", MOUNTS)
def test_redirect(server, mount):
    st, hdrs, _ = req(server, "GET", "/%s/redirect" % mount)
    assert st == 302
    location = hdrs["Location"]
    # The framework builds the URL from SCRIPT_NAME: the mount point is kept.
    assert re.fullmatch(r"(http://127\.0\.0\.1:%d)?/%s/target" % (server.port, mount),
                        location), location
    st, _, body = req(server, "GET", urllib.parse.urlsplit(location).path)
    assert (st, body) == (200, b"target reached")


@pytest.mark.parametrize("mount", MOUNTS)
def test_urls_from_script_name(server, mount):
    d = ok_json(server, "GET", "/%s/urls" % mount)
    base = "http://127.0.0.1:%d" % server.port
    if framework(mount) == "flask":
        assert d["script_root"] == "/" + mount
        assert d["path"] == "/urls"
        assert d["target"] == "/%s/target" % mount
        assert d["external"] == "%s/%s/target" % (base, mount)
        assert d["url"] == "%s/%s/urls" % (base, mount)
    else:
        assert d["path"] == "/%s/urls" % mount
        assert d["path_info"] == "/urls"
        assert d["target"] == "/%s/target" % mount
        assert d["absolute"] == "%s/%s/target" % (base, mount)


@pytest.mark.parametrize("mount", MOUNTS)
def test_not_found_page(server, mount):
    st, hdrs, body = req(server, "GET", "/%s/no/such/page" % mount)
    assert st == 404
    assert b"Not Found" in body
    assert hdrs["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("mount", MOUNTS)
def test_server_error_page(server, mount):
    mark = server.log_mark()
    st, hdrs, body = req(server, "GET", "/%s/boom" % mount)
    assert st == 500
    assert hdrs["Content-Type"].startswith("text/html")
    if framework(mount) == "flask":
        assert b"Internal Server Error" in body
        # Flask logs the exception to wsgi.errors, i.e. Apache's error log.
        log = server.wait_log("RuntimeError: flask boom", mark)
        assert "Exception on /boom [GET]" in log
    else:
        assert b"Server Error (500)" in body
    # The framework handled it: no traceback from the module itself.
    assert "Exception occurred processing WSGI script" not in server.log_since(mark)


@pytest.mark.parametrize("mount", MOUNTS)
def test_head_and_keep_alive(server, mount):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    try:
        for k in range(3):
            conn.request("HEAD", "/%s/" % mount)
            resp = conn.getresponse()
            assert resp.status == 200 and resp.read() == b""
            conn.request("GET", "/%s/hello/n%d" % (mount, k))
            resp = conn.getresponse()
            assert (resp.status, resp.read()) == (200, b"hello n%d" % k)
    finally:
        conn.close()


def test_validator_found_nothing(server):
    """After every test above ran against /vflask and /vdjango, the log has no
    validator complaint (AssertionError / WSGIWarning) and no module error
    other than Flask's own report of the deliberate /boom exception."""
    log = server.error_log()
    assert "AssertionError" not in log and "WSGIWarning" not in log, log[-4000:]
    errors = [line for line in testutil.wsgi_rs_lines(log, "error")
              if "boom" not in line.lower()]
    # Flask's multi-line traceback for /boom: every line is part of it.
    unexplained = [line for line in errors if "Exception occurred processing" in line]
    assert not unexplained, "\n".join(unexplained)


def test_zz_error_log_clean(server):
    harness.assert_clean_log(server.error_log())
