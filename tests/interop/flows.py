"""The steps the interop scenarios share: asking, approving at the provider, reading
what reached the provider."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable
from typing import Any, Callable, Optional

import aiohttp

from roomsecrets.adapters.remote import RemoteSecretsClient
from roomsecrets.core.api import OAuthPrompt
from tests.interop.conftest import REPO, OidcProvider, Room
from tests.interop.oidc_person import answer_from_provider, approve_at_provider
from tests.support import leak_watch

#: No scenario may hang the suite: each runs under this limit.
SCENARIO_LIMIT = 120


def run(scenario: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(scenario, SCENARIO_LIMIT))  # type: ignore[arg-type]


async def next_prompt(person: RemoteSecretsClient, timeout: float = 20) -> OAuthPrompt:
    """The next prompt offered to ``person`` (an open one, or the next to arrive)."""
    prompts = person.oauth_prompts()
    try:
        return await asyncio.wait_for(prompts.__anext__(), timeout)
    finally:
        await prompts.aclose()  # type: ignore[attr-defined]


async def until(check: Callable[[], Awaitable[bool]], what: str, limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while not await check():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.25)


async def prompt_for(
    room: Room, person: RemoteSecretsClient, asking: asyncio.Task[Any], timeout: float = 60
) -> OAuthPrompt:
    """The new prompt ``asking`` makes ``person`` see; if ``asking`` ends first (an
    error, a token without a prompt), fail at once with its outcome."""
    prompted = room.spawn(next_prompt(person, timeout))
    await asyncio.wait({prompted, asking}, return_when=asyncio.FIRST_COMPLETED)
    if not prompted.done():
        outcome = await asking  # raises its error, if it ended with one
        raise AssertionError(f"the request ended before any prompt: {outcome!r}")
    prompt: OAuthPrompt = prompted.result()
    return prompt


class Approved:
    """The outcome of one approval: the agent's token, the prompt, the query of the
    provider's redirect to our callback and the provider pages the person saw."""

    def __init__(
        self, token: str, prompt: OAuthPrompt, query: dict[str, str], pages: tuple[str, ...]
    ) -> None:
        self.token = token
        self.prompt = prompt
        self.query = query
        self.pages = pages


async def approve_one(
    room: Room,
    provider: OidcProvider,
    client_id: str,
    agent: RemoteSecretsClient,
    alice: RemoteSecretsClient,
    *,
    by_issuer: bool = False,
    through_callback: bool = True,
    browser: Optional[aiohttp.ClientSession] = None,
    **overrides: Any,
) -> Approved:
    """The agent asks alice; she approves at the provider; the agent gets the token.

    ``by_issuer``: name the provider by its issuer only (endpoints from discovery).
    ``through_callback=False``: alice stops at the provider's redirect and answers with
    ``provide_oauth_authorization`` (code, state and iss from the redirect) instead.
    ``browser``: alice's browser, with her cookies at the provider (default: a new one)."""
    args = (provider.issuer_args if by_issuer else provider.oauth_args)(client_id, **overrides)
    asking = room.spawn(
        agent.request_oauth_token(**args, from_participant_id="alice", timeout=60)
    )
    prompt = await prompt_for(room, alice, asking)
    assert prompt.from_participant_id == "agent-1"
    assert prompt.client_id == client_id
    assert prompt.redirect_uri == room.callback_url
    if through_callback:
        visit = await approve_at_provider(
            prompt.authorization_url, callback_url=room.callback_url, session=browser
        )
        assert visit.status == 200, visit.text
        assert "approved" in visit.text.lower(), visit.text
        query, pages = visit.query, visit.pages
    else:
        query, pages = await answer_from_provider(
            prompt.authorization_url, callback_url=room.callback_url
        )
        leak_watch.remember_secret(query.get("code"))
        await alice.provide_oauth_authorization(
            request_id=prompt.request_id, code=query["code"], state=query["state"],
            iss=query.get("iss"),
        )
    token = await asyncio.wait_for(asyncio.shield(asking), 30)
    leak_watch.remember_secret(token)
    return Approved(token, prompt, query, pages)


def code_exchanges(provider: OidcProvider, client_id: str) -> list[Any]:
    return provider.token_requests(client_id, "authorization_code")


def refreshes(provider: OidcProvider, client_id: str) -> list[Any]:
    return provider.token_requests(client_id, "refresh_token")


def revoked_grants(provider: OidcProvider, client_id: str) -> list[Any]:
    return [entry for entry in provider.log()["revoked_grants"] if entry["client_id"] == client_id]


def issued_refresh_token(provider: OidcProvider, client_id: str) -> str:
    """The refresh token the provider issued last to ``client_id`` (and still valid if
    nothing else rotated it)."""
    issued = [
        entry["issued_refresh_token"]
        for entry in provider.token_requests(client_id)
        if entry["status"] == 200
    ]
    assert issued and issued[-1], "no refresh token was issued"
    token: str = issued[-1]
    return token


async def cli(room: Room, token: str, *args: str) -> tuple[int, str, str]:
    """Run ``python -m roomsecrets ARGS`` against the room server as ``token``: exit
    status, stdout, stderr (stderr goes to the leak scan; stdout is the one secret)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSECRETS_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["ROOMSECRETS_TOKEN"] = token
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "roomsecrets", *args, f"--server={room.url}",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), 90)
    except BaseException:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    leak_watch.record("interop cli stderr", stderr.decode())
    return process.returncode, stdout.decode(), stderr.decode()
