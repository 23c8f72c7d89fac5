# Small handler for load, restart, crash and soak tests: a short JSON body
# naming the process that served the request.
#
#   ?sleep=S    sleep S seconds first
#   ?size=N     pad the body with N bytes (in 8 KiB pieces, so it streams)
#   POST        the body is read (in 16 KiB pieces); its length is reported
#   ?rss=1      add VmRSS / VmHWM (KiB) of this process
import json
import os
import time
import urllib.parse

COUNT = {"n": 0}


def _status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def handle_request(environ, start_response):
    COUNT["n"] += 1
    q = {k: v[0] for k, v in urllib.parse.parse_qs(environ.get("QUERY_STRING", "")).items()}
    if "sleep" in q:
        time.sleep(float(q["sleep"]))
    read = 0
    if environ.get("REQUEST_METHOD") == "POST":
        inp = environ["wsgi.input"]
        while True:
            b = inp.read(16384)
            if not b:
                break
            read += len(b)
    data = {"pid": os.getpid(), "ppid": os.getppid(), "n": COUNT["n"], "read": read,
            "group": environ.get("mod_wsgi.process_group")}
    if q.get("rss"):
        data["vmrss"] = _status("VmRSS")
        data["vmhwm"] = _status("VmHWM")
    head = json.dumps(data).encode() + b"\n"
    size = int(q.get("size", "0"))
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(head) + size))])
    if not size:
        return [head]

    def body():
        yield head
        left = size
        while left > 0:
            n = min(8192, left)
            yield b"." * n
            left -= n
    return body()
