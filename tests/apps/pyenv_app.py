# Reports the Python environment the module set up (prefix, sys.path,
# UTF-8 mode, encodings, importable modules) as JSON; ?atexit=<dir>
# registers an atexit function that writes <dir>/atexit-<group>-<pid>.
# WSGI_TEST_VALIDATE=1 (SetEnv) runs it under wsgiref.validate.validator
# with warnings as errors.
import atexit
import importlib
import json
import locale
import os
import sys
import urllib.parse
import warnings
from wsgiref.validate import validator

warnings.simplefilter("error")

_registered = []


def _write_marker(path):
    with open(path, "w") as f:
        f.write("atexit ran in pid %d\n" % os.getpid())


def app(environ, start_response):
    q = urllib.parse.parse_qs(environ["QUERY_STRING"])
    if "atexit" in q and not _registered:
        group = environ["mod_wsgi.application_group"] or "GLOBAL"
        path = os.path.join(q["atexit"][0], "atexit-%s-%d" % (group, os.getpid()))
        atexit.register(_write_marker, path)
        _registered.append(path)
    modules = {}
    for name in q.get("import", []):
        try:
            modules[name] = importlib.import_module(name).__file__
        except ImportError as e:
            modules[name] = "ImportError: %s" % e
    if "touch" in q:
        # A file name that is not ASCII, written with the file system encoding.
        with open(os.path.join(q["touch"][0], "n\u00e4me-\u263a.txt"), "w") as f:
            f.write("x")
    data = {
        "pid": os.getpid(),
        "prefix": sys.prefix,
        "base_prefix": sys.base_prefix,
        "exec_prefix": sys.exec_prefix,
        "executable": sys.executable,
        "path": sys.path,
        "version": list(sys.version_info[:2]),
        "utf8_mode": sys.flags.utf8_mode,
        "fs_encoding": sys.getfilesystemencoding(),
        "preferred_encoding": locale.getpreferredencoding(False),
        "lang": os.environ.get("LANG"),
        "lc_all": os.environ.get("LC_ALL"),
        "modules": modules,
        "atexit": _registered,
        "group": environ["mod_wsgi.application_group"],
    }
    body = json.dumps(data).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


_validated = validator(app)


def handle_request(environ, start_response):
    if environ.get("WSGI_TEST_VALIDATE") == "1":
        return _validated(environ, start_response)
    return app(environ, start_response)
