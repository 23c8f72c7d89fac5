# Imports threading inside the request and runs (and joins) a short thread.
import json
import os


def handle_request(environ, start_response):
    import threading
    result = []
    t = threading.Thread(target=lambda: result.append(threading.get_ident()))
    t.start()
    t.join(5)
    body = json.dumps({"pid": os.getpid(), "thread_ran": bool(result)}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
