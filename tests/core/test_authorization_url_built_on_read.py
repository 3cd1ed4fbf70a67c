"""The pending request keeps no authorization URL: it builds it from its own fields
when read. The person's prompt and the registry must agree on every parameter."""

from __future__ import annotations

import asyncio
from typing import Optional
from urllib.parse import parse_qs, urlsplit

import pytest

from roomsecrets.core.oauth.pkce import s256_challenge
from tests.core.service_kit import REDIRECT_URI, make_service, next_prompt, room


@pytest.mark.parametrize(
    ("endpoint", "resource", "insecure"),
    [
        ("https://as.example/auth?tenant=1", None, False),
        ("https://as.example/auth", "https://mcp.example/api", False),
        ("http://as.example/auth", None, True),
        ("http://as.example/auth", "https://mcp.example/api", True),
    ],
)
def test_the_prompt_and_the_pending_request_give_the_same_url(
    endpoint: str, resource: Optional[str], insecure: bool
) -> None:
    async def scenario() -> None:
        service = make_service(allow_insecure_http=insecure)
        agent, alice = room(service)
        asking = asyncio.create_task(agent.request_oauth_token(
            client_id="app", authorization_endpoint=endpoint,
            token_endpoint="https://as.example/token", scopes=["mail.read", "openid"],
            from_participant_id="alice", redirect_uri=REDIRECT_URI, resource=resource,
        ))
        prompt = await next_prompt(alice)
        pending = service.registry.get(prompt.request_id)
        assert pending.authorization_url == prompt.authorization_url
        assert pending.authorization_url == pending.authorization_url  # same on every read
        url = urlsplit(prompt.authorization_url)
        assert f"{url.scheme}://{url.netloc}{url.path}" == endpoint.split("?")[0]
        query = parse_qs(url.query)
        assert query["state"] == [prompt.state] == [pending.oauth_state]
        assert pending.code_verifier is not None
        assert query["code_challenge"] == [prompt.code_challenge]
        assert prompt.code_challenge == s256_challenge(pending.code_verifier)
        assert query["scope"] == ["mail.read openid"]
        assert query.get("resource") == (None if resource is None else [resource])
        assert query.get("tenant") == (["1"] if "tenant" in endpoint else None)
        asking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asking

    asyncio.run(scenario())
