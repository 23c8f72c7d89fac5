"""A virtualenv with Flask and Django for the framework tests, kept between
runs outside the repository (reused when it already holds exactly the pinned
packages), world-readable so that Apache's children (www-data) can use it.

Creating it needs the package index; when that fails the caller fails the
test in CI (CI=true) and skips it elsewhere."""

import fcntl
import os
import shutil
import subprocess

import harness

VENV = os.environ.get("WSGI_RS_TEST_VENV", "/var/tmp/wsgi-rs-test-venv")
PYTHON = "/usr/bin/python3"

# Every distribution pinned (Python 3.11 compatible), so runs are repeatable.
REQUIREMENTS = [
    "flask==3.0.3",
    "werkzeug==3.0.6",
    "jinja2==3.1.4",
    "markupsafe==2.1.5",
    "itsdangerous==2.2.0",
    "click==8.1.7",
    "blinker==1.8.2",
    "django==4.2.16",
    "asgiref==3.8.1",
    "sqlparse==0.5.1",
]
MARKER = ".wsgi-rs-requirements"
INSTALL_TIMEOUT = 600


class VenvError(Exception):
    pass


def _marker_text():
    return "\n".join(REQUIREMENTS) + "\n"


def _ready():
    try:
        with open(os.path.join(VENV, MARKER)) as f:
            if f.read() != _marker_text():
                return False
    except OSError:
        return False
    py = os.path.join(VENV, "bin", "python3")
    r = subprocess.run([py, "-c", "import flask, django"], env=harness.child_env(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    return r.returncode == 0


def _run(cmd):
    env = harness.child_env()
    env["PIP_NO_INPUT"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    try:
        r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=INSTALL_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise VenvError("timed out after %ds: %s" % (INSTALL_TIMEOUT, " ".join(cmd)))
    if r.returncode != 0:
        raise VenvError("%s failed (%d):\n%s" % (" ".join(cmd), r.returncode,
                                                  r.stdout.decode(errors="replace")[-4000:]))


def _make_world_readable(root):
    for dirpath, dirnames, filenames in os.walk(root):
        os.chmod(dirpath, os.stat(dirpath).st_mode | 0o755)
        for name in filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                os.chmod(p, os.stat(p).st_mode | 0o444)


def ensure_venv():
    """Returns the virtualenv path, creating it when needed (serialised by a lock)."""
    parent = os.path.dirname(VENV)
    os.makedirs(parent, exist_ok=True)
    with open(VENV + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _ready():
            return VENV
        shutil.rmtree(VENV, ignore_errors=True)
        _run([PYTHON, "-m", "venv", VENV])
        _run([os.path.join(VENV, "bin", "python3"), "-m", "pip", "install", "-q"]
             + REQUIREMENTS)
        _make_world_readable(VENV)
        with open(os.path.join(VENV, MARKER), "w") as f:
            f.write(_marker_text())
        os.chmod(os.path.join(VENV, MARKER), 0o644)
        if not _ready():
            raise VenvError("the virtualenv at %s does not import flask and django" % VENV)
        return VENV
