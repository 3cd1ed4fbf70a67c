"""The room server lets an idle room's service go (``create_app(room_idle_ttl=)``),
so its memory is bounded by busy rooms, and loses nothing by it: the store keeps
every secret, and a room in use is never let go."""

from __future__ import annotations

import asyncio

import pytest

from roomsecrets.adapters.server import create_app
from roomsecrets.adapters.server.app import _ROOMS
from roomsecrets.core.errors import InvalidInput, RoomSecretsError
from roomsecrets.core.grants import SecretsGrant
from roomsecrets.core.memory_store import MemoryStore
from tests.adapters.server_kit import KEY, ROOM, oauth_args, running_provider, serving

pytest.importorskip("aiohttp")


def test_an_idle_room_is_let_go_after_the_ttl_and_its_secrets_stay() -> None:
    async def scenario() -> None:
        async with serving(room_idle_ttl=0.2) as served:
            rooms = served.app[_ROOMS]
            alice = served.remote("alice")
            try:
                await alice.set_secret(secret_id="db", data=b"kept")
                assert ROOM in rooms.services
                for _ in range(100):  # the sweeper runs every ttl/2
                    if ROOM not in rooms.services:
                        break
                    await asyncio.sleep(0.05)
                assert ROOM not in rooms.services
                # The next request makes a new service, which reads the same store.
                assert await alice.get_secret(secret_id="db") == b"kept"
                assert ROOM in rooms.services
            finally:
                await alice.close()

    asyncio.run(scenario())


def test_a_room_with_a_connected_participant_or_a_call_running_is_kept() -> None:
    async def scenario() -> None:
        with running_provider() as provider:
            async with serving(provider=provider, room_idle_ttl=60) as served:
                rooms = served.app[_ROOMS]
                loop = asyncio.get_running_loop()
                alice = served.remote("alice")
                agent = served.remote("agent-1", grant=SecretsGrant.allow_all())
                try:
                    await alice.connect()
                    asking = asyncio.ensure_future(
                        agent.request_oauth_token(
                            **oauth_args(provider), from_participant_id="alice", timeout=30
                        )
                    )
                    prompts = alice.oauth_prompts()
                    await asyncio.wait_for(prompts.__anext__(), 10)
                    # Long past the ttl: a WebSocket is open, a request waits, a call runs.
                    assert rooms.evict_idle(loop.time() + 3600) == []
                    await alice.close()  # the person leaves: the request ends
                    with pytest.raises(RoomSecretsError):
                        await asking
                    for _ in range(100):
                        if rooms.evict_idle(loop.time() + 3600) == [ROOM]:
                            break
                        await asyncio.sleep(0.05)
                    assert ROOM not in rooms.services
                finally:
                    await agent.close()

    asyncio.run(scenario())


def test_a_room_used_within_the_ttl_is_kept() -> None:
    async def scenario() -> None:
        async with serving(room_idle_ttl=60) as served:
            rooms = served.app[_ROOMS]
            loop = asyncio.get_running_loop()
            alice = served.remote("alice")
            try:
                await alice.list_user_secrets()
                assert rooms.evict_idle(loop.time() + 59) == []
                assert rooms.evict_idle(loop.time() + 61) == [ROOM]
            finally:
                await alice.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("ttl", [0, -1, 86401, float("nan"), True, "600"])
def test_a_bad_room_idle_ttl_is_refused(ttl: object) -> None:
    with pytest.raises(InvalidInput, match="room_idle_ttl"):
        create_app(store=MemoryStore(), jwt_key=KEY, public_url="http://127.0.0.1:1",
                   room_idle_ttl=ttl)  # type: ignore[arg-type]
