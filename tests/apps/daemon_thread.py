# Starts a background daemon thread (once per interpreter) that keeps running.
import json
import os
import sys
import threading
import time

_started = []


def _loop():
    for _ in range(1000000):
        time.sleep(0.05)


def handle_request(environ, start_response):
    if not _started:
        t = threading.Thread(target=_loop, daemon=True)
        t.start()
        _started.append(t)
    body = json.dumps({"pid": os.getpid(), "alive": _started[0].is_alive()}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
