# Echo the request body read from wsgi.input.
import urllib.parse


def handle_request(environ, start_response):
    q = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    inp = environ["wsgi.input"]
    if "chunk" in q:
        n = int(q["chunk"][0])
        parts = []
        for _ in range(100000):
            b = inp.read(n)
            if not b:
                break
            parts.append(b)
        data = b"".join(parts)
    else:
        data = inp.read()
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("X-Content-Length-Seen", environ.get("CONTENT_LENGTH", "")),
                              ("Content-Length", str(len(data)))])
    return [data]
