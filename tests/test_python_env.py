"""The Python environment: WSGIPythonHome (a virtualenv or a prefix of the
Python we run; anything else fails ``apache2 -t`` saying what was found),
WSGIPythonPath (directories at the front of sys.path, .pth files honoured),
UTF-8 mode under a C locale, atexit functions run at child exit."""

import json
import os
import subprocess
import urllib.parse

import pytest

import harness
import testutil

PY = "/usr/bin/python3"


def make_venv(path):
    subprocess.run([PY, "-m", "venv", "--without-pip", path], check=True, timeout=120,
                   env=harness.child_env())
    for dirpath, dirnames, filenames in os.walk(path):
        os.chmod(dirpath, 0o755)
    site = os.path.join(path, "lib", "python3.11", "site-packages")
    assert os.path.isdir(site), site
    return site


@pytest.fixture(scope="module")
def server(module_apache_factory):
    a = module_apache_factory(mpm="event", mpm_settings=harness.SINGLE_CHILD_SETTINGS["event"])
    a.copy_app("pyenv_app.py")
    a.venv = a.path("venv")
    site = make_venv(a.venv)
    a.write(os.path.relpath(os.path.join(site, "mod_in_venv.py"), a.root), "X = 1\n")
    a.write("pp-a/mod_pp_a.py", "X = 'a'\n")
    a.write("pp-a/extra.pth", a.path("pp-c") + "\n")
    a.write("pp-c/mod_pp_c.py", "X = 'c'\n")
    a.write("pp-b/mod_pp_b.py", "X = 'b'\n")
    conf = ("WSGIPythonHome @ROOT@/venv\n"
            "WSGIPythonPath @ROOT@/pp-a:@ROOT@/pp-b\n"
            "WSGIHandlerScript envmain @SCRIPTS@/pyenv_app.py application-group=%{GLOBAL}\n"
            "WSGIHandlerScript envsub @SCRIPTS@/pyenv_app.py application-group=sub\n"
            "<Location /main>\n    SetHandler envmain\n</Location>\n"
            "<Location /sub>\n    SetHandler envsub\n    SetEnv WSGI_TEST_VALIDATE 1\n"
            "</Location>\n")
    # A C locale, as Apache children often have (no LANG from /etc/apache2/envvars).
    saved = {k: os.environ.get(k) for k in ("LANG", "LC_ALL", "LC_CTYPE")}
    os.environ.update(LANG="C", LC_ALL="C", LC_CTYPE="C")
    try:
        a.start(conf)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    yield a
    a.stop()
    harness.assert_clean_log(a.error_log())


def report(a, path, **params):
    query = urllib.parse.urlencode(params, doseq=True)
    st, _, body = a.get(path + "?" + query)
    assert st == 200, (st, body[:2000], a.error_log()[-3000:])
    return json.loads(body)


MODULES = ["mod_pp_a", "mod_pp_b", "mod_pp_c", "mod_in_venv"]


@pytest.mark.parametrize("path", ["/main", "/sub"])
def test_virtualenv_home(server, path):
    d = report(server, path, **{"import": MODULES})
    assert d["prefix"] == server.venv
    assert d["exec_prefix"] == server.venv
    assert d["base_prefix"] == "/usr"
    assert d["version"] == [3, 11]
    site = os.path.join(server.venv, "lib", "python3.11", "site-packages")
    assert site in d["path"]
    assert d["modules"]["mod_in_venv"] == os.path.join(site, "mod_in_venv.py")
    # include-system-site-packages = false
    assert not [p for p in d["path"] if "dist-packages" in p], d["path"]


@pytest.mark.parametrize("path", ["/main", "/sub"])
def test_python_path_at_front(server, path):
    d = report(server, path, **{"import": MODULES})
    a, b, c = server.path("pp-a"), server.path("pp-b"), server.path("pp-c")
    p = d["path"]
    assert a in p and b in p, p
    stdlib = [i for i, x in enumerate(p) if x.startswith("/usr/lib/python3")]
    assert stdlib and max(p.index(a), p.index(b)) < min(stdlib), p
    assert c in p, "the .pth file in a WSGIPythonPath directory was not processed: %s" % p
    for name, d_name in (("mod_pp_a", a), ("mod_pp_b", b), ("mod_pp_c", c)):
        assert d["modules"][name] == os.path.join(d_name, name + ".py"), d["modules"]


@pytest.mark.parametrize("path", ["/main", "/sub"])
def test_python_path_order_as_written(server, path):
    p = report(server, path)["path"]
    assert p.index(server.path("pp-a")) < p.index(server.path("pp-b")), p


@pytest.mark.parametrize("path", ["/main", "/sub"])
def test_utf8_mode_under_c_locale(server, path):
    d = report(server, path, touch=server.out)
    assert d["lc_all"] == "C"  # the child really has a C locale
    assert d["utf8_mode"] == 1
    assert d["fs_encoding"] == "utf-8"
    assert d["preferred_encoding"].lower().replace("-", "") == "utf8"
    assert "n\u00e4me-\u263a.txt".encode("utf-8") in os.listdir(os.fsencode(server.out))


# ---------------------------------------------------------- apache2 -t checks
@pytest.fixture(scope="module")
def checker(module_apache_factory):
    a = module_apache_factory(mpm="event")
    a.copy_app("pyenv_app.py")
    return a


def configtest(a, conf):
    rc, out = a.configtest(conf + "WSGIHandlerScript h @SCRIPTS@/pyenv_app.py\n")
    return rc, out


def test_python_home_virtualenv_accepted(checker):
    make_venv(checker.path("okvenv"))
    rc, out = configtest(checker, "WSGIPythonHome @ROOT@/okvenv\n")
    assert rc == 0 and "Syntax OK" in out, out


def test_python_home_prefix_accepted(checker):
    rc, out = configtest(checker, "WSGIPythonHome /usr\n")
    assert rc == 0 and "Syntax OK" in out, out


def test_python_home_other_version_venv_rejected(checker):
    checker.write("venv39/pyvenv.cfg", "home = /opt/python3.9/bin\n"
                  "include-system-site-packages = false\nversion = 3.9.2\n")
    checker.write("venv39/lib/python3.9/site-packages/.keep", "")
    rc, out = configtest(checker, "WSGIPythonHome @ROOT@/venv39\n")
    assert rc != 0, out
    assert checker.path("venv39") in out
    assert "3.9" in out and "3.11" in out, out


def test_python_home_other_version_prefix_rejected(checker):
    checker.write("prefix39/lib/python3.9/os.py", "")
    rc, out = configtest(checker, "WSGIPythonHome @ROOT@/prefix39\n")
    assert rc != 0, out
    assert "python3.9" in out and "3.11" in out, out


def test_python_home_not_a_home_rejected(checker):
    os.makedirs(checker.path("emptydir"), exist_ok=True)
    rc, out = configtest(checker, "WSGIPythonHome @ROOT@/emptydir\n")
    assert rc != 0, out
    assert checker.path("emptydir") in out and "3.11" in out, out


def test_python_home_missing_directory_rejected(checker):
    rc, out = configtest(checker, "WSGIPythonHome @ROOT@/does-not-exist\n")
    assert rc != 0, out
    assert checker.path("does-not-exist") in out and "not a directory" in out, out


def test_python_home_in_virtualhost_rejected(checker):
    rc, out = configtest(checker, "<VirtualHost 127.0.0.1:@PORT@>\n"
                                  "    WSGIPythonHome /usr\n</VirtualHost>\n")
    assert rc != 0, out
    assert "WSGIPythonHome" in out, out


# ------------------------------------------------------------------ atexit
@pytest.mark.parametrize("mpm", ["event", "prefork"])
def test_atexit_functions_run_at_child_exit(apache_factory, mpm):
    a = apache_factory(mpm=mpm, mpm_settings=harness.SINGLE_CHILD_SETTINGS[mpm])
    a.copy_app("pyenv_app.py")
    a.start("WSGIPythonHome /usr\n"
            "WSGIHandlerScript envmain @SCRIPTS@/pyenv_app.py application-group=%{GLOBAL}\n"
            "WSGIHandlerScript envsub @SCRIPTS@/pyenv_app.py application-group=sub\n"
            "<Location /main>\n    SetHandler envmain\n</Location>\n"
            "<Location /sub>\n    SetHandler envsub\n</Location>\n")
    expected = []
    for path, group in (("/main", "GLOBAL"), ("/sub", "sub")):
        d = report(a, path, atexit=a.out)
        assert d["prefix"] == "/usr"
        expected.append("atexit-%s-%d" % (group, d["pid"]))
        assert not os.path.exists(os.path.join(a.out, expected[-1]))
    a.stop()
    for name in expected:
        text = testutil.wait_file(os.path.join(a.out, name), timeout=2)
        assert text.startswith("atexit ran in pid "), text
    harness.assert_clean_log(a.error_log())
