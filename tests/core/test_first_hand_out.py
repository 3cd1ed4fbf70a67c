"""The first hand-out of a token is checked like every later one: a provider that
grants more than was asked (Google's include_granted_scopes, a union of earlier
consents) does not hand the agent scopes its grant forbids, and nothing is kept."""

from __future__ import annotations

import asyncio
import json

import pytest

from roomsecrets.core import errors
from roomsecrets.core.grants import OAuthRule, SecretsGrant
from roomsecrets.core.oauth.http import HttpResponse
from roomsecrets.core.oauth.urllib_transport import UrllibTransport
from tests.core.service_kit import ask, make_service, next_prompt, room, running_provider
from tests.support.headless_person import approve


class GrantsMore:
    """The real transport; the code exchange's answer also grants ``mail.send``."""

    def __init__(self) -> None:
        self.inner = UrllibTransport()

    async def send(self, request, *, timeout, max_body):
        response = await self.inner.send(request, timeout=timeout, max_body=max_body)
        if b"grant_type=authorization_code" in (request.body or b"") and response.status == 200:
            document = json.loads(response.body)
            document["scope"] = "mail.read mail.send"
            return HttpResponse(status=200, headers=response.headers,
                                body=json.dumps(document).encode())
        return response


READ_ONLY = SecretsGrant(oauth=[OAuthRule(scopes=["mail.read"])])


@pytest.mark.parametrize("grant, allowed", [(READ_ONLY, False), (SecretsGrant.allow_all(), True)])
def test_scopes_the_provider_granted_beyond_the_grant_are_refused_at_the_first_hand_out(
        grant, allowed):
    async def scenario():
        with running_provider() as provider:
            service = make_service(transport=GrantsMore())
            agent, alice = room(service, grant)
            request = ask(agent, provider)
            prompt = await next_prompt(alice)
            code, state = await asyncio.to_thread(approve, prompt.authorization_url)
            if allowed:
                await alice.provide_oauth_authorization(
                    request_id=prompt.request_id, code=code, state=state)
                assert await request
                assert len(await alice.list_user_secrets()) == 1
                assert provider.revocation_requests == 0
                return
            with pytest.raises(errors.GrantDenied):
                await alice.provide_oauth_authorization(
                    request_id=prompt.request_id, code=code, state=state)
            with pytest.raises(errors.GrantDenied, match=r"mail\.send"):
                await request
            # Nothing kept: not stored, revoked at the provider, audited.
            assert await alice.list_user_secrets() == []
            assert provider.revocation_requests == 1
            actions = [e.action for e in service.audit.events]
            assert "credential.dropped" in actions and "credential.revoked" in actions
            assert "credential.stored" not in actions
            assert len(service.registry) == 0

    asyncio.run(scenario())
