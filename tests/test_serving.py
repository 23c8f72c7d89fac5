"""Basic serving through WSGIHandlerScript on every MPM: the WSGI call, the
environ, wsgi.input/wsgi.errors, close(), path mapping, static files."""

import hashlib
import json
import os
import threading
import time

import pytest

import harness

CONFIG = r"""
WSGIHandlerScript info @SCRIPTS@/info.py
WSGIHandlerScript echo @SCRIPTS@/echo.py
WSGIHandlerScript errstream @SCRIPTS@/errors_stream.py
WSGIHandlerScript closing @SCRIPTS@/closing.py
WSGIHandlerScript relative scripts/relative.py
WSGIHandlerScript authon @SCRIPTS@/info.py pass-authorization=On
WSGIHandlerScript authoff @SCRIPTS@/info.py pass-authorization=Off

# The spec's example (without process-group: daemon mode does not exist yet),
# including the line continuation.
WSGIHandlerScript wsgi-resource @SCRIPTS@/resource.wsgi \
    application-group=%{GLOBAL}
AddHandler wsgi-resource .myext

<Location /api>
    SetHandler wsgi-resource
</Location>
<Location /info>
    SetHandler info
</Location>
<Location /echo>
    SetHandler echo
</Location>
<Location /errstream>
    SetHandler errstream
</Location>
<Location /closing>
    SetHandler closing
</Location>
<Location /authon>
    SetHandler authon
</Location>
<Location /authoff>
    SetHandler authoff
</Location>
<Location /relative>
    SetHandler relative
</Location>
<Directory @HTDOCS@/pion>
    AcceptPathInfo On
</Directory>
<Directory @HTDOCS@/pioff>
    AcceptPathInfo Off
</Directory>
"""

MPMS = ["event", "worker", "prefork"]


@pytest.fixture(scope="module", params=MPMS)
def server(request, module_apache_factory):
    a = module_apache_factory(mpm=request.param)
    a.copy_app("info.py")
    a.copy_app("info.py", "resource.wsgi")
    a.copy_app("echo.py")
    a.copy_app("errors_stream.py")
    a.copy_app("closing.py")
    a.copy_app("hello.py", "relative.py")
    a.write("htdocs/index.html", "<h1>index page</h1>\n")
    a.write("htdocs/static.html", "<p>static page</p>\n")
    a.write("htdocs/a.myext", "raw myext file\n")
    a.write("htdocs/pion/b.myext", "raw myext file\n")
    a.write("htdocs/pioff/c.myext", "raw myext file\n")
    a.start(CONFIG)
    yield a
    elapsed = a.stop()
    assert elapsed < 2.0, "stop took %.2fs" % elapsed
    harness.assert_clean_log(a.error_log())


def get_json(a, path, **kw):
    st, hdrs, body = a.get(path, **kw)
    assert st == 200, (st, body[:2000], a.error_log()[-3000:])
    assert hdrs["Content-Type"] == "application/json"
    return json.loads(body)


def test_basic_request(server):
    d = get_json(server, "/info")
    assert d["script"] == "info.py"
    assert d["pid"] != server.pid, "request served in the Apache parent?"
    assert d["ppid"] == server.pid


def test_environ_cgi_variables(server):
    d = get_json(server, "/info/sub/path?a=1&b=two", headers={"X-Test-Header": "hdr-value"})
    e = d["environ"]
    assert e["REQUEST_METHOD"] == "GET"
    assert e["QUERY_STRING"] == "a=1&b=two"
    assert e["SCRIPT_NAME"] + e["PATH_INFO"] == "/info/sub/path"
    assert e["SERVER_NAME"] == "127.0.0.1"
    assert e["SERVER_PORT"] == str(server.port)
    assert e["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert e["REMOTE_ADDR"] == "127.0.0.1"
    assert e["REQUEST_URI"] == "/info/sub/path?a=1&b=two"
    assert e["HTTP_X_TEST_HEADER"] == "hdr-value"
    assert e["HTTP_HOST"] == "127.0.0.1:%d" % server.port


def test_environ_query_string_empty(server):
    e = get_json(server, "/info")["environ"]
    assert e["QUERY_STRING"] == ""
    assert "SCRIPT_NAME" in e and "PATH_INFO" in e


def test_environ_wsgi_keys(server):
    e = get_json(server, "/info")["environ"]
    assert e["wsgi.version"] == [1, 0]
    assert e["wsgi.url_scheme"] == "http"
    assert e["wsgi.run_once"] is False
    assert e["wsgi.multithread"] is (server.mpm in ("event", "worker"))
    # More than one child process is possible with these settings.
    assert e["wsgi.multiprocess"] is True
    assert "wsgi.input" in e and "wsgi.errors" in e


def test_fresh_environ_per_request(server):
    e1 = get_json(server, "/info?first=1", headers={"X-Only-First": "1"})["environ"]
    e2 = get_json(server, "/info?second=1")["environ"]
    assert "HTTP_X_ONLY_FIRST" in e1
    assert "HTTP_X_ONLY_FIRST" not in e2
    assert e2["QUERY_STRING"] == "second=1"


def test_post_body_read(server):
    body = os.urandom(100 * 1024)
    st, hdrs, data = server.post("/echo", body,
                                 headers={"Content-Type": "application/octet-stream"})
    assert st == 200
    assert hdrs["X-Content-Length-Seen"] == str(len(body))
    assert data == body


def test_post_body_read_in_chunks(server):
    body = os.urandom(50 * 1024 + 17)
    st, _, data = server.post("/echo?chunk=1000", body)
    assert st == 200
    assert data == body


def test_post_empty_body(server):
    st, _, data = server.post("/echo", b"")
    assert st == 200
    assert data == b""


def test_wsgi_errors_goes_to_error_log(server):
    marker = "errmark-%s-%d" % (server.mpm, time.time_ns())
    mark = server.log_mark()
    st, _, body = server.get("/errstream?marker=" + marker)
    assert st == 200 and body == b"logged\n"
    server.wait_log("WSGI-ERRORS " + marker, mark)


def test_iterable_close_called(server):
    name = "closed-%d" % time.time_ns()
    st, _, body = server.get("/closing?dir=%s&name=%s" % (server.out, name))
    assert st == 200
    assert body == b"part1-part2-part3\n"
    p = os.path.join(server.out, name)
    deadline = time.monotonic() + 5
    while not os.path.exists(p) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.path.exists(p), "close() of the response iterable was not called"


def test_static_files_still_served(server):
    st, hdrs, body = server.get("/static.html")
    assert st == 200 and body == b"<p>static page</p>\n"
    assert hdrs["Content-Type"].startswith("text/html")
    st, _, body = server.get("/")
    assert st == 200 and body == b"<h1>index page</h1>\n"
    st, _, _ = server.get("/no-such-file.html")
    assert st == 404


def test_spec_example_addhandler(server):
    d = get_json(server, "/a.myext")
    assert d["script"] == "resource.wsgi"
    assert d["application_group"] == ""
    e = d["environ"]
    assert e["SCRIPT_NAME"] == "/a.myext"
    assert e["PATH_INFO"] == ""
    assert e["SCRIPT_FILENAME"] == os.path.join(server.htdocs, "a.myext")


def test_addhandler_path_info_accept_on(server):
    d = get_json(server, "/pion/b.myext/extra/bits?q=1")
    e = d["environ"]
    assert e["SCRIPT_NAME"] == "/pion/b.myext"
    assert e["PATH_INFO"] == "/extra/bits"
    assert e["QUERY_STRING"] == "q=1"


def test_addhandler_path_info_default(server):
    # AcceptPathInfo Default: a handler other than the default one accepts it.
    d = get_json(server, "/a.myext/more")
    e = d["environ"]
    assert e["SCRIPT_NAME"] == "/a.myext"
    assert e["PATH_INFO"] == "/more"


def test_addhandler_path_info_accept_off(server):
    st, _, body = server.get("/pioff/c.myext/extra")
    assert st == 404
    assert b"wsgi-resource" not in body
    # without path info it is served
    d = get_json(server, "/pioff/c.myext")
    assert d["script"] == "resource.wsgi"


def test_sethandler_location_api(server):
    d = get_json(server, "/api/x/y?z=1")
    assert d["script"] == "resource.wsgi"
    e = d["environ"]
    assert e["SCRIPT_NAME"] + e["PATH_INFO"] == "/api/x/y"
    assert e["SCRIPT_NAME"].startswith("/api")
    d = get_json(server, "/api")
    e = d["environ"]
    assert e["SCRIPT_NAME"] + e["PATH_INFO"] == "/api"


AUTH = {"Authorization": "Basic dXNlcjpwYXNz", "Proxy-Authorization": "Basic cHJveHk6cHc="}


def test_pass_authorization_on(server):
    e = get_json(server, "/authon", headers=AUTH)["environ"]
    assert e.get("HTTP_AUTHORIZATION") == "Basic dXNlcjpwYXNz"
    assert "HTTP_PROXY_AUTHORIZATION" not in e


@pytest.mark.parametrize("path", ["/authoff", "/info"])
def test_pass_authorization_off_and_default(server, path):
    e = get_json(server, path, headers=AUTH)["environ"]
    assert "HTTP_AUTHORIZATION" not in e
    assert "HTTP_PROXY_AUTHORIZATION" not in e


def test_relative_script_path_resolves_against_serverroot(server):
    st, _, body = server.get("/relative")
    assert st == 200, (st, body, server.error_log()[-2000:])
    assert body == b"hello from relative.py\n"


def test_script_module_name_and_file(server):
    d = get_json(server, "/info")
    path = os.path.join(server.scripts, "info.py")
    assert d["file"] == path
    assert d["name"] == "_mod_wsgi_" + hashlib.md5(path.encode()).hexdigest()


def test_concurrent_requests(server):
    results = []
    lock = threading.Lock()

    def worker(i):
        try:
            st, _, body = server.get("/info?sleep=0.2&n=%d" % i)
            r = (st, json.loads(body)["environ"]["QUERY_STRING"] if st == 200 else body)
        except Exception as e:  # report, don't hang
            r = (None, repr(e))
        with lock:
            results.append((i, r))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 16
    for i, (st, qs) in results:
        assert st == 200, (i, qs)
        assert qs == "sleep=0.2&n=%d" % i


def test_zz_error_log_clean(server):
    harness.assert_clean_log(server.error_log())
