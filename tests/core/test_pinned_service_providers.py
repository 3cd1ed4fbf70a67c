"""Pinned: discovery, RFC 9207 ``iss`` and revocation on delete through the service
(issue #12, mutation pass on the code that added them): a session asks by issuer and
deletes with revocation like a connection does, and what the exchange stores for a
request made with an issuer."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from roomsecrets.core import errors
from roomsecrets.core.credentials import OAUTH_TOKEN_TYPE, StoredCredential, credential_secret_id
from roomsecrets.core.grants import SecretsGrant
from roomsecrets.core.memory_store import MemoryStore
from roomsecrets.core.oauth.discovery import MAX_METADATA_BYTES
from roomsecrets.core.oauth.http import HttpResponse
from roomsecrets.core.oauth.revocation import MAX_REVOCATION_RESPONSE_BYTES
from roomsecrets.core.oauth.tokens import TokenSet
from roomsecrets.core.ports import SecretKey
from tests.core.discovery_kit import approve_with_iss, ask_by_issuer, redirect_of
from tests.core.service_kit import (
    CLIENT_ID,
    REDIRECT_URI,
    make_service,
    next_prompt,
    running_provider,
)
from tests.core.test_pinned_refresh import KEY as REFRESH_KEY
from tests.core.test_pinned_refresh import NOW as REFRESH_NOW
from tests.core.test_pinned_refresh import Kit as RefreshKit
from tests.core.test_pinned_refresh import credential as refresh_credential
from tests.support import leak_watch
from tests.support.headless_person import approve
from tests.support.metadata_server import MetadataServer


def run(coro):
    return asyncio.run(coro)


def events(service, action):
    return [e for e in service.audit.events if e.action == action]


async def stored(service, owner="alice"):
    records = await service.store.list(service.room, owner)
    assert len(records) == 1
    return records[0].key, StoredCredential.from_json(records[0].data)


def test_a_session_asks_by_issuer_deletes_and_revokes():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            alice = service.connect("alice", name="Alice")
            agent = service.session("agent-1", grant=SecretsGrant.allow_all())
            request = asyncio.create_task(agent.request_oauth_token(
                client_id=CLIENT_ID, issuer=provider.issuer, scopes=["mail.read"],
                from_participant_id="alice", redirect_uri=REDIRECT_URI,
            ))
            await approve_with_iss(alice)
            token = await request
            key, credential = await stored(service)
            assert credential.issuer == provider.issuer
            assert credential.revocation_endpoint == provider.revocation_endpoint
            # Another session of the agent finds it by issuer, without a prompt.
            again = service.session("agent-1", grant=SecretsGrant.allow_all())
            assert await again.get_offline_oauth_token(
                client_id=CLIENT_ID, issuer=provider.issuer, scopes=["mail.read"],
                delegated_by="alice",
            ) == token
            owner = service.session("alice")
            await owner.delete_user_secret(id=key.secret_id, delegated_to="agent-1")
            assert await service.store.list(service.room, "alice") == []
            assert provider.revocation_requests == 1
            assert not provider.is_active(token)
            [revoked] = events(service, "credential.revoked")
            assert (revoked.actor, revoked.outcome) == ("alice", "ok")
            assert revoked.detail("owner") == "alice"
            assert revoked.detail("delegated_to") == "agent-1"

    run(scenario())


def test_a_session_naming_both_endpoints_and_an_issuer_without_metadata_still_asks():
    # endpoints_given: an issuer that publishes nothing only loses the extras.
    async def scenario():
        with running_provider() as provider, MetadataServer() as issuer:
            service = make_service(allow_insecure_http=True)
            alice = service.connect("alice", name="Alice")
            agent = service.session("agent-1", grant=SecretsGrant.allow_all())
            request = asyncio.create_task(agent.request_oauth_token(
                client_id=CLIENT_ID, issuer=issuer.base_url,
                authorization_endpoint=provider.authorization_endpoint,
                token_endpoint=provider.token_endpoint, scopes=["mail.read"],
                from_participant_id="alice", redirect_uri=REDIRECT_URI,
            ))
            prompt = await next_prompt(alice)
            code, state = await asyncio.to_thread(approve, prompt.authorization_url)
            await alice.provide_oauth_authorization(
                request_id=prompt.request_id, code=code, state=state)
            assert await request
            assert issuer.hits  # the metadata was asked for, and was not there
            _, credential = await stored(service)
            # The issuer names no revocation endpoint; the token endpoint's origin does.
            assert (credential.issuer, credential.revocation_endpoint) == (
                issuer.base_url, provider.revocation_endpoint)

    run(scenario())


def test_an_answer_through_a_session_carries_its_iss():
    # The issuer promised iss (RFC 9207): the session's answer is checked with it.
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent = service.connect("agent-1", name="mailbot", grant=SecretsGrant.allow_all())
            alice = service.connect("alice", name="Alice")
            request = ask_by_issuer(agent, provider.issuer)
            prompt = await next_prompt(alice)
            params = await redirect_of(prompt)
            answering = service.session("alice")
            with pytest.raises(errors.IssuerMismatch):
                await answering.provide_oauth_authorization(
                    request_id=prompt.request_id, code=params["code"], state=params["state"],
                    iss=provider.issuer + "/",
                )
            await answering.provide_oauth_authorization(
                request_id=prompt.request_id, code=params["code"], state=params["state"],
                iss=params["iss"],
            )
            assert provider.is_active(await request)

    run(scenario())


# --- the revocation's request, audit event and log, with a transport that records ----------

REVOKE = "http://as.example/revoke"


class RecordingTransport:
    """Answers each request with the next of ``answers`` (an exception is raised; a
    number is a delay before a 200); 200 when none is left."""

    def __init__(self, *answers) -> None:
        self.answers = list(answers)
        self.sent: list = []

    async def send(self, request, *, timeout, max_body):
        self.sent.append((request, timeout, max_body))
        answer = self.answers.pop(0) if self.answers else HttpResponse(status=200)
        if isinstance(answer, (int, float)):
            await asyncio.sleep(answer)
            return HttpResponse(status=200)
        if isinstance(answer, BaseException):
            raise answer
        return answer


ECHOED = "rt-echoed-by-the-provider-0123456789"


def plain_http_credential() -> StoredCredential:
    return StoredCredential(
        tokens=TokenSet(access_token="at-1", refresh_token=ECHOED, issued_at=0.0),
        client_id=CLIENT_ID, authorization_endpoint="http://as.example/authorize",
        token_endpoint="http://as.example/token", revocation_endpoint=REVOKE,
        issuer="http://as.example",
    )


async def delete_own_credential(service) -> str:
    """Store a credential of alice's own (delegated to nobody) and have her delete it."""
    secret_id = credential_secret_id(CLIENT_ID, "http://as.example/token")
    key = SecretKey(room=service.room, owner="alice", secret_id=secret_id, delegated_to=None)
    await service.store.put(
        key, type=OAUTH_TOKEN_TYPE, name="mail", data=plain_http_credential().to_json()
    )
    alice = service.connect("alice", name="Alice")
    await alice.delete_user_secret(id=secret_id)
    assert await service.store.list(service.room, "alice") == []
    return secret_id


def test_a_revocation_over_allowed_plain_http_is_sent_bounded_and_audited_with_its_details(
    caplog,
):
    async def scenario():
        transport = RecordingTransport()
        service = make_service(transport=transport, allow_insecure_http=True,
                               revocation_timeout=2.5)
        with caplog.at_level(logging.WARNING):
            secret_id = await delete_own_credential(service)
            for _ in range(3):
                await asyncio.sleep(0)  # the revocation task's done callbacks run
        # Nothing went wrong: not even a callback of the revocation task (asyncio logs it).
        assert [r.getMessage() for r in caplog.records] == []
        [(request, timeout, max_body)] = transport.sent
        assert (request.method, request.url) == ("POST", REVOKE)
        assert (timeout, max_body) == (2.5, MAX_REVOCATION_RESPONSE_BYTES)
        [revoked] = events(service, "credential.revoked")
        assert (revoked.actor, revoked.outcome, revoked.room) == ("alice", "ok", "myroom")
        assert revoked.reason == "revoked at the provider (RFC 7009)"
        assert revoked.at == service.clock()
        assert revoked.details == (
            ("owner", "alice"), ("secret_id", secret_id), ("delegated_to", ""),
            ("revocation_endpoint", REVOKE), ("token_type_hint", "refresh_token"),
            ("status", "200"),
        )
        assert events(service, "credential.revocation_failed") == []

    run(scenario())


@pytest.mark.parametrize(
    ("answer", "reason", "extra"),
    [
        # A Retry-After date is read against the service's clock.
        (HttpResponse(status=503, headers=(("Retry-After", "Thu, 01 Jan 1970 00:17:10 GMT"),)),
         "provider_unavailable", (("status", "503"),)),
        (HttpResponse(status=400, headers=(("Content-Type", "application/json"),),
                      body=b'{"error":"invalid_client"}'),
         "invalid_client", (("status", "400"), ("oauth_error", "invalid_client"))),
        (RuntimeError("transport bug"), "RuntimeError", ()),
        (5.0, "provider_timeout", ()),  # longer than the timeout and its grace
    ],
    ids=["503", "oauth-error", "transport-bug", "hangs"],
)
def test_a_failed_revocation_is_logged_and_audited_with_its_details(caplog, answer, reason, extra):
    async def scenario():
        transport = RecordingTransport(answer)
        service = make_service(transport=transport, allow_insecure_http=True,
                               revocation_timeout=0.05)
        with caplog.at_level(logging.WARNING, logger="roomsecrets.service"):
            secret_id = await delete_own_credential(service)
        [failed] = events(service, "credential.revocation_failed")
        assert (failed.actor, failed.outcome, failed.room, failed.reason) == (
            "alice", "error", "myroom", reason)
        assert failed.at == service.clock()
        assert failed.details == (
            ("owner", "alice"), ("secret_id", secret_id), ("delegated_to", ""),
            ("revocation_endpoint", REVOKE), ("token_type_hint", "refresh_token"), *extra,
        )
        assert events(service, "credential.revoked") == []
        [record] = [r for r in caplog.records if r.name == "roomsecrets.service"]
        assert record.levelno == logging.WARNING
        assert record.getMessage() == (
            f"revoking a deleted credential failed ({reason}); it is deleted here")

    run(scenario())


def test_without_allow_insecure_http_a_plain_http_revocation_endpoint_is_refused_unsent():
    async def scenario():
        transport = RecordingTransport()
        service = make_service(transport=transport)
        await delete_own_credential(service)
        assert transport.sent == []
        [failed] = events(service, "credential.revocation_failed")
        assert failed.reason == "insecure_endpoint"

    run(scenario())


def test_a_revocation_error_echoing_the_token_does_not_carry_it():
    async def scenario():
        body = json.dumps({"error": "invalid_request", "error_description": "bad " + ECHOED})
        transport = RecordingTransport(HttpResponse(
            status=400, headers=(("Content-Type", "application/json"),), body=body.encode()))
        service = make_service(transport=transport, allow_insecure_http=True)
        await delete_own_credential(service)
        [failed] = events(service, "credential.revocation_failed")
        assert failed.reason == "invalid_request"
        assert not any(ECHOED in text for text in leak_watch.recorded_texts())

    run(scenario())


class AlwaysRacedStore(MemoryStore):
    """Each compare-and-swap delete finds the record rewritten (a refresh racing it)."""

    def __init__(self) -> None:
        super().__init__()
        self.deletes: list = []

    async def delete(self, key, *, expected_version=None):
        self.deletes.append(expected_version)
        if expected_version is not None:
            record = await self.get(key)
            await self.put(key, type=record.type, name=record.name, data=record.data)
        return await super().delete(key, expected_version=expected_version)


def test_a_delete_that_keeps_losing_the_race_deletes_unconditionally_on_its_third_try():
    async def scenario():
        store = AlwaysRacedStore()
        service = make_service(store, transport=RecordingTransport(), allow_insecure_http=True)
        await delete_own_credential(service)
        assert [version is None for version in store.deletes] == [False, False, True]
        assert len(events(service, "credential.revoked")) == 1

    run(scenario())


# --- fetching an issuer's metadata (RFC 8414) --------------------------------------------

ISSUER = "http://as.example"


def by_issuer(agent, issuer=ISSUER):
    return agent.get_offline_oauth_token(
        client_id=CLIENT_ID, issuer=issuer, scopes=["mail.read"], delegated_by="alice")


def test_each_well_known_url_is_asked_in_turn_bounded_and_the_error_names_them():
    async def scenario():
        transport = RecordingTransport(HttpResponse(status=404), HttpResponse(status=404))
        service = make_service(transport=transport, allow_insecure_http=True, http_timeout=7.5)
        agent = service.connect("agent-1", name="mailbot", grant=SecretsGrant.allow_all())
        with pytest.raises(errors.ProviderMetadataNotFound) as info:
            await by_issuer(agent)
        urls = [request.url for request, _, _ in transport.sent]
        assert urls == [
            ISSUER + "/.well-known/oauth-authorization-server",
            ISSUER + "/.well-known/openid-configuration",
        ]
        assert {(timeout, max_body) for _, timeout, max_body in transport.sent} == {
            (7.5, MAX_METADATA_BYTES)}
        assert str(info.value) == (
            f"the issuer {ISSUER!r} publishes no metadata at {urls[0]} or {urls[1]} "
            "(RFC 8414 §3.1, OpenID Connect Discovery 1.0 §4)"
        )

    run(scenario())


def test_the_second_well_known_url_is_used_when_the_first_has_nothing():
    async def scenario():
        document = {
            "issuer": ISSUER,
            "authorization_endpoint": ISSUER + "/authorize",
            "token_endpoint": ISSUER + "/token",
        }
        transport = RecordingTransport(
            HttpResponse(status=404),
            HttpResponse(status=200, headers=(("Content-Type", "application/json"),),
                         body=json.dumps(document).encode()),
        )
        service = make_service(transport=transport, allow_insecure_http=True)
        agent = service.connect("agent-1", name="mailbot", grant=SecretsGrant.allow_all())
        assert await by_issuer(agent) is None  # discovered; nothing stored yet
        assert len(transport.sent) == 2

    run(scenario())


def test_an_unavailable_issuer_says_when_to_come_back_by_the_services_clock():
    async def scenario():
        transport = RecordingTransport(HttpResponse(
            status=503, headers=(("Retry-After", "Tue, 14 Nov 2023 22:13:50 GMT"),)))
        service = make_service(transport=transport, allow_insecure_http=True)
        agent = service.connect("agent-1", name="mailbot", grant=SecretsGrant.allow_all())
        with pytest.raises(errors.ProviderError) as info:
            await by_issuer(agent)
        assert info.value.retryable
        assert info.value.retry_after == 30.0  # the clock is at 1_700_000_000

    run(scenario())


def test_a_plain_http_issuer_is_refused_unless_allowed():
    async def scenario():
        transport = RecordingTransport()
        service = make_service(transport=transport)
        agent = service.connect("agent-1", name="mailbot", grant=SecretsGrant.allow_all())
        with pytest.raises(errors.InvalidInput):
            await by_issuer(agent)
        session = service.session("agent-1", grant=SecretsGrant.allow_all())
        with pytest.raises(errors.InvalidInput):
            await by_issuer(session)
        assert transport.sent == []

    run(scenario())


# --- refresher.busy (what SecretsService.idle asks) after a new approval ---------------------


def test_a_new_approval_that_lands_leaves_the_refresher_not_busy():
    # A rotated credential kept in memory (its save failed) makes the refresher busy, so
    # the service is not idle; a new approval that lands replaces it for good.
    async def scenario():
        kit = RefreshKit()
        await kit.refresher.save_new(REFRESH_KEY, refresh_credential())
        kit.store.failing = True
        assert await kit.token() == "at-1"  # rotated; the new refresh token is kept in memory
        kit.store.failing = False
        assert kit.refresher.busy
        await kit.refresher.save_new(
            REFRESH_KEY, refresh_credential("at-approved", expires_at=REFRESH_NOW + 3600))
        assert not kit.refresher.busy
        assert await kit.token() == "at-approved"

    run(scenario())


# --- the documented defaults: discovery_ttl 3600 s, discovery_failure_ttl 5 s,
# revocation_timeout 10 s ------------------------------------------------------------------


def metadata_answer():
    document = {"issuer": ISSUER, "authorization_endpoint": ISSUER + "/authorize",
                "token_endpoint": ISSUER + "/token"}
    return HttpResponse(status=200, headers=(("Content-Type", "application/json"),),
                        body=json.dumps(document).encode())


def test_metadata_is_kept_for_an_hour_by_default():
    async def scenario():
        transport = RecordingTransport(metadata_answer(), metadata_answer())
        service = make_service(transport=transport, allow_insecure_http=True)
        agent = service.connect("agent-1", name="mailbot", grant=SecretsGrant.allow_all())
        await by_issuer(agent)
        service.clock.advance(3599.5)
        await by_issuer(agent)
        assert len(transport.sent) == 1
        service.clock.advance(0.75)  # 3600.25 s after the fetch
        await by_issuer(agent)
        assert len(transport.sent) == 2

    run(scenario())


def test_a_failed_metadata_lookup_is_remembered_for_five_seconds_by_default():
    async def scenario():
        transport = RecordingTransport(HttpResponse(status=503), metadata_answer())
        service = make_service(transport=transport, allow_insecure_http=True)
        agent = service.connect("agent-1", name="mailbot", grant=SecretsGrant.allow_all())
        with pytest.raises(errors.ProviderError):
            await by_issuer(agent)
        service.clock.advance(4.75)
        with pytest.raises(errors.ProviderError):
            await by_issuer(agent)  # remembered: not asked again
        assert len(transport.sent) == 1
        service.clock.advance(0.5)  # 5.25 s after the failure
        assert await by_issuer(agent) is None
        assert len(transport.sent) == 2

    run(scenario())


def test_a_revocation_waits_ten_seconds_by_default():
    async def scenario():
        transport = RecordingTransport()
        service = make_service(transport=transport, allow_insecure_http=True)
        await delete_own_credential(service)
        [(_, timeout, _)] = transport.sent
        assert timeout == 10.0

    run(scenario())


def test_a_failure_ttl_of_zero_asks_again_at_once():
    async def scenario():
        transport = RecordingTransport(HttpResponse(status=503), HttpResponse(status=503))
        service = make_service(transport=transport, allow_insecure_http=True,
                               discovery_failure_ttl=0)
        agent = service.connect("agent-1", name="mailbot", grant=SecretsGrant.allow_all())
        for _ in range(2):
            with pytest.raises(errors.ProviderError):
                await by_issuer(agent)
        assert len(transport.sent) == 2

    run(scenario())


def test_a_bad_revocation_timeout_is_refused_saying_what_it_must_be():
    with pytest.raises(errors.InvalidInput) as info:
        make_service(revocation_timeout=0)
    assert str(info.value) == "revocation_timeout must be a finite number of seconds > 0"
