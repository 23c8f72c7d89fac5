# A corpus of badly behaved WSGI apps, one per ?case=NAME (tests/test_hostile_apps.py).
#
# Every call first writes "<pid>\n" to <WSGI_TEST_OUT>/<tag>.pid (when
# ?tag= is given) so the test can check that the process that ran the
# hostile code is still alive afterwards.  Exception messages carry the tag
# so each log line can be matched to its request.
#
#   probe               JSON: pid, ppid
#   return_str          returns a str (iterating it yields str items)
#   list_of_str         returns ["text"]
#   return_none         returns None
#   return_int          returns 42
#   return_object       returns object()
#   iter_raises         an iterable whose __iter__ raises
#   first_item_raises   a generator raising before its first item
#   close_raises        yields b"ok;body" (generator), close() raises
#   close_raises_cl     as close_raises, one-element list with a Content-Length
#   close_raises_too    iteration raises at item 0, then close() raises too
#   close_not_callable  an iterable whose close attribute is the int 5
#   close_sys_exit      close() raises SystemExit
#   len_raises          a one-element list subclass whose __len__ raises
#   len_lies            __len__ says 1, iteration yields two items
#   bad_exc_str         raises an exception whose __str__ and __repr__ raise
#   memory_error        raises MemoryError (an impossible allocation)
#   bad_status          start_response(?s=) uncaught (e.g. "200 OK\r\nX-Injected: 1")
#   crlf_header         a header value with CRLF + an injected header, uncaught
#   header_name_colon   a header name "X-Evil: injected", uncaught
#   nul_header          a NUL in a header value, uncaught
#   huge_header         one header with a ?size= (default 1 MiB) byte value
#   many_headers        ?n= headers (default 20000) of 60 bytes each
#   no_start_response   returns a body without calling start_response
#   start_twice         start_response twice without exc_info, uncaught
#   start_after_body    a generator: start_response, yield, start_response again
#   start_after_write   write(), then start_response again without exc_info
#   sys_exit_call       sys.exit(?code=) in the call
#   system_exit_iter    a generator raising SystemExit at item 0
#   system_exit_later   a generator raising SystemExit after the first item
#   kbi_call            raises KeyboardInterrupt in the call
#   kbi_iter            a generator raising KeyboardInterrupt at item 0
#   stash               keeps start_response, write, wsgi.input, wsgi.errors,
#                       environ of this request in sys._hostile_stash
#   use_stash           calls the stashed callables of an earlier, finished
#                       request; JSON of what each call did
#   late_thread         starts a thread that, 0.5 s after the request ended,
#                       calls its write/start_response/input/errors; the
#                       outcome goes to <tag>.late
#   fork                os.fork(); the child does ?child= (return | raise |
#                       exit | write), the parent waits (bounded) for it and
#                       answers "parent pid=N child=STATUS"
#   block               blocks forever: ?how= sleep | event | spin
#   threads             starts (once per interpreter) a daemon and a
#                       non-daemon thread that keep running Python code
import json
import os
import sys
import threading
import time
import urllib.parse

TEXT = [("Content-Type", "text/plain")]


def _q(environ):
    return {k: v[0] for k, v in urllib.parse.parse_qs(environ.get("QUERY_STRING", "")).items()}


def _out(environ, name):
    return os.path.join(environ["WSGI_TEST_OUT"], name)


def _write_file(path, text):
    tmp = path + ".tmp%d" % os.getpid()
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o666)
    os.replace(tmp, path)


def _json(start_response, data):
    body = json.dumps(data).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


class HostileError(Exception):
    def __str__(self):
        raise RuntimeError("str() of HostileError refused")

    def __repr__(self):
        raise RuntimeError("repr() of HostileError refused")


class IterRaises:
    def __init__(self, tag):
        self.tag = tag

    def __iter__(self):
        raise ValueError("iter-raises-" + self.tag)


class CloseRaises:
    def __init__(self, tag, items, fail_at=None, exc=RuntimeError):
        self.tag = tag
        self.items = items
        self.fail_at = fail_at
        self.exc = exc

    def __iter__(self):
        for i, x in enumerate(self.items):
            if i == self.fail_at:
                raise ValueError("iteration-fails-" + self.tag)
            yield x

    def close(self):
        if self.exc is SystemExit:
            raise SystemExit("close-sys-exit-" + self.tag)
        raise self.exc("close-raises-" + self.tag)


class CloseRaisesList(list):
    def __init__(self, tag, items):
        super().__init__(items)
        self.tag = tag

    def close(self):
        raise RuntimeError("close-raises-" + self.tag)


class CloseNotCallable:
    close = 5

    def __iter__(self):
        yield b"close is an int"


class LenRaises(list):
    def __len__(self):
        raise RuntimeError("len-raises")


class LenLies:
    def __len__(self):
        return 1

    def __getitem__(self, i):
        if i < 2:
            return [b"first;", b"second"][i]
        raise IndexError(i)

    def __iter__(self):
        yield b"first;"
        yield b"second"


def _try(fn):
    try:
        r = fn()
        return ["returned", repr(r)[:200]]
    except BaseException as e:  # noqa: B902 - we want to see everything
        return ["raised", type(e).__name__, str(e)[:200]]


def _use(saved):
    start_response, write, inp, errors, environ = saved
    return {
        "write": _try(lambda: write(b"STALE-WRITE-DATA")),
        "start_response": _try(lambda: start_response("500 Stale", [("X-Stale", "1")])),
        "start_response_exc_info": _try(lambda: start_response(
            "500 Stale", [("X-Stale", "1")], (ValueError, ValueError("x"), None))),
        "input_read": _try(lambda: inp.read(100)),
        "input_readline": _try(lambda: inp.readline()),
        "errors_write": _try(lambda: (errors.write("stale-errors-write\n"), errors.flush())),
        "environ_len": _try(lambda: len(environ)),
    }


def _late(saved, path):
    time.sleep(0.5)
    _write_file(path, json.dumps(_use(saved)))


_threads = []


def _busy(stop_after):
    # Touches Python (allocations, json, time) until the process goes.
    t0 = time.monotonic()
    for i in range(10 ** 7):
        json.dumps({"i": i, "t": time.monotonic()})
        time.sleep(0.005)
        if time.monotonic() - t0 > stop_after:
            break


def handle_request(environ, start_response):
    q = _q(environ)
    case = q.get("case", "probe")
    tag = q.get("tag", "notag")
    if "tag" in q:
        _write_file(_out(environ, tag + ".pid"), "%d\n" % os.getpid())

    if case == "probe":
        return _json(start_response, {"pid": os.getpid(), "ppid": os.getppid(),
                                      "group": environ.get("mod_wsgi.process_group")})

    # ------------------------------------------------- bad return values
    if case == "return_str":
        start_response("200 OK", TEXT)
        return "a str body " + tag
    if case == "list_of_str":
        start_response("200 OK", TEXT)
        return ["a str item " + tag]
    if case == "return_none":
        start_response("200 OK", TEXT)
        return None
    if case == "return_int":
        start_response("200 OK", TEXT)
        return 42
    if case == "return_object":
        start_response("200 OK", TEXT)
        return object()
    if case == "iter_raises":
        start_response("200 OK", TEXT)
        return IterRaises(tag)
    if case == "first_item_raises":
        start_response("200 OK", TEXT)

        def gen():
            raise ValueError("first-item-raises-" + tag)
            yield b"never"
        return gen()

    # ---------------------------------------------------------- close()
    if case == "close_raises":
        start_response("200 OK", TEXT)
        return CloseRaises(tag, [b"ok;", b"body"])
    if case == "close_raises_cl":
        start_response("200 OK", TEXT + [("Content-Length", "7")])
        return CloseRaisesList(tag, [b"ok;body"])
    if case == "close_raises_too":
        start_response("200 OK", TEXT)
        return CloseRaises(tag, [b"never sent"], fail_at=0)
    if case == "close_not_callable":
        start_response("200 OK", TEXT)
        return CloseNotCallable()
    if case == "close_sys_exit":
        start_response("200 OK", TEXT)
        return CloseRaises(tag, [b"ok;", b"body"], exc=SystemExit)

    # ------------------------------------------------------- len() games
    if case == "len_raises":
        start_response("200 OK", TEXT)
        return LenRaises([b"len raises"])
    if case == "len_lies":
        start_response("200 OK", TEXT)
        return LenLies()

    if case == "bad_exc_str":
        raise HostileError()
    if case == "memory_error":
        start_response("200 OK", TEXT)
        return [bytes(1 << 60)]

    # ----------------------------------------------- status and headers
    if case == "bad_status":
        start_response(q.get("s", "200 OK\r\nX-Injected: 1"), TEXT)
        return [b"not reached"]
    if case == "crlf_header":
        start_response("200 OK", TEXT + [("X-Evil", "a\r\nX-Injected: 1")])
        return [b"not reached"]
    if case == "header_name_colon":
        start_response("200 OK", TEXT + [("X-Evil: injected", "1")])
        return [b"not reached"]
    if case == "nul_header":
        start_response("200 OK", TEXT + [("X-Nul", "a\x00X-Injected: 1")])
        return [b"not reached"]
    if case == "huge_header":
        size = int(q.get("size", str(1024 * 1024)))
        start_response("200 OK", TEXT + [("X-Huge", "h" * size)])
        return [b"huge header sent"]
    if case == "many_headers":
        n = int(q.get("n", "20000"))
        start_response("200 OK", TEXT + [("X-Many-%05d" % i, "m" * 48) for i in range(n)])
        return [b"many headers sent"]

    # ----------------------------------------------- start_response misuse
    if case == "no_start_response":
        return [b"no start_response " + tag.encode()]
    if case == "start_twice":
        start_response("200 OK", TEXT)
        start_response("201 Created", TEXT)
        return [b"not reached"]
    if case == "start_after_body":
        def gen():
            start_response("200 OK", TEXT)
            yield b"first;"
            start_response("500 Oops", TEXT)
            yield b"not reached"
        return gen()
    if case == "start_after_write":
        write = start_response("200 OK", TEXT)
        write(b"written;")
        start_response("201 Created", TEXT)
        return [b"not reached"]

    # ---------------------------------------- exits and interrupts
    if case == "sys_exit_call":
        sys.exit(int(q.get("code", "0")))
    if case == "system_exit_iter":
        start_response("200 OK", TEXT)

        def gen():
            raise SystemExit("system-exit-iter-" + tag)
            yield b"never"
        return gen()
    if case == "system_exit_later":
        start_response("200 OK", TEXT)

        def gen():
            yield b"first;"
            raise SystemExit("system-exit-later-" + tag)
        return gen()
    if case == "kbi_call":
        raise KeyboardInterrupt("kbi-call-" + tag)
    if case == "kbi_iter":
        start_response("200 OK", TEXT)

        def gen():
            raise KeyboardInterrupt("kbi-iter-" + tag)
            yield b"never"
        return gen()

    # ---------------------------------------- objects of finished requests
    if case == "stash":
        write = start_response("200 OK", TEXT)
        sys._hostile_stash = (start_response, write, environ["wsgi.input"],
                              environ["wsgi.errors"], environ)
        return [b"stashed"]
    if case == "use_stash":
        saved = getattr(sys, "_hostile_stash", None)
        if saved is None:
            return _json(start_response, {"nostash": os.getpid()})
        del sys._hostile_stash
        result = _use(saved)
        result["pid"] = os.getpid()
        return _json(start_response, result)
    if case == "late_thread":
        write = start_response("200 OK", TEXT)
        saved = (start_response, write, environ["wsgi.input"], environ["wsgi.errors"], environ)
        threading.Thread(target=_late, args=(saved, _out(environ, tag + ".late")),
                         daemon=True).start()
        return [b"thread started"]

    # ------------------------------------------------------------- fork
    if case == "fork":
        what = q.get("child", "return")
        marker = _out(environ, tag + ".child")
        pid = os.fork()
        if pid == 0:
            _write_file(marker, "%d\n" % os.getpid())
            if what == "exit":
                os._exit(0)
            if what == "raise":
                raise RuntimeError("raised-in-forked-child-" + tag)
            if what == "write":
                start_response("200 OK", TEXT)
                return [b"CHILD-BODY-" + tag.encode()]
            return [b"CHILD-BODY-" + tag.encode()]
        status = "running"
        deadline = time.monotonic() + float(q.get("wait", "3"))
        while time.monotonic() < deadline:
            p, st = os.waitpid(pid, os.WNOHANG)
            if p:
                status = ("exit%d" % os.WEXITSTATUS(st)) if os.WIFEXITED(st) \
                    else ("signal%d" % os.WTERMSIG(st))
                break
            time.sleep(0.02)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            status = "killed"
        body = ("parent pid=%d child=%s" % (os.getpid(), status)).encode()
        start_response("200 OK", TEXT + [("Content-Length", str(len(body)))])
        return [body]

    # -------------------------------------------------- never finishing
    if case == "block":
        how = q.get("how", "sleep")
        if how == "sleep":
            time.sleep(100000)
        elif how == "event":
            threading.Event().wait()
        elif how == "spin":
            t0 = time.monotonic()
            while time.monotonic() - t0 < 100000:
                pass
        start_response("200 OK", TEXT)
        return [b"unblocked?"]
    if case == "threads":
        if not _threads:
            for daemon in (True, False):
                t = threading.Thread(target=_busy, args=(100000,), daemon=daemon)
                t.start()
                _threads.append(t)
        return _json(start_response, {"pid": os.getpid(),
                                      "alive": [t.is_alive() for t in _threads]})

    start_response("404 Not Found", TEXT)
    return [b"unknown case " + case.encode()]
