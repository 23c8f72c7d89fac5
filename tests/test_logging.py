"""wsgi.errors (write/writelines/flush, line-buffered, request-bound, error
level), sys.stdout (info level) and sys.stderr (error level) into Apache's
error log, and the logging module's default output (lastResort and
basicConfig) ending up there too."""

import json
import uuid

import pytest

import harness
import testutil

CONFIG = r"""
WSGIHandlerScript logm @SCRIPTS@/logging_app.py application-group=%{GLOBAL}
WSGIHandlerScript loglr @SCRIPTS@/logging_app.py application-group=lastresort
WSGIHandlerScript logbasic @SCRIPTS@/logging_app.py application-group=basic
<Location /log>
    SetHandler logm
</Location>
<Location /vlog>
    SetHandler logm
    SetEnv WSGI_TEST_VALIDATE 1
</Location>
<Location /lastresort>
    SetHandler loglr
</Location>
<Location /basic>
    SetHandler logbasic
</Location>
"""


@pytest.fixture(scope="module")
def server(module_apache_factory):
    # LogLevel info (not debug), as a production server would have it.
    a = module_apache_factory(mpm="event", log_level="info")
    a.copy_app("logging_app.py")
    a.start(CONFIG)
    yield a
    a.stop()
    harness.assert_clean_log(a.error_log())


def run(a, path, case, extra=""):
    m = "mk" + uuid.uuid4().hex[:10]
    mark = a.log_mark()
    st, _, body = a.get("%s?case=%s&m=%s%s" % (path, case, m, extra))
    assert st == 200, (st, body[:2000], a.log_since(mark)[-3000:])
    return m, mark, json.loads(body)


def lines_for(log, text):
    """Log lines whose message is exactly `text` -> list of lines."""
    return [line for line in log.splitlines() if line.endswith("] " + text)]


def wait_message(a, mark, text, timeout=5.0):
    a.wait_log("] " + text, mark, timeout=timeout)
    found = lines_for(a.log_since(mark), text)
    assert found, "%r not logged as a whole line:\n%s" % (text, a.log_since(mark)[-3000:])
    return found


def test_wsgi_errors_line_buffered_error_level(server):
    m, mark, d = run(server, "/log", "errors")
    expected = ["%s-one %s-two" % (m, m), m + "-l1", m + "-l2", m + "-l3", m + "-wl1",
                m + "-wl2 continued", m + "-flushed", m + "-tail-without-newline"]
    wait_message(server, mark, expected[-1])
    log = server.log_since(mark)
    positions = []
    for text in expected:
        found = lines_for(log, text)
        assert len(found) == 1, (text, log)
        line = found[0]
        assert "[wsgi_rs:error]" in line, line
        assert "[client 127.0.0.1:" in line, line  # the request's log
        positions.append(log.index(line))
    assert positions == sorted(positions), "lines out of order:\n" + log
    assert d == {"flush": "None", "bytes": "TypeError"}


def test_wsgi_errors_partial_line_flushed_at_request_end(server):
    m, mark, _ = run(server, "/log", "errors")
    wait_message(server, mark, m + "-tail-without-newline")


def test_stdout_goes_to_error_log_at_info(server):
    m, mark, _ = run(server, "/log", "stdout")
    for text in (m + "-print", m + "-write"):
        found = wait_message(server, mark, text)
        assert len(found) == 1 and "[wsgi_rs:info]" in found[0], found


def test_stdout_is_not_logged_as_error(server):
    m, mark, _ = run(server, "/log", "stdout")
    log = server.log_since(mark)
    assert not [line for line in testutil.wsgi_rs_lines(log, "error") if m in line], log


def test_stderr_goes_to_error_log_at_error(server):
    m, mark, _ = run(server, "/log", "stderr")
    for text in (m + "-print-stderr", m + "-write-stderr"):
        found = wait_message(server, mark, text)
        assert len(found) == 1 and "[wsgi_rs:error]" in found[0], found


def test_logging_last_resort_handler(server):
    m, mark, d = run(server, "/lastresort", "logging_last_resort")
    assert d["root_handlers"] == 0
    found = wait_message(server, mark, m + "-warning-last-resort")
    assert "[wsgi_rs:error]" in found[0]
    assert m + "-info-not-shown" not in server.log_since(mark)


def test_logging_basic_config(server):
    m, mark, _ = run(server, "/basic", "logging_basic")
    wait_message(server, mark, "ERROR wsgi_rs_test.basic %s-error-basic" % m)
    wait_message(server, mark, "INFO wsgi_rs_test.basic %s-info-basic" % m)


def apache_escaped(text):
    """Apache writes bytes >= 0x80 of a log message as \\xNN."""
    return "".join(chr(b) if b < 0x80 else "\\x%02x" % b for b in text.encode("utf-8"))


def test_non_ascii_text_is_utf8(server):
    m, mark, _ = run(server, "/log", "unicode")
    wait_message(server, mark, apache_escaped(m + "-unicode-\u00e9\u263a"))
    wait_message(server, mark, apache_escaped(m + "-errors-unicode-\u00e9\u263a"))


def test_validated_wsgi_errors(server):
    m, mark, d = run(server, "/vlog", "errors", "&nobytes=1")
    wait_message(server, mark, m + "-tail-without-newline")
    log = server.log_since(mark)
    bad = [line for line in testutil.wsgi_rs_lines(log, "error") if m not in line]
    assert not bad, log
    assert "AssertionError" not in log and "Warning" not in log


def test_zz_error_log_clean(server):
    harness.assert_clean_log(server.error_log())
