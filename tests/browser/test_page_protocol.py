"""The server side of the approval page, without a browser: its files and headers,
the WebSocket sign-in by first frame, the Origin check, the grace period after a
dropped socket, and the frames the page lives on."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aiohttp")

import aiohttp

from roomsecrets.adapters.server import create_app
from roomsecrets.adapters.server.app import _ROOMS
from roomsecrets.adapters.server.participant_tokens import mint_participant_token
from roomsecrets.core import errors
from roomsecrets.core.grants import SecretsGrant
from roomsecrets.core.memory_store import MemoryStore
from tests.adapters.server_kit import (
    KEY,
    ROOM,
    Served,
    approve_via_callback,
    oauth_args,
    running_provider,
    serving,
)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def until(condition: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


def ws_url(served: Served) -> str:
    return f"{served.url}/rooms/{ROOM}/ws"


async def frames_until(ws: Any, kind: str) -> dict[str, Any]:
    while True:
        frame = await asyncio.wait_for(ws.receive_json(), 10)
        if frame["type"] == kind:
            return frame


async def sign_in(
    session: aiohttp.ClientSession, served: Served, token: str, **kw: Any
) -> tuple[Any, dict[str, Any]]:
    """Open the WebSocket as the page does: no Authorization header, the token first."""
    ws = await session.ws_connect(ws_url(served), origin=served.url, **kw)
    await ws.send_json({"type": "authenticate", "token": token})
    frame = await asyncio.wait_for(ws.receive_json(), 10)
    return ws, frame


def ask(served: Served, provider: Any, **extra: Any) -> asyncio.Task[Any]:
    async def request() -> tuple[int, Any]:
        headers = served.headers(
            "agent-1", grant=SecretsGrant.allow_all(), name="mailbot"
        )
        body = {**oauth_args(provider), "from_participant_id": "alice", **extra}
        async with aiohttp.ClientSession() as session, session.post(
            f"{served.url}/rooms/{ROOM}/request_oauth_token", json=body, headers=headers
        ) as response:
            return response.status, await response.json()

    return asyncio.create_task(request())


def service_of(served: Served) -> Any:
    return served.app[_ROOMS].service(ROOM)


# --- the page's files -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "content_type", "holds"),
    [
        ("/approve", "text/html", b'<script src="/approve/app.js" defer></script>'),
        ("/approve/app.js", "text/javascript", b'"authenticate"'),
        ("/approve/app.css", "text/css", b":focus-visible"),
    ],
)
def test_the_page_files_come_with_strict_security_headers(
    path: str, content_type: str, holds: bytes
) -> None:
    async def scenario() -> None:
        async with serving() as served, aiohttp.ClientSession() as session:
            async with session.get(served.url + path) as response:
                body = await response.read()
                headers = response.headers
                assert response.status == 200
            assert headers["Content-Type"].startswith(content_type)
            assert holds in body
            port = served.url.rsplit(":", 1)[1]
            assert headers["Content-Security-Policy"] == (
                "default-src 'none'; script-src 'self'; style-src 'self'; "
                f"connect-src 'self' ws://127.0.0.1:{port}; img-src 'self'; "
                "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
            )
            assert headers["X-Content-Type-Options"] == "nosniff"
            assert headers["X-Frame-Options"] == "DENY"
            assert headers["Referrer-Policy"] == "no-referrer"
            assert headers["Cache-Control"] == "no-store"

    run(scenario())


def test_the_page_has_no_inline_script_or_style_and_nothing_from_elsewhere() -> None:
    folder = Path(__file__).resolve().parents[2] / "roomsecrets" / "adapters" / "server" / "approval_page"
    html = (folder / "index.html").read_text(encoding="utf-8")
    assert "<script>" not in html and "style=" not in html and " onclick" not in html
    for name in ("index.html", "app.js", "app.css"):
        text = (folder / name).read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text, name
        assert "innerHTML" not in text, name


# --- signing in over the WebSocket ---------------------------------------------------


def test_the_first_frame_signs_in_and_prompts_name_who_asks_and_when_they_end() -> None:
    async def scenario() -> None:
        with running_provider() as provider:
            async with serving(provider=provider) as served, aiohttp.ClientSession() as session:
                ws, hello = await sign_in(session, served, served.token("alice", name="Alice"))
                assert hello["type"] == "authenticated"
                assert hello["participant"] == {"id": "alice", "name": "Alice"}
                assert hello["room"] == ROOM
                assert abs(hello["server_time"] - time.time()) < 60
                assert service_of(served).is_connected("alice")
                asking = ask(served, provider)
                frame = await frames_until(ws, "oauth_prompt")
                assert frame["from_participant_name"] == "mailbot"
                assert frame["prompt"]["from_participant_id"] == "agent-1"
                request_id = frame["prompt"]["request_id"]
                await asyncio.to_thread(
                    approve_via_callback, frame["prompt"]["authorization_url"]
                )
                ended = await frames_until(ws, "oauth_prompt_ended")
                assert ended == {"type": "oauth_prompt_ended", "request_id": request_id}
                # The credential is stored: the page is told to list secrets again.
                assert await frames_until(ws, "secrets_changed") == {
                    "type": "secrets_changed"
                }
                status, answer = await asking
                assert status == 200 and answer["access_token"]
                await ws.close()

    run(scenario())


@pytest.mark.parametrize(
    ("first", "close_code", "error"),
    [
        ({"type": "authenticate", "token": "not-a-jwt"}, 4401, "invalid_token"),
        ({"type": "ping"}, 4400, "invalid_input"),
        ("not json", 4400, "invalid_input"),
    ],
)
def test_a_bad_first_frame_gets_an_error_frame_and_a_close_code(
    first: Any, close_code: int, error: str
) -> None:
    async def scenario() -> None:
        async with serving() as served:
            async with aiohttp.ClientSession() as session:
                ws = await session.ws_connect(ws_url(served), origin=served.url)
                if isinstance(first, str):
                    await ws.send_str(first)
                else:
                    await ws.send_json(first)
                frame = await asyncio.wait_for(ws.receive_json(), 10)
                assert (frame["type"], frame["error"]) == ("error", error)
                closing = await asyncio.wait_for(ws.receive(), 10)
                assert closing.type == aiohttp.WSMsgType.CLOSE
                assert ws.close_code == close_code
            assert not service_of(served).is_connected("alice")

    run(scenario())


def test_a_token_for_another_room_or_an_expired_one_is_refused_by_first_frame() -> None:
    async def scenario() -> None:
        async with serving() as served:
            for token in (
                served.token("alice", room="another-room"),
                mint_participant_token(
                    KEY, room=ROOM, participant_id="alice", ttl=600, now=time.time() - 900
                ),
            ):
                async with aiohttp.ClientSession() as session:
                    ws, frame = await sign_in(session, served, token)
                    assert frame["error"] == "invalid_token"
                    assert token not in frame["message"]
                    await asyncio.wait_for(ws.receive(), 10)
                    assert ws.close_code == 4401

    run(scenario())


def test_a_second_page_of_a_connected_person_is_refused_with_4409() -> None:
    async def scenario() -> None:
        async with serving() as served, aiohttp.ClientSession() as session:
            first, hello = await sign_in(session, served, served.token("alice"))
            assert hello["type"] == "authenticated"
            second, frame = await sign_in(session, served, served.token("alice"))
            assert frame["error"] == "already_connected"
            await asyncio.wait_for(second.receive(), 10)
            assert second.close_code == 4409
            assert service_of(served).is_connected("alice")
            await first.close()

    run(scenario())


@pytest.mark.parametrize("origin", ["http://evil.example", "http://127.0.0.1:1", "null"])
def test_a_websocket_from_another_origin_is_refused_before_the_upgrade(origin: str) -> None:
    async def scenario() -> None:
        async with serving() as served:
            async with aiohttp.ClientSession() as session:
                for headers in ({}, served.headers("alice")):
                    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                        await session.ws_connect(ws_url(served), origin=origin, headers=headers)
                    assert refused.value.status == 403
            assert not service_of(served).is_connected("alice")

    run(scenario())


def test_programs_with_the_header_get_no_sign_in_frame() -> None:
    async def scenario() -> None:
        async with serving() as served, aiohttp.ClientSession() as session:
            ws = await session.ws_connect(ws_url(served), headers=served.headers("alice"))
            await ws.send_json({"type": "ping"})
            assert await asyncio.wait_for(ws.receive_json(), 10) == {"type": "pong"}
            await ws.close()

    run(scenario())


# --- the grace period ------------------------------------------------------------------


def _frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One masked client frame (RFC 6455 §5.2)."""
    mask = os.urandom(4)
    head = bytes([0x80 | opcode])
    size = len(payload)
    if size < 126:
        head += bytes([0x80 | size])
    else:
        head += bytes([0x80 | 126]) + size.to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def drop_after_sign_in(served: Served, token: str) -> None:
    """Sign in over a raw socket, then drop the connection without a close frame,
    as a network blip does. Blocking; call with ``asyncio.to_thread``."""
    host, port = served.url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        key = base64.b64encode(os.urandom(16)).decode()
        raw.sendall(
            (
                f"GET /rooms/{ROOM}/ws HTTP/1.1\r\nHost: {host}:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Origin: {served.url}\r\n\r\n"
            ).encode()
        )
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += raw.recv(4096)
        assert answer.startswith(b"HTTP/1.1 101")
        raw.sendall(_frame(json.dumps({"type": "authenticate", "token": token}).encode()))
        seen = answer.split(b"\r\n\r\n", 1)[1]
        while b"authenticated" not in seen:
            seen += raw.recv(4096)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


def test_a_dropped_page_stays_connected_and_a_new_socket_gets_its_prompts_back() -> None:
    async def scenario() -> None:
        with running_provider() as provider:
            async with serving(provider=provider, disconnect_grace=60) as served:
                token = served.token("alice", name="Alice")
                async with aiohttp.ClientSession() as session:
                    ws, _ = await sign_in(session, served, token)
                    asking = ask(served, provider)
                    first = (await frames_until(ws, "oauth_prompt"))["prompt"]
                    # The page reloads: the browser closes with 1001 "going away".
                    await ws.close(code=1001)
                    await until(lambda: not served.app[_ROOMS].sockets, "the socket closed")
                    assert service_of(served).is_connected("alice")
                    assert not asking.done()
                    again, hello = await sign_in(session, served, token)
                    assert hello["type"] == "authenticated"
                    second = (await frames_until(again, "oauth_prompt"))["prompt"]
                    assert second == first
                    await asyncio.to_thread(approve_via_callback, second["authorization_url"])
                    status, answer = await asyncio.wait_for(asking, 10)
                    assert status == 200 and answer["access_token"]
                    await again.close()
                # A normal close (1000) leaves at once.
                await until(lambda: not service_of(served).is_connected("alice"), "alice left")

    run(scenario())


def test_a_connection_lost_without_a_close_frame_keeps_the_person_for_the_grace_period() -> (
    None
):
    async def scenario() -> None:
        with running_provider() as provider:
            async with serving(provider=provider, disconnect_grace=60) as served:
                await asyncio.to_thread(drop_after_sign_in, served, served.token("alice"))
                await until(lambda: not served.app[_ROOMS].sockets, "the socket dropped")
                assert service_of(served).is_connected("alice")
                asking = ask(served, provider, timeout=60)
                await until(lambda: len(service_of(served).registry) == 1, "a prompt")
                assert not asking.done()
                asking.cancel()
            async with serving(provider=provider, disconnect_grace=0.2) as served:
                await asyncio.to_thread(drop_after_sign_in, served, served.token("alice"))
                await until(
                    lambda: not service_of(served).is_connected("alice"), "grace period ended"
                )
                assert served.app[_ROOMS].presences == {}

    run(scenario())


def test_a_new_token_with_another_grant_replaces_the_lingering_presence() -> None:
    async def scenario() -> None:
        async with serving(disconnect_grace=60) as served, aiohttp.ClientSession() as session:
            ws, _ = await sign_in(session, served, served.token("alice"))
            await ws.close(code=1001)
            await until(lambda: not served.app[_ROOMS].sockets, "the socket closed")
            old = service_of(served).participant("alice")
            ws, hello = await sign_in(
                session, served, served.token("alice", grant=SecretsGrant.allow_all())
            )
            assert hello["type"] == "authenticated"
            now = service_of(served).participant("alice")
            assert now is not old and old.closed
            assert now.grant == SecretsGrant.allow_all()
            await ws.close()

    run(scenario())


def test_create_app_refuses_a_bad_grace_period() -> None:
    for bad in (-1, 3601, True, "30", float("nan")):
        with pytest.raises(errors.InvalidInput):
            create_app(
                store=MemoryStore(), jwt_key=KEY, public_url="http://x", disconnect_grace=bad
            )


def test_secrets_changed_is_sent_when_the_person_changes_a_secret_over_http() -> None:
    async def scenario() -> None:
        async with serving() as served, aiohttp.ClientSession() as session:
            ws, _ = await sign_in(session, served, served.token("alice"))
            async with session.post(
                f"{served.url}/rooms/{ROOM}/set_secret",
                json={"secret_id": "s", "data": "eA=="},
                headers=served.headers("alice"),
            ) as response:
                assert response.status == 200
            assert await frames_until(ws, "secrets_changed") == {"type": "secrets_changed"}
            await ws.close()

    run(scenario())

