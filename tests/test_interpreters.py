"""Application groups: which (sub-)interpreter a handler runs in.

One child process only (event: 1 process x 4 threads; prefork: 1 process),
so an id stored on ``sys`` identifies an interpreter deterministically."""

import json
import threading

import pytest

import harness

CONFIG = r"""
WSGIHandlerScript g1 @SCRIPTS@/g1.py application-group=%{GLOBAL}
WSGIHandlerScript g2 @SCRIPTS@/g2.py application-group=%{GLOBAL}
WSGIHandlerScript a1 @SCRIPTS@/a1.py application-group=alpha
WSGIHandlerScript a2 @SCRIPTS@/a2.py application-group=alpha
WSGIHandlerScript b1 @SCRIPTS@/b1.py application-group=beta
WSGIHandlerScript sharedalpha @SCRIPTS@/shared.py application-group=alpha
WSGIHandlerScript sharedbeta @SCRIPTS@/shared.py application-group=beta
WSGIHandlerScript srv @SCRIPTS@/srv.py application-group=%{SERVER}
WSGIHandlerScript res @SCRIPTS@/res.py
WSGIHandlerScript resx @SCRIPTS@/resx.py application-group=%{RESOURCE}
WSGIHandlerScript envg @SCRIPTS@/envg.py application-group=%{ENV:TEST_GROUP}
WSGIHandlerScript dflt @SCRIPTS@/dflt.py
WSGIHandlerScript slow @SCRIPTS@/slow.py application-group=slowgroup
WSGIHandlerScript slowglobal @SCRIPTS@/slowglobal.py application-group=%{GLOBAL}

AddHandler res .res

<Location /g1>
    SetHandler g1
</Location>
<Location /g2>
    SetHandler g2
</Location>
<Location /a1>
    SetHandler a1
</Location>
<Location /a2>
    SetHandler a2
</Location>
<Location /b1>
    SetHandler b1
</Location>
<Location /sharedalpha>
    SetHandler sharedalpha
</Location>
<Location /sharedbeta>
    SetHandler sharedbeta
</Location>
<Location /srv>
    SetHandler srv
</Location>
<Location /res>
    SetHandler res
</Location>
<Location /resx>
    SetHandler resx
</Location>
<Location /env1>
    SetEnv TEST_GROUP envgroup1
    SetHandler envg
</Location>
<Location /env2>
    SetEnv TEST_GROUP envgroup2
    SetHandler envg
</Location>
<Location /agdir>
    WSGIApplicationGroup fromdirective
    SetHandler dflt
</Location>
<Location /agglobal>
    WSGIApplicationGroup %{GLOBAL}
    SetHandler dflt
</Location>
<Location /agalpha>
    WSGIApplicationGroup alpha
    SetHandler dflt
</Location>
<Location /agoverride>
    WSGIApplicationGroup fromdirective
    SetHandler a1
</Location>
<Location /slow>
    SetHandler slow
</Location>
<Location /slowglobal>
    SetHandler slowglobal
</Location>
"""

SLOW_PREFIX = "import time\ntime.sleep(0.5)\n"


@pytest.fixture(scope="module", params=["event", "prefork"])
def server(request, module_apache_factory):
    mpm = request.param
    a = module_apache_factory(mpm=mpm, mpm_settings=harness.SINGLE_CHILD_SETTINGS[mpm])
    for n in ("g1", "g2", "a1", "a2", "b1", "shared", "srv", "res", "resx", "envg", "dflt"):
        a.copy_app("info.py", n + ".py")
    with open(harness.APPS + "/info.py") as f:
        info = f.read()
    a.write_script("slow.py", SLOW_PREFIX + info)
    a.write_script("slowglobal.py", SLOW_PREFIX + info)
    a.write("htdocs/one.res", "x\n")
    a.write("htdocs/two.res", "x\n")
    a.start(CONFIG)
    yield a
    a.stop()


def j(a, path):
    st, _, body = a.get(path)
    assert st == 200, (path, st, body[:2000], a.error_log()[-3000:])
    return json.loads(body)


def test_single_child(server):
    pids = {j(server, p)["pid"] for p in ("/g1", "/a1", "/b1", "/g2")}
    assert len(pids) == 1


def test_global_is_main_interpreter_and_shared(server):
    d1, d2 = j(server, "/g1"), j(server, "/g2")
    assert d1["application_group"] == "" and d2["application_group"] == ""
    assert d1["test_id"] == d2["test_id"]
    assert d1["sys_modules_id"] == d2["sys_modules_id"]
    if d1["interpreter_id"] is not None:
        assert d1["interpreter_id"] == 0, "%{GLOBAL} not in the main interpreter"


def test_named_group_shared_by_handlers(server):
    a1, a2 = j(server, "/a1"), j(server, "/a2")
    assert a1["application_group"] == "alpha" == a2["application_group"]
    assert a1["test_id"] == a2["test_id"]
    assert a1["sys_modules_id"] == a2["sys_modules_id"]
    if a1["interpreter_id"] is not None:
        assert a1["interpreter_id"] != 0


def test_different_groups_are_different_interpreters(server):
    g, a, b = j(server, "/g1"), j(server, "/a1"), j(server, "/b1")
    assert len({g["test_id"], a["test_id"], b["test_id"]}) == 3
    assert len({g["sys_modules_id"], a["sys_modules_id"], b["sys_modules_id"]}) == 3
    ids = {x["interpreter_id"] for x in (g, a, b)}
    if None not in ids:
        assert len(ids) == 3


def test_interpreters_are_isolated(server):
    # builtins are per interpreter
    j(server, "/a1?setmark=alpha-mark")
    j(server, "/b1?setmark=beta-mark")
    j(server, "/g1?setmark=global-mark")
    assert j(server, "/a2")["mark"] == "alpha-mark"
    assert j(server, "/b1")["mark"] == "beta-mark"
    assert j(server, "/g2")["mark"] == "global-mark"


def test_same_script_in_two_groups_loaded_in_each(server):
    a, b = j(server, "/sharedalpha"), j(server, "/sharedbeta")
    assert a["application_group"] == "alpha" and b["application_group"] == "beta"
    assert a["test_id"] != b["test_id"]
    assert a["name"] == b["name"]
    assert a["import_count"] == 1 and b["import_count"] == 1
    # module globals are per interpreter too
    n_alpha = j(server, "/sharedalpha")["module_requests"]
    n_beta = j(server, "/sharedbeta")["module_requests"]
    assert n_alpha == a["module_requests"] + 1
    assert n_beta == b["module_requests"] + 1


def test_script_loaded_once_per_interpreter(server):
    counts = {j(server, "/a1")["import_count"] for _ in range(5)}
    assert counts == {1}


def test_server_group(server):
    d = j(server, "/srv")
    assert d["application_group"] == "127.0.0.1:%d" % server.port


def test_resource_group_is_default(server):
    d = j(server, "/res/some/path")
    e = d["environ"]
    assert d["application_group"] == "127.0.0.1:%d|%s" % (server.port, e["SCRIPT_NAME"])
    assert e["SCRIPT_NAME"].startswith("/res")
    dx = j(server, "/resx")
    assert dx["application_group"] == "127.0.0.1:%d|%s" % (server.port,
                                                          dx["environ"]["SCRIPT_NAME"])


def test_resource_group_with_addhandler_is_per_url(server):
    one, two = j(server, "/one.res"), j(server, "/two.res/pi")
    assert one["application_group"] == "127.0.0.1:%d|/one.res" % server.port
    assert two["application_group"] == "127.0.0.1:%d|/two.res" % server.port
    assert one["test_id"] != two["test_id"]


def test_env_group(server):
    e1, e2 = j(server, "/env1"), j(server, "/env2")
    assert e1["application_group"] == "envgroup1"
    assert e2["application_group"] == "envgroup2"
    assert e1["test_id"] != e2["test_id"]


def test_wsgiapplicationgroup_directive(server):
    d = j(server, "/agdir")
    assert d["application_group"] == "fromdirective"
    g = j(server, "/agglobal")
    assert g["application_group"] == ""
    assert g["test_id"] == j(server, "/g1")["test_id"]
    al = j(server, "/agalpha")
    assert al["application_group"] == "alpha"
    assert al["test_id"] == j(server, "/a1")["test_id"]


def test_handler_option_beats_wsgiapplicationgroup(server):
    d = j(server, "/agoverride")
    assert d["application_group"] == "alpha"
    assert d["test_id"] == j(server, "/a2")["test_id"]


def test_wsgi_multithread_flag(server):
    e = j(server, "/g1")["environ"]
    assert e["wsgi.multithread"] is (server.mpm == "event")
    assert e["wsgi.run_once"] is False


def test_global_stays_main_interpreter_on_threads_that_served_named_groups(server):
    """Alternate many (partly concurrent) requests between named groups and
    %{GLOBAL}: every %{GLOBAL} response comes from the one main interpreter."""
    global_id = j(server, "/g1")["test_id"]
    named_ids = {"/a1": j(server, "/a1")["test_id"], "/b1": j(server, "/b1")["test_id"]}
    results = []
    lock = threading.Lock()

    def worker(k):
        seq = ["/a1", "/g1", "/b1", "/g2", "/sharedbeta", "/g1"] * 4
        for p in seq[k % 3:]:
            try:
                st, _, body = server.get(p)
                r = (p, st, json.loads(body) if st == 200 else body)
            except Exception as e:
                r = (p, None, repr(e))
            with lock:
                results.append(r)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results
    threads_seen = set()
    for p, st, d in results:
        assert st == 200, (p, d)
        threads_seen.add(d["thread"])
        if p in ("/g1", "/g2"):
            assert d["test_id"] == global_id, "GLOBAL request ran outside the main interpreter"
            assert d["application_group"] == ""
            if d["interpreter_id"] is not None:
                assert d["interpreter_id"] == 0
        elif p in named_ids:
            assert d["test_id"] == named_ids[p]
    if server.mpm == "event":
        assert len(threads_seen) > 1, "requests were not spread over threads"


@pytest.mark.parametrize("path", ["/slow", "/slowglobal"])
def test_concurrent_first_requests_import_once(server, path):
    results = []
    lock = threading.Lock()

    def worker():
        try:
            st, _, body = server.get(path, timeout=30)
            r = (st, json.loads(body) if st == 200 else body)
        except Exception as e:
            r = (None, repr(e))
        with lock:
            results.append(r)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 8
    for st, d in results:
        assert st == 200, d
        assert d["import_count"] == 1, "script imported more than once"


def test_zz_error_log_clean(server):
    harness.assert_clean_log(server.error_log())
