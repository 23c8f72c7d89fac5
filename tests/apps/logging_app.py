# Writes marked text through wsgi.errors, sys.stdout, sys.stderr and the
# logging module, as ?case=NAME&m=MARK says.  WSGI_TEST_VALIDATE=1 (SetEnv)
# runs it under wsgiref.validate.validator with warnings as errors.
import json
import logging
import sys
import urllib.parse
import warnings
from wsgiref.validate import validator

warnings.simplefilter("error")


def app(environ, start_response):
    q = urllib.parse.parse_qs(environ["QUERY_STRING"])
    case = q["case"][0]
    m = q["m"][0]
    err = environ["wsgi.errors"]
    result = {}
    if case == "errors":
        err.write("%s-one " % m)
        err.write("%s-two\n" % m)                 # one line: "<m>-one <m>-two"
        err.write("%s-l1\n%s-l2\n%s-l3\n" % (m, m, m))
        err.writelines(["%s-wl1\n" % m, "%s-wl2 " % m, "continued\n"])
        err.write("%s-flushed" % m)
        result["flush"] = repr(err.flush())       # a flush emits the partial line
        err.write("%s-tail-without-newline" % m)  # emitted at the end of the request
        if "nobytes" not in q:  # the validator's wrapper asserts str itself
            try:
                err.write(b"bytes")
                result["bytes"] = None
            except TypeError:
                result["bytes"] = "TypeError"
    elif case == "stdout":
        print("%s-print" % m)
        sys.stdout.write("%s-write\n" % m)
        sys.stdout.flush()
    elif case == "stderr":
        print("%s-print-stderr" % m, file=sys.stderr)
        sys.stderr.write("%s-write-stderr\n" % m)
    elif case == "logging_last_resort":
        # No handler configured anywhere in this interpreter: lastResort
        # (a handler on sys.stderr) prints WARNING and above.
        result["root_handlers"] = len(logging.getLogger().handlers)
        log = logging.getLogger("wsgi_rs_test.lastresort")
        log.info("%s-info-not-shown", m)
        log.warning("%s-warning-last-resort", m)
    elif case == "logging_basic":
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
        log = logging.getLogger("wsgi_rs_test.basic")
        log.info("%s-info-basic", m)
        log.error("%s-error-basic", m)
    elif case == "unicode":
        sys.stderr.write("%s-unicode-\u00e9\u263a\n" % m)
        err.write("%s-errors-unicode-\u00e9\u263a\n" % m)
    else:
        raise ValueError(case)
    body = json.dumps(result).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


_validated = validator(app)


def handle_request(environ, start_response):
    if environ.get("WSGI_TEST_VALIDATE") == "1":
        return _validated(environ, start_response)
    return app(environ, start_response)
