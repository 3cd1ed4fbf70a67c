"""Issue #7: the core tried the way an attacker or an unlucky operator would.

Each test names the promise it keeps; each failed on the main branch before the
hardening commits (see the issue note for the list).
"""

from __future__ import annotations

import asyncio

import pytest

from roomsecrets.core import errors
from roomsecrets.core.credentials import StoredCredential
from roomsecrets.core.grants import OAuthRule, SecretsGrant, check_oauth_request
from roomsecrets.core.memory_store import MemoryStore
from roomsecrets.core.ports import Lease, SecretKey, SecretRecord
from tests.core.service_kit import (
    CLIENT_ID,
    REDIRECT_URI,
    approve_next,
    approved,
    ask,
    make_service,
    next_prompt,
    oauth_args,
    offline,
    room,
    running_provider,
    until,
)
from tests.support.fake_provider import CannedResponse, TokenQuirk
from tests.support.headless_person import approve


async def stored(store, owner="alice"):
    (record,) = await store.list("myroom", owner)
    return record, StoredCredential.from_json(record.data)


class FlakyStore(MemoryStore):
    """A MemoryStore whose writes and lease renewals fail while told to."""

    def __init__(self) -> None:
        super().__init__()
        self.failing_puts = 0
        self.renew_fails = False
        self.puts = 0

    async def put(self, key: SecretKey, **kwargs) -> SecretRecord:
        self.puts += 1
        if self.failing_puts:
            self.failing_puts -= 1
            raise errors.StoreError("the store is down")
        return await super().put(key, **kwargs)

    async def renew_lease(self, lease: Lease, *, ttl: float) -> Lease:
        if self.renew_fails:
            raise errors.StoreError("the store is down")
        return await super().renew_lease(lease, ttl=ttl)


# --- 1. rotated tokens are never lost after the provider answered ------------------


def test_a_failed_lease_renewal_does_not_lose_the_rotated_refresh_token():
    async def scenario():
        with running_provider() as provider:
            store = FlakyStore()
            # Renewals every 0.1 s real time, during a 0.5 s refresh POST.
            service = make_service(store, lease_ttl=0.3)
            agent, alice = room(service)
            await approved(agent, alice, provider)
            store.renew_fails = True
            provider.queue_token_responses(TokenQuirk(delay=0.5))
            service.clock.advance(3600)
            token = await offline(agent, provider)
            assert token is not None and provider.is_active(token)
            assert any(e.action == "credential.lease_renewal_failed" for e in service.audit.events)
            # The rotated refresh token was saved: the next refresh uses it, no replay.
            _, cred = await stored(store)
            assert cred.tokens.access_token == token
            store.renew_fails = False
            service.clock.advance(3600)
            again = await offline(agent, provider)
            assert again is not None and again != token and provider.is_active(again)
            assert provider.refresh_posts == 2
            assert provider.revoked_grants == 0

    asyncio.run(scenario())


def test_a_store_failing_right_after_the_refresh_is_retried():
    async def scenario():
        with running_provider() as provider:
            store = FlakyStore()
            service = make_service(store, sleep=_no_wait)
            agent, alice = room(service)
            await approved(agent, alice, provider)
            service.clock.advance(3600)
            store.failing_puts = 2
            token = await offline(agent, provider)
            assert token is not None and provider.is_active(token)
            _, cred = await stored(store)
            assert cred.tokens.access_token == token  # saved on the third try

    asyncio.run(scenario())


def test_a_store_down_after_the_refresh_keeps_the_rotated_token_and_saves_it_later():
    async def scenario():
        with running_provider() as provider:
            store = FlakyStore()
            service = make_service(store, sleep=_no_wait)
            agent, alice = room(service)
            await approved(agent, alice, provider)
            service.clock.advance(3600)
            store.failing_puts = 100
            token = await offline(agent, provider)
            assert token is not None and provider.is_active(token)
            assert any(e.action == "credential.save_failed" for e in service.audit.events)
            # The store still has the old tokens; this process serves the new ones.
            assert await offline(agent, provider) == token
            store.failing_puts = 0
            assert await offline(agent, provider) == token  # and saves them now
            _, cred = await stored(store)
            assert cred.tokens.access_token == token
            service.clock.advance(3600)
            again = await offline(agent, provider)
            assert again is not None and provider.is_active(again)
            assert provider.revoked_grants == 0  # the old refresh token was never replayed

    asyncio.run(scenario())


def test_a_code_exchange_survives_a_store_that_fails_twice():
    async def scenario():
        with running_provider() as provider:
            store = FlakyStore()
            service = make_service(store, sleep=_no_wait)
            agent, alice = room(service)
            request = ask(agent, provider)
            prompt = await next_prompt(alice)
            code, state = await asyncio.to_thread(approve, prompt.authorization_url)
            store.failing_puts = 2
            await alice.provide_oauth_authorization(
                request_id=prompt.request_id, code=code, state=state
            )
            token = await request
            _, cred = await stored(store)
            assert cred.tokens.access_token == token

    asyncio.run(scenario())


async def _no_wait(_seconds: float) -> None:
    await asyncio.sleep(0)


# --- 2. versions are never reused: a refresh cannot overwrite a new approval --------


def test_a_refresh_in_flight_does_not_overwrite_an_approval_made_after_a_delete():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            await approved(agent, alice, provider)
            # The refresh answer waits 3 s: the delete and a whole new approval must
            # come first, and under a loaded CI (niced core runs) 0.5 s was too short.
            provider.queue_token_responses(TokenQuirk(delay=3.0))
            service.clock.advance(3600)
            in_flight = asyncio.create_task(offline(agent, provider))
            await until(lambda: provider.refresh_posts == 1)
            (info,) = await alice.list_user_secrets()
            await alice.delete_user_secret(id=info.id, delegated_to="agent-1")
            wider = await approved(agent, alice, provider, scopes=["mail.read", "mail.send"])
            assert not in_flight.done()  # the interleaving this test is about
            # The old grant's refresh ends after the new approval was stored.
            got = await in_flight
            _, cred = await stored(service.store)
            assert cred.tokens.access_token == wider
            assert set(cred.tokens.scopes) == {"mail.read", "mail.send"}
            assert got == wider  # the waiting caller gets the new approval's token
            assert any(e.action == "credential.refresh_discarded" for e in service.audit.events)

    asyncio.run(scenario())


def test_an_invalid_grant_cleanup_does_not_delete_an_approval_made_after_a_delete():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            await approved(agent, alice, provider)
            provider.queue_token_responses(
                # 3 s: the delete and a whole new approval must come first (see above).
                CannedResponse.json({"error": "invalid_grant"}, status=400, delay=3.0)
            )
            service.clock.advance(3600)
            in_flight = asyncio.create_task(offline(agent, provider))
            await until(lambda: provider.pending_quirks == 0)
            (info,) = await alice.list_user_secrets()
            await alice.delete_user_secret(id=info.id, delegated_to="agent-1")
            fresh = await approved(agent, alice, provider)
            assert not in_flight.done()  # the interleaving this test is about
            await in_flight
            _, cred = await stored(service.store)
            assert cred.tokens.access_token == fresh

    asyncio.run(scenario())


# --- 3. a closed client cannot answer ------------------------------------------------


def test_a_closed_client_cannot_answer_a_prompt_of_a_later_connection():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent = service.connect("agent-1", grant=SecretsGrant.allow_all())
            old_alice = service.connect("alice")
            await old_alice.close()
            alice = service.connect("alice")
            request = ask(agent, provider)
            prompt = await next_prompt(alice)
            code, state = await asyncio.to_thread(approve, prompt.authorization_url)
            with pytest.raises(errors.ParticipantNotConnected):
                await old_alice.provide_oauth_authorization(
                    request_id=prompt.request_id, code=code, state=state
                )
            with pytest.raises(errors.ParticipantNotConnected):
                await old_alice.reject_oauth_authorization(request_id=prompt.request_id,
                                                           error="no")
            assert service.registry.state_of(prompt.request_id).name == "PENDING"
            await alice.provide_oauth_authorization(
                request_id=prompt.request_id, code=code, state=state
            )
            assert provider.is_active(await request)

    asyncio.run(scenario())


# --- 4. the grant is checked against the scopes a stored token carries ---------------


NARROW = SecretsGrant(oauth=[OAuthRule(scopes=["mail.*"])])


@pytest.mark.parametrize("asked", [["mail.read"], None], ids=["mail.read", "no-scopes"])
def test_a_narrowed_grant_does_not_hand_out_a_stored_token_with_wider_scopes(asked):
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            await approved(agent, alice, provider, scopes=["mail.read", "drive.full"])
            await agent.close()
            narrowed = service.connect("agent-1", grant=NARROW)
            with pytest.raises(errors.GrantDenied, match=r"drive\.full"):
                await offline(narrowed, provider, scopes=asked)
            with pytest.raises(errors.GrantDenied, match=r"drive\.full"):
                await narrowed.request_oauth_token(
                    **oauth_args(provider, scopes=asked),
                    from_participant_id="alice", redirect_uri=REDIRECT_URI)
            denials = [e for e in service.audit.events
                       if e.outcome == "denied" and e.detail("stored_scopes")]
            assert len(denials) == 2
            assert "drive.full" in denials[0].reason
            assert not alice_has_prompts(service)
            # Nothing changed: the credential is still there for a wider grant.
            assert len(await alice.list_user_secrets()) == 1

    asyncio.run(scenario())


def test_a_stored_token_within_the_narrowed_grant_is_still_handed_out():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            token = await approved(agent, alice, provider, scopes=["mail.read", "mail.send"])
            await agent.close()
            narrowed = service.connect("agent-1", grant=NARROW)
            assert await offline(narrowed, provider, scopes=None) == token

    asyncio.run(scenario())


def alice_has_prompts(service) -> bool:
    return bool(service.registry.pending_for_target("alice"))


# --- 5. caller input: typed errors up front, nothing changed ----------------------


def test_a_huge_integer_timeout_is_invalid_input():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, _alice = room(service)
            with pytest.raises(errors.InvalidInput, match="timeout"):
                await agent.request_oauth_token(
                    **oauth_args(provider), from_participant_id="alice",
                    redirect_uri=REDIRECT_URI, timeout=10**400)
            with pytest.raises(errors.InvalidInput, match="timeout"):
                await offline(agent, provider, timeout=10**400)

    asyncio.run(scenario())


@pytest.mark.parametrize("field", ["token_endpoint", "authorization_endpoint", "client_id",
                                   "redirect_uri", "client_secret", "from_participant_id"])
def test_a_lone_surrogate_in_a_request_argument_is_invalid_input(field):
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, _alice = room(service)
            args = dict(oauth_args(provider), from_participant_id="alice",
                        redirect_uri=REDIRECT_URI)
            args[field] = str(args.get(field) or "secret") + "\ud800"
            with pytest.raises(errors.InvalidInput):
                await agent.request_oauth_token(**args)
            assert len(service.registry) == 0

    asyncio.run(scenario())


@pytest.mark.parametrize("bad", ["\ud800", "x" * 5000, "line\nbreak", ""])
def test_a_malformed_code_is_refused_and_leaves_the_request_open(bad):
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            request = ask(agent, provider)
            prompt = await next_prompt(alice)
            with pytest.raises(errors.InvalidInput, match="code"):
                await alice.provide_oauth_authorization(request_id=prompt.request_id, code=bad)
            with pytest.raises(errors.InvalidInput, match="state"):
                await alice.provide_oauth_authorization(
                    request_id=prompt.request_id, code="c", state="\ud800")
            assert service.registry.state_of(prompt.request_id).name == "PENDING"
            code, state = await asyncio.to_thread(approve, prompt.authorization_url)
            await alice.provide_oauth_authorization(
                request_id=prompt.request_id, code=code, state=state)
            assert provider.is_active(await request)

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "bad", [{"timeout": -1}, {"redirect_uri": "no-scheme"}, {"no_pkce": "false"},
            {"client_secret": ""}],
    ids=["timeout", "redirect_uri", "no_pkce", "client_secret"])
def test_request_arguments_are_checked_before_a_stored_token_is_returned(bad):
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            await approved(agent, alice, provider)
            args = dict(oauth_args(provider), from_participant_id="alice",
                        redirect_uri=REDIRECT_URI)
            args.update(bad)
            with pytest.raises(errors.InvalidInput):
                await agent.request_oauth_token(**args)

    asyncio.run(scenario())


# --- 6. provider responses: typed errors -------------------------------------------


@pytest.mark.parametrize(
    "response",
    [
        CannedResponse.text("", status=503, headers=(("Retry-After", "²"),)),
        CannedResponse.text(
            "", status=503, headers=(("Retry-After", "Mon, 01 Jan 2024 00:00:00 +99999999999999999999"),)),
        CannedResponse(status=200, headers=(("Content-Type", "application/json"),),
                       body=b"[" * 100_000 + b"]" * 100_000),
        CannedResponse.json({"access_token": "bad\ud800token", "token_type": "Bearer"}),
    ],
    ids=["superscript-retry-after", "huge-zone-offset", "nested-json", "surrogate-token"],
)
def test_odd_provider_responses_to_the_code_exchange_are_typed_provider_errors(response):
    async def scenario():
        with running_provider() as provider:
            from roomsecrets.core.oauth.retry import RetryPolicy

            service = make_service(retry=RetryPolicy(attempts=1))
            agent, alice = room(service)
            request = ask(agent, provider)
            provider.queue_token_responses(response)
            with pytest.raises(errors.ProviderError):
                await approve_next(alice)
            with pytest.raises(errors.ProviderError):
                await request
            assert len(service.registry) == 0

    asyncio.run(scenario())


# --- 7. cancellation always propagates -------------------------------------------------


def test_cancelling_a_request_after_the_wall_clock_passed_its_deadline_raises_cancelled():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            request = ask(agent, provider, timeout=5)
            await next_prompt(alice)
            service.clock.advance(10)  # an NTP step: the wall clock is past the deadline
            request.cancel()
            with pytest.raises(asyncio.CancelledError):
                await request
            assert len(service.registry) == 0

    asyncio.run(scenario())


def test_wait_for_around_a_request_times_out_normally_after_a_clock_jump():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            service.clock.advance(0)
            call = agent.request_oauth_token(**oauth_args(provider), from_participant_id="alice",
                                             redirect_uri=REDIRECT_URI, timeout=5)

            async def jump():
                await next_prompt(alice)
                service.clock.advance(10)

            jumper = asyncio.create_task(jump())
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(call, 0.5)
            await jumper

    asyncio.run(scenario())


# --- 8. every caller string is bounded ----------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.set_secret(secret_id="s" * 300, data=b"x"),
        lambda c: c.set_secret(secret_id="s", data=b"x", name="n" * 300),
        lambda c: c.set_secret(secret_id="s", data=b"x", type="text/" + "p" * 300),
        lambda c: c.set_secret(secret_id="s", data=b"x", delegated_to="d" * 300),
        lambda c: c.get_secret(secret_id="s" * 300),
        lambda c: c.delete_user_secret(id="s" * 300),
        lambda c: c.provide_oauth_authorization(request_id="r" * 200, code="c"),
        lambda c: c.reject_oauth_authorization(request_id="r" * 200, error="no"),
        lambda c: c.reject_oauth_authorization(request_id="r", error="e" * 300),
    ],
    ids=["secret_id", "name", "type", "delegated_to", "get", "delete", "provide-request_id",
         "reject-request_id", "reject-error"],
)
def test_over_long_caller_strings_are_refused_before_anything_is_audited(call):
    async def scenario():
        service = make_service()
        _agent, alice = room(service)
        before = len(service.audit.events)
        with pytest.raises(errors.InvalidInput):
            await call(alice)
        assert len(service.audit.events) == before
        assert await service.store.list("myroom", "alice") == []

    asyncio.run(scenario())


# --- 9. a provider echoing secrets does not put them in our errors --------------------


def test_a_provider_echoing_the_code_does_not_put_it_in_the_exception():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            request = ask(agent, provider)
            prompt = await next_prompt(alice)
            code, state = await asyncio.to_thread(approve, prompt.authorization_url)
            provider.queue_token_responses(CannedResponse.json(
                {"error": "invalid_grant",
                 "error_description": f"code {code} is invalid (prefix {code[:20]})"},
                status=400))
            with pytest.raises(errors.InvalidGrant) as answered:
                await alice.provide_oauth_authorization(
                    request_id=prompt.request_id, code=code, state=state)
            with pytest.raises(errors.InvalidGrant) as requested:
                await request
            for exc in (answered.value, requested.value):
                assert code not in str(exc) and code[:20] not in str(exc)
                assert "[redacted]" in str(exc)

    asyncio.run(scenario())


def test_a_provider_echoing_the_refresh_token_does_not_put_it_in_the_exception():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            await approved(agent, alice, provider)
            _, cred = await stored(service.store)
            refresh_token = cred.tokens.refresh_token
            provider.queue_token_responses(CannedResponse.json(
                {"error": "invalid_client", "error_description": f"bad client for {refresh_token}"},
                status=401))
            service.clock.advance(3600)
            with pytest.raises(errors.InvalidClient) as caught:
                await offline(agent, provider)
            assert refresh_token not in str(caught.value)
            assert refresh_token not in (caught.value.description or "")

    asyncio.run(scenario())


# --- also: expires_in 0, and IPv6 literals in grant patterns --------------------------


def test_a_token_issued_with_expires_in_zero_is_handed_out_once_then_refreshed():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            await approved(agent, alice, provider)
            service.clock.advance(3600)
            provider.queue_token_responses(TokenQuirk(extra={"expires_in": 0}))
            wave = await asyncio.gather(*(offline(agent, provider) for _ in range(10)))
            assert len(set(wave)) == 1 and wave[0] is not None
            assert provider.is_active(wave[0])
            assert provider.refresh_posts == 1
            following = await offline(agent, provider)  # the next call refreshes it
            assert following is not None and following != wave[0]
            assert provider.refresh_posts == 2

    asyncio.run(scenario())


def test_an_ipv6_literal_in_a_grant_pattern_matches_only_that_host():
    grant = SecretsGrant(oauth=[OAuthRule(token_endpoint="https://[2001:db8::1]/token")])

    def allowed(token_endpoint):
        return check_oauth_request(grant, target="alice", client_id=CLIENT_ID,
                                   authorization_endpoint="https://a.test/auth",
                                   token_endpoint=token_endpoint, scopes=None).allowed

    assert allowed("https://[2001:db8::1]/token")
    for other in ("https://2/token", "https://:/token", "https://d/token", "https://[/token"):
        assert not allowed(other), other
