"""``roomsecrets token mint --login-url``: one URL on the server that opens the approval
page signed in as the participant; the token rides in the fragment, never in a query."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from roomsecrets.adapters.server.participant_tokens import read_participant_token
from tests.support import leak_watch

REPO = Path(__file__).resolve().parents[2]
KEY = secrets.token_urlsafe(40)


def mint(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSECRETS_")}
    environ["PYTHONPATH"] = str(REPO) + os.pathsep + environ.get("PYTHONPATH", "")
    environ["ROOMSECRETS_JWT_KEY"] = KEY
    environ.update(env)
    done = subprocess.run(
        [sys.executable, "-m", "roomsecrets", *argv],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    for line in done.stdout.splitlines():
        leak_watch.remember_secret(urllib.parse.urlsplit(line).fragment.partition("=")[2])
    return done


def token_of(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    assert parts.query == ""
    name, _, token = parts.fragment.partition("=")
    assert name == "token"
    return token


@pytest.mark.parametrize(
    ("where", "env"),
    [
        (["--server", "https://rooms.example:8443/"], {}),
        ([], {"ROOMSECRETS_SERVER": "https://rooms.example:8443"}),
    ],
)
def test_login_url_is_the_page_on_the_server_with_the_token_in_the_fragment(
    where: list[str], env: dict[str, str]
) -> None:
    done = mint(
        "token", "mint", "--room", "r1", "--participant-id", "alice", "--name", "Alice",
        "--login-url", *where, **env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert len(lines) == 1
    url = lines[0]
    assert url.startswith("https://rooms.example:8443/approve#token=")
    who = read_participant_token(token_of(url), KEY, room="r1")
    assert (who.participant_id, who.name) == ("alice", "Alice")


def test_server_before_the_subcommand_and_the_default_server() -> None:
    before = mint(
        "--server", "http://127.0.0.1:9000", "token", "mint", "--room", "r1",
        "--participant-id", "bob", "--login-url",
    )
    assert before.returncode == 0, before.stderr
    assert before.stdout.startswith("http://127.0.0.1:9000/approve#token=")
    default = mint("token", "mint", "--room", "r1", "--participant-id", "bob", "--login-url")
    assert default.stdout.startswith("http://127.0.0.1:8700/approve#token=")


def test_without_login_url_mint_still_prints_only_the_jwt() -> None:
    done = mint("token", "mint", "--room", "r1", "--participant-id", "carol")
    assert done.returncode == 0
    token = done.stdout.strip()
    leak_watch.remember_secret(token)
    assert token.count(".") == 2 and "://" not in token
    assert read_participant_token(token, KEY, room="r1").participant_id == "carol"


def test_a_server_that_is_not_a_web_address_is_one_error_line() -> None:
    done = mint(
        "token", "mint", "--room", "r1", "--participant-id", "dan", "--login-url",
        "--server", "ftp://rooms.example",
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert "--server must be an http or https URL" in done.stderr


def test_demo_offers_open_to_approve_by_hand() -> None:
    done = mint("demo", "--help")
    assert done.returncode == 0
    assert "--open" in done.stdout and "sign-in URL" in done.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_names_the_approval_page_and_takes_a_grace_period() -> None:
    port = _free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSECRETS_")}
    environ["PYTHONPATH"] = str(REPO) + os.pathsep + environ.get("PYTHONPATH", "")
    environ["ROOMSECRETS_JWT_KEY"] = KEY
    argv = [sys.executable, "-m", "roomsecrets", "serve", "--port", str(port), "--store",
            "memory", "--disconnect-grace", "5"]
    server = subprocess.Popen(argv, env=environ, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        first = server.stderr.readline()
        url = f"http://127.0.0.1:{port}"
        assert f"approval page {url}/approve" in first, first
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url + "/approve", timeout=10) as page:
            assert page.status == 200
            assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
    finally:
        server.terminate()
        server.communicate(timeout=10)
    refused = mint("serve", "--port", str(port), "--store", "memory", "--disconnect-grace", "-1")
    assert refused.returncode == 2  # a bad flag is a usage error
    assert refused.stderr == (
        "roomsecrets: error: serve: argument --disconnect-grace: '-1' must be between 0 and "
        "3600 seconds (usage_error)\n")
