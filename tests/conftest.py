"""Session-wide checks. Only the standard library and pytest: tests/core runs on bare Pythons."""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Iterator

import pytest

from tests.support import leak_watch

#: Suites that need tools outside pip: Node with `npm ci`'s packages (tests/interop, and
#: axe-core for tests/browser) and Debian's chromium (tests/browser). On a machine without
#: them they skip, saying what is missing; in CI (`CI` set, as `.ci/run` runs) a skip there
#: means an install step failed, so it fails the run instead of passing it quietly.
_NEEDS_TOOLS = ("tests/interop/", "tests/browser/")
_skipped_for_tools: list[str] = []
#: Under pytest-xdist each worker scans what its own tests produced (a secret and the
#: output it must not reach are always in one process) and hands the result here.
_worker_scans: list[tuple[list[str], int, int]] = []


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """An xdist worker ended: keep its leak scan for the controller's report."""
    scan = getattr(node, "workeroutput", {}).get("leak_scan")
    if scan is not None:
        leaks, secrets, outputs = json.loads(scan)
        _worker_scans.append((leaks, secrets, outputs))


def pytest_configure(config: pytest.Config) -> None:
    leak_watch.install()
    if os.environ.get("ROOMSECRETS_NO_HYPOTHESIS_DEADLINE"):
        # .ci/run runs tests/core on the other CPythons at low priority beside the main
        # suite: a wall-clock deadline there measures the scheduler, not the code.
        # Before collection, so every @settings made at import inherits it.
        from hypothesis import settings

        settings.register_profile("roomsecrets-no-deadline", deadline=None)
        settings.load_profile("roomsecrets-no-deadline")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Build a failure report with the garbage collector paused.

    On CPython 3.11.7 (seen here; the bug family of CPython gh-106905), a finalizer the
    GC runs while pytest parses source for a failure report (an asyncio task logging
    "exception was never retrieved") makes ``ast.parse`` raise "SystemError: AST
    constructor recursion depth mismatch", and pytest stops the whole run with
    INTERNALERROR instead of reporting the one failed test. Pausing costs nothing.
    """
    paused = call.excinfo is not None and gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and report.nodeid.startswith(_NEEDS_TOOLS):
        _skipped_for_tools.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    leaks = leak_watch.find_leaks()
    secrets, outputs = leak_watch.counts()
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller reports and decides
        workeroutput["leak_scan"] = json.dumps([leaks, secrets, outputs])
        return
    for worker_leaks, worker_secrets, worker_outputs in _worker_scans:
        leaks += worker_leaks
        secrets += worker_secrets
        outputs += worker_outputs
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    in_ci = bool(os.environ.get("CI"))
    if reporter is not None:
        reporter.write_sep(
            "-",
            f"secret leak scan: {secrets} secret values against {outputs} log records, "
            f"exception messages, audit events, reprs and CLI outputs: {len(leaks)} leaks",
        )
        for leak in leaks[:20]:
            reporter.write_line("  LEAK " + leak, red=True)
        if _skipped_for_tools:
            reporter.write_line(
                f"{len(_skipped_for_tools)} interop/browser tests skipped for a missing tool "
                "(node packages: `npm ci`; Debian's chromium); .ci/run installs both"
                + ("; in CI that is a failure" if in_ci else ""),
                red=in_ci,
                yellow=not in_ci,
            )
    if leaks or (in_ci and _skipped_for_tools):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
