"""docs/by-hand.md runs as written: every ```sh block of the page, in order, in one bash,
and each line of its ```text blocks appears in what those commands print.

How the test runs the page, and every way that differs from a person at a terminal:

- ``SERVER_PORT`` and ``PROVIDER_PORT`` are set to free ports first; the page's first
  block keeps them (``${SERVER_PORT:-8700}``). In the text blocks, 8700 and 8710 stand
  for them.
- bash runs with job control (``set -m``), as an interactive shell does, so the page's
  ``kill %3 %2 %1`` stops whole jobs.
- A background command (a line that ends with ``&``) runs with its stderr in a file, and
  the next command waits for its first line there, as a person waits to see it.
- A command that exits non-zero stops the run, and the test fails naming it.
- The environment is clean: no ``ROOMSECRETS_*`` or proxy variables; ``TMPDIR`` is the
  test's folder (the page's ``mktemp -d`` lands there); this Python's ``roomsecrets``
  comes first on ``PATH``.

Whatever happens, every job the page started is stopped at the end (its process group).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("jwt")

PAGE = Path(__file__).resolve().parents[1] / "docs" / "by-hand.md"
REPO = PAGE.parents[1]
#: The page's ports, which the text blocks show.
PAGE_SERVER_PORT, PAGE_PROVIDER_PORT = "8700", "8710"
RUN_TIMEOUT = 180
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_BACKGROUND = re.compile(r"(?<!&)&[ \t]*$")


def page_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of each fenced block, in order."""
    return [(language, body) for language, body in _FENCE.findall(text)]


def commands(block: str) -> list[str]:
    """The commands of a sh block: one per line, a line ending in ``\\`` continued on
    the next; blank lines and comment lines left out."""
    found: list[str] = []
    pending = ""
    for line in block.splitlines():
        pending += line
        if line.endswith("\\"):
            pending += "\n"
            continue
        if pending.strip() and not pending.lstrip().startswith("#"):
            found.append(pending)
        pending = ""
    assert not pending, "a sh block ends with a continued line"
    return found


def script(steps: list[str], jobs: Path) -> str:
    """The bash script that runs ``steps`` (see the module docstring)."""
    lines = [
        "set -m",
        "ready() {  # wait for the first line a background command prints",
        "  for _ in $(seq 1200); do [ -s \"$1\" ] && return 0; sleep 0.05; done",
        "  printf '@@@ not ready: step %s\\n' \"$2\" >&2; exit 98",
        "}",
    ]
    for index, step in enumerate(steps):
        if _BACKGROUND.search(step):
            err = jobs / f"step-{index}.err"
            lines += [
                "{ " + _BACKGROUND.sub("", step),
                f"}} 2>>'{err}' &",
                f"echo $! >> '{jobs / 'pids'}'",
                f"ready '{err}' {index}",
            ]
        else:
            lines += [
                step,
                f"status=$?; [ $status -eq 0 ] || {{ printf '@@@ failed: step %s, exit status "
                f"%s\\n' {index} $status >&2; exit 97; }}",
            ]
    # Reap the jobs the page stopped (a person's shell does as it prints the next prompt).
    lines.append("wait")
    return "\n".join(lines) + "\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def expected_line(line: str, ports: dict[str, str]) -> re.Pattern[str]:
    """A text block's line as a pattern: ``…`` matches anything, a run of spaces or
    tabs any run of them, the page's ports the test's."""
    for shown, real in ports.items():
        line = line.replace(shown, real)
    parts = []
    for piece in re.split(r"(…|[ \t]+)", line.strip()):
        if piece == "…":
            parts.append(".*")
        elif piece and piece.isspace():
            parts.append(r"[ \t]+")
        else:
            parts.append(re.escape(piece))
    return re.compile("".join(parts))


def stop_jobs(pids_file: Path) -> None:
    if not pids_file.exists():
        return
    groups = [int(pid) for pid in pids_file.read_text().split()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for group in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, sig)
        time.sleep(0.5)


def listening(ports: list[str], within: float = 10.0) -> list[str]:
    """The ports still accepting connections after ``within`` seconds (a stopped
    program may take a moment to close its socket)."""
    deadline = time.monotonic() + within
    while True:
        still = []
        for port in ports:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", int(port))) == 0:
                    still.append(port)
        if not still or time.monotonic() > deadline:
            return still
        time.sleep(0.1)


def test_the_page_marks_its_commands_unambiguously() -> None:
    languages = [language for language, _ in page_blocks(PAGE.read_text(encoding="utf-8"))]
    # Only two kinds: what runs (sh) and what it prints (text); no unmarked block.
    assert set(languages) == {"sh", "text"}
    assert languages[0] == "sh"


def test_the_walkthrough_runs_as_written(tmp_path: Path) -> None:
    if shutil.which("curl") is None or shutil.which("bash") is None:
        pytest.skip("the walkthrough needs bash and curl")
    blocks = page_blocks(PAGE.read_text(encoding="utf-8"))
    steps = [command for language, body in blocks if language == "sh" for command in commands(body)]
    # The page's own words: the flow the issue asks for, in this order.
    words = ["roomsecrets serve", "roomsecrets dev-provider", "token mint", "oauth2 prompts",
             "oauth2 request", "curl -fsSL", "oauth2 get", "oauth2 list", "oauth2 delete",
             "kill %3 %2 %1"]
    positions = [next(i for i, step in enumerate(steps) if word in step) for word in words]
    assert positions == sorted(positions), "the walkthrough's steps are out of order"

    ports = {PAGE_SERVER_PORT: str(free_port()), PAGE_PROVIDER_PORT: str(free_port())}
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    (jobs / "run.sh").write_text(script(steps, jobs))
    environ = {
        name: value for name, value in os.environ.items()
        if not name.startswith("ROOMSECRETS_") and "proxy" not in name.lower()
    }
    environ.update(
        PATH=os.path.dirname(sys.executable) + os.pathsep + environ.get("PATH", ""),
        PYTHONPATH=str(REPO) + os.pathsep + environ.get("PYTHONPATH", ""),
        TMPDIR=str(home),
        SERVER_PORT=ports[PAGE_SERVER_PORT],
        PROVIDER_PORT=ports[PAGE_PROVIDER_PORT],
    )
    # Files, not pipes: a job the page failed to stop would hold a pipe open forever.
    with open(jobs / "out", "w") as out, open(jobs / "err", "w") as err:
        run = subprocess.Popen(
            ["bash", str(jobs / "run.sh")], cwd=tmp_path, env=environ, stdin=subprocess.DEVNULL,
            stdout=out, stderr=err, start_new_session=True,
        )
        try:
            run.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        finally:
            still_listening = listening(list(ports.values()))
            stop_jobs(jobs / "pids")
    stdout = (jobs / "out").read_text(errors="replace")
    stderr = (jobs / "err").read_text(errors="replace")
    printed = stdout + stderr + "".join(
        path.read_text(errors="replace") for path in sorted(jobs.glob("step-*.err"))
    )
    failed = re.search(r"@@@ (failed|not ready): step (\d+)", stderr)
    assert failed is None, (
        f"{failed.group(1)}: {steps[int(failed.group(2))]!r}\n{printed}" if failed else "")
    assert run.returncode == 0, printed
    # The page's last step stopped the server and the provider.
    assert still_listening == [], printed

    lines = [line.strip() for line in printed.replace("\r", "\n").splitlines()]
    for language, body in blocks:
        if language != "text":
            continue
        for shown in body.splitlines():
            if not shown.strip():
                continue
            pattern = expected_line(shown, ports)
            assert any(pattern.fullmatch(line) for line in lines), (
                f"the page shows {shown!r}, which nothing printed:\n{printed}")
