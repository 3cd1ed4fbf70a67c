"""Session-wide checks. Only the standard library and pytest: tests/core runs on bare Pythons."""

from __future__ import annotations

import pytest

from tests.support import leak_watch


def pytest_configure(config: pytest.Config) -> None:
    leak_watch.install()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    leaks = leak_watch.find_leaks()
    secrets, outputs = leak_watch.counts()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep(
            "-",
            f"secret leak scan: {secrets} secret values against {outputs} log records, "
            f"exception messages, audit events, reprs and CLI outputs: {len(leaks)} leaks",
        )
        for leak in leaks[:20]:
            reporter.write_line("  LEAK " + leak, red=True)
    if leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
