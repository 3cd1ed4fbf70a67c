"""Shared pieces of the service tests: a fake provider, a room, a person who approves."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

from roomsecrets.core.audit import RecordingAuditSink
from roomsecrets.core.grants import SecretsGrant
from roomsecrets.core.memory_store import MemoryStore
from roomsecrets.core.oauth.http import HttpResponse
from roomsecrets.core.oauth.retry import RetryPolicy
from roomsecrets.core.oauth.urllib_transport import UrllibTransport
from roomsecrets.core.service import OAuthPrompt, SecretsService
from tests.support.fake_provider import FakeProvider
from tests.support.headless_person import approve

CLIENT_ID = "mailbot-app"
REDIRECT_URI = "https://app.example.com/oauth/callback"


class Clock:
    """The service's clock, moved by the test (the provider keeps real time)."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@contextlib.contextmanager
def running_provider(**client: object) -> Iterator[FakeProvider]:
    with FakeProvider() as provider:
        provider.register_client(CLIENT_ID, redirect_uris=[REDIRECT_URI], **client)  # type: ignore[arg-type]
        yield provider


class MetadataHidden:
    """The real transport, except that every well-known metadata URL answers 404: a
    provider that publishes no RFC 8414 / OpenID metadata."""

    def __init__(self) -> None:
        self.inner = UrllibTransport()

    async def send(self, request, *, timeout, max_body):
        if "/.well-known/" in request.url:
            return HttpResponse(status=404, headers=(), body=b"")
        return await self.inner.send(request, timeout=timeout, max_body=max_body)


#: Builds the store of a service made without one; tests/adapters swap it to run the
#: same flows on the file and AWS stores.
default_store = MemoryStore


def make_service(store=None, **kw):
    kw.setdefault("clock", Clock())
    kw.setdefault("audit", RecordingAuditSink())
    kw.setdefault("retry", RetryPolicy(base_delay=0.01, max_delay=0.05))
    return SecretsService(store=store or default_store(), room="myroom", **kw)


def oauth_args(provider: FakeProvider, **kw: object) -> dict[str, object]:
    args: dict[str, object] = dict(
        client_id=CLIENT_ID,
        authorization_endpoint=provider.authorization_endpoint,
        token_endpoint=provider.token_endpoint,
        scopes=["mail.read"],
    )
    args.update(kw)
    return args


def ask(agent, provider: FakeProvider, **kw: object) -> asyncio.Task[str]:
    """Start ``agent`` asking alice for a token (the default client and scopes)."""
    return asyncio.create_task(agent.request_oauth_token(
        **oauth_args(provider, **kw), from_participant_id="alice", redirect_uri=REDIRECT_URI))


async def next_prompt(person, timeout: float = 10) -> OAuthPrompt:
    prompts: AsyncIterator[OAuthPrompt] = person.oauth_prompts()
    try:
        return await asyncio.wait_for(prompts.__anext__(), timeout)
    finally:
        await prompts.aclose()  # type: ignore[attr-defined]


async def approve_next(person, *, with_state: bool = True) -> OAuthPrompt:
    """Play the person: take the next prompt, approve at the provider, answer with the code."""
    prompt = await next_prompt(person)
    code, state = await asyncio.to_thread(approve, prompt.authorization_url)
    await person.provide_oauth_authorization(
        request_id=prompt.request_id, code=code, state=state if with_state else None
    )
    return prompt


def room(service: SecretsService, grant: SecretsGrant | None = None):
    agent = service.connect("agent-1", name="mailbot", grant=grant or SecretsGrant.allow_all())
    alice = service.connect("alice", name="Alice")
    return agent, alice


def offline(agent, provider, **kw):
    """``agent`` fetches alice's offline token (the default client and scopes)."""
    return agent.get_offline_oauth_token(**oauth_args(provider, **kw), delegated_by="alice")


async def approved(agent, alice, provider, **kw):
    """``agent`` asks alice, alice approves at the provider; returns the agent's token."""
    request = ask(agent, provider, **kw)
    await approve_next(alice)
    return await request


async def until(condition, timeout=5.0):
    """Wait (polling every 10 ms) until ``condition()`` is true; fail after ``timeout``."""
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")
