# A small, ordinary Flask application (nothing mod_wsgi_rs specific).
import hashlib

from flask import Flask, jsonify, make_response, redirect, request, url_for

app = Flask(__name__)


@app.route("/")
def index():
    return "flask index"


@app.route("/hello/<name>")
def hello(name):
    return "hello %s" % name


@app.route("/query")
def query():
    return jsonify({k: request.args.getlist(k) for k in request.args})


@app.route("/form", methods=["POST"])
def form():
    return jsonify({k: request.form.getlist(k) for k in request.form})


@app.route("/json", methods=["POST"])
def json_echo():
    data = request.get_json()
    return jsonify({"received": data, "type": type(data).__name__}), 201


@app.route("/upload", methods=["POST"])
def upload():
    f = request.files["file"]
    h = hashlib.sha256()
    size = 0
    for chunk in iter(lambda: f.stream.read(65536), b""):
        h.update(chunk)
        size += len(chunk)
    return jsonify({"filename": f.filename, "sha256": h.hexdigest(), "size": size,
                    "note": request.form.get("note")})


@app.route("/setcookie")
def setcookie():
    resp = make_response("cookies set")
    resp.set_cookie("flask_a", "1")
    resp.set_cookie("flask_b", "two words", httponly=True)
    return resp


@app.route("/getcookie")
def getcookie():
    return jsonify(dict(request.cookies))


@app.route("/redirect")
def go():
    return redirect(url_for("target"))


@app.route("/target")
def target():
    return "target reached"


@app.route("/urls")
def urls():
    return jsonify({"script_root": request.script_root, "path": request.path,
                    "target": url_for("target"),
                    "external": url_for("target", _external=True),
                    "url": request.url})


@app.route("/boom")
def boom():
    raise RuntimeError("flask boom")
