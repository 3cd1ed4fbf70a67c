"""A participant token is a bearer token: it goes to a server only over TLS, or to a
loopback host, unless the caller allows plain http explicitly (RFC 6750 §5.3). The
client, the CLI's client commands and `token mint --login-url` follow the same rule."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("jwt")

from roomsecrets.adapters.remote import RemoteSecretsClient
from roomsecrets.adapters.server.http_api import check_server_url
from roomsecrets.adapters.server.participant_tokens import mint_participant_token
from roomsecrets.core import errors
from roomsecrets.core.grants import SecretsGrant
from tests.support import leak_watch

REPO = Path(__file__).resolve().parents[2]
KEY = secrets.token_urlsafe(40)
TOKEN = mint_participant_token(
    KEY, room="r1", participant_id="alice", name="Alice", grant=SecretsGrant(), ttl=600
)
leak_watch.remember_secret(TOKEN)

CLEAR_TEXT = [
    "http://rooms.example:8700",
    "http://10.0.0.5",
    "HTTP://rooms.example/",
    "http://app.localhost:8700",  # resolved through DNS on glibc hosts
    "http://[2001:db8::1]:8700",
]
LOOPBACK_OR_TLS = [
    "http://127.0.0.1:8700",
    "http://127.3.2.1",
    "http://[::1]:8700",
    "http://localhost:8700",
    "https://rooms.example",
    "https://10.0.0.5:8443/base",
]


@pytest.mark.parametrize("url", CLEAR_TEXT)
def test_the_client_refuses_to_send_its_token_in_clear_text_to_another_host(url: str) -> None:
    with pytest.raises(errors.InsecureEndpointError) as info:
        RemoteSecretsClient(url, token=TOKEN)
    assert TOKEN not in str(info.value)
    assert "RFC 6750 §5.3" in str(info.value)


@pytest.mark.parametrize("url", LOOPBACK_OR_TLS)
def test_loopback_and_https_servers_are_accepted(url: str) -> None:
    client = RemoteSecretsClient(url, token=TOKEN)
    asyncio.run(client.close())


@pytest.mark.parametrize("url", CLEAR_TEXT)
def test_plain_http_to_another_host_is_allowed_only_when_asked_for(url: str) -> None:
    client = RemoteSecretsClient(url, token=TOKEN, allow_insecure_http=True)
    asyncio.run(client.close())
    assert check_server_url(url, allow_insecure_http=True) == url


@pytest.mark.parametrize("url", ["ftp://rooms.example", "rooms.example", "http://", 7, None])
def test_a_server_url_that_is_not_http_is_invalid_input_even_when_insecure_is_allowed(
    url: object,
) -> None:
    with pytest.raises(errors.InvalidInput) as info:
        check_server_url(url, allow_insecure_http=True)
    assert type(info.value) is errors.InvalidInput


def roomsecrets_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSECRETS_")}
    environ["PYTHONPATH"] = str(REPO) + os.pathsep + environ.get("PYTHONPATH", "")
    environ["ROOMSECRETS_JWT_KEY"] = KEY
    return subprocess.run(
        [sys.executable, "-m", "roomsecrets", *argv],
        env=environ, capture_output=True, text=True, timeout=60,
    )


def test_a_client_command_refuses_a_clear_text_server_before_connecting() -> None:
    done = roomsecrets_cli(
        "participant", "list", "--room", "r1",
        "--server", "http://rooms.example:8700", "--token", TOKEN,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip().endswith("(insecure_endpoint)")
    assert "--allow-insecure-http" in done.stderr


def test_login_url_refuses_a_clear_text_server_unless_allowed() -> None:
    args = ["token", "mint", "--room", "r1", "--participant-id", "alice", "--store", "memory",
            "--login-url", "--server", "http://rooms.example:8700"]
    refused = roomsecrets_cli(*args)
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert "(insecure_endpoint)" in refused.stderr
    allowed = roomsecrets_cli(*args, "--allow-insecure-http")
    assert allowed.returncode == 0, allowed.stderr
    url = allowed.stdout.strip()
    leak_watch.remember_secret(url.partition("#token=")[2])
    assert url.startswith("http://rooms.example:8700/approve#token=")
