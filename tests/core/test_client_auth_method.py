"""Choosing how the client secret is sent (RFC 6749 §2.3.1): ``client_auth_method``.

A provider holds each client to the method it registered (oidc-provider does, and
so does the development provider): the code exchange, every refresh and the
revocation on delete (RFC 7009 §2.1) must all use it.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from roomsecrets.core import errors
from roomsecrets.core.credentials import StoredCredential
from roomsecrets.core.grants import SecretsGrant
from roomsecrets.core.oauth.discovery import ProviderMetadata
from roomsecrets.core.oauth.revocation import revocation_request_for
from roomsecrets.core.oauth.token_request import ClientAuthMethod
from roomsecrets.core.oauth.tokens import TokenSet
from tests.core.discovery_kit import approve_with_iss, ask_by_issuer, offline_by_issuer
from tests.core.service_kit import (
    CLIENT_ID,
    REDIRECT_URI,
    approve_next,
    ask,
    make_service,
    offline,
    room,
    running_provider,
)

#: Every character RFC 6749 Appendix B form-encoding must escape, in one secret.
ODD_SECRET = "s+/=&:% cret"
POST = "client_secret_post"
BASIC = "client_secret_basic"


def run(coro):
    return asyncio.run(coro)


async def stored_credential(service) -> StoredCredential:
    [record] = await service.store.list(service.room, "alice")
    return StoredCredential.from_json(record.data)


def events(service, action):
    return [e for e in service.audit.events if e.action == action]


def expire(service) -> None:
    """Move the service's clock past the access token's lifetime (an hour)."""
    service.clock.advance(4000)


# --- through the public API, with the development provider ------------------------------


def test_a_post_client_exchanges_refreshes_and_revokes_with_client_secret_post():
    async def scenario():
        with running_provider(client_secret=ODD_SECRET, auth_method=POST) as provider:
            service = make_service()
            agent, alice = room(service)
            request = ask_by_issuer(
                agent, provider.issuer, client_secret=ODD_SECRET, client_auth_method=POST
            )
            await approve_with_iss(alice)
            first = await request
            assert provider.token_requests == [("authorization_code", "ok")]
            stored = await stored_credential(service)
            assert stored.client_auth_method is ClientAuthMethod.CLIENT_SECRET_POST
            # The refresh names no method: the credential's own is used.
            expire(service)
            fresh = await offline_by_issuer(agent, provider.issuer, client_secret=ODD_SECRET)
            assert fresh is not None and fresh != first
            assert provider.token_requests[-1] == ("refresh_token", "ok")
            assert provider.is_active(fresh)
            # The person deletes it; the revocation authenticates with post too.
            [record] = await service.store.list(service.room, "alice")
            await alice.delete_user_secret(id=record.key.secret_id, delegated_to="agent-1")
            assert [e.outcome for e in events(service, "credential.revoked")] == ["ok"]
            assert events(service, "credential.revocation_failed") == []
            assert provider.revoked_grants == 1
            assert not provider.is_active(fresh)
            for event in service.audit.events:
                assert ODD_SECRET not in repr(event) + event.reason + repr(event.details)

    run(scenario())


@pytest.mark.parametrize(
    ("advertised", "expected"),
    [
        (("none", POST), ClientAuthMethod.CLIENT_SECRET_POST),
        ((POST,), ClientAuthMethod.CLIENT_SECRET_POST),
        ((POST, BASIC), None),  # both: basic, the RFC 8414 §2 default
        (("none",), None),  # neither: basic, which RFC 6749 §2.3.1 servers MUST support
    ],
)
def test_without_a_method_the_issuer_metadata_decides_and_basic_is_the_default(
    advertised, expected
):
    registered = POST if expected is not None else BASIC

    async def scenario():
        with running_provider(client_secret=ODD_SECRET, auth_method=registered) as provider:
            provider.advertised_auth_methods = advertised
            service = make_service()
            agent, alice = room(service)
            request = ask_by_issuer(agent, provider.issuer, client_secret=ODD_SECRET)
            await approve_with_iss(alice)
            await request
            assert provider.token_requests == [("authorization_code", "ok")]
            assert (await stored_credential(service)).client_auth_method is expected
            expire(service)
            assert await offline_by_issuer(agent, provider.issuer, client_secret=ODD_SECRET)
            assert provider.token_requests[-1] == ("refresh_token", "ok")

    run(scenario())


def test_the_metadata_default_does_not_apply_to_another_servers_token_endpoint():
    metadata = ProviderMetadata(
        issuer="https://as.example",
        token_endpoint="https://as.example/token",
        token_endpoint_auth_methods_supported=(POST,),
    )
    assert metadata.secret_auth_method_for("https://as.example/token") is (
        ClientAuthMethod.CLIENT_SECRET_POST
    )
    assert metadata.secret_auth_method_for("https://other.example/token") is (
        ClientAuthMethod.CLIENT_SECRET_BASIC
    )


def test_a_post_client_asked_with_the_default_basic_is_refused_as_invalid_client():
    async def scenario():
        with running_provider(client_secret=ODD_SECRET, auth_method=POST) as provider:
            service = make_service()
            agent, alice = room(service)
            # No issuer, no method: client_secret_basic, which this client may not use.
            request = ask(agent, provider, client_secret=ODD_SECRET)
            with pytest.raises(errors.InvalidClient):
                await approve_next(alice)
            with pytest.raises(errors.InvalidClient):
                await request
            assert provider.token_requests == [("authorization_code", "invalid_client")]
            assert await service.store.list(service.room, "alice") == []

    run(scenario())


def test_a_basic_client_that_names_post_is_refused_as_invalid_client():
    async def scenario():
        with running_provider(client_secret=ODD_SECRET, auth_method=BASIC) as provider:
            service = make_service()
            agent, alice = room(service)
            request = ask(agent, provider, client_secret=ODD_SECRET, client_auth_method=POST)
            with pytest.raises(errors.InvalidClient):
                await approve_next(alice)
            with pytest.raises(errors.InvalidClient):
                await request
            assert provider.token_requests == [("authorization_code", "invalid_client")]

    run(scenario())


def test_a_refresh_that_names_another_method_than_the_stored_one_uses_the_callers():
    async def scenario():
        with running_provider(client_secret=ODD_SECRET, auth_method=POST) as provider:
            service = make_service()
            agent, alice = room(service)
            request = ask(agent, provider, client_secret=ODD_SECRET, client_auth_method=POST)
            await approve_next(alice)
            await request
            # The client is re-registered for Basic at the provider.
            provider.register_client(
                CLIENT_ID, client_secret=ODD_SECRET, auth_method=BASIC,
                redirect_uris=[REDIRECT_URI],
            )
            expire(service)
            # Left out: the stored method (post), which the provider now refuses.
            with pytest.raises(errors.InvalidClient):
                await offline(agent, provider, client_secret=ODD_SECRET)
            assert provider.token_requests[-1] == ("refresh_token", "invalid_client")
            # Named: the caller's method wins.
            token = await offline(agent, provider, client_secret=ODD_SECRET, client_auth_method=BASIC)
            assert token is not None and provider.is_active(token)
            assert provider.token_requests[-1] == ("refresh_token", "ok")

    run(scenario())


def test_a_session_passes_the_method_like_a_connected_client():
    async def scenario():
        with running_provider(client_secret=ODD_SECRET, auth_method=POST) as provider:
            service = make_service()
            _, alice = room(service)
            session = service.session("agent-1", grant=SecretsGrant.allow_all())
            request = ask(session, provider, client_secret=ODD_SECRET, client_auth_method=POST)
            await approve_next(alice)
            assert provider.is_active(await request)
            assert provider.token_requests == [("authorization_code", "ok")]

    run(scenario())


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(client_secret=ODD_SECRET, client_auth_method="private_key_jwt"),
         "client_auth_method must be"),
        (dict(client_secret=ODD_SECRET, client_auth_method="none"), "client_auth_method must be"),
        (dict(client_secret=ODD_SECRET, client_auth_method=["client_secret_post"]),
         "client_auth_method must be"),
        (dict(client_auth_method=POST), "needs a client_secret"),
        (dict(client_auth_method=BASIC), "needs a client_secret"),
    ],
)
def test_a_bad_method_is_refused_before_anything_happens(kw, message):
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            with pytest.raises(errors.InvalidInput, match=message) as info:
                await ask_by_issuer(agent, provider.issuer, **kw)
            assert ODD_SECRET not in str(info.value)
            with pytest.raises(errors.InvalidInput, match=message):
                await offline_by_issuer(agent, provider.issuer, **kw)
            # Checked first: no metadata fetched, no prompt, no audit event.
            assert provider.metadata_requests == 0
            assert alice._participant.prompts == {}
            assert service.audit.events == []

    run(scenario())


# --- the credential record ---------------------------------------------------------------


def credential(**kw) -> StoredCredential:
    args: dict[str, object] = dict(
        tokens=TokenSet(access_token="AT", refresh_token="RT", issued_at=1.0, expires_at=61.0),
        client_id="app",
        authorization_endpoint="https://as.example/auth",
        token_endpoint="https://as.example/token",
    )
    args.update(kw)
    return StoredCredential(**args)  # type: ignore[arg-type]


def test_a_credential_records_post_in_format_2_and_the_default_not_at_all():
    posted = credential(client_auth_method=ClientAuthMethod.CLIENT_SECRET_POST)
    data = json.loads(posted.to_json())
    assert (data["version"], data["client_auth_method"]) == (2, POST)
    assert "client_secret" not in data  # kept only for revocation
    assert StoredCredential.from_json(posted.to_json()) == posted
    plain = json.loads(credential().to_json())
    assert plain["version"] == 1 and "client_auth_method" not in plain


@pytest.mark.parametrize(
    "method", [ClientAuthMethod.CLIENT_SECRET_BASIC, ClientAuthMethod.NONE, "client_secret_post"]
)
def test_the_default_methods_are_recorded_as_none_only(method):
    with pytest.raises(errors.InvalidInput, match="client_auth_method"):
        credential(client_auth_method=method)


@pytest.mark.parametrize("value", ["private_key_jwt", 7, ["client_secret_post"], "client_secret_basic"])
def test_a_record_with_an_unknown_method_is_refused(value):
    data = json.loads(credential(issuer="https://as.example").to_json())
    data["client_auth_method"] = value
    with pytest.raises(errors.InvalidInput, match="client_auth_method"):
        StoredCredential.from_json(json.dumps(data).encode())


def test_a_post_credential_is_revoked_with_its_secret_in_the_body():
    posted = credential(
        client_auth_method=ClientAuthMethod.CLIENT_SECRET_POST,
        revocation_endpoint="https://as.example/revoke",
        client_secret=ODD_SECRET,
    )
    built = revocation_request_for(posted)
    assert built is not None
    request, hint, sent = built
    assert request.header("Authorization") is None
    assert b"client_secret=s%2B%2F%3D%26%3A%25+cret" in request.body
    assert (hint, sent) == ("refresh_token", ("RT", ODD_SECRET))
    with pytest.raises(errors.InvalidInput):
        credential(
            client_auth_method=ClientAuthMethod.CLIENT_SECRET_POST,
            revocation_endpoint="https://as.example/revoke",
        )
