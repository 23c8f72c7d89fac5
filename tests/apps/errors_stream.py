# Write a line given in the query string to wsgi.errors.
import urllib.parse


def handle_request(environ, start_response):
    q = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    err = environ["wsgi.errors"]
    err.write("WSGI-ERRORS %s\n" % q.get("marker", ["none"])[0])
    err.flush()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"logged\n"]
