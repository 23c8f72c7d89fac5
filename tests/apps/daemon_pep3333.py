# PEP 3333 behaviours for the embedded-vs-daemon comparison suite
# (tests/test_daemon_pep3333.py): one case per ?case=NAME.  Markers (close()
# calls) go to <WSGI_TEST_OUT>/<tag>.close.
import json
import os
import sys
import urllib.parse

BAD_STATUS = [b"200 OK", 200, None, "200", "200OK", "2000 OK", "abc OK",
              "200 OK\r\nX-Injected: 1", "200 \u0100"]

BAD_HEADERS = [
    (("Content-Type", "text/plain"),),       # tuple, not list
    [["Content-Type", "text/plain"]],        # list item, not tuple
    [("Content-Type", "text/plain", "x")],
    [(b"Content-Type", "text/plain")],
    [("X-Int", 1)],
    [("Bad Name", "x")],
    [("X-Split", "a\r\nX-Injected: 1")],
    [("X-Wide", "\u263a")],
    [("Connection", "close")],
    [("Transfer-Encoding", "chunked")],
    [("Content-Length", "abc")],
]

TEXT = [("Content-Type", "text/plain")]


def _jsonable(v):
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    return repr(v)


def _json(start_response, data, status="200 OK"):
    body = json.dumps(data).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
    return [body]


def _exc(e):
    return [type(e).__name__, str(e)]


class Closing:
    def __init__(self, environ, items, tag):
        self.items = items
        self.path = os.path.join(environ["WSGI_TEST_OUT"], tag + ".close")

    def __iter__(self):
        return iter(self.items)

    def close(self):
        with open(self.path, "a") as f:
            f.write("closed\n")


def handle_request(environ, start_response):
    q = {k: v[0] for k, v in urllib.parse.parse_qs(environ.get("QUERY_STRING", "")).items()}
    case = q.get("case", "environ")
    inp = environ["wsgi.input"]

    if case == "environ":
        return _json(start_response, {k: [type(v).__name__, _jsonable(v)] for k, v in environ.items()})

    if case == "input_ops":
        out = []
        out.append(inp.read(3))
        out.append(inp.readline())
        out.append(inp.readline(4))
        out.append(inp.readline(-1))
        out.append(inp.read(0))
        out.extend(inp.readlines())
        out.append(inp.read())
        out.append(inp.read(10))
        out.append(inp.readline())
        return _json(start_response, [x.decode("latin-1") for x in out])

    if case == "input_iter":
        return _json(start_response, [x.decode("latin-1") for x in inp])

    if case == "input_read_all":
        data = inp.read(-1) if q.get("neg") else inp.read()
        return _json(start_response, {"len": len(data), "head": data[:20].decode("latin-1"),
                                      "again": len(inp.read())})

    if case == "read_report":
        # reads the body; what happened goes to <WSGI_TEST_OUT>/<tag>.read
        try:
            n = len(inp.read())
            what = "ok %d" % n
        except Exception as e:
            what = "%s: %s" % (type(e).__name__, e)
        with open(os.path.join(environ["WSGI_TEST_OUT"], q["tag"] + ".read"), "w") as f:
            f.write(what)
        start_response("200 OK", list(TEXT))
        return [what.encode()]

    if case == "echo":
        data = inp.read()
        start_response("200 OK", TEXT + [("Content-Length", str(len(data)))])
        return [data]

    if case == "bad_status":
        try:
            start_response(BAD_STATUS[int(q["i"])], list(TEXT))
            raised = None
        except Exception as e:
            raised = _exc(e)
        return _json(start_response, {"raised": raised})

    if case == "bad_headers":
        try:
            start_response("200 OK", BAD_HEADERS[int(q["i"])])
            raised = None
        except Exception as e:
            raised = _exc(e)
        return _json(start_response, {"raised": raised})

    if case == "twice":
        start_response("200 OK", list(TEXT))
        try:
            start_response("201 Created", list(TEXT))
            raised = None
        except Exception as e:
            raised = _exc(e)
        body = json.dumps({"raised": raised}).encode()
        return [body]

    if case == "exc_info_before":
        start_response("200 OK", list(TEXT))
        try:
            raise ValueError("replaced")
        except ValueError:
            start_response("503 Replaced", [("Content-Type", "text/plain"),
                                            ("X-Replaced", "yes")], sys.exc_info())
        return [b"replaced body"]

    if case == "exc_info_after":
        write = start_response("200 OK", list(TEXT))
        write(b"already sent")
        try:
            raise ValueError("too-late-" + q.get("tag", ""))
        except ValueError:
            start_response("500 Oops", list(TEXT), sys.exc_info())  # re-raises
        return [b"not reached"]

    if case == "write":
        write = start_response("200 OK", list(TEXT))
        write(b"a")
        write(b"")
        write(b"bc")
        return [b"d", b"", b"ef"]

    if case == "write_str":
        write = start_response("200 OK", list(TEXT))
        try:
            write("not bytes")
            raised = None
        except Exception as e:
            raised = _exc(e)
        return [json.dumps({"raised": raised}).encode()]

    if case == "str_item":
        start_response("200 OK", list(TEXT))
        return ["not bytes"]

    if case == "cl_short":
        start_response("200 OK", TEXT + [("Content-Length", "100")])
        return [b"0123456789"]

    if case == "cl_long":
        start_response("200 OK", TEXT + [("Content-Length", "5")])
        return [b"0123456789", b"abc"]

    if case == "one_item":
        start_response("200 OK", list(TEXT))
        return [b"exactly one item"]

    if case == "generator":
        start_response("200 OK", list(TEXT))
        return (b"%d," % i for i in range(int(q.get("n", "100"))))

    if case == "empty":
        start_response("200 OK", list(TEXT))
        return []

    if case == "status":
        start_response(q.get("s", "299 Custom Reason"), list(TEXT))
        return [b""] if q.get("s", "").startswith(("204", "304")) else [b"status body"]

    if case == "headers":
        start_response("200 OK", TEXT + [("Set-Cookie", "a=1"), ("X-Multi", "one"),
                                         ("Set-Cookie", "b=2"), ("X-Multi", "two"),
                                         ("X-Latin1", "caf\u00e9"), ("x-lower-case", "v")])
        return [b"h"]

    if case == "close":
        start_response("200 OK", list(TEXT))
        return Closing(environ, [b"one", b"two"], q["tag"])

    if case == "close_stream":
        import time
        start_response("200 OK", list(TEXT))

        def stream():
            for i in range(400):
                yield b"s" * 65536
                time.sleep(0.005)
        return Closing(environ, stream(), q["tag"])

    if case == "close_error":
        start_response("200 OK", list(TEXT))

        class Failing(Closing):
            def __iter__(self):
                yield b"first"
                raise RuntimeError("iter-fails-" + q["tag"])
        return Failing(environ, [], q["tag"])

    if case == "errors":
        environ["wsgi.errors"].write("wsgi-errors-line %s\n" % q["tag"])
        environ["wsgi.errors"].flush()
        print("stderr-line %s" % q["tag"], file=sys.stderr, flush=True)
        print("stdout-line %s" % q["tag"], flush=True)
        return _json(start_response, {"ok": True})

    if case == "file_wrapper":
        f = open(q["path"], "rb")
        headers = list(TEXT)
        if q.get("cl"):
            headers.append(("Content-Length", q["cl"]))
        start_response("200 OK", headers)
        return environ["wsgi.file_wrapper"](f, 8192)

    if case == "file_wrapper_filelike":
        import io
        start_response("200 OK", list(TEXT))
        return environ["wsgi.file_wrapper"](io.BytesIO(b"filelike-" * 1000), 777)

    start_response("404 Not Found", list(TEXT))
    return [b"unknown case"]

