# Large bodies: ?op=up hashes wsgi.input while streaming it in 64 KiB reads;
# ?op=down&size=N&seed=S generates N bytes (block i is sha256(S-i) repeated)
# from a generator, or with write() (&via=write), or sends a file through
# wsgi.file_wrapper (?op=file&path=P).  Every answer of op=up/op=mem reports
# the process's pid and memory figures.  WSGI_TEST_VALIDATE=1 (SetEnv) runs
# it under wsgiref.validate.validator with warnings as errors.
import hashlib
import json
import os
import urllib.parse
import warnings
from wsgiref.validate import validator

warnings.simplefilter("error")

BLOCK = 65536


def block(seed, i):
    return hashlib.sha256(b"%s-%d" % (seed, i)).digest() * (BLOCK // 32)


def generate(seed, size):
    """The same function runs in the test to compute the expected digest."""
    i = 0
    sent = 0
    while sent < size:
        b = block(seed, i)[:size - sent]
        yield b
        sent += len(b)
        i += 1


def memory():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
    return out


def app(environ, start_response):
    q = urllib.parse.parse_qs(environ["QUERY_STRING"])
    op = q["op"][0]
    if op in ("up", "mem"):
        h = hashlib.sha256()
        total = 0
        inp = environ["wsgi.input"]
        for _ in range(10000000):
            b = inp.read(BLOCK)
            if not b:
                break
            h.update(b)
            total += len(b)
        data = {"sha256": h.hexdigest(), "len": total, "pid": os.getpid(), "memory": memory(),
                "content_length": environ.get("CONTENT_LENGTH")}
        body = json.dumps(data).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    if op == "down":
        size = int(q["size"][0])
        seed = q["seed"][0].encode()
        headers = [("Content-Type", "application/octet-stream"), ("X-Pid", str(os.getpid()))]
        if "cl" in q:
            headers.append(("Content-Length", str(size)))
        if q.get("via") == ["write"]:
            write = start_response("200 OK", headers)
            for b in generate(seed, size):
                write(b)
            return []
        start_response("200 OK", headers)
        return generate(seed, size)
    if op == "file":
        f = open(q["path"][0], "rb")
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](f, BLOCK)
    raise ValueError(op)


_validated = validator(app)


def handle_request(environ, start_response):
    if environ.get("WSGI_TEST_VALIDATE") == "1":
        return _validated(environ, start_response)
    return app(environ, start_response)
