"""pytest hooks for the CI rule: with ARCHFS_CI=1 a skipped test fails the run.

A skip in CI means something was not tested (a missing tool, no /dev/fuse),
so the run must not look green. conftest.py imports these hooks; they live
here so a test can load them as a plugin into a separate pytest run.
"""

import os

import pytest

_skips = []  # (nodeid, reason) of this session's skipped tests and modules


def ci_enabled() -> bool:
    return os.environ.get("ARCHFS_CI") == "1"


def _reason(report) -> str:
    longrepr = report.longrepr
    reason = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 \
        else str(longrepr)
    return reason[len("Skipped: "):] if reason.startswith("Skipped: ") else reason


def pytest_sessionstart(session):
    _skips.clear()


def pytest_runtest_logreport(report):
    # An xfail is reported as skipped too but it did run: not counted.
    if report.skipped and not hasattr(report, "wasxfail"):
        _skips.append((report.nodeid, _reason(report)))


def pytest_collectreport(report):
    if report.skipped:  # a whole module skipped, e.g. by importorskip
        _skips.append((report.nodeid, _reason(report)))


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    if ci_enabled() and _skips and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if not (ci_enabled() and _skips):
        return
    terminalreporter.section("ARCHFS_CI=1: skipped tests fail the run", sep="=", red=True)
    for nodeid, reason in _skips:
        terminalreporter.line("SKIPPED %s: %s" % (nodeid, reason))
