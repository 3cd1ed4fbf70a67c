"""Issue #12: behaviours of the service and the refresher that no test pinned yet.

Each survived a mutant once; each test names the behaviour and fails when it breaks.
"""

from __future__ import annotations

import asyncio

import pytest

from roomsecrets.core import errors
from roomsecrets.core.credentials import OAUTH_TOKEN_TYPE, StoredCredential
from roomsecrets.core.grants import OAuthRule, SecretsGrant
from roomsecrets.core.memory_store import MemoryStore
from tests.core.service_kit import (
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
from tests.support.fake_provider import TokenQuirk
from tests.support.headless_person import approve


def test_the_remembered_grant_decision_depends_on_the_scopes_asked_for():
    async def scenario():
        service = make_service()
        agent = service.connect("agent-1", grant=SecretsGrant(oauth=[OAuthRule(
            scopes=["mail.*"])]))
        service.connect("alice")
        args = dict(client_id="app", authorization_endpoint="https://a.example.com/auth",
                    token_endpoint="https://a.example.com/token", delegated_by="alice")
        assert await agent.get_offline_oauth_token(**args, scopes=["mail.read"]) is None
        with pytest.raises(errors.GrantDenied, match="admin"):
            await agent.get_offline_oauth_token(**args, scopes=["admin"])
        # And the other way round: a denial is not remembered for allowed scopes.
        assert await agent.get_offline_oauth_token(**args, scopes=["mail.send"]) is None
        outcomes = [e.outcome for e in service.audit.events if e.action.startswith("oauth.")]
        assert outcomes == ["allowed", "denied", "allowed"]

    asyncio.run(scenario())


def test_offline_fetch_after_delete_and_reapproval_returns_the_new_token():
    async def scenario():
        with running_provider() as provider:
            store = MemoryStore()
            service = make_service(store)
            agent, alice = room(service)
            first = await approved(agent, alice, provider)
            assert await offline(agent, provider) == first  # the decoded memo is warm
            # Another process on the same store deletes and re-approves: this
            # process's memo still holds the deleted credential.
            elsewhere = make_service(store)
            agent_there, alice_there = room(elsewhere)
            (info,) = await alice_there.list_user_secrets()
            await alice_there.delete_user_secret(id=info.id, delegated_to="agent-1")
            second = await approved(agent_there, alice_there, provider)
            assert second != first
            assert await offline(agent, provider) == second

    asyncio.run(scenario())


def test_a_requester_whose_wait_times_out_during_the_exchange_gets_the_exchange_result():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            request = ask(agent, provider, timeout=1)
            prompt = await next_prompt(alice)
            code, state = await asyncio.to_thread(approve, prompt.authorization_url)
            provider.queue_token_responses(TokenQuirk(delay=1.5))  # outlasts the timeout
            await alice.provide_oauth_authorization(
                request_id=prompt.request_id, code=code, state=state)
            token = await request
            assert provider.is_active(token)

    asyncio.run(scenario())


@pytest.mark.parametrize("failure", [RuntimeError("a bug"), asyncio.CancelledError()],
                         ids=["bug", "cancelled"])
def test_an_unexpected_exchange_failure_reaches_the_requester_at_once_as_a_typed_error(failure):
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)

            async def broken(**_kwargs):
                raise failure

            service.token_endpoint.redeem_code = broken  # type: ignore[method-assign]
            request = ask(agent, provider, timeout=60)
            prompt = await next_prompt(alice)
            with pytest.raises((RuntimeError, asyncio.CancelledError)):
                await alice.provide_oauth_authorization(request_id=prompt.request_id, code="c")
            with pytest.raises(errors.RequestCancelled):
                await asyncio.wait_for(request, 2)
            assert len(service.registry) == 0

    asyncio.run(scenario())


class SlowStore(MemoryStore):
    async def get(self, key):
        await asyncio.sleep(0.2)
        return await super().get(key)


def test_a_requester_that_leaves_before_its_request_is_registered_leaves_no_prompt():
    async def scenario():
        with running_provider() as provider:
            service = make_service(SlowStore())
            agent, alice = room(service)
            request = ask(agent, provider)
            await asyncio.sleep(0.05)  # the stored-credential lookup is under way
            await agent.close()
            with pytest.raises(errors.ParticipantNotConnected):
                await request
            assert len(service.registry) == 0
            assert service.registry.pending_for_target("alice") == []
            with pytest.raises(asyncio.TimeoutError):
                await next_prompt(alice, timeout=0.2)

    asyncio.run(scenario())


def test_a_successful_refresh_emits_its_audit_event():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            await approved(agent, alice, provider)
            service.clock.advance(3600)
            await offline(agent, provider)
            (event,) = [e for e in service.audit.events if e.action == "credential.refreshed"]
            assert (event.outcome, event.actor, event.detail("owner")) == ("ok", "agent-1",
                                                                           "alice")

    asyncio.run(scenario())


def test_a_credential_usable_only_after_a_second_refresh_round_is_returned():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            other = service.connect("agent-2", grant=SecretsGrant.allow_all())
            await approved(agent, alice, provider)
            request = other.request_oauth_token(**oauth_args(provider),
                                                from_participant_id="alice",
                                                redirect_uri=REDIRECT_URI)
            pending = asyncio.create_task(request)
            await approve_next(alice)
            await pending
            records = {r.key.delegated_to: r for r in await service.store.list("myroom",
                                                                                "alice")}
            service.clock.advance(3600)  # both credentials now need a refresh
            provider.queue_token_responses(TokenQuirk(delay=0.5))
            in_flight = asyncio.create_task(offline(agent, provider))
            await until(lambda: provider.refresh_posts == 1)
            # Meanwhile agent-1's credential is replaced by another grant's (expired)
            # credential: our refresh's write conflicts, and a second round must
            # refresh the replacement rather than give up.
            await service.store.put(records["agent-1"].key, type=OAUTH_TOKEN_TYPE,
                                    name="replaced", data=records["agent-2"].data)
            token = await in_flight
            assert token is not None and provider.is_active(token)
            assert provider.refresh_posts == 2
            assert provider.revoked_grants == 0
            (stored_now,) = [r for r in await service.store.list("myroom", "alice")
                             if r.key.delegated_to == "agent-1"]
            assert StoredCredential.from_json(stored_now.data).tokens.access_token == token

    asyncio.run(scenario())


@pytest.mark.parametrize("participant_id", ["", "x" * 257, "\ud800", None, 7],
                         ids=["empty", "too-long", "surrogate", "none", "int"])
def test_connect_refuses_bad_participant_ids(participant_id):
    service = make_service()
    with pytest.raises(errors.InvalidInput, match="participant_id"):
        service.connect(participant_id)
    assert not service.is_connected("")
    service.connect("x" * 256)  # the longest allowed
