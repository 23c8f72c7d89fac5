# Demo handler script: the callable is always `handle_request`.
def handle_request(environ, start_response):
    name = environ.get("PATH_INFO", "").strip("/") or "world"
    body = f"Hello, {name}! (served by mod_wsgi_rs)\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"),
                              ("Content-Length", str(len(body)))])
    return [body]
