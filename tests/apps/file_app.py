# wsgi.file_wrapper: ?case=file sends <WSGI_TEST_DATA>/<name> from ?offset=
# through the wrapper, using a file object that records every read (so the
# test can tell that the server did not read it through Python) and whose
# close() leaves a marker in <WSGI_TEST_OUT>.  ?case=bytesio / ?case=reader
# use objects without a usable descriptor, which must be iterated with
# read(blksize).  WSGI_TEST_VALIDATE=1 (SetEnv) runs it under
# wsgiref.validate.validator with warnings as errors.
import io
import json
import os
import urllib.parse
import warnings
from wsgiref.validate import validator

warnings.simplefilter("error")


def _marker(environ, tag, text):
    with open(os.path.join(environ["WSGI_TEST_OUT"], tag + ".close"), "a") as f:
        f.write(text + "\n")


class ProbedFile(io.FileIO):
    """A real file whose Python-level reads are counted."""

    def __init__(self, path, environ, tag):
        super().__init__(path, "rb")
        self.environ = environ
        self.tag = tag
        self.reads = []

    def read(self, size=-1):
        self.reads.append(size)
        return super().read(size)

    def readinto(self, b):
        self.reads.append(("readinto", len(b)))
        return super().readinto(b)

    def readall(self):
        self.reads.append("readall")
        return super().readall()

    def close(self):
        if not self.closed:
            _marker(self.environ, self.tag, json.dumps(
                {"reads": self.reads, "via_del": getattr(self, "via_del", False)}))
        super().close()

    def __del__(self):
        # Closing at garbage collection is not the server calling close().
        self.via_del = True
        self.close()


class Reader:
    """File-like without fileno(): only read() and close()."""

    def __init__(self, data, environ, tag):
        self.buf = io.BytesIO(data)
        self.environ = environ
        self.tag = tag
        self.sizes = []

    def read(self, size=-1):
        self.sizes.append(size)
        return self.buf.read(size)

    def close(self):
        _marker(self.environ, self.tag, json.dumps({"sizes": sorted(set(self.sizes))}))


def app(environ, start_response):
    q = urllib.parse.parse_qs(environ["QUERY_STRING"])
    case = q["case"][0]
    tag = q.get("tag", ["notag"])[0]
    headers = [("Content-Type", "application/octet-stream")]
    if "cl" in q:
        headers.append(("Content-Length", q["cl"][0]))
    wrapper = environ["wsgi.file_wrapper"]
    if case == "file":
        f = ProbedFile(os.path.join(environ["WSGI_TEST_DATA"], q["name"][0]), environ, tag)
        f.seek(int(q.get("offset", ["0"])[0]))
        start_response("200 OK", headers)
        if "blksize" in q:
            return wrapper(f, int(q["blksize"][0]))
        return wrapper(f)
    if case == "write_then_file":
        # Body already started with write(): the wrapper's file follows it.
        f = ProbedFile(os.path.join(environ["WSGI_TEST_DATA"], q["name"][0]), environ, tag)
        f.seek(int(q.get("offset", ["0"])[0]))
        write = start_response("200 OK", headers)
        write(b"prefix;")
        return wrapper(f, 65536)
    if case == "buffered":
        # The usual open(..., "rb"): a BufferedReader over the descriptor.
        f = open(os.path.join(environ["WSGI_TEST_DATA"], q["name"][0]), "rb")
        f.seek(int(q.get("offset", ["0"])[0]))
        start_response("200 OK", headers)
        return wrapper(f, 65536)
    if case == "bytesio":
        data = bytes(range(256)) * int(q["n"][0])
        start_response("200 OK", headers)
        return wrapper(io.BytesIO(data), int(q["blksize"][0]))
    if case == "reader":
        data = bytes(range(256)) * int(q["n"][0])
        start_response("200 OK", headers)
        if "blksize" in q:
            return wrapper(Reader(data, environ, tag), int(q["blksize"][0]))
        return wrapper(Reader(data, environ, tag))
    raise ValueError(case)


_validated = validator(app)


def handle_request(environ, start_response):
    if environ.get("WSGI_TEST_VALIDATE") == "1":
        return _validated(environ, start_response)
    return app(environ, start_response)
