"""The unmodified meshagent-api 0.44.13 SDK, in its own 3.13 venv, against ``create_app``.

Each test starts the room server on 127.0.0.1 and the development provider
(``roomsecrets.testing.OAuthProvider``), then runs one scenario of ``sdk_client.py``
with the SDK's python, ``MESHAGENT_API_URL`` pointing at the server.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import secrets
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("jwt")

from roomsecrets.adapters.server import create_app, start_server
from roomsecrets.core.memory_store import MemoryStore
from roomsecrets.testing import OAuthProvider
from tests.adapters.meshagent.sdk_venv import sdk_python
from tests.adapters.server_kit import bound_socket

SCRIPT = pathlib.Path(__file__).with_name("sdk_client.py")
ROOM = "myroom"
CLIENT_ID = "mailbot-app"
REDIRECT_URI = "https://app.example/oauth/callback"
KEY = secrets.token_urlsafe(32)


@pytest.fixture(scope="module")
def python() -> str:
    return sdk_python()


@pytest.fixture
def provider() -> Iterator[OAuthProvider]:
    with OAuthProvider() as running:
        running.register_client(CLIENT_ID, redirect_uris=[REDIRECT_URI])
        yield running


def run(python: str, provider: OAuthProvider, scenario: str, **env: str) -> dict[str, Any]:
    """Serve a room server while the SDK plays ``scenario``; its JSON line."""

    async def main() -> dict[str, Any]:
        sock = bound_socket()
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        app = create_app(store=MemoryStore(), jwt_key=KEY, public_url=url)
        server = await start_server(app, sock=sock, shutdown_timeout=1.0)
        child_env = {
            "PATH": os.environ.get("PATH", ""),
            "MESHAGENT_API_URL": url,
            "ROOM": ROOM,
            "KEY": KEY,
            "CLIENT_ID": CLIENT_ID,
            "REDIRECT_URI": REDIRECT_URI,
            "AUTHORIZATION_ENDPOINT": provider.authorization_endpoint,
            "TOKEN_ENDPOINT": provider.token_endpoint,
            **env,
        }
        try:
            child = await asyncio.create_subprocess_exec(
                python, str(SCRIPT), scenario, env=child_env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(child.communicate(), 120)
        finally:
            await server.close()
        assert child.returncode == 0, err.decode()[-3000:]
        result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        return result

    return asyncio.run(main())


def test_the_sdk_connects_and_gets_a_participant_id_of_its_own(python, provider) -> None:
    seen = run(python, provider, "handshake")
    assert seen["participant_id"].startswith("p-")
    assert seen["room_name"] == ROOM
    assert seen["room_url"].startswith("ws://127.0.0.1:") and seen["room_url"].endswith("/rooms/myroom")
    assert len(seen["session_id"]) == 32


def test_an_agent_gets_a_token_the_person_approves_and_then_offline(python, provider) -> None:
    seen = run(python, provider, "oauth")
    assert "error" not in seen, seen
    assert provider.is_active(seen["token"])
    assert seen["offline"] == seen["token"]
    assert seen["offline_by_name"] == seen["token"]
    # The person's handler got what it needs to build the URL itself, challenge included.
    assert seen["prompts"] == [{
        "authorization_endpoint": provider.authorization_endpoint,
        "token_endpoint": provider.token_endpoint,
        "scopes": ["mail.read"],
        "has_challenge": True,
    }]
    [credential] = seen["secrets"]
    assert credential["type"] == "oauth_token"
    assert credential["delegated_to"] == "mailbot"
    assert isinstance(credential["name"], str)


def test_a_credential_asked_for_a_delegate_is_kept_for_it_and_only_the_owner_reads_it(
    python, provider
) -> None:
    seen = run(python, provider, "delegated")
    assert provider.is_active(seen["token"])
    assert seen["prompts"] == 1
    # Kept for worker, who gets it offline; the asker has none of its own.
    assert seen["worker_offline"] == seen["token"]
    assert seen["asker_offline"] is None
    [credential] = seen["secrets"]
    assert (credential["type"], credential["delegated_to"]) == ("oauth_token", "worker")
    # Naming the worker does not hand the asker the worker's credential; the owner reads it.
    assert seen["asker_takes"]["error"]["text"].startswith("grant_denied:")
    assert seen["owner_reads"] == seen["token"]


def test_a_rejected_prompt_is_a_room_exception_for_the_agent(python, provider) -> None:
    seen = run(python, provider, "reject")
    assert "token" not in seen
    assert seen["error"]["text"].startswith("request_rejected:")
    assert "user_cancelled" in seen["error"]["text"]
    assert seen["offline"] is None
    assert seen["secrets"] == []
    assert provider.token_requests == []


def test_a_grant_refusal_never_prompts_the_person(python, provider) -> None:
    seen = run(python, provider, "refused")
    assert seen["error"]["code"] == 1001  # the SDK's PERMISSION_DENIED
    assert seen["error"]["text"].startswith("grant_denied:")
    assert seen["prompts"] == []
    assert provider.authorization_requests == []
    assert seen["offline"]["error"]["code"] == 1001


def test_a_person_sets_reads_lists_and_deletes_own_secrets(python, provider) -> None:
    seen = run(python, provider, "own_secrets")
    assert seen["exists"] is True
    assert seen["get"] == {"data": b"s3cr\x00t".hex(), "name": "Key one", "mime_type": "text/plain"}
    assert seen["list"] == [{
        "id": "k1", "type": "text/plain", "name": "Key one", "delegated_to": None, "agent_id": None,
    }]
    assert seen["exists_after"] is False
    assert seen["get_after"] is None
    errors = seen["errors"]
    assert errors["delete_missing"]["code"] == 1003
    assert errors["provide_unknown"]["text"].startswith("unknown_request:")
    assert "no tool 'nope'" in errors["unknown_tool"]["text"]
    assert "'storage'" in errors["unknown_toolkit"]["text"]
    assert seen["still_works"] == []


@pytest.mark.skipif(sys.platform == "win32", reason="timing on loopback")
def test_ten_concurrent_offline_calls_after_expiry_make_one_refresh_post(python, provider) -> None:
    provider.access_token_lifetime = 2
    # The client sees expires_in=2 and waits 2.5 s of wall time; the provider's own
    # clock stands still, so the refreshed token is still active when checked below,
    # however long the client process takes to end.
    frozen = time.time()
    provider.clock = lambda: frozen
    seen = run(python, provider, "concurrent", WAIT="2.5")
    assert provider.refresh_posts == 1
    assert len(set(seen["tokens"])) == 1
    assert seen["tokens"][0] != seen["first"]
    assert provider.is_active(seen["tokens"][0])


def test_an_agent_asks_the_person_for_a_secret_and_gets_it_stored_then_rejected(
    python, provider
) -> None:
    from roomsecrets.core.secret_requests import requested_secret_id
    from tests.support.leak_watch import remember_secret

    remember_secret("sk-sdk-0123456789abcdef")
    seen = run(python, provider, "secret_request")
    assert seen["first"] == "sk-sdk-0123456789abcdef"
    # Asked again: the stored secret, no second prompt (the handler saw one request).
    assert seen["again"] == seen["first"]
    assert seen["listed"] == [{
        "id": requested_secret_id("https://api.example.com/v1", "text/plain"),
        "type": "text/plain", "name": "https://api.example.com/v1",
        "delegated_to": "mailbot", "agent_id": None,
    }]
    assert seen["after_delete"] == []
    # After the delete the person is asked again, and rejects.
    assert seen["rejected"]["error"]["text"].startswith("request_rejected:")
    assert seen["prompts"] == [
        {"url": "https://api.example.com/v1", "type": "text/plain", "delegate_to": "mailbot"},
    ] * 2
