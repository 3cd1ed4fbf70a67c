"""Revocation on delete (RFC 7009): the request, the answer, and delete_user_secret
revoking at the provider, with failures audited and never failing the delete."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import urllib.parse
import urllib.request

import pytest

from roomsecrets.core import errors
from roomsecrets.core.credentials import StoredCredential
from roomsecrets.core.oauth.revocation import (
    MAX_REVOCATION_RESPONSE_BYTES,
    build_revocation_request,
    check_revocation_response,
    revocation_request_for,
)
from roomsecrets.core.oauth.token_request import ClientAuthMethod, ClientCredentials
from roomsecrets.core.oauth.tokens import TokenSet
from roomsecrets.core.ports import SecretKey
from tests.core.discovery_kit import approve_with_iss, ask_by_issuer, offline_by_issuer
from tests.core.service_kit import (
    CLIENT_ID,
    MetadataHidden,
    approved,
    make_service,
    next_prompt,
    room,
    running_provider,
)
from tests.support.fake_provider import CannedResponse, TokenQuirk
from tests.support.headless_person import approve
from tests.support.metadata_server import MetadataServer

ENDPOINT = "https://as.example/revoke"
ODD_SECRET = "s+/=&:% cret"


def run(coro):
    return asyncio.run(coro)


def form(request) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(request.body.decode()))


# --- the request (RFC 7009 §2.1) -------------------------------------------------------


def test_a_public_client_names_itself_and_sends_the_token_and_hint():
    request = build_revocation_request(
        revocation_endpoint=ENDPOINT, client=ClientCredentials(client_id="app"),
        token="rt-1", token_type_hint="refresh_token",
    )
    assert (request.method, request.url) == ("POST", ENDPOINT)
    assert request.header("Content-Type") == "application/x-www-form-urlencoded"
    assert form(request) == {"token": "rt-1", "token_type_hint": "refresh_token", "client_id": "app"}
    assert request.header("Authorization") is None


def test_client_secret_basic_form_encodes_id_and_secret_before_base64():
    request = build_revocation_request(
        revocation_endpoint=ENDPOINT,
        client=ClientCredentials(client_id="app:1", client_secret=ODD_SECRET),
        token="rt-1",
    )
    scheme, _, value = request.header("Authorization").partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(value).decode() == "app%3A1:s%2B%2F%3D%26%3A%25+cret"
    assert form(request) == {"token": "rt-1"}  # no hint given, no secret in the body


def test_client_secret_post_puts_the_secret_in_the_body():
    client = ClientCredentials(client_id="app", client_secret=ODD_SECRET,
                               method=ClientAuthMethod.CLIENT_SECRET_POST)
    request = build_revocation_request(revocation_endpoint=ENDPOINT, client=client, token="at")
    assert form(request) == {"token": "at", "client_id": "app", "client_secret": ODD_SECRET}


@pytest.mark.parametrize(
    ("kw", "error"),
    [
        ({"token": ""}, errors.InvalidInput),
        ({"token_type_hint": "id_token"}, errors.InvalidInput),
        ({"revocation_endpoint": "http://as.example/revoke"}, errors.InsecureEndpointError),
        ({"revocation_endpoint": "https://as.example/revoke#x"}, errors.InvalidInput),
    ],
)
def test_bad_arguments_are_refused(kw, error):
    args = dict(revocation_endpoint=ENDPOINT, client=ClientCredentials(client_id="app"), token="t")
    args.update(kw)
    with pytest.raises(error) as info:
        build_revocation_request(**args)
    assert "revocation_endpoint" in str(info.value) or "token" in str(info.value)


def credential(**kw) -> StoredCredential:
    args = dict(
        tokens=TokenSet(access_token="at-1", refresh_token="rt-1", issued_at=0.0),
        client_id="app", authorization_endpoint="https://as.example/authorize",
        token_endpoint="https://as.example/token", revocation_endpoint=ENDPOINT,
    )
    args.update(kw)
    return StoredCredential(**args)


def test_a_credential_is_revoked_by_its_refresh_token_else_its_access_token():
    request, hint, sent = revocation_request_for(credential(client_secret="sec"))
    assert (form(request)["token"], hint, sent) == ("rt-1", "refresh_token", ("rt-1", "sec"))
    assert request.header("Authorization") is not None
    request, hint, sent = revocation_request_for(
        credential(tokens=TokenSet(access_token="at-1", issued_at=0.0))
    )
    assert (form(request), hint, sent) == (
        {"token": "at-1", "token_type_hint": "access_token", "client_id": "app"},
        "access_token",
        ("at-1",),
    )
    assert revocation_request_for(credential(revocation_endpoint=None)) is None


# --- the answer (RFC 7009 §2.2) ------------------------------------------------------


def check(status: int, body: bytes = b"", headers=(), **kw) -> None:
    check_revocation_response(status=status, headers=headers, body=body, now=1000.0, **kw)


@pytest.mark.parametrize("body", [b"", b"<html>ok</html>", b'{"error":"invalid_token"}'])
def test_200_means_revoked_whatever_the_body(body):
    check(200, body)  # §2.2: the body is ignored; an unknown token is also 200


def test_unsupported_token_type_is_its_own_error():
    with pytest.raises(errors.UnsupportedTokenType) as info:
        check(400, b'{"error":"unsupported_token_type"}')
    assert info.value.status == 400 and not info.value.retryable


def test_503_is_retryable_with_its_retry_after():
    with pytest.raises(errors.ProviderUnavailable) as info:
        check(503, b"busy", (("Retry-After", "30"),))
    assert info.value.retry_after == 30.0 and info.value.status == 503


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, b'{"error":"invalid_client"}', errors.InvalidClient),
        (500, b"<html>gateway</html>", errors.ProviderUnavailable),
        (404, b"<html>no</html>", errors.ProviderResponseError),
        (302, b"", errors.ProviderResponseError),
        (400, b"x" * 70_000, errors.ResponseTooLarge),
    ],
)
def test_every_other_answer_is_a_typed_failure(status, body, error):
    with pytest.raises(error):
        check(status, body)


def test_a_provider_echoing_the_token_does_not_get_it_into_the_error():
    body = json.dumps({"error": "invalid_request", "error_description": "bad token rt-secret-123456789"})
    with pytest.raises(errors.InvalidRequest) as info:
        check(400, body.encode(), redact=("rt-secret-123456789",))
    assert "rt-secret-123456789" not in str(info.value)


# --- the record ------------------------------------------------------------------------


def test_a_record_with_revocation_data_round_trips_as_format_2_and_hides_it_in_repr():
    stored = credential(issuer="https://as.example", client_secret=ODD_SECRET)
    raw = stored.to_json()
    assert json.loads(raw)["version"] == 2
    assert StoredCredential.from_json(raw) == stored
    shown = repr(stored)
    for hidden in (ODD_SECRET, "rt-1", "at-1", ENDPOINT, "issuer"):
        assert hidden not in shown
    assert json.loads(credential(revocation_endpoint=None).to_json())["version"] == 1


def test_a_client_secret_is_kept_only_with_a_revocation_endpoint():
    with pytest.raises(errors.InvalidInput):
        credential(revocation_endpoint=None, client_secret="sec")
    with pytest.raises(errors.InvalidInput):
        credential(issuer="")


def test_a_format_2_record_with_a_bad_field_is_refused():
    data = json.loads(credential().to_json())
    data["revocation_endpoint"] = 5
    with pytest.raises(errors.InvalidInput, match="revocation_endpoint"):
        StoredCredential.from_json(json.dumps(data).encode())


def test_a_refresh_keeps_the_revocation_data():
    stored = credential(issuer="https://as.example", client_secret="sec")
    fresh = stored.with_tokens(TokenSet(access_token="at-2", issued_at=1.0))
    assert (fresh.issuer, fresh.revocation_endpoint, fresh.client_secret) == (
        "https://as.example", ENDPOINT, "sec"
    )


# --- delete_user_secret revokes ----------------------------------------------------------


async def stored_credential(service, key_owner="alice") -> tuple[SecretKey, StoredCredential]:
    records = await service.store.list(service.room, key_owner)
    assert len(records) == 1
    return records[0].key, StoredCredential.from_json(records[0].data)


async def approved_answer(person):
    """Approve the next prompt and answer without iss (the issuer promised none)."""
    prompt = await next_prompt(person)
    code, state = await asyncio.to_thread(approve, prompt.authorization_url)
    await person.provide_oauth_authorization(request_id=prompt.request_id, code=code, state=state)


def refresh_at_provider(provider, refresh_token: str, **auth: str) -> dict[str, object]:
    """POST a refresh straight to the provider's token endpoint; its JSON answer."""
    body = urllib.parse.urlencode(
        {"grant_type": "refresh_token", "refresh_token": refresh_token, **auth}
    ).encode()
    request = urllib.request.Request(provider.token_endpoint, data=body, headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as failure:
        return json.loads(failure.read())


def events(service, action):
    return [e for e in service.audit.events if e.action == action]


def test_deleting_a_credential_revokes_it_and_the_old_refresh_token_is_dead():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            request = ask_by_issuer(agent, provider.issuer)
            await approve_with_iss(alice)
            token = await request
            key, stored = await stored_credential(service)
            assert stored.issuer == provider.issuer
            assert stored.revocation_endpoint == provider.revocation_endpoint
            assert stored.client_secret is None  # a public client
            await alice.delete_user_secret(id=key.secret_id, delegated_to="agent-1")
            assert await service.store.list(service.room, "alice") == []
            assert provider.revocation_requests == 1
            assert provider.revoked_grants == 1
            assert not provider.is_active(token)
            answer = refresh_at_provider(provider, stored.tokens.refresh_token, client_id=CLIENT_ID)
            assert answer["error"] == "invalid_grant"
            [revoked] = events(service, "credential.revoked")
            assert revoked.actor == "alice" and revoked.outcome == "ok"
            assert revoked.detail("token_type_hint") == "refresh_token"
            assert revoked.detail("secret_id") == key.secret_id
            assert events(service, "credential.revocation_failed") == []
            # The agent's next offline call finds nothing and prompts nobody.
            assert await offline_by_issuer(agent, provider.issuer) is None

    run(scenario())


def test_a_confidential_client_with_an_odd_secret_revokes_with_client_secret_basic():
    async def scenario():
        with running_provider(client_secret=ODD_SECRET, auth_method="client_secret_basic") as provider:
            service = make_service()
            agent, alice = room(service)
            request = ask_by_issuer(agent, provider.issuer, client_secret=ODD_SECRET)
            await approve_with_iss(alice)
            token = await request
            key, stored = await stored_credential(service)
            assert stored.client_secret == ODD_SECRET
            await alice.delete_user_secret(id=key.secret_id, delegated_to="agent-1")
            assert provider.revoked_grants == 1
            assert not provider.is_active(token)
            assert [e.outcome for e in events(service, "credential.revoked")] == ["ok"]
            secrets = (ODD_SECRET, token, stored.tokens.refresh_token)
            for event in service.audit.events:
                text = repr(event) + event.reason + repr(event.details)
                assert not any(secret in text for secret in secrets)

    run(scenario())


async def delete_answered_with(provider, answer, **settings):
    """Approve a credential, then delete it while the revocation endpoint gives
    ``answer``; return the service and the access token, the delete done."""
    service = make_service(**settings)
    agent, alice = room(service)
    request = ask_by_issuer(agent, provider.issuer)
    await approve_with_iss(alice)
    token = await request
    key, _ = await stored_credential(service)
    provider.queue_revocation_responses(answer)
    await alice.delete_user_secret(id=key.secret_id, delegated_to="agent-1")
    assert await service.store.list(service.room, "alice") == []
    return service, token


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (CannedResponse.text("<html>oops</html>", status=500), "provider_unavailable"),
        (CannedResponse.json({"error": "unsupported_token_type"}, status=400),
         "unsupported_token_type"),
        (CannedResponse(status=503, headers=(("Retry-After", "120"),)), "provider_unavailable"),
        (CannedResponse(status=200, delay=30.0), "provider_timeout"),
    ],
)
def test_a_failed_revocation_is_audited_and_the_delete_is_still_done(answer, reason):
    async def scenario():
        with running_provider() as provider:
            service, token = await delete_answered_with(provider, answer, revocation_timeout=0.3)
            [failed] = events(service, "credential.revocation_failed")
            assert (failed.outcome, failed.reason, failed.actor) == ("error", reason, "alice")
            assert events(service, "credential.revoked") == []
            assert provider.is_active(token)  # the provider did not revoke it

    run(scenario())


@pytest.mark.parametrize(("status", "action"), [
    (200, "credential.revoked"), (400, "credential.revocation_failed"),
])
def test_a_revocation_answer_too_large_to_read_is_judged_by_its_status(status, action):
    # RFC 7009 §2.2: the body is ignored, so a 200 whose body is over the cap is a
    # revocation; any other status is a failure whatever the body would have said.
    async def scenario():
        with running_provider() as provider:
            huge = "x" * (MAX_REVOCATION_RESPONSE_BYTES + 1)
            service, _ = await delete_answered_with(
                provider, CannedResponse.text(huge, status=status)
            )
            [event] = [e for e in service.audit.events if e.action.startswith("credential.revo")]
            assert event.action == action
            assert ("status", str(status)) in event.details
            if action == "credential.revocation_failed":
                assert event.reason == "response_too_large"

    run(scenario())


def test_a_provider_that_is_gone_does_not_stop_the_delete():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            request = ask_by_issuer(agent, provider.issuer)
            await approve_with_iss(alice)
            await request
            key, _ = await stored_credential(service)
        # The provider has stopped: connection refused.
        await alice.delete_user_secret(id=key.secret_id, delegated_to="agent-1")
        assert await service.store.list(service.room, "alice") == []
        [failed] = events(service, "credential.revocation_failed")
        assert failed.reason == "connect_error"

    run(scenario())


def test_tokens_from_an_overriding_token_endpoint_are_never_sent_to_the_issuers_revocation():
    async def scenario():
        with running_provider() as provider, MetadataServer() as issuer:
            issuer.answer("/.well-known/oauth-authorization-server", body={
                "issuer": issuer.base_url,
                "authorization_endpoint": provider.authorization_endpoint,
                "token_endpoint": issuer.base_url + "/token",
                "revocation_endpoint": issuer.base_url + "/revoke",
            })
            service = make_service()
            agent, alice = room(service)
            request = ask_by_issuer(agent, issuer.base_url, token_endpoint=provider.token_endpoint)
            await approved_answer(alice)
            await request
            key, stored = await stored_credential(service)
            # Not the issuer's revocation endpoint: the one the token endpoint's own
            # origin publishes, for the tokens that endpoint issued.
            assert (stored.issuer, stored.revocation_endpoint, stored.client_secret) == (
                issuer.base_url, provider.revocation_endpoint, None)
            await alice.delete_user_secret(id=key.secret_id, delegated_to="agent-1")
            assert await service.store.list(service.room, "alice") == []
            assert "/revoke" not in issuer.hits
            assert provider.revocation_requests == 1

    run(scenario())


def test_the_invalid_grant_clean_up_does_not_revoke():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            request = ask_by_issuer(agent, provider.issuer)
            await approve_with_iss(alice)
            await request
            provider.queue_token_responses(CannedResponse.json({"error": "invalid_grant"}, status=400))
            service.clock.advance(7200)
            assert await offline_by_issuer(agent, provider.issuer) is None
            assert [e.action for e in events(service, "credential.dropped")] == ["credential.dropped"]
            assert await service.store.list(service.room, "alice") == []
            assert provider.revocation_requests == 0

    run(scenario())


def test_a_credential_without_a_revocation_endpoint_is_only_deleted():
    async def scenario():
        with running_provider() as provider:
            service = make_service(transport=MetadataHidden())
            agent, alice = room(service)
            await approved(agent, alice, provider)
            key, stored = await stored_credential(service)
            assert (stored.issuer, stored.revocation_endpoint, stored.client_secret) == (
                None, None, None)
            assert json.loads((await service.store.get(key)).data)["version"] == 1
            await alice.delete_user_secret(id=key.secret_id, delegated_to="agent-1")
            assert await service.store.list(service.room, "alice") == []
            assert provider.revocation_requests == 0
            assert events(service, "credential.revoked") == []
            assert events(service, "credential.revocation_failed") == []

    run(scenario())


def test_deleting_a_generic_secret_or_nothing_revokes_nothing():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            _agent, alice = room(service)
            await alice.set_secret(secret_id="note", data=b"x")
            await alice.delete_user_secret(id="note")
            with pytest.raises(errors.SecretNotFound):
                await alice.delete_user_secret(id="never-there")
            assert await alice.list_user_secrets() == []
            assert provider.revocation_requests == 0

    run(scenario())


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan"), True, "10"])
def test_the_revocation_timeout_must_be_a_finite_positive_number(bad):
    with pytest.raises(errors.InvalidInput, match="revocation_timeout"):
        make_service(revocation_timeout=bad)


def test_a_format_1_record_in_the_store_is_used_and_revoked_through_the_origins_metadata():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            token = await approved(agent, alice, provider)
            key, stored = await stored_credential(service)
            # As written before revocation endpoints were kept: format 1.
            await service.store.delete(key)
            await service.refresher.save_new(
                key, dataclasses.replace(stored, revocation_endpoint=None, client_secret=None))
            raw = (await service.store.get(key)).data
            assert b'"version":1' in raw and b"revocation" not in raw
            assert await agent.get_offline_oauth_token(
                client_id=CLIENT_ID, issuer=provider.issuer, scopes=["mail.read"],
                delegated_by="alice",
            ) == token  # found by issuer, since the token endpoint is the same
            await alice.delete_user_secret(id=key.secret_id, delegated_to="agent-1")
            assert provider.revocation_requests == 1  # looked up at the origin at delete

    run(scenario())


def test_a_delete_during_a_refresh_revokes_the_token_it_deleted():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            request = ask_by_issuer(agent, provider.issuer)
            await approve_with_iss(alice)
            await request
            key, _ = await stored_credential(service)
            service.clock.advance(7200)
            provider.queue_token_responses(TokenQuirk(delay=0.3))
            refresh = asyncio.ensure_future(offline_by_issuer(agent, provider.issuer))
            await asyncio.sleep(0.1)  # the refresh POST is on its way
            await alice.delete_user_secret(id=key.secret_id, delegated_to="agent-1")
            await refresh
            # The person's delete won: nothing is stored, the grant is revoked at the
            # provider (revoking the rotated-out refresh token ends the whole grant).
            assert await service.store.list(service.room, "alice") == []
            assert provider.revoked_grants == 1
            assert await offline_by_issuer(agent, provider.issuer) is None

    run(scenario())

