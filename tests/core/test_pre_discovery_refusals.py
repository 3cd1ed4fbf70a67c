"""A request naming an issuer is decided as far as it can be before the issuer is
asked for its metadata: whatever it names itself (an authorization endpoint, a
resource) is checked against the grant first, and a request no metadata could
make allowed is refused without a request to the provider (a denied caller must
not be able to make the server send requests). The refusal is audited with the
same details as any OAuth decision."""

from __future__ import annotations

import asyncio

import pytest

from roomsecrets.core import errors
from roomsecrets.core.grants import OAuthRule, SecretsGrant
from tests.core.discovery_kit import ask_by_issuer, offline_by_issuer
from tests.core.service_kit import make_service, room, running_provider


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize("field, refused_pattern", [
    ("authorization_endpoint", "https://elsewhere/*"),
    ("resource", "https://mcp.elsewhere/*"),
])
def test_a_value_the_grant_refuses_is_refused_before_discovery(field, refused_pattern):
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            grant = SecretsGrant(oauth=[OAuthRule(**{field: refused_pattern})])
            agent, _alice = room(service, grant=grant)
            named = {
                "authorization_endpoint": provider.authorization_endpoint,
                "resource": "https://mcp.example/api",
            }[field]
            with pytest.raises(errors.GrantDenied):
                await ask_by_issuer(agent, provider.issuer, **{field: named})
            with pytest.raises(errors.GrantDenied):
                await offline_by_issuer(agent, provider.issuer, **{field: named})
            assert provider.metadata_requests == 0

    run(scenario())


def test_a_refusal_before_discovery_is_audited_with_the_scopes_asked_for():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, _alice = room(service, grant=SecretsGrant())
            with pytest.raises(errors.GrantDenied):
                await ask_by_issuer(agent, provider.issuer, scopes=["mail.read", "mail.send"])
            with pytest.raises(errors.GrantDenied):
                await offline_by_issuer(agent, provider.issuer, scopes=["calendar"])
            assert provider.metadata_requests == 0
            denied = [e for e in service.audit.events if e.outcome == "denied"]
            assert [(e.action, dict(e.details)["scopes"], dict(e.details)["issuer"])
                    for e in denied] == [
                ("oauth.request_token", "mail.read mail.send", provider.issuer),
                ("oauth.get_offline_token", "calendar", provider.issuer),
            ]

    run(scenario())
