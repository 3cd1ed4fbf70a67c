"""Every ```python block in README.md is a complete script that runs as written.

Each block is read from the README at test time, saved as a file and run in a fresh
interpreter with only the repository on the path, in development mode with warnings
as errors (an unclosed socket or a coroutine never awaited fails it). Each must exit
0 and print what its section says it does.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IN_PROCESS = "The Secrets API, in one process"
CORE = "Using the core's pure pieces"
# What the development provider's codes and tokens look like (tests/adapters/test_demo.py).
SECRET_SHAPES = re.compile(r"\b(?:ac|at|rt)_[\w-]{20,}")


def readme_python_blocks() -> list[tuple[str, str]]:
    """(the heading a block stands under, the block's code), in README order."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = []
    for found in re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M):
        headings = re.findall(r"^## (.+)$", text[: found.start()], flags=re.M)
        blocks.append((headings[-1] if headings else "", found.group(1)))
    return blocks


BLOCKS = readme_python_blocks()
#: asyncio's development-mode timing warning (``slow_callback_duration``), one line.
SLOW_STEP = re.compile(r"^Executing <.*> took \d+\.\d+ seconds\n", re.M)


def run_block(code: str, folder: Path) -> subprocess.CompletedProcess[str]:
    script = folder / "example.py"
    script.write_text(code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROOMSECRETS_", "PYTHON"))}
    env["PYTHONPATH"] = str(REPO)
    # The agent's request waits up to 300 s for an answer: an example that asks before
    # anyone answers runs into this timeout instead of passing.
    return subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", str(script)],
        cwd=folder, env=env, capture_output=True, text=True, timeout=60,
    )


def test_the_readme_has_the_two_examples_under_their_headings():
    assert [heading for heading, _ in BLOCKS] == [IN_PROCESS, CORE]


@pytest.mark.parametrize(
    "code", [code for _, code in BLOCKS], ids=[heading for heading, _ in BLOCKS]
)
def test_every_python_block_runs_as_written(code: str, tmp_path: Path) -> None:
    done = run_block(code, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    # Development mode also reports any loop step slower than 0.1 s: on a loaded
    # machine (CI's 2 cores under xdist) that is the machine, not the example.
    assert SLOW_STEP.sub("", done.stderr) == ""
    assert done.stdout.strip()
    assert not SECRET_SHAPES.search(done.stdout)


def block(heading: str) -> str:
    return next(code for under, code in BLOCKS if under == heading)


def test_the_in_process_example_shows_the_whole_flow_as_a_script():
    code = block(IN_PROCESS)
    for name in ("SecretsService", "MemoryStore", "SecretsGrant", "OAuthRule", "OAuthProvider",
                 ".request_oauth_token(", ".oauth_prompts()", ".provide_oauth_authorization(",
                 ".get_offline_oauth_token(", ".list_user_secrets()", ".delete_user_secret("):
        assert name in code, name
    # The agent's request and the person's answer run at the same time, in a script.
    assert "asyncio.gather(" in code
    assert code.rstrip().endswith("asyncio.run(main())")


def test_the_in_process_example_gets_the_token_again_offline_then_deletes_it(tmp_path):
    done = run_block(block(IN_PROCESS), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "the same token, without a prompt: True"
    assert re.fullmatch(
        r"SecretInfo\(id='oauth-\w+', type='oauth_token', name='my-client @ 127\.0\.0\.1', "
        r"delegated_to='agent-1', delegated_by=None\)",
        lines[1],
    )
    assert lines[2:] == ["after the delete: None"]


def test_the_core_example_defines_state_and_sends_the_request_with_urllib(tmp_path):
    code = block(CORE)
    assert "state = secrets.token_urlsafe(" in code
    assert "urllib.request.urlopen(" in code
    done = run_block(code, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("TokenSet(token_type='Bearer', ")
    assert "scopes=('mail.read',), has_refresh_token=True" in lines[0]
    assert lines[1:] == ["needs refresh: False"]
