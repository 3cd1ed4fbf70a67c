"""The session-wide secret leak scan fails a run that leaks, in one process and under
pytest-xdist (each worker scans its own tests and the controller decides)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_a_planted_leak_fails_the_run(workers: list[str]) -> None:
    pytest.importorskip("xdist") if workers else None
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *workers,
         "tests/support/planted_leak_case.py"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 1, done.stdout[-2000:]
    assert "1 passed" in done.stdout
    assert "secret leak scan: 1 secret values" in done.stdout
    assert ": 1 leaks" in done.stdout
