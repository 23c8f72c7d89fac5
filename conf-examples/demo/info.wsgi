# Demo handler script: shows how Apache mapped the request.
import os
import sys


def handle_request(environ, start_response):
    keys = ["REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING",
            "SCRIPT_FILENAME", "mod_wsgi.application_group", "mod_wsgi.handler_script",
            "wsgi.multithread", "wsgi.multiprocess"]
    lines = [f"{k} = {environ.get(k)!r}" for k in keys]
    lines.append(f"pid = {os.getpid()}, python = {sys.version.split()[0]}")
    body = ("\n".join(lines) + "\n").encode()
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [body]
