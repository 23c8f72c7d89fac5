# WSGI handler script reporting its interpreter, process and environ as JSON.
# Copied under several names by the tests; the script's own file name tells
# them apart.
import builtins
import json
import os
import sys
import threading
import urllib.parse

if not hasattr(sys, "_test_id"):
    import uuid
    sys._test_id = uuid.uuid4().hex

# Import counter per script path, kept on sys so that it survives reloads.
if not hasattr(sys, "_test_import_counts"):
    sys._test_import_counts = {}
sys._test_import_counts[__file__] = sys._test_import_counts.get(__file__, 0) + 1

MODULE_GLOBAL = {"requests": 0}


def _interpreter_id():
    try:
        import _xxsubinterpreters as m
        return int(m.get_current())
    except Exception:
        return None


def _jsonable(v):
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    return repr(v)


def handle_request(environ, start_response):
    MODULE_GLOBAL["requests"] += 1
    q = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    if "setmark" in q:
        builtins._test_mark = q["setmark"][0]
    if "sleep" in q:
        import time
        time.sleep(float(q["sleep"][0]))
    data = {
        "script": os.path.basename(__file__),
        "file": __file__,
        "name": __name__,
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "thread": threading.get_ident(),
        "test_id": sys._test_id,
        "sys_modules_id": id(sys.modules),
        "interpreter_id": _interpreter_id(),
        "import_count": sys._test_import_counts.get(__file__),
        "module_requests": MODULE_GLOBAL["requests"],
        "mark": getattr(builtins, "_test_mark", None),
        "application_group": environ.get("mod_wsgi.application_group"),
        "process_group": environ.get("mod_wsgi.process_group"),
        "environ": {k: _jsonable(v) for k, v in environ.items()},
    }
    body = json.dumps(data).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
