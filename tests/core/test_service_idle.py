"""``SecretsService.idle``: true only when dropping the service loses nothing but
caches, so a host with many rooms (the room server) may let it go."""

from __future__ import annotations

import asyncio

from roomsecrets.core.grants import SecretsGrant
from tests.core.service_kit import (
    approved,
    ask,
    make_service,
    next_prompt,
    offline,
    room,
    running_provider,
)
from tests.core.test_hardening import FlakyStore


async def _no_wait(_: float) -> None:
    return None


def test_a_new_service_is_idle_and_a_connected_participant_is_not() -> None:
    service = make_service()
    assert service.idle
    alice = service.connect("alice", name="Alice")
    assert not service.idle
    service.disconnect(alice.participant_id)
    assert service.idle


def test_an_open_request_keeps_the_service_busy_until_it_ends() -> None:
    async def scenario() -> None:
        with running_provider() as provider:
            service = make_service()
            agent, alice = room(service)
            request = ask(agent, provider)
            prompt = await next_prompt(alice)
            await agent.close()  # the requester leaves: its request ends
            await asyncio.gather(request, return_exceptions=True)
            await alice.close()
            assert prompt.request_id and len(service.registry) == 0
            assert service.idle

    asyncio.run(scenario())


def test_a_rotated_credential_the_store_refused_keeps_the_service_busy() -> None:
    async def scenario() -> None:
        with running_provider() as provider:
            store = FlakyStore()
            service = make_service(store, sleep=_no_wait)
            agent, alice = room(service)
            await approved(agent, alice, provider)
            service.clock.advance(3600)
            store.failing_puts = 100
            assert await offline(agent, provider) is not None  # rotated, kept in memory only
            await agent.close()
            await alice.close()
            assert not service.idle  # letting it go would forget the live refresh token
            store.failing_puts = 0
            again = service.connect("agent-1", name="mailbot", grant=SecretsGrant.allow_all())
            assert await offline(again, provider) is not None  # and now it is saved
            await again.close()
            assert service.idle

    asyncio.run(scenario())
