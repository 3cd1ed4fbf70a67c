"""``oauth2 request`` redraws its "waiting for A to approve (N s left)" line in place only
on a terminal it has in the foreground. Run in the background of a shell (``... &``, as
docs/by-hand.md does), it shares the terminal with what the person types: it prints
whole lines instead, as it does into a pipe or a file."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHOW = (
    "import os, sys\n"
    "from roomsecrets.cli import _redraws\n"
    "print('front', _redraws(sys.stderr), flush=True)\n"
    "child = os.fork()\n"
    "if child == 0:\n"
    "    os.setpgid(0, 0)  # a job of its own, not the terminal's foreground one\n"
    "    print('back', _redraws(sys.stderr), flush=True)\n"
    "    os._exit(0)\n"
    "os.waitpid(child, 0)\n"
)


def environ() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.mark.skipif(os.name != "posix", reason="terminals with job control")
def test_only_the_terminal_s_foreground_job_redraws_its_line() -> None:
    # pty.fork: the child's session has the new terminal as its controlling terminal,
    # with the child in the foreground, as a shell runs a command.
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execve(sys.executable, [sys.executable, "-c", SHOW], environ())
    out = b""
    try:
        while True:
            try:
                chunk = os.read(fd, 1024)
            except OSError:  # EIO: the terminal's last user has gone
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(fd)
        os.waitpid(pid, 0)
    lines = out.decode().split()
    assert lines == ["front", "True", "back", "False"], out


def test_a_pipe_is_never_redrawn() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from roomsecrets.cli import _redraws; "
         "print(_redraws(sys.stderr))"],
        env=environ(), capture_output=True, text=True, timeout=60,
    )
    assert done.stdout.strip() == "False"
