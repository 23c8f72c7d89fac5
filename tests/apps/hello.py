# Minimal handler: returns a fixed text naming this script.
import os

TAG = os.path.basename(__file__)


def handle_request(environ, start_response):
    body = ("hello from %s\n" % TAG).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
