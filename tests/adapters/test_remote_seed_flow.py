"""The seed's flow, the same test run against both clients: the in-process
``SecretsClient`` and the ``RemoteSecretsClient`` talking to a real room server on
127.0.0.1, where the person approves through ``/oauth/callback``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, Optional

import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("jwt")

from roomsecrets.core import errors
from roomsecrets.core.api import OAuthPrompt, SecretsAPI
from roomsecrets.core.grants import SecretsGrant
from roomsecrets.core.memory_store import MemoryStore
from roomsecrets.core.oauth.retry import RetryPolicy
from roomsecrets.core.service import SecretsService
from tests.adapters.server_kit import (
    CLIENT_ID,
    ROOM,
    Served,
    approve_via_callback,
    oauth_args,
    running_provider,
    serving,
)
from tests.support.fake_provider import FakeProvider
from tests.support.headless_person import approve

IN_PROCESS_REDIRECT = "https://app.example.com/oauth/callback"


class InProcessRoom:
    """Both participants in this process; the person answers with provide()."""

    def __init__(self, provider: FakeProvider) -> None:
        provider.register_client(CLIENT_ID, redirect_uris=[IN_PROCESS_REDIRECT])
        self.service = SecretsService(
            store=MemoryStore(), room=ROOM, retry=RetryPolicy(base_delay=0.01, max_delay=0.05)
        )
        self.redirect_uri = IN_PROCESS_REDIRECT

    async def agent(self) -> SecretsAPI:
        return self.service.connect("agent-1", name="mailbot", grant=SecretsGrant.allow_all())

    async def person(self) -> SecretsAPI:
        return self.service.connect("alice", name="Alice")

    async def approve(self, person: SecretsAPI, prompt: OAuthPrompt) -> None:
        code, state = await asyncio.to_thread(approve, prompt.authorization_url)
        await person.provide_oauth_authorization(
            request_id=prompt.request_id, code=code, state=state
        )

    def pending(self) -> int:
        return len(self.service.registry)


class RemoteRoom:
    """Both participants over HTTP; the person approves in a "browser" and the
    provider's redirect to ``/oauth/callback`` completes the request."""

    def __init__(self, served: Served) -> None:
        self.served = served
        self.redirect_uri = served.callback_url

    async def agent(self) -> SecretsAPI:
        return self.served.remote("agent-1", grant=SecretsGrant.allow_all(), name="mailbot")

    async def person(self) -> SecretsAPI:
        alice = self.served.remote("alice", name="Alice")
        await alice.connect()
        return alice

    async def approve(self, person: SecretsAPI, prompt: OAuthPrompt) -> None:
        status, headers, page = await asyncio.to_thread(
            approve_via_callback, prompt.authorization_url
        )
        assert status == 200, page
        assert headers["Cache-Control"] == "no-store"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert "approved" in page

    def pending(self) -> int:
        from roomsecrets.adapters.server.app import _ROOMS

        rooms = self.served.app[_ROOMS]
        return sum(len(service.registry) for service in rooms.services.values())


Room = Any  # InProcessRoom | RemoteRoom: the same methods


@contextlib.asynccontextmanager
async def opened(kind: str, provider: FakeProvider) -> AsyncIterator[Room]:
    if kind == "in_process":
        yield InProcessRoom(provider)
        return
    async with serving(provider=provider) as served:
        yield RemoteRoom(served)


@pytest.fixture(params=["in_process", "remote"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def next_prompt(person: SecretsAPI, timeout: float = 10) -> OAuthPrompt:
    prompts = person.oauth_prompts()
    try:
        return await asyncio.wait_for(prompts.__anext__(), timeout)
    finally:
        await prompts.aclose()  # type: ignore[attr-defined]


def ask(room: Room, agent: SecretsAPI, provider: FakeProvider, **kw: Any) -> asyncio.Task[str]:
    return asyncio.create_task(
        agent.request_oauth_token(
            **oauth_args(provider, **kw),
            from_participant_id="alice",
            redirect_uri=room.redirect_uri,
        )
    )


async def until(condition: Any, what: str) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


async def first_token(room: Room, provider: FakeProvider) -> tuple[SecretsAPI, SecretsAPI, str]:
    agent, alice = await room.agent(), await room.person()
    request = ask(room, agent, provider)
    prompt = await next_prompt(alice)
    assert prompt.from_participant_id == "agent-1"
    assert prompt.client_id == CLIENT_ID
    assert prompt.scopes == ("mail.read",)
    assert prompt.redirect_uri == room.redirect_uri
    await room.approve(alice, prompt)
    token = await asyncio.wait_for(request, 15)
    return agent, alice, token


async def close_all(*clients: Optional[SecretsAPI]) -> None:
    for client in clients:
        if client is not None:
            await client.close()


def test_request_approve_then_reuse_offline_list_and_delete(kind: str) -> None:
    async def scenario() -> None:
        with running_provider() as provider:
            async with opened(kind, provider) as room:
                agent, alice, token = await first_token(room, provider)
                try:
                    assert provider.is_active(token)
                    # Reuse: no prompt, no token POST.
                    posts = len(provider.token_requests)
                    again = await ask(room, agent, provider)
                    assert again == token
                    assert len(provider.token_requests) == posts
                    # Offline, by both spellings of the owner.
                    offline = await agent.get_offline_oauth_token(
                        **oauth_args(provider), delegated_by="alice"
                    )
                    assert offline == token
                    alias = await agent.get_offline_oauth_token(
                        **oauth_args(provider), participant_name="alice"
                    )
                    assert alias == token
                    # The person sees the credential, delegated to the agent.
                    [info] = await alice.list_user_secrets()
                    assert info.type == "oauth_token"
                    assert info.delegated_to == "agent-1"
                    await alice.delete_user_secret(id=info.id, delegated_to="agent-1")
                    assert await alice.list_user_secrets() == []
                    gone = await agent.get_offline_oauth_token(
                        **oauth_args(provider), delegated_by="alice"
                    )
                    assert gone is None
                    assert room.pending() == 0
                finally:
                    await close_all(agent, alice)

    asyncio.run(scenario())


def test_an_expired_token_is_refreshed_once_for_concurrent_callers(kind: str) -> None:
    async def scenario() -> None:
        with running_provider(access_token_lifetime=2) as provider:
            async with opened(kind, provider) as room:
                agent, alice, token = await first_token(room, provider)
                try:
                    await asyncio.sleep(1.2)  # past half the lifetime: refresh due
                    refreshed = await asyncio.gather(
                        *(
                            agent.get_offline_oauth_token(
                                **oauth_args(provider), delegated_by="alice"
                            )
                            for _ in range(10)
                        )
                    )
                    assert len(set(refreshed)) == 1
                    [fresh] = set(refreshed)
                    assert fresh is not None and fresh != token
                    assert provider.is_active(fresh)
                    assert provider.refresh_posts == 1
                finally:
                    await close_all(agent, alice)

    asyncio.run(scenario())


def test_a_rejected_prompt_raises_request_rejected(kind: str) -> None:
    async def scenario() -> None:
        with running_provider() as provider:
            async with opened(kind, provider) as room:
                agent, alice = await room.agent(), await room.person()
                try:
                    request = ask(room, agent, provider)
                    prompt = await next_prompt(alice)
                    await alice.reject_oauth_authorization(
                        request_id=prompt.request_id, error="user_cancelled"
                    )
                    with pytest.raises(errors.RequestRejected) as caught:
                        await request
                    assert caught.value.error == "user_cancelled"
                    with pytest.raises(errors.UnknownRequest):
                        await alice.reject_oauth_authorization(
                            request_id=prompt.request_id, error="again"
                        )
                    assert room.pending() == 0
                finally:
                    await close_all(agent, alice)

    asyncio.run(scenario())


def test_the_person_leaving_mid_request_cancels_it(kind: str) -> None:
    async def scenario() -> None:
        with running_provider() as provider:
            async with opened(kind, provider) as room:
                agent, alice = await room.agent(), await room.person()
                try:
                    request = ask(room, agent, provider)
                    await next_prompt(alice)
                    await alice.close()
                    with pytest.raises(errors.RequestCancelled):
                        await asyncio.wait_for(request, 10)
                    await until(lambda: room.pending() == 0, "nothing pending")
                    # Nobody to ask now.
                    with pytest.raises(errors.ParticipantNotConnected):
                        await ask(room, agent, provider)
                finally:
                    await close_all(agent)

    asyncio.run(scenario())


def test_asking_a_participant_who_is_not_connected_fails_at_once(kind: str) -> None:
    async def scenario() -> None:
        with running_provider() as provider:
            async with opened(kind, provider) as room:
                agent = await room.agent()
                try:
                    with pytest.raises(errors.ParticipantNotConnected):
                        await asyncio.wait_for(ask(room, agent, provider), 5)
                    assert room.pending() == 0
                finally:
                    await close_all(agent)

    asyncio.run(scenario())


def test_answers_are_checked_as_in_process(kind: str) -> None:
    async def scenario() -> None:
        with running_provider() as provider:
            async with opened(kind, provider) as room:
                agent, alice = await room.agent(), await room.person()
                try:
                    request = ask(room, agent, provider)
                    prompt = await next_prompt(alice)
                    # The agent may not answer a prompt addressed to alice.
                    with pytest.raises(errors.NotAddressedToYou):
                        await agent.provide_oauth_authorization(
                            request_id=prompt.request_id, code="x"
                        )
                    with pytest.raises(errors.StateMismatch):
                        await alice.provide_oauth_authorization(
                            request_id=prompt.request_id, code="x", state="wrong-state"
                        )
                    with pytest.raises(errors.UnknownRequest):
                        await alice.provide_oauth_authorization(request_id="nope", code="x")
                    with pytest.raises(errors.InvalidInput):
                        await alice.provide_oauth_authorization(
                            request_id=prompt.request_id, code="bad\ncode"
                        )
                    await room.approve(alice, prompt)
                    assert provider.is_active(await asyncio.wait_for(request, 10))
                finally:
                    await close_all(agent, alice)

    asyncio.run(scenario())


def test_a_default_grant_may_not_ask_for_tokens(kind: str) -> None:
    async def scenario() -> None:
        with running_provider() as provider:
            async with opened(kind, provider) as room:
                alice = await room.person()
                try:
                    with pytest.raises(errors.GrantDenied):
                        await alice.get_offline_oauth_token(
                            **oauth_args(provider), delegated_by="bob"
                        )
                finally:
                    await close_all(alice)

    asyncio.run(scenario())


def test_generic_secrets_round_trip(kind: str) -> None:
    async def scenario() -> None:
        with running_provider() as provider:
            async with opened(kind, provider) as room:
                alice = await room.person()
                try:
                    data = bytes(range(256)) * 4
                    await alice.set_secret(
                        secret_id="blob", data=data, type="application/x-test", name="Blob"
                    )
                    assert await alice.get_secret(secret_id="blob") == data
                    assert await alice.get_secret(secret_id="absent") is None
                    [info] = await alice.list_user_secrets()
                    assert (info.id, info.type, info.name, info.delegated_to) == (
                        "blob",
                        "application/x-test",
                        "Blob",
                        None,
                    )
                    with pytest.raises(errors.InvalidInput):
                        await alice.set_secret(secret_id="x", data=b"1", type="no-slash")
                    with pytest.raises(errors.InvalidInput):
                        await alice.set_secret(secret_id="x", data="text")  # type: ignore[arg-type]
                    await alice.delete_user_secret(id="blob")
                    assert await alice.get_secret(secret_id="blob") is None
                finally:
                    await close_all(alice)

    asyncio.run(scenario())


def test_a_closed_client_refuses_calls(kind: str) -> None:
    async def scenario() -> None:
        with running_provider() as provider:
            async with opened(kind, provider) as room:
                alice = await room.person()
                await alice.close()
                with pytest.raises(errors.ParticipantNotConnected):
                    await alice.list_user_secrets()
                await alice.close()  # twice is fine

    asyncio.run(scenario())
