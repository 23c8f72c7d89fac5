"""Helpers shared by the PEP 3333 / framework suites: raw HTTP over a socket
(for what http.client hides: interim 100 responses, chunk framing, truncated
bodies, HEAD bodies, pipelining), /proc readings, and the `module_bug` mark.
"""

import os
import re
import socket
import time

import pytest

READ_TIMEOUT = 10.0


def module_bug(reason):
    """Marks a test that fails because of a known module bug (reported).

    It is an expected failure (strict: once the module is fixed the test
    passes and the mark must go).  WSGI_RS_EXPECT_FIXED=1 runs such tests as
    ordinary ones."""
    if os.environ.get("WSGI_RS_EXPECT_FIXED"):
        return pytest.mark.usefixtures()
    return pytest.mark.xfail(strict=True, reason="module bug: " + reason)


def connect(port, timeout=READ_TIMEOUT):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_all(sock, limit=256 * 1024 * 1024):
    """Everything until EOF (or a connection reset, which also ends the data)."""
    parts = []
    total = 0
    while total < limit:
        try:
            b = sock.recv(65536)
        except ConnectionResetError:
            break
        if not b:
            break
        parts.append(b)
        total += len(b)
    return b"".join(parts)


def recv_until(sock, marker, limit=1024 * 1024):
    """Bytes up to and including the first `marker` (bounded)."""
    buf = b""
    while marker not in buf:
        if len(buf) > limit:
            raise AssertionError("no %r within %d bytes" % (marker, limit))
        b = sock.recv(65536)
        if not b:
            raise AssertionError("connection closed before %r; got %r" % (marker, buf[:2000]))
        buf += b
    return buf


def request_bytes(method, path, port, headers=(), body=b"", close=True, http="HTTP/1.1"):
    lines = ["%s %s %s" % (method, path, http), "Host: 127.0.0.1:%d" % port]
    for k, v in headers:
        lines.append("%s: %s" % (k, v))
    if close:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + body


class RawResponse:
    def __init__(self, data, head_only=False):
        self.raw = data
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, "no complete response head in %r" % data[:2000]
        lines = head.decode("latin-1").split("\r\n")
        self.status_line = lines[0]
        m = re.match(r"HTTP/1\.[01] (\d{3})(?: (.*))?$", lines[0])
        assert m, lines[0]
        self.status = int(m.group(1))
        self.reason = m.group(2) or ""
        self.headers = []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers.append((k.strip(), v.strip()))
        self.rest = rest

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def chunked(self):
        return (self.header("Transfer-Encoding") or "").lower() == "chunked"

    def body(self):
        """(payload, complete): de-chunked or Content-Length-bounded body and
        whether it was framed completely (final chunk / all declared bytes)."""
        if self.chunked:
            return dechunk(self.rest)
        cl = self.header("Content-Length")
        if cl is not None:
            n = int(cl)
            return self.rest[:n], len(self.rest) >= n
        return self.rest, True


def dechunk(data):
    """(payload, complete) for a chunked body; complete means the final
    zero-size chunk and the trailer end were received."""
    out = []
    pos = 0
    while True:
        end = data.find(b"\r\n", pos)
        if end < 0:
            return b"".join(out), False
        size_text = data[pos:end].split(b";")[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return b"".join(out), False
        pos = end + 2
        if size == 0:
            tail = data[pos:]
            return b"".join(out), tail.startswith(b"\r\n") or b"\r\n\r\n" in tail
        if len(data) < pos + size + 2:
            out.append(data[pos:pos + size])
            return b"".join(out), False
        out.append(data[pos:pos + size])
        pos += size + 2


def raw_exchange(port, data, timeout=READ_TIMEOUT):
    """Sends `data` (one or more requests ending with Connection: close) and
    returns everything the server sent until it closed the connection."""
    with connect(port, timeout) as s:
        s.sendall(data)
        return recv_all(s)


def raw_request(port, method, path, headers=(), body=b"", timeout=READ_TIMEOUT):
    return RawResponse(raw_exchange(port, request_bytes(method, path, port, headers, body),
                                    timeout))


def chunk_encode(parts):
    out = b""
    for p in parts:
        if p:
            out += b"%x\r\n" % len(p) + p + b"\r\n"
    return out + b"0\r\n\r\n"


def proc_status_kib(pid, field):
    """A /proc/<pid>/status field such as VmRSS or VmHWM, in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("%s not in /proc/%d/status" % (field, pid))


def wait_file(path, timeout=10.0):
    """Waits (bounded) for a file to exist; returns its text."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() >= deadline:
            raise AssertionError("%s was not written within %.0fs" % (path, timeout))
        time.sleep(0.05)
    time.sleep(0.05)
    with open(path) as f:
        return f.read()


def wsgi_rs_lines(log_text, level=None):
    """The error log lines tagged by our module (optionally of one level)."""
    tag = "[wsgi_rs:%s]" % level if level else "[wsgi_rs:"
    return [line for line in log_text.splitlines() if tag in line]
