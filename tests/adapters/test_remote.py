"""RemoteSecretsClient beyond the seed flow: how it learns who it is, how it
becomes connected, and the errors it raises when the server is not there."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.request
from typing import Any

import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("jwt")

from roomsecrets.adapters.remote import RemoteSecretsClient
from roomsecrets.adapters.server.http_api import (
    InvalidParticipantToken,
    ParticipantAlreadyConnected,
)
from roomsecrets.core import errors
from roomsecrets.core.grants import SecretsGrant
from roomsecrets.core.participants import ParticipantInfo
from tests.adapters.server_kit import (
    ROOM,
    approve_via_callback,
    oauth_args,
    running_provider,
    serving,
)


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_the_client_reads_its_id_and_room_from_the_token_and_checks_the_room() -> None:
    async def scenario() -> None:
        async with serving() as served:
            token = served.token("agent-1")
            client = RemoteSecretsClient(served.url, token=token, room=ROOM)
            assert (client.participant_id, client.room) == ("agent-1", ROOM)
            assert token not in repr(client)
            await client.close()
            with pytest.raises(errors.InvalidInput):
                RemoteSecretsClient(served.url, token=token, room="elsewhere")
            with pytest.raises(errors.InvalidInput):
                RemoteSecretsClient("ftp://x", token=token)
            with pytest.raises(InvalidParticipantToken):
                RemoteSecretsClient(served.url, token="not-a-jwt")

    run(scenario())


def test_a_server_that_is_not_there_is_a_connect_error() -> None:
    async def scenario() -> None:
        async with serving() as served:
            token = served.token("alice")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        async with RemoteSecretsClient(f"http://127.0.0.1:{port}", token=token) as client:
            with pytest.raises(errors.ConnectError):
                await client.list_user_secrets()
            with pytest.raises(errors.ConnectError):
                await client.connect()

    run(scenario())


def test_connect_makes_the_participant_connected_and_close_disconnects() -> None:
    async def scenario() -> None:
        async with serving() as served:
            observer = served.remote("observer")
            alice = served.remote("alice", name="Alice")
            try:
                assert await observer.list_participants() == []
                assert not alice.connected
                await alice.connect()
                await alice.connect()  # a no-op when open
                assert alice.connected
                assert await observer.list_participants() == [
                    ParticipantInfo(id="alice", name="Alice")
                ]
                second = served.remote("alice")
                with pytest.raises(ParticipantAlreadyConnected):
                    await second.connect()
                await second.close()
                await alice.close()
                for _ in range(100):
                    if await observer.list_participants() == []:
                        break
                    await asyncio.sleep(0.02)
                assert await observer.list_participants() == []
            finally:
                await observer.close()
                await alice.close()

    run(scenario())


def test_prompts_received_since_connect_are_yielded_to_a_later_iterator() -> None:
    async def scenario() -> None:
        with running_provider() as provider:
            async with serving(provider=provider) as served:
                alice = served.remote("alice")
                agent = served.remote("agent-1", grant=SecretsGrant.allow_all())
                try:
                    await alice.connect()
                    request = asyncio.create_task(
                        agent.request_oauth_token(
                            **oauth_args(provider),
                            from_participant_id="alice",
                            redirect_uri=served.callback_url,
                        )
                    )
                    await asyncio.sleep(0.3)  # the prompt arrives before anyone iterates
                    prompts = alice.oauth_prompts()
                    prompt = await asyncio.wait_for(prompts.__anext__(), 5)
                    assert prompt.from_participant_id == "agent-1"
                    assert "state" not in repr(prompt)
                    await prompts.aclose()  # type: ignore[attr-defined]
                    await alice.reject_oauth_authorization(
                        request_id=prompt.request_id, error="user_cancelled"
                    )
                    with pytest.raises(errors.RequestRejected):
                        await request
                finally:
                    await agent.close()
                    await alice.close()

    run(scenario())


def test_the_prompt_iterator_ends_when_the_client_closes() -> None:
    async def scenario() -> None:
        async with serving() as served:
            alice = served.remote("alice")
            prompts = alice.oauth_prompts()
            waiting = asyncio.ensure_future(prompts.__anext__())
            await asyncio.sleep(0.2)
            await alice.close()
            with pytest.raises(StopAsyncIteration):
                await asyncio.wait_for(waiting, 5)

    run(scenario())


def test_an_expired_token_is_invalid_token() -> None:
    async def scenario() -> None:
        async with serving() as served:
            client = RemoteSecretsClient(served.url, token=served.token("alice", ttl=1))
            try:
                await asyncio.sleep(2.1)
                with pytest.raises(InvalidParticipantToken):
                    await client.list_user_secrets()
                with pytest.raises(InvalidParticipantToken):
                    await client.connect()
            finally:
                await client.close()

    run(scenario())


def test_client_auth_method_goes_over_http_and_is_in_the_openapi_document() -> None:
    secret = "s+/=&:% cret"

    async def scenario() -> None:
        with running_provider() as provider:
            async with serving(provider=provider) as served:
                provider.register_client(
                    "post-app", client_secret=secret, auth_method="client_secret_post",
                    redirect_uris=[served.callback_url],
                )
                alice = served.remote("alice")
                agent = served.remote("agent-1", grant=SecretsGrant.allow_all())
                args = oauth_args(provider, client_id="post-app", client_secret=secret)
                try:
                    await alice.connect()
                    prompts = alice.oauth_prompts()
                    request = asyncio.ensure_future(agent.request_oauth_token(
                        **args, from_participant_id="alice", client_auth_method="client_secret_post"
                    ))
                    prompt = await asyncio.wait_for(prompts.__anext__(), 10)
                    status, _, _ = await asyncio.to_thread(
                        approve_via_callback, prompt.authorization_url
                    )
                    assert status == 200
                    token = await request
                    assert provider.is_active(token)
                    assert provider.token_requests == [("authorization_code", "ok")]
                    assert await agent.get_offline_oauth_token(
                        **args, delegated_by="alice", client_auth_method="client_secret_post"
                    ) == token
                    with pytest.raises(errors.InvalidInput, match="client_auth_method") as info:
                        await agent.get_offline_oauth_token(
                            **args, delegated_by="alice", client_auth_method="private_key_jwt"
                        )
                    assert secret not in str(info.value)
                finally:
                    await agent.close()
                    await alice.close()

                def openapi() -> dict[str, Any]:
                    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                    with opener.open(served.url + "/openapi.json", timeout=10) as response:
                        return json.loads(response.read())  # type: ignore[no-any-return]

                document = await asyncio.to_thread(openapi)
                for route in ("request_oauth_token", "get_offline_oauth_token"):
                    body = document["paths"][f"/rooms/{{room}}/{route}"]["post"]["requestBody"]
                    schema = body["content"]["application/json"]["schema"]
                    field = schema["properties"]["client_auth_method"]
                    assert field["enum"] == ["client_secret_basic", "client_secret_post", None]

    run(scenario())
