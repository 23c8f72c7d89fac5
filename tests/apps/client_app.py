# Test app for tests/test_hostile_clients.py, one behaviour per ?case=NAME.
# With ?tag=, every call first writes "<pid>\n" to <WSGI_TEST_OUT>/<tag>.called
# (so a test can tell whether the app ran at all, and in which process).
#
#   probe      JSON: pid, method, query, protocol
#   upload     reads wsgi.input in 8 KiB pieces; JSON length, sha256, pid;
#              the outcome (ok / the exception) also goes to <tag>.result
#   download   ?size= bytes in 64 KiB pieces (a generator); close() writes
#              "pulled=N" to <tag>.close
#   one        a one-element list (computed Content-Length): "one:<query>"
#   gen        a generator of three items (no Content-Length): "gen:<query>"
import hashlib
import json
import os
import urllib.parse

PIECE = 64 * 1024


def _q(environ):
    return {k: v[0] for k, v in urllib.parse.parse_qs(environ.get("QUERY_STRING", "")).items()}


def _write_file(path, text):
    tmp = path + ".tmp%d" % os.getpid()
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o666)
    os.replace(tmp, path)


class Download:
    def __init__(self, size, close_path):
        self.size = size
        self.close_path = close_path
        self.pulled = 0

    def __iter__(self):
        left = self.size
        chunk = b"d" * PIECE
        while left > 0:
            n = min(PIECE, left)
            self.pulled += 1
            yield chunk[:n]
            left -= n

    def close(self):
        if self.close_path:
            _write_file(self.close_path, "pulled=%d\n" % self.pulled)


def handle_request(environ, start_response):
    q = _q(environ)
    case = q.get("case", "probe")
    tag = q.get("tag")
    out = environ.get("WSGI_TEST_OUT")
    if tag:
        _write_file(os.path.join(out, tag + ".called"), "%d\n" % os.getpid())

    if case == "probe":
        body = json.dumps({"pid": os.getpid(), "method": environ["REQUEST_METHOD"],
                           "query": environ.get("QUERY_STRING", ""),
                           "protocol": environ["SERVER_PROTOCOL"]}).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    if case == "upload":
        inp = environ["wsgi.input"]
        h = hashlib.sha256()
        total = 0
        outcome = "ok"
        try:
            for _ in range(1000000):
                b = inp.read(8192)
                if not b:
                    break
                h.update(b)
                total += len(b)
        except Exception as e:
            outcome = "%s.%s: OSError=%s" % (type(e).__module__, type(e).__name__,
                                             isinstance(e, OSError))
        result = {"pid": os.getpid(), "length": total, "sha256": h.hexdigest(),
                  "outcome": outcome,
                  "content_length": environ.get("CONTENT_LENGTH", "")}
        if tag:
            _write_file(os.path.join(out, tag + ".result"), json.dumps(result))
        body = json.dumps(result).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    if case == "download":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Download(int(q.get("size", str(PIECE))),
                        os.path.join(out, tag + ".close") if tag else None)

    if case == "one":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [("one:" + environ.get("QUERY_STRING", "")).encode()]

    if case == "gen":
        start_response("200 OK", [("Content-Type", "text/plain")])
        text = "gen:" + environ.get("QUERY_STRING", "")

        def gen():
            yield text[:3].encode()
            yield text[3:6].encode()
            yield text[6:].encode()
        return gen()

    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"unknown case"]
