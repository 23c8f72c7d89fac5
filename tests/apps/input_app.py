# Exercises wsgi.input as the query string says and reports, as JSON, the
# pieces each call returned (latin-1 text) so the test can compare them with
# what io.BytesIO gives for the same calls.  WSGI_TEST_VALIDATE=1 (SetEnv)
# runs it under wsgiref.validate.validator with warnings as errors (the
# validator's input wrapper wants read() with exactly one argument).
import hashlib
import json
import os
import time
import urllib.parse
import warnings
from wsgiref.validate import validator

warnings.simplefilter("error")

LOOP = 1000000  # bound on every read loop


def run_op(inp, op, n):
    """The same function runs in the test against io.BytesIO (see OPS there)."""
    out = []
    if op == "read":
        out.append(inp.read())
        out.append(inp.read())
    elif op == "read_none":
        out.append(inp.read(None))
    elif op == "read_minus1":
        out.append(inp.read(-1))
    elif op == "readn":
        for _ in range(LOOP):
            b = inp.read(n)
            out.append(b)
            if not b:
                break
    elif op == "read_zero":
        out.append(inp.read(0))
        out.append(inp.read(3))
        out.append(inp.read(0))
    elif op == "readline":
        for _ in range(LOOP):
            b = inp.readline()
            out.append(b)
            if not b:
                break
    elif op == "readline_limit":
        for _ in range(LOOP):
            b = inp.readline(n)
            out.append(b)
            if not b:
                break
    elif op == "readlines":
        out.extend(inp.readlines())
        out.append(b"|")
        out.extend(inp.readlines())
    elif op == "iter":
        for line in inp:
            out.append(line)
    elif op == "mixed":
        out.append(inp.readline())
        out.append(inp.read(5))
        out.append(inp.readline(4))
        out.extend(inp.readlines())
        out.append(inp.read(10))
        out.append(inp.readline())
    elif op == "past_end":
        out.append(inp.read(n + 1000000))
        out.append(inp.read(10))
        out.append(inp.readline())
        out.append(inp.read())
    else:
        raise ValueError(op)
    return out


def app(environ, start_response):
    q = urllib.parse.parse_qs(environ["QUERY_STRING"])
    op = q.get("op", ["read"])[0]
    n = int(q.get("n", ["0"])[0])
    inp = environ["wsgi.input"]
    t0 = time.monotonic()
    if op == "write_then_read":
        # Streaming echo: the response starts before the body is read.
        write = start_response("200 OK", [("Content-Type", "application/octet-stream")])
        write(b"start;")
        for _ in range(LOOP):
            b = inp.read(4096)
            if not b:
                break
            write(b)
        return [b";end"]
    if op == "read_catch":
        # The client goes away in the middle of the body: reading must fail
        # (not look like the end of a complete body).
        total = 0
        outcome = "eof"
        try:
            for _ in range(LOOP):
                b = inp.read(8192)
                if not b:
                    break
                total += len(b)
        except Exception as e:
            outcome = "%s: %s" % (type(e).__name__, isinstance(e, OSError))
        path = os.path.join(environ["WSGI_TEST_OUT"], q["tag"][0])
        with open(path + ".tmp", "w") as f:
            json.dump({"outcome": outcome, "total": total}, f)
        os.rename(path + ".tmp", path)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done"]
    if op == "noread":
        result = {}
    elif op == "sha":
        h = hashlib.sha256()
        total = 0
        for _ in range(LOOP):
            b = inp.read(65536)
            if not b:
                break
            h.update(b)
            total += len(b)
        result = {"sha256": h.hexdigest(), "len": total}
    elif op == "readlines_hint":
        # Each call returns whole lines; the hint may be honoured or not.
        calls = []
        for _ in range(LOOP):
            lines = inp.readlines(n)
            if not lines:
                break
            calls.append([x.decode("latin-1") for x in lines])
        result = {"calls": calls}
    elif op == "close":
        first = inp.read(4)
        inp.close()
        result = {"pieces": [first.decode("latin-1")]}
    else:
        pieces = run_op(inp, op, n)
        result = {"pieces": [p.decode("latin-1") for p in pieces],
                  "types": sorted({type(p).__name__ for p in pieces})}
    result["seconds"] = time.monotonic() - t0
    result["pid"] = os.getpid()
    result["content_length"] = environ.get("CONTENT_LENGTH")
    result["input_terminated"] = environ.get("wsgi.input_terminated")
    body = json.dumps(result).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


_validated = validator(app)


def handle_request(environ, start_response):
    if environ.get("WSGI_TEST_VALIDATE") == "1":
        return _validated(environ, start_response)
    return app(environ, start_response)
