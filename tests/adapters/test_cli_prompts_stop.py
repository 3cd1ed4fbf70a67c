"""What stopping ``oauth2 prompts`` does to the prompts it already showed
(docs/cli.md, "Stopping it"): Ctrl-C leaves as a closed browser tab does, so the
server's disconnect grace keeps them open (the printed URL still approves, and running
the command again shows them again); SIGTERM leaves at once and ends them."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("jwt")

from tests.adapters.server_kit import approve_via_callback
from tests.adapters.test_cli import (
    KEY,
    Cli,
    Prompts,
    Server,
    cli_env,
    finish,
    oauth_flags,
    provider_accepts,
    start_request,
)
from tests.support import leak_watch
from tests.support.fake_provider import FakeProvider

TIMEOUT = 60
CLIENT_ID = "cli-mail"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("prompts-stop")
    running = Server(f"file:{folder}", cli_env(ROOMSECRETS_JWT_KEY=KEY), "--disconnect-grace", "30")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def cli(server: Server) -> Cli:
    return Cli(server, cli_env(ROOMSECRETS_JWT_KEY=KEY, ROOMSECRETS_SERVER=server.url))


@pytest.fixture
def provider(server: Server) -> Iterator[FakeProvider]:
    with FakeProvider(on_secret=leak_watch.remember_secret) as running:
        running.register_client(CLIENT_ID, redirect_uris=[server.callback])
        yield running


def stopped(prompts: Prompts, signum: int) -> tuple[int, str]:
    prompts.process.send_signal(signum)
    _, rest = prompts.process.communicate(timeout=TIMEOUT)
    return prompts.process.returncode, rest


def test_ctrl_c_keeps_the_prompts_shown_for_the_grace_period(
    cli: Cli, provider: FakeProvider, tmp_path: Path
) -> None:
    agent = cli.mint("agent-int", "--grant", "allow-all")
    person = cli.mint("rosa")
    prompts = Prompts(cli, person, "--json")
    asking = start_request(cli, agent, "--from-participant-id", "rosa", *oauth_flags(provider),
                           "--timeout", "50")
    shown = json.loads(prompts.next_line())
    code, rest = stopped(prompts, signal.SIGINT)
    assert code == 130
    assert rest == (
        "roomsecrets: stopped; prompts still open stay open for the server's "
        "--disconnect-grace (30 s unless set): open their URL, or run oauth2 prompts again to "
        "see them\n")
    time.sleep(1.0)  # the server has seen the socket close by now
    assert asking.poll() is None, "the agent's request ended with the person's Ctrl-C"
    # Running it again within the grace shows the same prompt again.
    again = Prompts(cli, person, "--json")
    try:
        assert json.loads(again.next_line())["request_id"] == shown["request_id"]
    finally:
        again.process.send_signal(signal.SIGINT)
        again.process.communicate(timeout=TIMEOUT)
    # The URL printed before Ctrl-C still approves it.
    status, _, page = approve_via_callback(shown["authorization_url"])
    assert status == 200 and "approved" in page
    exit_code, token, stderr = finish(cli, asking, prints_secret=True)
    assert exit_code == 0, stderr
    assert provider_accepts(provider, token.strip())


def test_ctrl_c_before_any_prompt_says_nothing(cli: Cli) -> None:
    prompts = Prompts(cli, cli.mint("sam"))
    assert stopped(prompts, signal.SIGINT) == (130, "")


def test_sigterm_leaves_at_once_and_ends_the_prompts(
    cli: Cli, provider: FakeProvider
) -> None:
    agent = cli.mint("agent-term", "--grant", "allow-all")
    person = cli.mint("tara")
    prompts = Prompts(cli, person, "--json")
    asking = start_request(cli, agent, "--from-participant-id", "tara", *oauth_flags(provider),
                           "--timeout", "50")
    shown = json.loads(prompts.next_line())
    started = time.monotonic()
    code, rest = stopped(prompts, signal.SIGTERM)
    assert (code, rest) == (143, "")
    exit_code, stdout, stderr = finish(cli, asking, prints_secret=False)
    assert time.monotonic() - started < 15  # not the 30 s grace, nor the 50 s timeout
    assert exit_code == 1 and stdout == ""
    last = stderr.splitlines()[-1]
    assert last.startswith("roomsecrets: error: ") and last.endswith("(request_cancelled)"), last
    status, _, _ = approve_via_callback(shown["authorization_url"])
    assert status == 404  # nothing left to approve
