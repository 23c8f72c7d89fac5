# Runs another handler script (path in the request environment variable
# WSGI_TEST_WRAPPED, set with SetEnv) under wsgiref.validate.validator, with
# every warning turned into an error.  Lets the older test apps be checked
# without changing them.
import importlib.util
import threading
import warnings
from wsgiref.validate import validator

warnings.simplefilter("error")

_apps = {}
_lock = threading.Lock()


def _load(path):
    with _lock:
        app = _apps.get(path)
        if app is None:
            spec = importlib.util.spec_from_file_location(
                "validated_%d" % len(_apps), path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            app = _apps[path] = validator(mod.handle_request)
        return app


def handle_request(environ, start_response):
    return _load(environ["WSGI_TEST_WRAPPED"])(environ, start_response)
