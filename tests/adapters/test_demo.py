"""``roomsecrets demo``: one command, offline, exits 0 after its 8 checked steps, and
prints no secret value."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("jwt")

from roomsecrets import demo
from roomsecrets.dev_provider import OAuthProvider
from tests.support import leak_watch

REPO = Path(__file__).resolve().parents[2]
STEPS = (
    "request",
    "the prompt reaches the person",
    "the person approves at the provider",
    "/oauth/callback completes it",
    "the agent gets the token",
    "offline fetch, without a prompt",
    "expiry, one refresh for 50 callers",
    "delete, then an offline fetch",
)
# What a secret looks like here: a JWT, the provider's codes and tokens, hex keys.
SECRET_SHAPES = re.compile(r"eyJ[\w-]+\.[\w-]+|\b(?:ac|at|rt)_[\w-]{20,}|\b[0-9a-f]{64}\b")


def test_the_demo_runs_as_one_command_and_prints_no_secret(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSECRETS_")}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, "-m", "roomsecrets", "demo", "--data", str(tmp_path / "data")],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    for number, title in enumerate(STEPS, 1):
        step = [line for line in lines if line.startswith(f"{number}. {title} ")]
        assert len(step) == 1, (number, title)
        assert re.search(r"\d+\.\d ms", step[0])
    assert "1 refresh POST" in done.stdout
    assert "FAILED" not in done.stdout
    assert lines[-1].startswith("all 8 steps did what they say")
    assert not SECRET_SHAPES.search(done.stdout)
    key = (tmp_path / "data" / "jwt.key").read_text().strip()
    assert key not in done.stdout


def test_the_demos_output_holds_none_of_the_secrets_the_provider_saw(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []

    class Watched(OAuthProvider):
        def __init__(self, **settings: object) -> None:
            on_secret = settings.pop("on_secret")

            def both(value: str) -> None:
                seen.append(value)
                leak_watch.remember_secret(value)  # and the whole run's logs are scanned
                on_secret(value)  # type: ignore[operator]

            super().__init__(on_secret=both, **settings)  # type: ignore[arg-type]

    monkeypatch.setattr(demo, "OAuthProvider", Watched)
    out = io.StringIO()
    assert demo.run_demo(out=out) == 0
    text = out.getvalue()
    assert len(seen) >= 7  # state, code, verifier, two access and two refresh tokens
    assert not [value for value in seen if value in text]


def test_a_step_that_does_not_do_what_it_says_fails_the_demo(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class NoRefresh(OAuthProvider):
        @property
        def refresh_posts(self) -> int:  # as if 50 callers had made 0 or 2 POSTs
            return 0

    monkeypatch.setattr(demo, "OAuthProvider", NoRefresh)
    out = io.StringIO()
    assert demo.run_demo(out=out) == 1
    assert "7. FAILED: not exactly one refresh POST" in out.getvalue()
    assert "all 8 steps" not in out.getvalue()
