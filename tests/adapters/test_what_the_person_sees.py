"""Exactly what the person's side of a request receives (docs/security.md): the prompt's
fields, and nothing that only the server may hold (the PKCE verifier, the client secret)."""

from __future__ import annotations

import asyncio
import dataclasses
from urllib.parse import parse_qsl, urlsplit

from roomsecrets.adapters.server.http_api import prompt_to_json
from roomsecrets.core.api import OAuthPrompt
from roomsecrets.core.oauth.pkce import s256_challenge
from tests.core.service_kit import (
    REDIRECT_URI,
    ask,
    make_service,
    next_prompt,
    room,
    running_provider,
)

#: The documented list (docs/security.md, "What the person's side receives").
PROMPT_FIELDS = {
    "request_id", "authorization_url", "state", "code_challenge", "from_participant_id",
    "client_id", "scopes", "redirect_uri", "expires_at", "delegate_to", "resource",
    "resource_name", "brokered",
}
#: The authorization URL's query (RFC 6749 §4.1.1, RFC 7636 §4.3).
URL_PARAMETERS = {
    "response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge",
    "code_challenge_method",
}


def test_the_prompt_carries_the_documented_fields_and_never_the_verifier_or_client_secret():
    async def scenario():
        with running_provider(client_secret="the-client-secret-xyz",
                              auth_method="client_secret_basic") as provider:
            service = make_service()
            agent, alice = room(service)
            request = ask(agent, provider, client_secret="the-client-secret-xyz")
            prompt = await next_prompt(alice)
            assert {f.name for f in dataclasses.fields(OAuthPrompt)} == PROMPT_FIELDS
            assert set(prompt_to_json(prompt)) == PROMPT_FIELDS
            query = dict(parse_qsl(urlsplit(prompt.authorization_url).query))
            assert set(query) == URL_PARAMETERS
            assert query["redirect_uri"] == prompt.redirect_uri == REDIRECT_URI
            assert query["state"] == prompt.state
            pending = service.registry.get(prompt.request_id)
            verifier = pending.code_verifier
            assert s256_challenge(verifier) == prompt.code_challenge
            shown = repr(prompt_to_json(prompt))
            assert verifier not in shown and "the-client-secret-xyz" not in shown
            request.cancel()

    asyncio.run(scenario())
