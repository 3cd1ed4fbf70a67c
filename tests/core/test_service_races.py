"""Cancellation, slow providers and concurrent writers: no lost grant, no orphan, no leak."""

from __future__ import annotations

import asyncio

import pytest

from roomsecrets.core import errors
from roomsecrets.core.grants import SecretsGrant
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


def test_cancelling_the_caller_that_started_a_refresh_does_not_replay_the_refresh_token():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            await approved(agent, alice, provider)
            provider.queue_token_responses(TokenQuirk(delay=0.5))
            service.clock.advance(3600)
            first = asyncio.create_task(offline(agent, provider))
            second = asyncio.create_task(offline(agent, provider))
            await until(lambda: provider.refresh_posts == 1)
            first.cancel()
            token = await second
            assert provider.is_active(token)
            assert provider.refresh_posts == 1
            assert provider.revoked_grants == 0
            assert await offline(agent, provider) == token

    asyncio.run(scenario())


def test_a_delete_during_a_refresh_is_not_undone():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            await approved(agent, alice, provider)
            provider.queue_token_responses(TokenQuirk(delay=0.5))
            service.clock.advance(3600)
            pending = asyncio.create_task(offline(agent, provider))
            await until(lambda: provider.refresh_posts == 1)
            (info,) = await alice.list_user_secrets()
            await alice.delete_user_secret(id=info.id, delegated_to="agent-1")
            assert await pending is None
            assert await alice.list_user_secrets() == []
            assert any(e.action == "credential.refresh_discarded" for e in service.audit.events)

    asyncio.run(scenario())


def test_a_post_slower_than_the_lease_ttl_keeps_the_lease_and_refreshes_once():
    async def scenario():
        with running_provider() as provider:
            store = MemoryStore()
            # The POST takes three lease TTLs; the holder renews every third of one.
            # A TTL of a second, not less: a process starved of CPU for longer than
            # the TTL (a niced CI run) loses its lease, which is what leases are for.
            first = make_service(store, lease_ttl=1.0)
            agent1, alice = room(first)
            await approved(agent1, alice, provider)
            second = make_service(store, lease_ttl=1.0)
            agent2 = second.connect("agent-1", grant=SecretsGrant.allow_all())
            provider.queue_token_responses(TokenQuirk(delay=3.0))
            first.clock.advance(3600)
            second.clock.advance(3600)
            one = asyncio.create_task(offline(agent1, provider))
            await until(lambda: provider.refresh_posts == 1)
            two = await offline(agent2, provider)
            assert two == await one
            assert provider.is_active(two)
            assert provider.refresh_posts == 1
            assert provider.revoked_grants == 0

    asyncio.run(scenario())


def test_an_answer_whose_caller_gives_up_still_completes_the_exchange():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            request = ask(agent, provider)
            prompt = await next_prompt(alice)
            from tests.support.headless_person import approve
            code, state = await asyncio.to_thread(approve, prompt.authorization_url)
            provider.queue_token_responses(TokenQuirk(delay=0.5))
            answer = asyncio.create_task(alice.provide_oauth_authorization(
                request_id=prompt.request_id, code=code, state=state))
            await until(lambda: len(provider.token_requests) == 1)
            answer.cancel()
            token = await asyncio.wait_for(request, 5)
            assert provider.is_active(token)
            assert len(await alice.list_user_secrets()) == 1

    asyncio.run(scenario())


def test_an_answered_prompt_leaves_the_list_while_its_exchange_runs():
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            request = ask(agent, provider)
            provider.queue_token_responses(TokenQuirk(delay=0.5))
            answer = asyncio.create_task(approve_next(alice))
            await until(lambda: len(provider.token_requests) == 1)
            with pytest.raises(asyncio.TimeoutError):
                await next_prompt(alice, timeout=0.1)
            await answer
            await request

    asyncio.run(scenario())


def test_waiting_for_prompts_with_timeouts_leaves_no_futures_behind():
    async def scenario():
        service = make_service()
        _, alice = room(service)
        for _ in range(50):
            with pytest.raises(asyncio.TimeoutError):
                await next_prompt(alice, timeout=0.001)
        assert service.participant("alice").watchers == []

    asyncio.run(scenario())


def test_prompt_iterator_of_a_participant_who_left_fails_at_once_and_running_ones_end():
    async def scenario():
        service = make_service()
        _, alice = room(service)
        iterator = alice.oauth_prompts()
        reader = asyncio.create_task(iterator.__anext__())
        await asyncio.sleep(0)
        await alice.close()
        with pytest.raises(StopAsyncIteration):
            await reader
        with pytest.raises(errors.ParticipantNotConnected):
            alice.oauth_prompts()

    asyncio.run(scenario())


def test_an_old_client_handle_does_not_come_back_with_a_reconnect():
    async def scenario():
        service = make_service()
        agent, _ = room(service)
        await agent.close()
        service.connect("agent-1")  # same id, default grant
        with pytest.raises(errors.ParticipantNotConnected):
            await agent.list_user_secrets()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "kw",
    [{"no_pkce": "false"}, {"no_pkce": 1}, {"scopes": (s for s in ["admin"])},
     {"scopes": ["x"] * 101}, {"client_id": "c" * 100_000}, {"scopes": [1]}],
)
def test_odd_arguments_are_refused_before_anything_happens(kw):
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, _ = room(service)
            args = oauth_args(provider)
            args.update({k: v for k, v in kw.items() if k != "no_pkce"})
            extra = {"no_pkce": kw["no_pkce"]} if "no_pkce" in kw else {}
            with pytest.raises(errors.InvalidInput):
                await agent.request_oauth_token(**args, **extra, from_participant_id="alice",
                                                redirect_uri=REDIRECT_URI, timeout=1)
            assert len(service.registry) == 0
            assert provider.authorization_requests == []

    asyncio.run(scenario())
