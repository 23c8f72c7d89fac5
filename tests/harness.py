"""Test harness: a private, real Apache httpd with the mod_wsgi_rs module.

Every ``Apache`` instance owns a fresh temporary directory holding its own
configuration, ServerRoot, PidFile, DefaultRuntimeDir, mutex directory, error
log, document root and WSGI scripts.  It listens on 127.0.0.1 only, on a free
port, and is started as ``/usr/sbin/apache2 -f <conf> -DFOREGROUND``.  It is
stopped through its own PID (never by process name) and its directory removed.

Configuration text given by tests may use these placeholders:

    @ROOT@     the server's temporary directory (also its ServerRoot)
    @HTDOCS@   <root>/htdocs (the DocumentRoot)
    @SCRIPTS@  <root>/scripts (where WSGI scripts are written)
    @OUT@      <root>/out (world-writable, for marker files written by apps)
    @PORT@     the listening port
"""

import http.client
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
APPS = os.path.join(HERE, "apps")

APACHE_BIN = "/usr/sbin/apache2"
MODULE_DIR = "/usr/lib/apache2/modules"

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
HTTP_TIMEOUT = 10.0

# Lines that must never appear in the error log of a healthy server.
BAD_LOG_PATTERNS = (
    "AH00045",  # child process still did not exit, sending a SIGTERM
    "AH00046",  # child process still did not exit, sending a SIGKILL
    "Fatal Python error",
    "long lost child",
    "Segmentation fault",
    "exit signal",  # AH00052: child pid N exit signal ...
    "panicked at",  # a Rust panic message
    "Exception ignored",  # e.g. threading._shutdown failing at interpreter exit
)

MPM_SETTINGS = {
    "event": """\
StartServers 1
ServerLimit 2
ThreadsPerChild 10
MaxRequestWorkers 20
MinSpareThreads 5
MaxSpareThreads 20
""",
    "worker": """\
StartServers 1
ServerLimit 2
ThreadsPerChild 10
MaxRequestWorkers 20
MinSpareThreads 5
MaxSpareThreads 20
""",
    "prefork": """\
StartServers 2
MinSpareServers 1
MaxSpareServers 4
ServerLimit 10
MaxRequestWorkers 10
""",
}

# One child process only, so that per-process state (interpreter identity)
# is deterministic.
SINGLE_CHILD_SETTINGS = {
    "event": """\
StartServers 1
ServerLimit 1
ThreadsPerChild 4
MaxRequestWorkers 4
MinSpareThreads 1
MaxSpareThreads 4
""",
    "worker": """\
StartServers 1
ServerLimit 1
ThreadsPerChild 4
MaxRequestWorkers 4
MinSpareThreads 1
MaxSpareThreads 4
""",
    "prefork": """\
StartServers 1
MinSpareServers 1
MaxSpareServers 1
ServerLimit 1
MaxRequestWorkers 1
""",
}


def module_so():
    """Path of the built module (WSGI_RS_SO overrides)."""
    return os.environ.get("WSGI_RS_SO") or os.path.join(
        REPO, "target", "release", "libmod_wsgi_rs.so"
    )


def module_available():
    return os.path.isfile(module_so())


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env():
    env = dict(os.environ)
    for k in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONUSERBASE"):
        env.pop(k, None)
    return env


def running_as_root():
    return os.geteuid() == 0


def find_bad_log_lines(text, patterns=BAD_LOG_PATTERNS):
    return [line for line in text.splitlines() if any(p in line for p in patterns)]


def assert_clean_log(text, patterns=BAD_LOG_PATTERNS):
    bad = find_bad_log_lines(text, patterns)
    assert not bad, "error log contains forbidden lines:\n" + "\n".join(bad)


class ApacheError(Exception):
    pass


class Apache:
    """A private Apache httpd instance in its own temporary directory."""

    def __init__(self, mpm="event", load_module=True, mpm_settings=None,
                 extra_modules=(), log_level=None):
        assert mpm in MPM_SETTINGS, mpm
        self.mpm = mpm
        self.load_module = load_module
        self.mpm_settings = MPM_SETTINGS[mpm] if mpm_settings is None else mpm_settings
        self.extra_modules = tuple(extra_modules)
        self.log_level = log_level or os.environ.get("WSGI_RS_TEST_LOGLEVEL", "info")
        self.root = tempfile.mkdtemp(prefix="wsgirs-test-")
        os.chmod(self.root, 0o755)
        self.htdocs = os.path.join(self.root, "htdocs")
        self.scripts = os.path.join(self.root, "scripts")
        self.out = os.path.join(self.root, "out")
        self.rundir = os.path.join(self.root, "run")
        for d in (self.htdocs, self.scripts, self.rundir):
            os.mkdir(d)
            os.chmod(d, 0o755)
        os.mkdir(self.out)
        os.chmod(self.out, 0o777)
        self.conf = os.path.join(self.root, "httpd.conf")
        self.pidfile = os.path.join(self.rundir, "httpd.pid")
        self.errorlog_path = os.path.join(self.root, "error.log")
        self.stdout_path = os.path.join(self.root, "stdout.log")
        self.port = free_port()
        self.proc = None
        self._stdout_file = None
        self._configtest_count = 0
        self.last_configtest_path = None
        self.extra_conf = ""
        # Static file used to decide that the server is ready.
        self.write("htdocs/__ready.txt", "ready\n")

    # ----------------------------------------------------------------- files
    def path(self, rel):
        return os.path.join(self.root, rel)

    def subst(self, text):
        return (text.replace("@ROOT@", self.root)
                .replace("@HTDOCS@", self.htdocs)
                .replace("@SCRIPTS@", self.scripts)
                .replace("@OUT@", self.out)
                .replace("@PORT@", str(self.port)))

    def write(self, rel, text, mode=0o644, mtime=None):
        """Write a file (relative to the root), creating directories 0755."""
        p = os.path.join(self.root, rel)
        d = os.path.dirname(p)
        self._makedirs(d)
        data = text.encode() if isinstance(text, str) else text
        tmp = p + ".tmp-write"
        with open(tmp, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, p)
        if mtime is not None:
            os.utime(p, (mtime, mtime))
        return p

    def _makedirs(self, d):
        parts = []
        while not os.path.isdir(d):
            parts.append(d)
            d = os.path.dirname(d)
        for x in reversed(parts):
            os.mkdir(x)
            os.chmod(x, 0o755)

    def write_script(self, name, text, **kw):
        return self.write(os.path.join("scripts", name), text, **kw)

    def copy_app(self, app, name=None):
        """Copy tests/apps/<app> to <root>/scripts/<name or app>."""
        with open(os.path.join(APPS, app), "rb") as f:
            data = f.read()
        return self.write(os.path.join("scripts", name or app), data)

    def touch(self, p, delta=10):
        """Move a file's mtime forward by `delta` seconds."""
        st = os.stat(p)
        t = max(st.st_mtime, time.time()) + delta
        os.utime(p, (t, t))

    # ---------------------------------------------------------------- config
    def base_config(self):
        user = ""
        if running_as_root():
            user = "User www-data\nGroup www-data\n"
        mods = ["authz_core", "mime", "env", "alias", "dir"] + list(self.extra_modules)
        loads = "".join(
            "LoadModule %s_module %s/mod_%s.so\n" % (m, MODULE_DIR, m) for m in mods
        )
        conf = """\
# generated by tests/harness.py
ServerRoot "{root}"
PidFile "{pidfile}"
DefaultRuntimeDir "{rundir}"
Mutex file:{rundir} default
ErrorLog "{errorlog}"
LogLevel {loglevel}
Listen 127.0.0.1:{port}
ServerName 127.0.0.1
{user}GracefulShutdownTimeout 3
Timeout 20
KeepAliveTimeout 2
LoadModule mpm_{mpm}_module {moddir}/mod_mpm_{mpm}.so
{mpm_settings}{loads}TypesConfig /etc/mime.types
DocumentRoot "{htdocs}"
<Directory />
    AllowOverride None
    Require all denied
</Directory>
<Directory "{htdocs}">
    AllowOverride All
    Require all granted
</Directory>
<Directory "{scripts}">
    AllowOverride None
    Require all granted
</Directory>
DirectoryIndex index.html
""".format(root=self.root, pidfile=self.pidfile, rundir=self.rundir,
           errorlog=self.errorlog_path, loglevel=self.log_level, port=self.port,
           user=user, mpm=self.mpm, moddir=MODULE_DIR,
           mpm_settings=self.mpm_settings, loads=loads, htdocs=self.htdocs,
           scripts=self.scripts)
        if self.load_module:
            conf += 'LoadModule wsgi_rs_module "%s"\n' % module_so()
        core_dir = os.environ.get("WSGI_RS_CORE_DIR")
        if core_dir:
            # Debugging aid: children write core files there (with `ulimit -c`).
            conf += 'CoreDumpDirectory "%s"\n' % core_dir
        return conf

    def config_text(self, extra=""):
        return self.base_config() + "# --- test configuration ---\n" + self.subst(extra)

    def set_config(self, extra):
        """Write httpd.conf with the test's extra configuration."""
        self.extra_conf = extra
        with open(self.conf, "w") as f:
            f.write(self.config_text(extra))
        os.chmod(self.conf, 0o644)
        return self.conf

    def line_of(self, needle, path=None):
        """1-based line number of the first line containing `needle`."""
        path = path or self.last_configtest_path or self.conf
        with open(path) as f:
            for i, line in enumerate(f, 1):
                if needle in line:
                    return i
        raise AssertionError("%r not found in %s" % (needle, path))

    def configtest(self, extra=""):
        """Run ``apache2 -t`` on base config + `extra`; returns (rc, output).

        The config is written to its own file (see last_configtest_path)."""
        self._configtest_count += 1
        path = os.path.join(self.root, "configtest-%d.conf" % self._configtest_count)
        with open(path, "w") as f:
            f.write(self.config_text(extra))
        self.last_configtest_path = path
        p = subprocess.run([APACHE_BIN, "-t", "-f", path], env=child_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=30)
        return p.returncode, p.stdout.decode("utf-8", "replace")

    # -------------------------------------------------------------- lifecycle
    def start(self, extra=None, wait=True):
        if extra is not None:
            self.set_config(extra)
        elif not os.path.exists(self.conf):
            self.set_config(self.extra_conf)
        assert self.proc is None, "already started"
        self._stdout_file = open(self.stdout_path, "ab")
        self.proc = subprocess.Popen(
            [APACHE_BIN, "-f", self.conf, "-DFOREGROUND"],
            env=child_env(), stdin=subprocess.DEVNULL,
            stdout=self._stdout_file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if wait:
            self.wait_ready()
        return self

    def _startup_output(self):
        out = ""
        try:
            with open(self.stdout_path, errors="replace") as f:
                out += "--- stdout/stderr ---\n" + f.read()
        except OSError:
            pass
        out += "\n--- error.log ---\n" + self.error_log()
        return out

    def wait_ready(self, timeout=START_TIMEOUT):
        """Wait until the pid file exists and a static file is served."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self._reap()
                raise ApacheError("apache2 exited with %s during startup\n%s"
                                  % (rc, self._startup_output()))
            if os.path.exists(self.pidfile):
                try:
                    st, _, body = self.get("/__ready.txt", timeout=2)
                    if st == 200:
                        return
                    last = "status %s" % st
                except (OSError, http.client.HTTPException) as e:
                    last = repr(e)
            time.sleep(0.05)
        raise ApacheError("apache2 not ready after %.0fs (%s)\n%s"
                          % (timeout, last, self._startup_output()))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def _signal_cmd(self, what):
        return subprocess.run([APACHE_BIN, "-f", self.conf, "-k", what],
                              env=child_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=30)

    def stop(self, timeout=STOP_TIMEOUT):
        """Stop with ``apache2 -k stop``; return seconds until the parent exited.

        Falls back to SIGTERM to our own PID if the command fails."""
        if self.proc is None:
            return 0.0
        if self.proc.poll() is not None:
            self._reap()
            return 0.0
        t0 = time.monotonic()
        r = self._signal_cmd("stop")
        if r.returncode != 0:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ApacheError("apache2 did not stop within %.0fs (%s)"
                              % (timeout, r.stdout.decode(errors="replace")))
        elapsed = time.monotonic() - t0
        self._reap()
        return elapsed

    def kill(self):
        """SIGKILL our Apache: the parent by PID, then its own process group.

        The process group was created by us (start_new_session) and holds only
        the Apache parent and the children it forked."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        try:
            os.kill(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._reap()

    def _reap(self):
        if self._stdout_file:
            self._stdout_file.close()
            self._stdout_file = None
        self.proc = None

    def generation_count(self):
        return self.error_log().count("resuming normal operations")

    def _restart(self, what, timeout):
        assert self.running(), "not running"
        before = self.generation_count()
        t0 = time.monotonic()
        r = self._signal_cmd(what)
        if r.returncode != 0:
            raise ApacheError("apache2 -k %s failed: %s"
                              % (what, r.stdout.decode(errors="replace")))
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self._reap()
                raise ApacheError("apache2 exited (%s) during %s\n%s"
                                  % (rc, what, self._startup_output()))
            if self.generation_count() > before:
                break
            time.sleep(0.02)
        else:
            raise ApacheError("no new generation %.0fs after -k %s\n%s"
                              % (timeout, what, self.error_log()))
        self.wait_ready(timeout=max(1.0, deadline - time.monotonic()))
        return time.monotonic() - t0

    def graceful(self, timeout=START_TIMEOUT):
        """``apache2 -k graceful``; returns seconds until the new generation serves."""
        return self._restart("graceful", timeout)

    def restart(self, timeout=START_TIMEOUT):
        """``apache2 -k restart``; returns seconds until the new generation serves."""
        return self._restart("restart", timeout)

    def cleanup(self):
        try:
            if self.running():
                try:
                    self.stop()
                except Exception:
                    self.kill()
            elif self.proc is not None:
                self._reap()
        finally:
            if os.environ.get("WSGI_RS_KEEP_TMP"):
                print("keeping", self.root)
            else:
                shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------------- HTTP
    def get(self, path, headers=None, method="GET", body=None, timeout=HTTP_TIMEOUT):
        """One HTTP request on a fresh connection: (status, headers, body)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, resp.msg, data
        finally:
            conn.close()

    def post(self, path, body, headers=None, **kw):
        return self.get(path, headers=headers, method="POST", body=body, **kw)

    # ------------------------------------------------------------------- logs
    def error_log(self):
        try:
            with open(self.errorlog_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_mark(self):
        try:
            return os.path.getsize(self.errorlog_path)
        except FileNotFoundError:
            return 0

    def log_since(self, mark):
        try:
            with open(self.errorlog_path, "rb") as f:
                f.seek(mark)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, needle, mark=0, timeout=5.0):
        """Wait (bounded) until `needle` (str or compiled regex) is logged
        after offset `mark`; returns the log text since `mark`."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_since(mark)
            if (needle.search(text) if isinstance(needle, re.Pattern) else needle in text):
                return text
            if time.monotonic() >= deadline:
                raise AssertionError("%r not found in error log within %.0fs; log since mark:\n%s"
                                     % (needle, timeout, text[-6000:]))
            time.sleep(0.05)

    def assert_clean_log(self, patterns=BAD_LOG_PATTERNS):
        assert_clean_log(self.error_log(), patterns)


def pid_alive(pid):
    """True if `pid` exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except FileNotFoundError:
        return False
    state = data.rsplit(")", 1)[1].split()[0]
    return state != "Z"


def wait_pids_gone(pids, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if pid_alive(p)]
        if not alive:
            return []
        time.sleep(0.05)
    return [p for p in pids if pid_alive(p)]
