"""Where a handler name is visible: case-insensitive names, vhost scoping,
narrower contexts re-registering a name, <Files>, .htaccess."""

import pytest

import harness

CONFIG = r"""
LoadModule rewrite_module /usr/lib/apache2/modules/mod_rewrite.so

WSGIHandlerScript mainh @SCRIPTS@/mainh.py
<Location /mainh>
    SetHandler mainh
</Location>

# Case: registered mixed case, selected in other cases.
WSGIHandlerScript MyMixed @SCRIPTS@/mixed.py
AddHandler mymixed .mixed
AddHandler MYMIXED .mixed2
<Location /mixed-loc>
    SetHandler MYMIXED
</Location>

# Narrower contexts re-register a name.
WSGIHandlerScript same @SCRIPTS@/same_outer.py
AddHandler same .same
<Location /same>
    SetHandler same
</Location>
<Location /same/narrow>
    WSGIHandlerScript same @SCRIPTS@/same_inner.py
</Location>
<Directory @HTDOCS@/dirsame>
    WSGIHandlerScript same @SCRIPTS@/same_dir.py
</Directory>

# A name registered only for one directory (and below).
AddHandler dirh .dh
<Directory @HTDOCS@/dirscope>
    WSGIHandlerScript dirh @SCRIPTS@/dirh.py
</Directory>

<Files "only.fh">
    WSGIHandlerScript filesh @SCRIPTS@/filesh.py
    SetHandler filesh
</Files>

# Names with no registration anywhere / only in .htaccess.
AddHandler unregistered .unreg
AddHandler htah .hta
AddHandler vh .vh

<Directory @HTDOCS@/hta_noperm>
    AllowOverride Indexes
</Directory>
<Directory @HTDOCS@/hta_none>
    AllowOverride None
</Directory>

<VirtualHost 127.0.0.1:@PORT@>
    ServerName 127.0.0.1
    RewriteEngine On
    RewriteRule ^/rw/ - [H=MyMixed]
</VirtualHost>
<VirtualHost 127.0.0.1:@PORT@>
    ServerName a.test
    WSGIHandlerScript vh @SCRIPTS@/vh_a.py
</VirtualHost>
<VirtualHost 127.0.0.1:@PORT@>
    ServerName b.test
</VirtualHost>
<VirtualHost 127.0.0.1:@PORT@>
    ServerName c.test
    WSGIHandlerScript vh @SCRIPTS@/vh_c.py
    WSGIHandlerScript mainh @SCRIPTS@/mainh_c.py
</VirtualHost>
"""

APPS = ["mainh", "mixed", "same_outer", "same_inner", "same_dir", "dirh", "filesh",
        "vh_a", "vh_c", "mainh_c", "htah", "same_hta", "htabad"]


@pytest.fixture(scope="module")
def server(module_apache_factory):
    a = module_apache_factory(mpm="event")
    for n in APPS:
        a.copy_app("hello.py", n + ".py")
    for f in ["x.mixed", "x.mixed2", "f.same", "dirsame/f.same", "dirsame/sub/g.same",
              "dirscope/f.dh", "dirscope/deeper/g.dh", "outside.dh", "only.fh",
              "other.fh", "page.vh", "x.unreg",
              "hta/x.hta", "hta/sub/y.hta", "hta_other/z.hta", "hta_same/f.same",
              "hta_noperm/x.hta", "hta_none/x.hta", "hta_bad/x.hta", "hta_badpg/x.hta"]:
        a.write("htdocs/" + f, "STATIC %s\n" % f)
    a.write("htdocs/hta/.htaccess",
            "WSGIHandlerScript htah @SCRIPTS@/htah.py\n".replace("@SCRIPTS@", a.scripts))
    a.write("htdocs/hta_same/.htaccess",
            "WSGIHandlerScript same %s/same_hta.py\n" % a.scripts)
    for d in ("hta_noperm", "hta_none"):
        a.write("htdocs/%s/.htaccess" % d,
                "WSGIHandlerScript htah %s/htabad.py\n" % a.scripts)
    a.write("htdocs/hta_bad/.htaccess",
            "WSGIHandlerScript htah %s/htabad.py foo=bar\n" % a.scripts)
    a.write("htdocs/hta_badpg/.htaccess",
            "WSGIHandlerScript htah %s/htabad.py process-group=nosuchgroup\n" % a.scripts)
    a.start(CONFIG)
    yield a
    a.stop()


def hello(a, path, host=None):
    headers = {"Host": host} if host else None
    st, _, body = a.get(path, headers=headers)
    return st, body.decode("latin-1")


def assert_app(a, path, app, host=None):
    st, body = hello(a, path, host)
    assert (st, body) == (200, "hello from %s.py\n" % app), (path, host, a.error_log()[-2000:])


def assert_static(a, path, host=None):
    st, body = hello(a, path, host)
    assert "hello from" not in body, (path, host, body)
    assert (st, body) == (200, "STATIC %s\n" % path.lstrip("/")), (path, host)


# ------------------------------------------------------------ names and case
def test_mixed_case_registration_addhandler(server):
    assert_app(server, "/x.mixed", "mixed")
    assert_app(server, "/x.mixed2", "mixed")


def test_mixed_case_sethandler(server):
    assert_app(server, "/mixed-loc", "mixed")
    assert_app(server, "/mixed-loc/sub", "mixed")


def test_verbatim_handler_from_rewrite_is_matched_case_insensitively(server):
    # mod_rewrite's [H=...] sets r->handler without lowercasing it.
    assert_app(server, "/rw/anything", "mixed")


def test_unregistered_handler_name_declined(server):
    assert_static(server, "/x.unreg")


def test_main_server_handler(server):
    assert_app(server, "/mainh", "mainh")


# ------------------------------------------------------------------- vhosts
def test_vhost_registration_visible_only_in_its_vhost(server):
    assert_app(server, "/page.vh", "vh_a", host="a.test")
    assert_static(server, "/page.vh", host="b.test")
    assert_static(server, "/page.vh")  # the 127.0.0.1 vhost
    assert_app(server, "/page.vh", "vh_c", host="c.test")


def test_vhosts_inherit_main_server_handlers(server):
    assert_app(server, "/mainh", "mainh", host="a.test")
    assert_app(server, "/mainh", "mainh", host="b.test")


def test_vhost_reregistration_wins(server):
    assert_app(server, "/mainh", "mainh_c", host="c.test")


# -------------------------------------------------------- narrower contexts
def test_location_reregistration_wins(server):
    assert_app(server, "/same", "same_outer")
    assert_app(server, "/same/other", "same_outer")
    assert_app(server, "/same/narrow", "same_inner")
    assert_app(server, "/same/narrow/deeper", "same_inner")


def test_directory_reregistration_wins(server):
    assert_app(server, "/f.same", "same_outer")
    assert_app(server, "/dirsame/f.same", "same_dir")
    assert_app(server, "/dirsame/sub/g.same", "same_dir")


def test_directory_registration_visible_only_there_and_below(server):
    assert_app(server, "/dirscope/f.dh", "dirh")
    assert_app(server, "/dirscope/deeper/g.dh", "dirh")
    assert_static(server, "/outside.dh")


def test_files_section(server):
    assert_app(server, "/only.fh", "filesh")
    assert_static(server, "/other.fh")


# ----------------------------------------------------------------- .htaccess
def test_htaccess_registration(server):
    assert_app(server, "/hta/x.hta", "htah")
    assert_app(server, "/hta/sub/y.hta", "htah")
    assert_static(server, "/hta_other/z.hta")


def test_htaccess_reregistration_wins(server):
    assert_app(server, "/f.same", "same_outer")
    assert_app(server, "/hta_same/f.same", "same_hta")


def test_htaccess_ignored_with_allowoverride_none(server):
    assert_static(server, "/hta_none/x.hta")


def test_htaccess_needs_fileinfo_override(server):
    mark = server.log_mark()
    st, body = hello(server, "/hta_noperm/x.hta")
    assert st == 500
    assert "hello from" not in body
    log = server.wait_log(".htaccess", mark)
    assert "not allowed here" in log, log


def test_htaccess_bad_option_is_500_naming_file(server):
    mark = server.log_mark()
    st, body = hello(server, "/hta_bad/x.hta")
    assert st == 500
    log = server.wait_log("hta_bad/.htaccess", mark)
    assert "Invalid option" in log or "foo" in log, log


def test_htaccess_undefined_process_group_is_500(server):
    mark = server.log_mark()
    st, body = hello(server, "/hta_badpg/x.hta")
    assert st == 500
    assert "hello from" not in body
    log = server.wait_log("nosuchgroup", mark)
    assert "hta_badpg/.htaccess" in log, log


def test_server_still_serves_after_htaccess_errors(server):
    assert_app(server, "/hta/x.hta", "htah")


def test_zz_error_log_clean(server):
    harness.assert_clean_log(server.error_log())
