"""The room server keeps one session per verified token for the calls that open no
pending request (get_secret, get_offline_oauth_token) instead of making and closing
one per call. What it keeps must never let a call act with another token's grant,
nor outlive its room's service."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

aiohttp = pytest.importorskip("aiohttp")
pytest.importorskip("jwt")

from roomsecrets.adapters.server import app as app_module  # noqa: E402
from roomsecrets.adapters.server.app import _ROOMS  # noqa: E402
from roomsecrets.core.grants import SecretsGrant  # noqa: E402
from roomsecrets.core.service import SecretsService  # noqa: E402
from tests.adapters.server_kit import ROOM, Served, serving  # noqa: E402


async def call(served: Served, operation: str, body: Any, token: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(
        f"{served.url}/rooms/{ROOM}/{operation}",
        data=json.dumps(body),
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        return response.status, await response.json()


async def store_secret(served: Served, token: str) -> None:
    data = base64.b64encode(b"s3cret").decode()
    status, _ = await call(served, "set_secret", {"secret_id": "api", "data": data}, token)
    assert status == 200


def counting_sessions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    made: list[str] = []
    real = SecretsService.session

    def session(self: SecretsService, participant_id: str, **kw: Any) -> Any:
        made.append(participant_id)
        return real(self, participant_id, **kw)

    monkeypatch.setattr(SecretsService, "session", session)
    return made


def test_reads_with_one_token_share_one_session(monkeypatch: pytest.MonkeyPatch) -> None:
    made = counting_sessions(monkeypatch)

    async def scenario() -> None:
        async with serving() as served:
            token = served.token("alice")
            await store_secret(served, token)
            assert made == ["alice"]  # set_secret: a session of its own, closed after
            answers = await asyncio.gather(
                *(call(served, "get_secret", {"secret_id": "api"}, token) for _ in range(20))
            )
            assert {status for status, _ in answers} == {200}
            assert {answer["data"] for _, answer in answers} == {
                base64.b64encode(b"s3cret").decode()
            }
            assert made == ["alice", "alice"]
            # Another token, even of the same participant and grant: its own session.
            status, _ = await call(served, "get_secret", {"secret_id": "api"},
                                   served.token("alice", ttl=900))
            assert status == 200 and made == ["alice"] * 3

    asyncio.run(scenario())


def test_a_token_with_a_narrower_grant_reads_with_its_own_grant() -> None:
    async def scenario() -> None:
        async with serving() as served:
            wide = served.token("alice")
            narrow = served.token("alice", grant=SecretsGrant(manage_own_secrets=False))
            await store_secret(served, wide)
            for _ in range(2):
                status, _ = await call(served, "get_secret", {"secret_id": "api"}, wide)
                assert status == 200
                status, answer = await call(served, "get_secret", {"secret_id": "api"}, narrow)
                assert (status, answer["error"]) == (403, "grant_denied")

    asyncio.run(scenario())


def test_an_evicted_room_takes_its_kept_sessions_with_it() -> None:
    async def scenario() -> None:
        async with serving(room_idle_ttl=1) as served:
            token = served.token("alice")
            await store_secret(served, token)
            status, _ = await call(served, "get_secret", {"secret_id": "api"}, token)
            assert status == 200
            rooms = served.app[_ROOMS]
            assert (ROOM, "alice") in rooms._readers
            old = rooms.services[ROOM]
            assert rooms.evict_idle(asyncio.get_running_loop().time() + 10) == [ROOM]
            assert not rooms._readers
            status, _ = await call(served, "get_secret", {"secret_id": "api"}, token)
            assert status == 200
            session = rooms._readers[(ROOM, "alice")][1]
            assert rooms.services[ROOM] is not old
            assert session._service._service is rooms.services[ROOM]  # type: ignore[attr-defined]

    asyncio.run(scenario())


def test_the_kept_sessions_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app_module, "_READERS_KEPT", 2)

    async def scenario() -> None:
        async with serving() as served:
            rooms = served.app[_ROOMS]
            for index in range(5):
                status, _ = await call(served, "get_secret", {"secret_id": "none"},
                                       served.token(f"agent-{index}"))
                assert status == 200
                assert len(rooms._readers) <= 2

    asyncio.run(scenario())
