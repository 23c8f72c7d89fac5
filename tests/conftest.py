"""pytest fixtures for the mod_wsgi_rs real-Apache tests.

Run with:  /usr/bin/python3 -m pytest tests/ -q
The module is taken from $WSGI_RS_SO or target/release/libmod_wsgi_rs.so;
tests that need it are skipped when it has not been built.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "nomodule: test does not need the built mod_wsgi_rs module")


def pytest_collection_modifyitems(config, items):
    if harness.module_available():
        return
    skip = pytest.mark.skip(reason="module not built: %s" % harness.module_so())
    for item in items:
        if "nomodule" not in item.keywords:
            item.add_marker(skip)


class _Factory:
    def __init__(self):
        self.servers = []

    def __call__(self, *args, **kw):
        a = harness.Apache(*args, **kw)
        self.servers.append(a)
        return a

    def cleanup(self):
        errors = []
        for a in reversed(self.servers):
            try:
                a.cleanup()
            except Exception as e:  # keep cleaning the others
                errors.append(e)
        self.servers = []
        if errors:
            raise errors[0]


@pytest.fixture
def apache_factory():
    """Function-scoped: make Apache instances, always stopped and removed."""
    f = _Factory()
    yield f
    f.cleanup()


@pytest.fixture(scope="module")
def module_apache_factory():
    """Module-scoped variant, for servers shared by the tests of one file."""
    f = _Factory()
    yield f
    f.cleanup()
