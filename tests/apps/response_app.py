# start_response / write / response iterable behaviour, one case per
# ?case=NAME.  close() of the returned iterables appends a line to
# <WSGI_TEST_OUT>/<tag>.close so the test can count the calls.  Cases listed
# in VALIDATED also run under wsgiref.validate.validator (warnings as errors)
# when WSGI_TEST_VALIDATE=1 (SetEnv).
import json
import os
import sys
import time
import urllib.parse
import warnings
from wsgiref.validate import validator

warnings.simplefilter("error")

TEXT = [("Content-Type", "text/plain")]

BAD_STATUS = [b"200 OK", 200, None, "200", "200OK", "20 OK", "2000 OK", "abc OK",
              "200 OK\r\nX-Injected: 1", "200 OK\n", "200 \u0100", "099 Too Low", " 200 OK",
              "200\tOK"]

BAD_HEADERS = [
    (("Content-Type", "text/plain"),),       # tuple, not list
    [["Content-Type", "text/plain"]],        # list item, not tuple
    [("Content-Type", "text/plain", "x")],   # 3-tuple
    [("Content-Type",)],                     # 1-tuple
    [(b"Content-Type", "text/plain")],       # bytes name
    [("Content-Type", b"text/plain")],       # bytes value
    [("X-Int", 1)],                          # int value
    [("Bad Name", "x")],
    [("Bad:Name", "x")],
    [("", "x")],
    [("X-\u00c4", "x")],                     # non-token (latin-1) name
    [("X-Split", "a\r\nX-Injected: 1")],
    [("X-Lf", "a\nb")],
    [("X-Cr", "a\rb")],
    [("X-Nul", "a\x00b")],
    [("X-Wide", "\u263a")],                  # not latin-1
    [("Connection", "close")],
    [("Keep-Alive", "timeout=5")],
    [("Transfer-Encoding", "chunked")],
    [("TE", "trailers")],
    [("Trailer", "X-T")],
    [("Upgrade", "h2c")],
    [("Proxy-Authenticate", "Basic")],
    [("Proxy-Authorization", "Basic eDp5")],
    [("transfer-encoding", "chunked")],      # case-insensitive
    [("Content-Length", "abc")],
    [("Content-Length", "-1")],
    [("Content-Length", "")],
    [("Content-Length", "1.5")],
    [("Content-Length", " 5")],
]


class Closing:
    """An iterable whose close() is recorded (and whose items are pulled lazily)."""

    def __init__(self, environ, items, fail_at=None, limit=None):
        self.path = os.path.join(environ["WSGI_TEST_OUT"],
                                 _q(environ).get("tag", ["notag"])[0] + ".close")
        self.items = items
        self.fail_at = fail_at
        self.pulled = 0

    def __iter__(self):
        for i, item in enumerate(self.items):
            if i == self.fail_at:
                raise ValueError("failure in iteration at item %d" % i)
            self.pulled += 1
            yield item

    def close(self):
        with open(self.path, "a") as f:
            f.write("closed pulled=%d\n" % self.pulled)


def _q(environ):
    return urllib.parse.parse_qs(environ["QUERY_STRING"], keep_blank_values=True)


def _report(start_response, data):
    body = json.dumps(data).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


def _exc(e):
    return [type(e).__name__, str(e)]


def app(environ, start_response):
    q = _q(environ)
    case = q["case"][0]
    i = int(q.get("i", ["0"])[0])

    # ------------------------------------------------ start_response rules
    if case == "bad_status":
        try:
            start_response(BAD_STATUS[i], TEXT)
        except Exception as e:
            return _report(start_response, {"raised": _exc(e)})
        return _report(start_response, {"raised": None})
    if case == "bad_headers":
        try:
            start_response("200 OK", BAD_HEADERS[i])
        except Exception as e:
            return _report(start_response, {"raised": _exc(e)})
        return _report(start_response, {"raised": None})
    if case == "bad_status_uncaught":
        start_response("200", TEXT)
        return [b"not reached"]
    if case == "bad_header_uncaught":
        start_response("200 OK", [("Connection", "close")])
        return [b"not reached"]
    if case == "reason":
        start_response("299 Custom Reason Phrase", TEXT)
        return [b"reason"]
    if case == "latin1_header":
        start_response("200 \u00d6K", [("Content-Type", "text/plain"),
                                        ("X-Latin", "caf\u00e9 \u00ff"),
                                        ("X-Tab", "a\tb")])
        return [b"latin"]
    if case == "second_call":
        start_response("200 OK", TEXT)
        try:
            start_response("201 Created", TEXT)
        except Exception as e:
            return [json.dumps({"raised": _exc(e)}).encode()]
        return [b'{"raised": null}']
    if case == "exc_info_before_head":
        start_response("200 OK", TEXT + [("X-First", "1")])
        try:
            raise ValueError("replace me")
        except ValueError:
            start_response("503 Service Unavailable",
                           [("Content-Type", "text/plain"), ("X-Second", "2")], sys.exc_info())
        return [b"replaced"]
    if case == "exc_info_after_empty_chunk":
        # An empty first item sends nothing, so the head may still be replaced.
        def gen():
            start_response("200 OK", TEXT + [("X-First", "1")])
            yield b""
            try:
                raise ValueError("late replace")
            except ValueError:
                start_response("503 Service Unavailable",
                               [("Content-Type", "text/plain"), ("X-Second", "2")],
                               sys.exc_info())
            yield b"replaced after empty chunk"
        return gen()
    if case == "exc_info_after_head":
        write = start_response("200 OK", TEXT)
        write(b"head-sent;")
        try:
            raise KeyError("original")
        except KeyError:
            info = sys.exc_info()
        try:
            start_response("500 Internal Server Error", TEXT, info)
        except BaseException as e:
            same = e is info[1]
            return [b"reraised-same=%d" % same]
        return [b"not re-raised"]
    if case == "exc_info_after_head_uncaught":
        write = start_response("200 OK", TEXT)
        write(b"head-sent;")
        try:
            raise KeyError("original-uncaught")
        except KeyError:
            start_response("500 Internal Server Error", TEXT, sys.exc_info())
        return [b"not reached"]
    if case == "exc_info_none":
        # exc_info=None counts as no exc_info.
        start_response("200 OK", TEXT, None)
        return [b"exc_info None ok"]

    # ----------------------------------------------------------- write()
    if case == "write_mix":
        write = start_response("200 OK", TEXT)
        write(b"a")
        write(b"")
        write(b"b")
        return Closing(environ, [b"c", b"", b"d"])
    if case == "write_only":
        write = start_response("200 OK", TEXT)
        for k in range(100):
            write(b"%03d\n" % k)
        return []
    if case == "write_non_bytes":
        write = start_response("200 OK", TEXT)
        out = {}
        for name, value in (("str", "text"), ("int", 1), ("none", None)):
            try:
                write(value)
                out[name] = None
            except Exception as e:
                out[name] = _exc(e)
        return [json.dumps(out).encode()]

    # ------------------------------------------- iterable / start_response order
    if case == "gen_start_inside":
        def gen():
            start_response("200 OK", TEXT + [("X-From", "generator")])
            yield b"started inside"
        return gen()
    if case == "gen_before_start":
        def gen():
            yield b"body before start_response"
            start_response("200 OK", TEXT)
        return gen()
    if case == "no_start_response":
        return Closing(environ, [])
    if case == "empty_list":
        start_response("200 OK", TEXT)
        return []
    if case == "yield_str_first":
        start_response("200 OK", TEXT)
        return Closing(environ, ["a str"])
    if case == "yield_int_first":
        start_response("200 OK", TEXT)
        return [42]
    if case == "yield_str_later":
        start_response("200 OK", TEXT)
        return Closing(environ, [b"good bytes;", "then a str"])
    if case == "yield_str_later_cl":
        start_response("200 OK", TEXT + [("Content-Length", "100")])
        return Closing(environ, [b"12345", "x"])
    if case == "raise_first":
        start_response("200 OK", TEXT)
        return Closing(environ, [b"never"], fail_at=0)
    if case == "raise_later":
        start_response("200 OK", TEXT)
        return Closing(environ, [b"first;", b"second;", b"never"], fail_at=2)
    if case == "raise_in_app":
        start_response("200 OK", TEXT)
        raise RuntimeError("raised by the application itself")
    if case == "success":
        start_response("200 OK", TEXT)
        return Closing(environ, [b"one;", b"two;", b"three"])

    # ------------------------------------------------------ Content-Length
    if case == "cl_short":
        start_response("200 OK", TEXT + [("Content-Length", "100")])
        return Closing(environ, [b"x" * 40])
    if case == "cl_long":
        start_response("200 OK", TEXT + [("Content-Length", "10")])
        return Closing(environ, [b"0123456789", b"abcdefghij", b"klmnop"])
    if case == "cl_exact_parts":
        start_response("200 OK", TEXT + [("Content-Length", "9")])
        return [b"abc", b"def", b"ghi"]
    if case == "one_list":
        start_response("200 OK", TEXT)
        return [b"one element"]
    if case == "one_tuple":
        start_response("200 OK", TEXT)
        return (b"one tuple element",)
    if case == "two_list":
        start_response("200 OK", TEXT)
        return [b"two ", b"elements"]
    if case == "one_gen":
        start_response("200 OK", TEXT)
        return (x for x in [b"one generated element"])
    if case == "status_no_body":
        code = q["code"][0]
        start_response({"204": "204 No Content", "304": "304 Not Modified"}[code], [])
        return [b""]

    # --------------------------------------------------------------- HEAD
    if case == "head_probe":
        with open(os.path.join(environ["WSGI_TEST_OUT"], q["tag"][0] + ".ran"), "a") as f:
            f.write("%s\n" % environ["REQUEST_METHOD"])
        body = b"a body of known length\n" * 3
        write = start_response("200 OK", TEXT + [("X-Method", environ["REQUEST_METHOD"])])
        if q.get("style") == ["gen"]:
            return Closing(environ, [body[:10], body[10:]])
        if q.get("style") == ["write"]:
            write(body[:5])
            return [body[5:]]
        return [body]

    # --------------------------------------------------- client disconnect
    if case == "disconnect_write":
        out = os.path.join(environ["WSGI_TEST_OUT"], q["tag"][0])
        write = start_response("200 OK", TEXT)
        chunk = b"w" * 65536
        info = {"writes": 0, "raised": None}
        try:
            for _ in range(4000):  # 256 MB at most
                write(chunk)
                info["writes"] += 1
        except Exception as e:
            info["raised"] = [type(e).__module__, type(e).__name__, isinstance(e, OSError),
                              [c.__name__ for c in type(e).__mro__]]
        with open(out + ".result", "w") as f:
            json.dump(info, f)
        return Closing(environ, [])
    if case == "disconnect_write_uncaught":
        write = start_response("200 OK", TEXT)
        for _ in range(4000):
            write(b"u" * 65536)
        return Closing(environ, [])
    if case == "disconnect_iter":
        start_response("200 OK", TEXT)
        return Closing(environ, [b"i" * 65536] * 4000)

    raise ValueError("unknown case %r" % case)


VALIDATED = {"write_mix", "write_only", "gen_start_inside", "exc_info_before_head",
             "success", "one_list", "two_list", "one_gen", "cl_exact_parts", "empty_list",
             "status_no_body", "reason", "exc_info_after_empty_chunk"}

_validated = validator(app)


def handle_request(environ, start_response):
    if environ.get("WSGI_TEST_VALIDATE") == "1":
        case = _q(environ)["case"][0]
        if case not in VALIDATED:
            raise ValueError("case %r is not validator-clean" % case)
        return _validated(environ, start_response)
    return app(environ, start_response)
