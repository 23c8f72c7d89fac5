"""Helpers for the daemon-mode suites (tests/test_daemon_*.py): finding an
Apache instance's daemon processes and children through /proc, JSON requests,
bounded waits."""

import json
import os
import subprocess
import time

import harness


def ppid_of(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(data.rsplit(")", 1)[1].split()[1])


def children_of(ppid):
    """Live (non-zombie) processes whose parent is `ppid`."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        if ppid_of(pid) == ppid and harness.pid_alive(pid):
            out.append(pid)
    return sorted(out)


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()


def ps_args(pid):
    """The command line as `ps` shows it."""
    r = subprocess.run(["ps", "-o", "args=", "-p", str(pid)], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, timeout=10)
    return r.stdout.decode("utf-8", "replace").strip()


def is_apache_cmdline(text):
    return bool(text) and text.startswith(harness.APACHE_BIN)


def apache_children(a):
    """The Apache parent's worker children (command line still apache2)."""
    return [p for p in children_of(a.pid) if is_apache_cmdline(cmdline(p))]


def daemon_pids(a):
    """The Apache parent's children that are not Apache workers (daemons)."""
    return [p for p in children_of(a.pid) if not is_apache_cmdline(cmdline(p) or "/usr/sbin/apache2")]


def wait_until(pred, timeout=5.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("%s not met within %.1fs" % (what, timeout))
        time.sleep(interval)


def get_json(a, path, expect=200, **kw):
    st, h, body = a.get(path, **kw)
    assert st == expect, "%s -> %s %r\n--- log tail ---\n%s" % (
        path, st, body[:2000], a.error_log()[-4000:])
    return json.loads(body)


def wait_serving(a, path, exclude=(), timeout=5.0):
    """Polls `path` (an info request) until a 200 comes from a pid not in
    `exclude`; returns (seconds, info)."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            st, _, body = a.get(path, timeout=3)
            if st == 200:
                d = json.loads(body)
                if d["pid"] not in exclude:
                    return time.monotonic() - t0, d
            last = st
        except Exception as e:  # the connection may fail while the daemon is replaced
            last = repr(e)
        time.sleep(0.05)
    raise AssertionError("no new daemon served %s within %.1fs (last %r)\n%s"
                         % (path, timeout, last, a.error_log()[-4000:]))


# The harness's forbidden error-log lines plus Apache's complaint about an
# exiting child it has no record of (a daemon the MPM was wrongly told about).
BAD_LOG = harness.BAD_LOG_PATTERNS + ("AH00546",)
