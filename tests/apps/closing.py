# Returns an iterable whose close() writes a marker file named in the query.
import os
import urllib.parse


class Body:
    def __init__(self, path, chunks):
        self.path = path
        self.chunks = chunks

    def __iter__(self):
        return iter(self.chunks)

    def close(self):
        with open(self.path, "w") as f:
            f.write("closed\n")


def handle_request(environ, start_response):
    q = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    path = os.path.join(q["dir"][0], q["name"][0])
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Body(path, [b"part1-", b"part2-", b"part3\n"])
