"""The unmodified meshagent-api SDK in its own Python 3.13 venv, found or made.

The SDK needs Python >= 3.13 and pins ``aiohttp~=3.13.0``, while the server needs
aiohttp >= 3.14.1: the SDK runs as a client process from ``.venv-meshagent`` at the
repository root (git ignores ``.venv*/``). Where no Python 3.13 is found the suite
skips, saying why; under ``CI=true`` that is a failure instead.
"""

from __future__ import annotations

import functools
import glob
import os
import pathlib
import shutil
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
VENV = REPO / ".venv-meshagent"
SDK = "meshagent-api==0.44.13"
SDK_VERSION = "0.44.13"


def _give_up(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"the meshagent SDK suite cannot run in CI: {reason}")
    pytest.skip(reason)


def _python_313() -> str | None:
    # pyenv's own builds first: its python3.13 shim on PATH may refuse to run.
    roots = [os.environ.get("PYENV_ROOT", ""), str(pathlib.Path.home() / ".pyenv")]
    for root in filter(None, roots):
        candidates = sorted(glob.glob(os.path.join(root, "versions", "3.13*", "bin", "python")))
        if candidates:
            return candidates[-1]
    found = shutil.which("python3.13")
    if found and subprocess.run([found, "-c", ""], capture_output=True).returncode == 0:
        return found
    return None


def _has_sdk(python: pathlib.Path) -> bool:
    if not python.exists():
        return False
    probe = "import meshagent.api.version as v; print(v.__version__)"
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=120)
    return done.returncode == 0 and done.stdout.strip() == SDK_VERSION


@functools.cache
def _sdk_python() -> str:
    python = VENV / "bin" / "python"
    if _has_sdk(python):
        return str(python)
    base = _python_313()
    if base is None:
        _give_up("no Python 3.13 found (python3.13 on PATH or pyenv's versions/3.13*)")
        raise AssertionError("unreachable")
    made = subprocess.run([base, "-m", "venv", str(VENV)], capture_output=True, text=True)
    if made.returncode != 0:
        _give_up(f"could not make {VENV.name}: {made.stderr.strip()[-300:]}")
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", SDK],
        capture_output=True, text=True, timeout=900,
    )
    if installed.returncode != 0 or not _has_sdk(python):
        _give_up(f"could not install {SDK} into {VENV.name}: {installed.stderr.strip()[-300:]}")
    return str(python)


def sdk_python() -> str:
    """The path of the 3.13 venv's python with meshagent-api 0.44.13; skips (fails in
    CI) where it cannot be had."""
    try:
        return _sdk_python()
    except subprocess.TimeoutExpired:
        _give_up("making the meshagent SDK venv timed out")
        raise AssertionError("unreachable") from None
