"""Shared pieces of the discovery, revocation and RFC 9207 tests: asking by issuer,
and a person who answers with everything the provider's redirect carries."""

from __future__ import annotations

import asyncio
import urllib.parse

from roomsecrets.core.service import OAuthPrompt
from tests.core.service_kit import CLIENT_ID, REDIRECT_URI, next_prompt
from tests.support.headless_person import authorization_redirect


def ask_by_issuer(agent, issuer: str, **kw: object) -> asyncio.Task[str]:
    """Start ``agent`` asking alice for a token, naming only the issuer (no endpoints)."""
    args: dict[str, object] = dict(
        client_id=CLIENT_ID, issuer=issuer, scopes=["mail.read"],
        from_participant_id="alice", redirect_uri=REDIRECT_URI,
    )
    args.update(kw)
    return asyncio.create_task(agent.request_oauth_token(**args))


def offline_by_issuer(agent, issuer: str, **kw: object):
    args: dict[str, object] = dict(
        client_id=CLIENT_ID, issuer=issuer, scopes=["mail.read"], delegated_by="alice"
    )
    args.update(kw)
    return agent.get_offline_oauth_token(**args)


async def redirect_of(prompt: OAuthPrompt) -> dict[str, str]:
    """Approve ``prompt`` at the provider; the query parameters of its redirect."""
    location = await asyncio.to_thread(authorization_redirect, prompt.authorization_url)
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


async def approve_with_iss(person) -> tuple[OAuthPrompt, dict[str, str]]:
    """Play the person: approve the next prompt and answer with code, state and iss."""
    prompt = await next_prompt(person)
    params = await redirect_of(prompt)
    await person.provide_oauth_authorization(
        request_id=prompt.request_id, code=params["code"], state=params["state"],
        iss=params.get("iss"),
    )
    return prompt, params
