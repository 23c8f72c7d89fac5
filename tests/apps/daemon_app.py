# Daemon-mode test app: one behaviour per ?case=NAME (default "info").
# Used by tests/test_daemon_*.py in embedded and daemon mode alike.
#
#   info            JSON: pid, ppid, uid/gid, cwd, umask, interpreter, environ...
#   sleep           like info after sleeping ?s= seconds
#   exit_before     os._exit(1) before start_response (?tag=: logs exit-before-TAG first)
#   exit_after      start_response, yield ?n= bytes, then os._exit(1)
#                   (?cl=1: with a Content-Length larger than what is sent)
#   raise_before    raise before start_response (tag in the message)
#   raise_after     yield some bytes, then raise (?cl=1 as for exit_after)
#   download        ?size= bytes of random.Random(?seed=) data, 1 MiB pieces
#                   (?cl=1 with Content-Length)
#   upload          reads wsgi.input in ?chunk= pieces (after sleeping ?delay=
#                   seconds): JSON length, sha256, VmHWM
#   hwm             JSON with this process's VmHWM / VmRSS (KiB)
#   file            wsgi.file_wrapper over a counting io.FileIO subclass of ?path=
#                   (?seek= start offset); read() calls are counted in <path>.reads
#   headers         ?n= headers of ?size= bytes each
#   drip            ?n= pieces of b"drip\n", ?d= seconds apart (chunked)
import hashlib
import io
import json
import os
import random
import sys
import threading
import time
import urllib.parse

if not hasattr(sys, "_daemon_test_id"):
    import uuid
    sys._daemon_test_id = uuid.uuid4().hex

VERSION = "v1"
MIB = 1024 * 1024


def _interpreter_id():
    try:
        import _xxsubinterpreters as m
        return int(m.get_current())
    except Exception:
        return None


def _status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


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


def info(environ):
    return {
        "version": VERSION,
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "uid": os.getuid(),
        "euid": os.geteuid(),
        "gid": os.getgid(),
        "egid": os.getegid(),
        "cwd": os.getcwd(),
        "umask": _umask(),
        "sys_path": sys.path,
        "test_id": sys._daemon_test_id,
        "interpreter_id": _interpreter_id(),
        "thread": threading.get_ident(),
        "vmhwm": _status("VmHWM"),
        "vmrss": _status("VmRSS"),
        "environ": {k: _jsonable(v) for k, v in environ.items()},
    }


def random_pieces(seed, size, piece=MIB):
    rnd = random.Random(seed)
    left = size
    while left > 0:
        n = min(piece, left)
        yield rnd.randbytes(n)
        left -= n


class CountingFile(io.FileIO):
    """A real file whose read() calls are counted (in <path>.reads at close)."""

    def __init__(self, path):
        super().__init__(path, "rb")
        self.count_path = path + ".reads"
        self.reads = 0

    def read(self, *a):
        self.reads += 1
        return super().read(*a)

    def readinto(self, b):
        self.reads += 1
        return super().readinto(b)

    def close(self):
        if not self.closed:
            with open(self.count_path, "w") as f:
                f.write(str(self.reads))
        super().close()


def handle_request(environ, start_response):
    q = {k: v[0] for k, v in urllib.parse.parse_qs(environ.get("QUERY_STRING", "")).items()}
    case = q.get("case", "info")

    if case == "info":
        return _json(start_response, info(environ))

    if case == "sleep":
        time.sleep(float(q.get("s", "1")))
        return _json(start_response, info(environ))

    if case == "exit_before":
        if q.get("tag"):
            print("exit-before-%s" % q["tag"], file=sys.stderr)
        sys.stderr.flush()
        os._exit(1)

    if case in ("exit_after", "raise_after"):
        n = int(q.get("n", "1000"))
        headers = [("Content-Type", "application/octet-stream")]
        if q.get("cl"):
            headers.append(("Content-Length", str(n * 10)))
        start_response("200 OK", headers)

        def gen():
            yield b"x" * n
            time.sleep(0.2)
            if case == "exit_after":
                os._exit(1)
            raise RuntimeError("raise-after-%s" % q.get("tag", ""))
        return gen()

    if case == "raise_before":
        raise RuntimeError("raise-before-%s" % q.get("tag", ""))

    if case == "download":
        size = int(q["size"])
        headers = [("Content-Type", "application/octet-stream")]
        if q.get("cl"):
            headers.append(("Content-Length", str(size)))
        start_response("200 OK", headers)
        return random_pieces(int(q.get("seed", "1")), size)

    if case == "upload":
        hwm0 = _status("VmHWM")
        if q.get("delay"):
            time.sleep(float(q["delay"]))
        chunk = int(q.get("chunk", str(64 * 1024)))
        inp = environ["wsgi.input"]
        h = hashlib.sha256()
        total = 0
        while True:
            b = inp.read(chunk)
            if not b:
                break
            h.update(b)
            total += len(b)
        return _json(start_response, {"pid": os.getpid(), "length": total,
                                      "sha256": h.hexdigest(), "vmhwm_before": hwm0,
                                      "vmhwm": _status("VmHWM")})

    if case == "hwm":
        return _json(start_response, {"pid": os.getpid(), "vmhwm": _status("VmHWM"),
                                      "vmrss": _status("VmRSS")})

    if case == "file":
        f = CountingFile(q["path"])
        if q.get("seek"):
            f.seek(int(q["seek"]))
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](f, 64 * 1024)

    if case == "drip":
        n = int(q.get("n", "4"))
        d = float(q.get("d", "0.5"))
        start_response("200 OK", [("Content-Type", "text/plain")])

        def drip():
            for i in range(n):
                if i:
                    time.sleep(d)
                yield b"drip\n"
        return drip()

    if case == "headers":
        n = int(q.get("n", "10"))
        size = int(q.get("size", "100"))
        headers = [("X-H%d" % i, "v" * size) for i in range(n)]
        start_response("200 OK", [("Content-Type", "text/plain")] + headers)
        return [b"ok"]

    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"unknown case " + case.encode()]
