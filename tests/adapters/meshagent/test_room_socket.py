"""The server side of the room protocol, spoken raw (our own codec, aiohttp's client):
what the SDK tests cannot make the SDK do: broken framing, unknown message types,
refused upgrades, and the exact prompt a person's connection receives."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Optional

import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("jwt")

import aiohttp
import jwt

from roomsecrets.adapters.meshagent.packets import (
    MessageAssembler,
    encode_message,
    pack_payload,
    unpack_payload,
)
from roomsecrets.adapters.server import create_app, start_server
from roomsecrets.core.memory_store import MemoryStore
from tests.adapters.server_kit import bound_socket

KEY = "k" * 64
ROOM = "myroom"


def token(name: str, room: str = ROOM, secrets: Optional[dict[str, Any]] = None) -> str:
    grants = [
        {"name": "room", "scope": room},
        {"name": "api", "scope": {"secrets": secrets or {}}},
    ]
    return str(jwt.encode({"name": name, "grants": grants}, KEY, algorithm="HS256"))


class Conn:
    """One raw connection: send messages, read whole ones."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.assembler = MessageAssembler(max_message_bytes=1 << 20)
        self.next_id = 100

    async def send(self, type: str, header: dict[str, Any], data: bytes = b"") -> int:
        self.next_id += 1
        for packet in encode_message(self.next_id, type, pack_payload(header, data)):
            await self.ws.send_bytes(packet)
        return self.next_id

    async def receive(self) -> tuple[int, str, dict[str, Any], bytes]:
        while True:
            frame = await asyncio.wait_for(self.ws.receive(), 10)
            assert frame.type == aiohttp.WSMsgType.BINARY, frame
            message = self.assembler.feed(frame.data)
            if message is not None:
                header, trailer = unpack_payload(message.data)
                return message.message_id, message.type, header, trailer

    async def invoke(self, tool: str, args: dict[str, Any], toolkit: str = "secrets") -> int:
        return await self.send("room.invoke_tool", {
            "toolkit": toolkit, "tool": tool, "participant_id": None, "on_behalf_of_id": None,
            "arguments": {"type": "json", "json": args}, "tool_call_id": "c1",
        })


@asynccontextmanager
async def server() -> AsyncIterator[str]:
    sock = bound_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = create_app(store=MemoryStore(), jwt_key=KEY, public_url=url)
    running = await start_server(app, sock=sock, shutdown_timeout=1.0)
    try:
        yield url
    finally:
        await running.close()


@asynccontextmanager
async def connected(url: str, name: str, **kw: Any) -> AsyncIterator[tuple[Conn, str]]:
    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": f"Bearer {token(name, **kw)}"}
        async with session.ws_connect(f"{url}/rooms/{ROOM}?v=0.44.13", headers=headers) as ws:
            conn = Conn(ws)
            _, kind, ready, _ = await conn.receive()
            assert kind == "room_ready" and ready["room_name"] == ROOM
            _, kind, init, _ = await conn.receive()
            assert kind == "connected" and init["type"] == "init"
            yield conn, init["participantId"]


def test_a_refused_upgrade_is_a_403_so_the_sdk_gives_up_at_once() -> None:
    async def main() -> list[int]:
        async with server() as url, aiohttp.ClientSession() as session:
            statuses = []
            for headers in (
                {},
                {"Authorization": f"Bearer {token('alice', room='other')}"},
                {"Authorization": "Bearer " + token("alice")[:-4] + "AAAA"},
            ):
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await session.ws_connect(f"{url}/rooms/{ROOM}", headers=headers)
                statuses.append(refused.value.status)
            return statuses

    assert asyncio.run(main()) == [403, 403, 403]


def test_unknown_messages_and_toolkits_get_error_replies_and_the_socket_stays() -> None:
    async def main() -> list[dict[str, Any]]:
        async with server() as url, connected(url, "alice") as (conn, _):
            replies = []
            for sent in (
                await conn.send("room.list_toolkits", {}),
                await conn.invoke("list", {}, toolkit="storage"),
                await conn.invoke("nope", {}),
                await conn.invoke("list_secrets", {"surprise": 1}),
                await conn.invoke("list_secrets", {}),
            ):
                message_id, kind, header, _ = await conn.receive()
                assert (message_id, kind) == (sent, "__response__")
                replies.append(header)
            return replies

    *errors, listed = asyncio.run(main())
    assert [e["type"] for e in errors] == ["error"] * 4
    assert [e["code"] for e in errors] == [1002] * 4
    assert listed == {"type": "json", "json": {"secrets": []}}


@pytest.mark.parametrize(
    "frame",
    [b"\x00" * 5, (1).to_bytes(8, "big") + (3).to_bytes(4, "big") + b"x"],
    ids=["truncated", "data-without-header"],
)
def test_broken_framing_closes_the_socket_with_1007(frame: bytes) -> None:
    async def main() -> Optional[int]:
        async with server() as url, connected(url, "alice") as (conn, _):
            await conn.ws.send_bytes(frame)
            closing = await asyncio.wait_for(conn.ws.receive(), 10)
            assert closing.type == aiohttp.WSMsgType.CLOSE
            return conn.ws.close_code  # type: ignore[no-any-return]

    assert asyncio.run(main()) == 1007


def test_the_person_gets_the_agents_request_without_the_client_secret() -> None:
    client_secret = "cs-" + "z" * 40

    async def main() -> tuple[str, str, bytes, dict[str, Any]]:
        async with server() as url, connected(url, "alice") as (alice, alice_id), connected(url, "mailbot") as (agent, agent_id):
            await agent.invoke("request_oauth_token", {
                "connector": None,
                "oauth": {
                    "client_id": "app", "client_secret": client_secret,
                    "authorization_endpoint": "https://accounts.example/auth",
                    "token_endpoint": "https://oauth.example/token",
                    "no_pkce": None, "scopes": ["mail.read"],
                },
                "redirect_uri": "https://app.example/cb", "participant_id": alice_id,
                "timeout": 60, "delegate_to": None,
            })
            frames = []
            while True:  # keep the raw bytes too: the secret must be in none of them
                frame = await asyncio.wait_for(alice.ws.receive(), 10)
                frames.append(frame.data)
                message = alice.assembler.feed(frame.data)
                if message is not None:
                    break
            header, _ = unpack_payload(message.data)
            return alice_id, agent_id, b"".join(frames), {"type": message.type, **header}

    alice_id, agent_id, raw, prompt = asyncio.run(main())
    assert alice_id != agent_id
    assert client_secret.encode() not in raw
    assert prompt["type"] == "secrets.request_oauth_token"
    assert json.dumps(prompt).find("client_secret") == -1
    request = prompt["request"]
    assert request["oauth"] == {
        "client_id": "app", "authorization_endpoint": "https://accounts.example/auth",
        "token_endpoint": "https://oauth.example/token", "no_pkce": False, "scopes": ["mail.read"],
    }
    assert request["participant_id"] == alice_id
    assert request["redirect_uri"] == "https://app.example/cb"
    assert 0 < request["timeout"] <= 60
    assert isinstance(prompt["challenge"], str) and len(prompt["challenge"]) == 43


def test_two_connections_of_one_name_get_their_own_ids_and_share_secrets() -> None:
    async def main() -> tuple[str, str, dict[str, Any]]:
        async with server() as url, connected(url, "alice") as (one, one_id), connected(url, "alice") as (two, two_id):
            await one.send("room.invoke_tool", {
                "toolkit": "secrets", "tool": "set_secret", "participant_id": None,
                "on_behalf_of_id": None, "tool_call_id": "c",
                "arguments": {"type": "binary", "headers": {
                    "secret_id": "k", "type": "text/plain", "name": None,
                    "delegated_to": None, "for_identity": None, "has_data": True,
                }},
            }, b"v")
            assert (await one.receive())[2] == {"type": "empty"}
            await two.invoke("exists", {"secret_id": "k", "delegated_to": None,
                                        "for_identity": None})
            return one_id, two_id, (await two.receive())[2]

    one_id, two_id, exists = asyncio.run(main())
    assert one_id != two_id
    assert exists == {"type": "json", "json": {"exists": True}}


async def _ask_alice(agent: Conn, alice_id: str) -> int:
    return await agent.invoke("request_secret", {
        "url": "https://api.example.com/v1", "type": "text/plain",
        "participant_id": alice_id, "timeout": 30, "delegate_to": None,
    })


async def _reply(conn: Conn, message_id: int) -> dict[str, Any]:
    while True:
        got_id, kind, header, _ = await conn.receive()
        if kind == "__response__" and got_id == message_id:
            return header


def test_a_dropped_connection_comes_back_within_the_grace_period_prompts_and_all() -> None:
    async def main() -> tuple[dict[str, Any], dict[str, Any], bytes]:
        async with server() as url, connected(url, "mailbot") as (agent, _):
            async with aiohttp.ClientSession() as session:
                headers = {"Authorization": f"Bearer {token('alice')}"}
                ws = await session.ws_connect(f"{url}/rooms/{ROOM}?v=0.44.13", headers=headers)
                first = Conn(ws)
                await first.receive()
                _, _, init, _ = await first.receive()
                await _ask_alice(agent, init["participantId"])
                _, kind, prompt, _ = await first.receive()
                assert kind == "secrets.request_secret"
                # The connection drops: no close frame, as a network failure.
                assert ws._response.connection is not None
                ws._response.connection.transport.abort()
            await asyncio.sleep(0.3)
            async with connected(url, "alice") as (again, _):
                # The open request comes back to the new connection, still answerable.
                _, kind, pushed, _ = await again.receive()
                answer = await again.send("room.invoke_tool", {
                    "toolkit": "secrets", "tool": "provide_secret", "participant_id": None,
                    "on_behalf_of_id": None, "tool_call_id": "c",
                    "arguments": {"type": "binary",
                                  "headers": {"request_id": pushed["request_id"], "error": None}},
                }, b"sk-grace-0123456789")
                assert (await _reply(again, answer))["type"] == "empty"
                _, _, _, data = await agent.receive()
                return prompt, pushed, data

    prompt, pushed, data = asyncio.run(main())
    assert pushed["request_id"] == prompt["request_id"]
    assert data == b"sk-grace-0123456789"


def test_a_normal_close_ends_the_names_requests_at_once() -> None:
    async def main() -> dict[str, Any]:
        async with server() as url, connected(url, "mailbot") as (agent, _):
            async with connected(url, "alice") as (alice, alice_id):
                asked = await _ask_alice(agent, alice_id)
                _, kind, _, _ = await alice.receive()
                assert kind == "secrets.request_secret"
            # alice closed with 1000 (async with ended): the agent's request ends now,
            # not after the grace period.
            return await asyncio.wait_for(_reply(agent, asked), 5)

    reply = asyncio.run(main())
    assert reply["type"] == "error" and reply["text"].startswith("request_cancelled:")
