"""``roomsecrets demo``: one command, offline, exits 0 after its 8 checked steps, says
what each did and prints no secret value; ``--open`` on the loopback host and port given,
with the SSH forwarding to reach it from another machine."""

from __future__ import annotations

import asyncio
import io
import os
import queue
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("jwt")

from roomsecrets import demo
from roomsecrets.adapters.remote import RemoteSecretsClient
from roomsecrets.core.errors import InvalidInput
from roomsecrets.dev_provider import OAuthProvider, authorization_redirect, browser_get
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


def test_step_6_says_the_person_has_left_and_no_one_is_asked() -> None:
    out = io.StringIO()
    assert demo.run_demo(out=out) == 0
    [line] = [line for line in out.getvalue().splitlines() if line.startswith("6. ")]
    assert line.startswith("6. offline fetch, without a prompt ")
    assert line.endswith(
        "alice has left; no one is asked; the same token comes back; 0 prompts, 0 token POSTs"
    )
    assert "alice is asked" not in line


# --- demo --open --host --port, for a machine you reach over SSH ---------------------------


class _Lines(io.StringIO):
    """A text stream that hands each printed line to the test as it comes."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: queue.Queue[str] = queue.Queue()
        self._partial = ""

    def write(self, text: str) -> int:
        self._partial += text
        while "\n" in self._partial:
            line, self._partial = self._partial.split("\n", 1)
            self.lines.put(line)
        return len(text)


def _free_port_and_provider_port() -> int:
    """A port P with P and P + 10 both free on 127.0.0.1 (just now)."""
    for _ in range(50):
        with socket.socket() as first, socket.socket() as second:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            if port + demo.PROVIDER_PORT_OFFSET > 65535:
                continue
            try:
                second.bind(("127.0.0.1", port + demo.PROVIDER_PORT_OFFSET))
            except OSError:
                continue
            return port
    raise AssertionError("no two free ports ten apart")


async def _approve_as_alice(server: str, token: str) -> None:
    """What the approval page and the person's browser do, without a browser."""
    async with RemoteSecretsClient(server, token=token) as person:
        await person.connect()
        prompt = await asyncio.wait_for(person.oauth_prompts().__anext__(), 20)
        location = await asyncio.to_thread(authorization_redirect, prompt.authorization_url)
        page = await asyncio.to_thread(browser_get, location)  # /oauth/callback
        assert page.status == 200


def test_demo_open_listens_on_the_host_and_port_given_and_prints_the_ssh_forwarding(
    tmp_path: Path,
) -> None:
    port = _free_port_and_provider_port()
    provider_port = port + 10
    out = _Lines()
    status: list[int] = []
    thread = threading.Thread(
        target=lambda: status.append(
            demo.run_demo(
                data=str(tmp_path), out=out, by_hand=True, by_hand_timeout=30,
                host="127.0.0.1", port=port,
            )
        ),
        daemon=True,
    )
    thread.start()
    printed: list[str] = []
    sign_in = None
    while sign_in is None:
        printed.append(out.lines.get(timeout=30))
        sign_in = re.fullmatch(rf"  http://127\.0\.0\.1:{port}/approve#token=(\S+)", printed[-1])
    token = sign_in.group(1)
    leak_watch.remember_secret(token)
    assert printed[0] == "roomsecrets demo: everything on 127.0.0.1, nothing leaves this machine"
    assert printed[1].startswith(f"  room server      http://127.0.0.1:{port}  (")
    assert printed[2].startswith(f"  OAuth provider   http://127.0.0.1:{provider_port}  (")
    assert printed[4] == (
        "  over SSH         forward both ports from your machine first: ssh -N "
        f"-L {port}:127.0.0.1:{port} -L {provider_port}:127.0.0.1:{provider_port} THIS-MACHINE"
    )

    asyncio.run(_approve_as_alice(f"http://127.0.0.1:{port}", token))
    thread.join(60)
    assert status == [0]
    while not out.lines.empty():
        printed.append(out.lines.get())
    # By hand, steps 2 to 4 are one: yours. The person's page may still be open.
    [offline] = [line for line in printed if line.startswith("4. offline fetch, without a ")]
    assert offline.endswith(
        "   no one is asked; the same token comes back; 0 prompts, 0 token POSTs"
    )
    assert printed[-1].startswith("all 6 steps did what they say")


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "example.com", "", "localhost.example"])
def test_a_host_that_is_not_loopback_is_refused_before_anything_starts(host: str) -> None:
    out = io.StringIO()
    with pytest.raises(InvalidInput) as info:
        demo.run_demo(out=out, by_hand=True, host=host)
    assert str(info.value).startswith(
        f"demo --host must be a loopback address such as 127.0.0.1 or ::1, got {host!r}: "
    )
    assert "ssh -L" in str(info.value)
    assert out.getvalue() == ""


@pytest.mark.parametrize("port", [-1, 65526, 70000, True, 8700.0, "8700"])
def test_a_port_the_two_servers_cannot_both_take_is_refused(port: object) -> None:
    out = io.StringIO()
    with pytest.raises(InvalidInput) as info:
        demo.run_demo(out=out, port=port)  # type: ignore[arg-type]
    assert str(info.value) == (
        "demo --port must be 0 (free ones) or a port up to 65525 (the provider takes "
        f"port + 10), got {port!r}"
    )
    assert out.getvalue() == ""


@pytest.mark.parametrize(
    ("taken", "who"), [(0, "room server"), (10, "development OAuth provider")]
)
def test_a_port_in_use_is_an_error_naming_the_server_and_the_address(
    taken: int, who: str
) -> None:
    port = _free_port_and_provider_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port + taken))
        holder.listen()
        out = io.StringIO()
        with pytest.raises(OSError) as info:
            demo.run_demo(out=out, port=port)
    assert info.value.strerror is not None
    assert info.value.strerror.startswith(f"the {who} cannot listen on 127.0.0.1:{port + taken} (")
    assert out.getvalue() == ""


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_the_demo_runs_on_the_ipv6_loopback_with_bracketed_urls() -> None:
    out = io.StringIO()
    assert demo.run_demo(out=out, host="::1") == 0
    lines = out.getvalue().splitlines()
    assert lines[1].startswith("  room server      http://[::1]:")
    assert lines[2].startswith("  OAuth provider   http://[::1]:")
    assert lines[-1].startswith("all 8 steps did what they say")
    assert demo._ssh_forwarding("http://[::1]:8700", "http://[::1]:8710") == (
        "ssh -N -L 8700:[::1]:8700 -L 8710:[::1]:8710 THIS-MACHINE"
    )
