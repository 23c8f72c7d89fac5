# Reports the WSGI environ as JSON: for every key its type name and value
# (str values verbatim, so latin-1 decoding can be checked), plus which
# methods wsgi.input / wsgi.errors offer.  With WSGI_TEST_VALIDATE=1 in the
# request environment (SetEnv) the app runs under wsgiref.validate.validator,
# with every warning turned into an error.
import json
import warnings
from wsgiref.validate import validator

warnings.simplefilter("error")


def _value(v):
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, tuple):
        return [_value(x) for x in v]
    return repr(v)


def app(environ, start_response):
    body_len = 0
    if environ["REQUEST_METHOD"] == "POST":
        inp = environ["wsgi.input"]
        for _ in range(100000):
            b = inp.read(8192)
            if not b:
                break
            body_len += len(b)
    data = {
        "environ": {k: [type(v).__name__, _value(v)] for k, v in environ.items()},
        "input_methods": sorted(m for m in ("read", "readline", "readlines", "__iter__", "close")
                                if callable(getattr(environ["wsgi.input"], m, None))),
        "errors_methods": sorted(m for m in ("write", "writelines", "flush")
                                 if callable(getattr(environ["wsgi.errors"], m, None))),
        "file_wrapper_callable": callable(environ.get("wsgi.file_wrapper")),
        "environ_is_dict": type(environ) is dict,
        "body_len": body_len,
    }
    body = json.dumps(data).encode("ascii")
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


_validated = validator(app)


def handle_request(environ, start_response):
    if environ.get("WSGI_TEST_VALIDATE") == "1":
        return _validated(environ, start_response)
    return app(environ, start_response)
