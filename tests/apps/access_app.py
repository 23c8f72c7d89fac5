# Test app for tests/test_access.py.  ?case=ids (default): JSON with the
# process's identity as /proc/self/status shows it and what happens when
# it tries to become root again.  ?case=hello: "handled:<process group>"
# (never the script's own text).
# SOURCE-TEXT-OF-ACCESS-APP (must never reach a client)
import json
import os
import urllib.parse


def _status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapAmb", "NoNewPrivs"):
                out[k] = v.split()
    return out


def _try(fn):
    try:
        fn()
        return "ok"
    except OSError as e:
        return type(e).__name__


def handle_request(environ, start_response):
    q = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    case = q.get("case", ["ids"])[0]
    if case == "hello":
        body = ("handled:%s" % environ.get("mod_wsgi.process_group", "?")).encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    data = {
        "pid": os.getpid(),
        "status": _status(),
        "setuid0": _try(lambda: os.setuid(0)),
        "seteuid0": _try(lambda: os.seteuid(0)),
        "setgid0": _try(lambda: os.setgid(0)),
        "setgroups0": _try(lambda: os.setgroups([0])),
        "read_shadow": _try(lambda: open("/etc/shadow", "rb").close()),
        "group": environ.get("mod_wsgi.process_group"),
    }
    body = json.dumps(data).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
