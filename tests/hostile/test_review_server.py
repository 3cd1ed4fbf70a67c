"""A hostile review of the room server and its remote client, on 127.0.0.1.

Three kinds of attacker: a participant with a strange (but validly signed)
token, a client that sends what no browser would, and a server that answers
garbage to :class:`RemoteSecretsClient`. Each test names the behaviour it
proves; those marked "Found:" failed before the fix they pin.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import secrets
import socket
import struct
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Callable

import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("jwt")

import aiohttp
from aiohttp import web

from roomsecrets.adapters.remote import MAX_ANSWER_BYTES, RemoteSecretsClient
from roomsecrets.adapters.server.app import _ROOMS
from roomsecrets.adapters.server.http_api import InvalidParticipantToken
from roomsecrets.adapters.server.participant_tokens import (
    MAX_TOKEN_LENGTH,
    mint_participant_token,
    read_participant_token,
)
from roomsecrets.core import errors
from roomsecrets.core.grants import OAuthRule, SecretsGrant
from tests.adapters.server_kit import (
    KEY,
    ROOM,
    bearer_websocket_status,
    oauth_args,
    running_provider,
    serving,
)
from tests.adapters.test_server import _claims, _forged, post, still_serving, until
from tests.hostile.test_hostile_callers import _redirect_query, hostile_room
from tests.support.fake_provider import TokenQuirk


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


# --- participant tokens with strange claims --------------------------------------------

# Signed with the server's key, so only an operator (or another minting tool) makes
# them: each must still be a 401 with a JSON body, never a 500.
_ODD_EXP = {
    # Found: float(10**400) overflowed after PyJWT had accepted the integer: HTTP 500.
    "exp beyond a float": 10**400,
    # RFC 7519 §2: a NumericDate is a JSON number; PyJWT alone takes int("...").
    "exp as a string": str(int(time.time()) + 600),
    "exp as true": True,
}


@pytest.mark.parametrize("case", sorted(_ODD_EXP))
def test_a_token_whose_exp_is_not_a_usable_number_is_401_on_every_door(case: str) -> None:
    token = _forged(_claims(exp=_ODD_EXP[case]))

    async def scenario() -> None:
        async with serving() as served:
            status, answer, _ = await post(
                served, "list_user_secrets", headers={"Authorization": f"Bearer {token}"}
            )
            assert (status, answer["error"]) == (401, "invalid_token"), answer
            assert await bearer_websocket_status(served, ROOM, token) == 401
            async with aiohttp.ClientSession() as session:
                # The page's door: the token in the first frame.
                ws = await session.ws_connect(f"{served.url}/rooms/{ROOM}/ws")
                await ws.send_json({"type": "authenticate", "token": token})
                frame = await asyncio.wait_for(ws.receive_json(), 10)
                assert (frame["type"], frame["error"]) == ("error", "invalid_token")
                closed = await asyncio.wait_for(ws.receive(), 10)
                assert closed.type == aiohttp.WSMsgType.CLOSE and closed.data == 4401
            assert not served.app[_ROOMS].presences
            await still_serving(served)

    run(scenario())


_ODD_SUB = {
    "lone surrogate": "al\ud800ice",
    "control character": "ali\x1bce",
    "300 characters": "a" * 300,
    "a number": 7,
    "null": None,
}


@pytest.mark.parametrize("case", sorted(_ODD_SUB))
def test_a_signed_token_for_an_impossible_participant_id_is_refused_by_first_frame(
    case: str,
) -> None:
    # Pinned: mint refuses these ids, and a token signed by other software is refused
    # the same way at the page's door (the header door is test_server.py's "empty
    # sub" case). Found (a number, null): the refusal said only "malformed".
    token = _forged(_claims(sub=_ODD_SUB[case]))

    async def scenario() -> None:
        async with serving() as served, aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"{served.url}/rooms/{ROOM}/ws")
            await ws.send_json({"type": "authenticate", "token": token})
            frame = await asyncio.wait_for(ws.receive_json(), 10)
            assert (frame["type"], frame["error"]) == ("error", "invalid_token")
            assert "sub" in frame["message"]
            assert (await asyncio.wait_for(ws.receive(), 10)).data == 4401
            assert not served.app[_ROOMS].presences
            with pytest.raises(errors.InvalidInput):
                mint_participant_token(KEY, room=ROOM, participant_id=_ODD_SUB[case])

    run(scenario())


def test_a_float_or_large_exp_that_is_a_number_is_still_accepted() -> None:
    # The other side of the check above: fractional and far-future NumericDates are valid.
    for exp in (time.time() + 600.5, 1e300, 2**62):
        who = read_participant_token(_forged(_claims(exp=exp)), KEY, room=ROOM)
        assert who.expires_at == float(exp)


def test_a_token_minted_on_a_clock_a_little_ahead_is_accepted_and_nbf_is_named() -> None:
    """Found: PyJWT refused an iat in the future (RFC 7519 §4.1.6 makes it no validity
    rule), so a token minted on a host whose clock ran a few seconds ahead was a
    401 "malformed" until the server's clock caught up."""
    ahead = _forged({**_claims(), "iat": int(time.time()) + 30})
    not_yet = _forged({**_claims(), "nbf": int(time.time()) + 3600})

    async def scenario() -> None:
        async with serving() as served:
            status, answer, _ = await post(
                served, "list_user_secrets", headers={"Authorization": f"Bearer {ahead}"}
            )
            assert (status, answer) == (200, {"secrets": []})
            status, answer, _ = await post(
                served, "list_user_secrets", headers={"Authorization": f"Bearer {not_yet}"}
            )
            assert (status, answer["error"]) == (401, "invalid_token")
            assert "not valid yet" in answer["message"]

    run(scenario())


def _rules(count: int) -> SecretsGrant:
    return SecretsGrant(
        oauth=[
            OAuthRule(
                client_id=f"client-{index:04d}",
                authorization_endpoint=f"https://idp-{index:04d}.example/authorize",
                token_endpoint=f"https://idp-{index:04d}.example/token",
                scopes=("mail.read", "mail.send"),
            )
            for index in range(count)
        ]
    )


def _token_length(rules: int) -> int:
    """How long a token with ``rules`` rules would be (PyJWT directly: no size check)."""
    claims = {"room": ROOM, "sub": "a", "name": None, "grant": _rules(rules).to_dict(),
              "iat": int(time.time()), "exp": int(time.time()) + 3600}
    return len(_forged(claims))


def test_a_token_too_long_for_a_request_header_is_refused_when_minted() -> None:
    """Found: mint made tokens the server could never read (aiohttp refuses a header
    value over 8190 bytes with a text/plain 400, and logs its start)."""
    # The largest grant of this shape whose token still fits (each rule adds ~230).
    fits = max(count for count in range(1, 60) if _token_length(count) <= MAX_TOKEN_LENGTH)
    assert _token_length(fits) > MAX_TOKEN_LENGTH - 300
    with pytest.raises(errors.InvalidInput) as refused:
        mint_participant_token(KEY, room=ROOM, participant_id="a", grant=_rules(fits + 1))
    assert "grant" in str(refused.value)
    token = mint_participant_token(KEY, room=ROOM, participant_id="a", grant=_rules(fits))

    async def scenario() -> None:
        async with serving() as served:
            status, answer, _ = await post(
                served, "list_user_secrets", headers={"Authorization": f"Bearer {token}"}
            )
            assert (status, answer) == (200, {"secrets": []})

    run(scenario())


def _expiring(seconds: float) -> str:
    # A token valid for a few more seconds (exp is whole seconds: at least 2 left).
    issued = time.time() - 600 + seconds
    return mint_participant_token(KEY, room=ROOM, participant_id="alice", ttl=600, now=issued)


@pytest.mark.parametrize("pinging", [False, True], ids=["quiet", "pinging"])
@pytest.mark.parametrize("door", ["header", "first frame"])
def test_a_websocket_is_closed_with_4401_when_its_token_expires(door: str, pinging: bool) -> None:
    """Found: a socket outlived its token for good: the participant stayed connected,
    and prompts (with their state) kept reaching whoever held the socket. Pinging:
    control frames (a client's heartbeat, or the pongs to the server's) must not
    put the check off."""

    async def scenario() -> None:
        async with serving(disconnect_grace=60) as served, aiohttp.ClientSession() as session:
            token = _expiring(3)
            url = f"{served.url}/rooms/{ROOM}/ws"
            if door == "header":
                ws = await session.ws_connect(url, headers={"Authorization": f"Bearer {token}"})
            else:
                ws = await session.ws_connect(url)
                await ws.send_json({"type": "authenticate", "token": token})
                assert (await asyncio.wait_for(ws.receive_json(), 10))["type"] == "authenticated"
            service = served.app[_ROOMS].services[ROOM]
            assert service.is_connected("alice")

            async def keep_pinging() -> None:
                while True:
                    await ws.ping()
                    await asyncio.sleep(0.1)

            pinger = asyncio.ensure_future(keep_pinging() if pinging else asyncio.sleep(0))
            frame = await asyncio.wait_for(ws.receive_json(), 30)
            pinger.cancel()
            assert (frame["type"], frame["error"]) == ("error", "invalid_token")
            closed = await asyncio.wait_for(ws.receive(), 10)
            assert (closed.type, closed.data) == (aiohttp.WSMsgType.CLOSE, 4401)
            # Gone at once, not after the grace period: nobody can be asked any more.
            await until(lambda: not service.is_connected("alice"), "alice left")
            assert not served.app[_ROOMS].presences

    run(scenario())


def test_the_remote_prompt_stream_raises_invalid_token_when_the_server_closes_it_so() -> None:
    """Found (with the 4401 close above): oauth_prompts() just ended, so the CLI's
    `oauth2 prompts` said "the server closed the connection", not why."""

    async def scenario() -> None:
        async with serving() as served:
            client = RemoteSecretsClient(served.url, token=_expiring(3))

            async def listen() -> None:
                async for _ in client.oauth_prompts():
                    raise AssertionError("no prompt was addressed to alice")

            try:
                with pytest.raises(InvalidParticipantToken) as refused:
                    await asyncio.wait_for(listen(), 30)
                assert "expired" in str(refused.value)
            finally:
                await client.close()

    run(scenario())


class _SkewedTime:
    """``time`` as seen by a machine whose clock is ``skew`` seconds off."""

    def __init__(self, skew: float) -> None:
        self.skew = skew

    def time(self) -> float:
        return time.time() + self.skew

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.mark.parametrize("skew", [600.0, -600.0], ids=["client-ahead", "client-behind"])
def test_a_client_whose_clock_is_off_still_gets_its_prompts(
    skew: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found (client-ahead): prompts were dropped as expired by the client's own clock,
    so `oauth2 prompts` on a machine 10 minutes ahead showed nothing at all."""
    from roomsecrets.adapters import remote as remote_module

    monkeypatch.setattr(remote_module, "time", _SkewedTime(skew))

    async def scenario() -> None:
        with running_provider() as provider:
            async with serving(provider=provider) as served, served.remote("alice") as alice:
                await alice.connect()
                asking = asyncio.ensure_future(post(
                    served, "request_oauth_token",
                    {**oauth_args(provider), "timeout": 300, "from_participant_id": "alice"},
                    participant="agent-1", grant=SecretsGrant.allow_all()))
                stream = alice.oauth_prompts()
                prompt = await asyncio.wait_for(stream.__anext__(), 15)
                assert prompt.from_participant_id == "agent-1"
                await alice.reject_oauth_authorization(
                    request_id=prompt.request_id, error="user_cancelled"
                )
                status, _, _ = await asyncio.wait_for(asking, 10)
                assert status == 409
                # An ended prompt still drops out on the skewed clock.
                assert not alice._is_open(prompt)
                await stream.aclose()  # type: ignore[attr-defined]

    run(scenario())


def _rooms_remembered(served: Any) -> set[str]:
    """Every room the server holds anything for (services, counters, presences, names)."""
    rooms = served.app[_ROOMS]
    return (
        set(rooms.services) | set(rooms._calls) | set(rooms._last_used)
        | {room for room, _ in rooms.presences} | {room for room, _ in rooms.names}
    )


def test_requests_without_a_valid_token_leave_nothing_behind_for_their_room() -> None:
    """Found: each request to /rooms/{room}/..., even with no token, left an entry for
    its room (up to 8 KB of URL) that was never let go: memory for anyone to fill."""

    async def scenario() -> None:
        async with serving() as served, aiohttp.ClientSession() as session:
            other_room = served.headers("alice", room="elsewhere")
            for index in range(20):
                room = f"nobody-{index}-" + "r" * 2000
                for headers in ({}, {"Authorization": "Bearer junk"}, other_room):
                    async with session.post(
                        f"{served.url}/rooms/{room}/list_user_secrets", headers=headers
                    ) as response:
                        assert response.status == 401
                async with session.get(f"{served.url}/rooms/{room}/participants") as response:
                    assert response.status == 401
                ws = await session.ws_connect(f"{served.url}/rooms/{room}/ws")
                await ws.send_json({"type": "authenticate", "token": "junk"})
                assert (await ws.receive()).type == aiohttp.WSMsgType.TEXT
                await ws.close()
            await until(lambda: not served.app[_ROOMS]._calls, "every call ended")
            assert _rooms_remembered(served) == set()
            # A real call is still remembered, so that its room can be let go later.
            await still_serving(served)
            assert ROOM in served.app[_ROOMS]._last_used

    run(scenario())


def test_pings_do_not_keep_an_unauthenticated_websocket_open_past_the_sign_in_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found: each ping frame restarted aiohttp's receive timeout, so a client that
    pinged and never signed in held its socket (and a server task) for good."""
    from roomsecrets.adapters.server import app as server_module

    monkeypatch.setattr(server_module, "_LOGIN_TIMEOUT", 0.5)

    async def scenario() -> None:
        async with serving() as served, aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"{served.url}/rooms/{ROOM}/ws", autoping=False)
            closed = None
            loop = asyncio.get_running_loop()
            give_up = loop.time() + 10  # 20 times the sign-in time
            while closed is None and loop.time() < give_up:
                await ws.ping()
                pinged = loop.time()
                while closed is None and loop.time() < pinged + 0.1:
                    with contextlib.suppress(asyncio.TimeoutError):
                        message = await asyncio.wait_for(ws.receive(), 0.1)
                        if message.type == aiohttp.WSMsgType.CLOSE:
                            closed = message
            assert closed is not None and closed.data == 4400
            await until(lambda: not served.app[_ROOMS]._calls, "the socket's call ended")

    run(scenario())


def test_the_page_stays_signed_in_past_24_8_days_with_a_longer_token() -> None:
    """Found: the page's sign-out timer was clamped to setTimeout's largest delay
    (2**31 - 1 ms, about 24.8 days) and fired then, whatever the token's exp said."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from roomsecrets.adapters.server.approval import login_url
    from tests.browser.conftest import CHROMIUM
    from tests.hostile.threaded_server import served_in_thread

    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    day = 86400
    with served_in_thread() as (served, _), sync_api.sync_playwright() as playwright:
        token = served.token("alice", name="Alice", ttl=30 * day)
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.set_default_timeout(15_000)
            page.clock.install()
            page.goto(login_url(served.url, token))
            who = page.locator("#who")
            sync_api.expect(who).to_have_text(re.compile("^Signed in as Alice"))
            page.clock.fast_forward(25 * day * 1000)
            sync_api.expect(page.locator("#signed-in")).to_be_visible()
            sync_api.expect(page.locator("#signed-out")).to_be_hidden()
            # Past the token's exp the page signs out on its own clock.
            page.clock.fast_forward(6 * day * 1000)
            sync_api.expect(page.locator("#signed-out-reason")).to_have_text(
                re.compile("expired")
            )
        finally:
            browser.close()


_PREFIX = "/node-3"


async def _prefix_proxy(upstream: str) -> web.AppRunner:
    """A reverse proxy on 127.0.0.1 that serves ``upstream`` under :data:`_PREFIX`
    (HTTP and WebSocket), stripping the prefix, as a path-routing load balancer does."""
    session = aiohttp.ClientSession(auto_decompress=False)

    async def forward(request: web.Request) -> web.StreamResponse:
        target = upstream + "/" + request.match_info["tail"]
        if request.query_string:
            target += "?" + request.query_string
        passed = {k: v for k, v in request.headers.items()
                  if k.lower() in ("authorization", "content-type", "origin", "accept")}
        if request.headers.get("Upgrade", "").lower() == "websocket":
            inside = await session.ws_connect(target, headers=passed)
            outside = web.WebSocketResponse()
            await outside.prepare(request)

            async def pump(source: Any, sink: Any) -> None:
                async for message in source:
                    if message.type == aiohttp.WSMsgType.TEXT:
                        await sink.send_str(message.data)
                await sink.close(code=source.close_code or 1000)

            await asyncio.gather(pump(inside, outside), pump(outside, inside),
                                 return_exceptions=True)
            return outside
        async with session.request(request.method, target, headers=passed,
                                   data=await request.read(), allow_redirects=False) as answer:
            body = await answer.read()
            kept = {k: v for k, v in answer.headers.items()
                    if k.lower() not in ("content-length", "transfer-encoding", "connection")}
            return web.Response(status=answer.status, body=body, headers=kept)

    app = web.Application()
    app.router.add_route("*", _PREFIX + "/{tail:.*}", forward)
    app.on_cleanup.append(lambda _: session.close())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    return runner


def test_the_page_works_behind_a_proxy_that_serves_the_server_under_a_path() -> None:
    """Found: the page named its script, style sheet, JSON operations and WebSocket by
    absolute paths (/approve/app.js, /rooms/...), so with a public URL that has a path
    (a load balancer routing by path) it loaded without its script and did nothing."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from roomsecrets.adapters.server import create_app, start_server
    from roomsecrets.adapters.server.approval import login_url
    from roomsecrets.core.memory_store import MemoryStore
    from tests.adapters.server_kit import bound_socket
    from tests.browser.conftest import CHROMIUM
    from tests.hostile.threaded_server import ServerThread

    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    thread = ServerThread()
    try:
        proxy_socket, server_socket = bound_socket(), bound_socket()
        proxy_url = f"http://127.0.0.1:{proxy_socket.getsockname()[1]}"
        public_url = proxy_url + _PREFIX

        async def start() -> tuple[Any, web.AppRunner]:
            app = create_app(store=MemoryStore(), jwt_key=KEY, public_url=public_url)
            server = await start_server(app, sock=server_socket, shutdown_timeout=1.0)
            proxy = await _prefix_proxy(server.url)
            await web.SockSite(proxy, proxy_socket).start()
            return server, proxy

        server, proxy = thread.run(start())
        token = mint_participant_token(KEY, room=ROOM, participant_id="alice", name="Alice")
        try:
            with sync_api.sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, args=["--no-sandbox"]
                )
                try:
                    page = browser.new_page()
                    page.set_default_timeout(15_000)
                    page.goto(login_url(public_url, token))
                    sync_api.expect(page.locator("#connection")).to_contain_text("Connected")
                    sync_api.expect(page.get_by_text("You have no stored secrets.")).to_be_visible()
                finally:
                    browser.close()
        finally:
            thread.run(proxy.cleanup())
            thread.run(server.close())
    finally:
        thread.stop()


@pytest.mark.parametrize(
    "public_url",
    [
        "http://127.0.0.1:8700/#",
        "http://127.0.0.1:8700/?tenant=a",
        "http://127.0.0.1:8700?",
        "http://user:pw@127.0.0.1:8700",
        "http://:8700",
        "http://127.0.0.1:99999",
        "http://bücher.example:8700",
        "http://127.0.0.1:8700/a path",
    ],
)
def test_create_app_refuses_a_public_url_no_redirect_uri_can_be_built_on(public_url: str) -> None:
    """Found: these were accepted; the server then started, and every request for a
    token failed (the redirect URI PUBLIC_URL/oauth/callback had a fragment, or the
    callback path landed in the query, or was not ASCII), or the page's Origin check
    could never match."""
    from roomsecrets.adapters.server import create_app
    from roomsecrets.core.memory_store import MemoryStore

    with pytest.raises(errors.InvalidInput):
        create_app(store=MemoryStore(), jwt_key=KEY, public_url=public_url)


def _masked_text_frame(payload: bytes) -> bytes:
    """A client's WebSocket text frame (RFC 6455 §5.2; masked, under 126 bytes)."""
    mask = secrets.token_bytes(4)
    body = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + body


def test_a_client_that_resets_while_its_pings_are_answered_is_a_drop_not_a_server_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Found: the reset reached the middleware as ClientConnectionResetError: logged at
    ERROR as an internal error, and the access record said 500."""
    caplog.set_level(logging.INFO, logger="roomsecrets")

    async def scenario() -> None:
        async with serving(disconnect_grace=60) as served:
            rooms = served.app[_ROOMS]
            parts = urllib.parse.urlsplit(served.url)
            for _ in range(3):
                raw = socket.create_connection((parts.hostname, parts.port))
                key = base64.b64encode(secrets.token_bytes(16)).decode()
                raw.sendall(
                    f"GET /rooms/{ROOM}/ws HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                    f"Authorization: {served.headers('alice')['Authorization']}\r\n\r\n".encode()
                )
                await until(lambda: len(rooms.sockets) == 1, "the socket is served")
                raw.sendall(_masked_text_frame(b'{"type": "ping"}') * 2000)
                # Close with a reset (SO_LINGER 0) while the pongs are being written.
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                raw.close()
                await until(lambda: not rooms.sockets, "the socket is let go")
                await until(lambda: not rooms._calls, "the call ended")
                # A drop: alice stays for the grace period, as for any other drop.
                (presence,) = rooms.presences.values()
                assert presence.socket is None and presence.leaving is not None

    run(scenario())
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [
        r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR
    ]
    statuses = [r.roomsecrets["status"] for r in caplog.records  # type: ignore[attr-defined]
                if r.name == "roomsecrets.server.access"]
    assert statuses and 500 not in statuses


# --- what reaches the logs ----------------------------------------------------------------

_CALLBACK_LINES = {
    # Each is refused by aiohttp's parser before any handler runs; aiohttp logs the
    # offending line at ERROR on its own logger.
    "bad version": b"GET /oauth/callback?code={code}&state=s HTTP/9.9\r\nHost: x\r\n\r\n",
    "control byte": b"GET /oauth/callback?code={code}\x01&state=s HTTP/1.1\r\nHost: x\r\n\r\n",
    "raw non-ASCII": b"GET /oauth/callback?code={code}&state=\xff HTTP/1.1\r\nHost: x\r\n\r\n",
    "line too long": b"GET /oauth/callback?code={code}&state=" + b"s" * 9000
    + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "token too long": b"GET /rooms/r/list_user_secrets HTTP/1.1\r\nHost: x\r\n"
    b"Authorization: Bearer {code}" + b"A" * 9000 + b"\r\n\r\n",
}


@pytest.mark.parametrize("case", sorted(_CALLBACK_LINES))
def test_a_request_aiohttp_cannot_parse_logs_no_query_string_and_no_token(
    case: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Found: the callback's code reached the log through aiohttp's parse errors."""
    code = "code-" + secrets.token_hex(12)

    async def scenario() -> bytes:
        async with serving() as served:
            parts = urllib.parse.urlsplit(served.url)
            reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
            writer.write(_CALLBACK_LINES[case].replace(b"{code}", code.encode()))
            await writer.drain()
            status_line = await asyncio.wait_for(reader.readline(), 10)
            writer.close()
            await still_serving(served)
            return status_line

    caplog.set_level(logging.DEBUG)
    assert run(scenario()).split()[1] == b"400"
    refused = [r for r in caplog.records if "Error handling request" in r.getMessage()]
    assert refused, "the refusal is still logged"
    for record in caplog.records:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += repr(record.exc_info[1]) + str(record.exc_info[1])
        assert code not in text, record.name


# --- the callback and the WebSocket under races (pinned; no defect found) --------------


def test_a_callback_repeated_while_the_code_is_exchanged_is_409_and_redeems_once() -> None:
    async def scenario() -> None:
        async with hostile_room() as room:
            request, prompt = await room.ask()
            query = await asyncio.to_thread(_redirect_query, prompt)
            # The token endpoint takes a while: the request sits in EXCHANGING.
            room.provider.queue_token_responses(TokenQuirk(delay=1.0))
            first = asyncio.ensure_future(room.callback(query))
            service = room.served.app[_ROOMS].services[ROOM]
            await until(
                lambda: service.registry.state_of(prompt["request_id"]).name == "EXCHANGING",
                "the exchange started",
            )
            again = await room.callback(query)
            declined = await room.callback({"state": query["state"], "error": "access_denied"})
            assert (again[0], declined[0]) == (409, 409)
            assert query["code"] not in again[1]
            for operation, body in (
                ("provide_oauth_authorization",
                 {"request_id": prompt["request_id"], "code": query["code"]}),
                ("reject_oauth_authorization",
                 {"request_id": prompt["request_id"], "error": "user_cancelled"}),
            ):
                status, answer, _ = await post(room.served, operation, body)
                assert (status, answer["error"]) == (409, "illegal_transition")
            assert (await first)[0] == 200
            status, answer, _ = await asyncio.wait_for(request, 10)
            assert status == 200 and room.provider.is_active(answer["access_token"])
            assert room.provider.token_requests == [("authorization_code", "ok")]

    run(scenario())


def test_sockets_racing_to_take_back_a_dropped_presence_leave_exactly_one_connected() -> None:
    async def scenario() -> None:
        async with serving(disconnect_grace=60) as served:
            rooms = served.app[_ROOMS]
            url = f"{served.url}/rooms/{ROOM}/ws"
            async with contextlib.AsyncExitStack() as stack:
                session = await stack.enter_async_context(aiohttp.ClientSession())
                first = await session.ws_connect(url, headers=served.headers("alice"))
                # Dropped without a close frame: alice stays for the grace period.
                first._response.connection.transport.abort()  # type: ignore[union-attr]
                await until(lambda: not rooms.sockets, "the drop is seen")

                opened: list[aiohttp.ClientWebSocketResponse] = []

                async def by_header() -> bool:
                    own = await stack.enter_async_context(aiohttp.ClientSession())
                    try:
                        opened.append(await own.ws_connect(url, headers=served.headers("alice")))
                    except aiohttp.WSServerHandshakeError as refused:
                        assert refused.status == 409
                        return False
                    return True

                async def by_frame() -> bool:
                    own = await stack.enter_async_context(aiohttp.ClientSession())
                    ws = await own.ws_connect(url)
                    opened.append(ws)
                    await ws.send_json({"type": "authenticate", "token": served.token("alice")})
                    frame = await asyncio.wait_for(ws.receive_json(), 10)
                    if frame["type"] == "authenticated":
                        return True
                    assert frame["error"] == "already_connected"
                    return False

                won = await asyncio.gather(by_header(), by_frame(), by_header(), by_frame())
                assert sum(won) == 1
                await until(lambda: len(rooms.sockets) == 1, "the winner is served")
                (presence,) = rooms.presences.values()
                assert presence.socket in rooms.sockets

    run(scenario())


def test_a_prompt_that_times_out_during_the_grace_period_is_not_sent_on_reconnect() -> None:
    # Pinned (no defect found): the grace period keeps the person, not her deadlines.
    async def scenario() -> None:
        with running_provider() as provider:
            async with serving(provider=provider, disconnect_grace=60) as served, \
                    aiohttp.ClientSession() as session:
                url = f"{served.url}/rooms/{ROOM}/ws"
                first = await session.ws_connect(url, headers=served.headers("alice"))
                first._response.connection.transport.abort()  # type: ignore[union-attr]
                rooms = served.app[_ROOMS]
                await until(lambda: not rooms.sockets, "the drop is seen")

                def ask(scopes: list[str], timeout: float) -> Awaitable[Any]:
                    return post(
                        served, "request_oauth_token",
                        {**oauth_args(provider, scopes=scopes), "timeout": timeout,
                         "from_participant_id": "alice"},
                        participant="agent-1", grant=SecretsGrant.allow_all())

                # Addressed while alice is away (she is still connected), then too late.
                status, answer, _ = await ask(["mail.read"], 1)
                assert (status, answer["error"]) == (504, "request_timeout")
                later = asyncio.ensure_future(ask(["mail.send"], 30))
                service = rooms.services[ROOM]
                await until(lambda: len(service.registry) == 1, "the second request is open")
                again = await session.ws_connect(url, headers=served.headers("alice"))
                frame = await asyncio.wait_for(again.receive_json(), 10)
                assert frame["type"] == "oauth_prompt"
                assert frame["prompt"]["scopes"] == ["mail.send"]
                await again.close()
                status, answer, _ = await asyncio.wait_for(later, 10)
                assert status == 410  # alice left (close 1000): the request ended

    run(scenario())


# --- RemoteSecretsClient against a server that answers garbage --------------------------

Answer = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def garbage_server(answer: Answer) -> AsyncIterator[str]:
    """A server on 127.0.0.1 that answers every request with ``answer``."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def _client(url: str, **options: Any) -> RemoteSecretsClient:
    token = mint_participant_token(KEY, room=ROOM, participant_id="alice")
    return RemoteSecretsClient(url, token=token, **options)


def _json(body: object, status: int = 200) -> Answer:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.json_response(body, status=status)

    return answer


def _raw(body: bytes, status: int = 200) -> Answer:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, status=status, content_type="application/json")

    return answer


_DEEP = b"[" * 100_000 + b"]" * 100_000

_GARBAGE: dict[str, tuple[Answer, str]] = {
    # Found: RecursionError escaped from json.loads.
    "deep JSON, 200": (_raw(_DEEP), "list_user_secrets"),
    "deep JSON, 400": (_raw(_DEEP, status=400), "list_user_secrets"),
    # Found: KeyError escaped; wrong types were handed on as a SecretInfo.
    "secret without id": (_json({"secrets": [{"type": "x", "name": None}]}), "list_user_secrets"),
    "secret with a numeric name": (
        _json({"secrets": [{"id": "a", "type": "x", "name": 5, "delegated_to": None}]}),
        "list_user_secrets",
    ),
    "secret delegated to a list": (
        _json({"secrets": [{"id": "a", "type": "x", "name": None, "delegated_to": []}]}),
        "list_user_secrets",
    ),
    "secret that is a string": (_json({"secrets": ["a"]}), "list_user_secrets"),
    # Found: a participant without an id became ParticipantInfo(id='None').
    "participant without id": (_json({"participants": [{"name": "x"}]}), "list_participants"),
    "participant with a numeric name": (
        _json({"participants": [{"id": "a", "name": 7}]}),
        "list_participants",
    ),
    # Pinned (already typed): the wrong shape, a cut body, a number too long to parse.
    "access_token of the wrong type": (_json({"access_token": 5}), "get_offline_oauth_token"),
    "data not base64": (_json({"data": 5}), "get_secret"),
    "number too long": (_raw(b'{"access_token": ' + b"9" * 5000 + b"}"), "get_offline_oauth_token"),
}

_CALLS: dict[str, Callable[[RemoteSecretsClient], Awaitable[object]]] = {
    "list_user_secrets": lambda c: c.list_user_secrets(),
    "list_participants": lambda c: c.list_participants(),
    "get_secret": lambda c: c.get_secret(secret_id="s"),
    "get_offline_oauth_token": lambda c: c.get_offline_oauth_token(
        client_id="c", authorization_endpoint="https://a.example/auth",
        token_endpoint="https://a.example/token", delegated_by="bob"),
}


@pytest.mark.parametrize("case", sorted(_GARBAGE))
def test_a_garbage_answer_is_a_typed_error(case: str) -> None:
    answer, call = _GARBAGE[case]

    async def scenario() -> None:
        async with garbage_server(answer) as url, _client(url) as client:
            with pytest.raises(errors.RoomSecretsError):
                await asyncio.wait_for(_CALLS[call](client), 30)

    run(scenario())


def test_a_token_whose_payload_nests_too_deep_is_refused_as_a_token() -> None:
    """Found: RemoteSecretsClient(token=...) let RecursionError out (the CLI said
    "unexpected RecursionError")."""
    payload = base64.urlsafe_b64encode(b"[" * 100_000 + b"]" * 100_000).decode().rstrip("=")
    with pytest.raises(InvalidParticipantToken):
        RemoteSecretsClient("http://127.0.0.1:8700", token=f"e30.{payload}.c2ln")


_NOT_JSON: dict[str, Callable[[RemoteSecretsClient], Awaitable[object]]] = {
    "bytes id": lambda c: c.delete_user_secret(id=b"x"),  # type: ignore[arg-type]
    "object secret id": lambda c: c.get_secret(secret_id=object()),  # type: ignore[arg-type]
    "bytes scope": lambda c: c.get_offline_oauth_token(
        client_id="c", authorization_endpoint="https://a.example/auth",
        token_endpoint="https://a.example/token", scopes=["a", b"b"]),  # type: ignore[list-item]
    "set name": lambda c: c.set_secret(secret_id="s", data=b"x", name={1}),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("case", sorted(_NOT_JSON))
def test_an_argument_json_cannot_carry_is_invalid_input_as_in_process(case: str) -> None:
    """Found: aiohttp's TypeError ("Object of type bytes is not JSON serializable")
    escaped, where SecretsClient raises InvalidInput."""

    async def scenario() -> None:
        async with serving() as served, served.remote("alice") as client:
            with pytest.raises(errors.InvalidInput):
                await _NOT_JSON[case](client)
            assert await client.list_user_secrets() == []

    run(scenario())


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), "5", True, 10**400])
def test_a_client_timeout_that_is_no_usable_number_of_seconds_is_refused(timeout: Any) -> None:
    """Found: aiohttp took 0, -1 and NaN as "no timeout" (a call could hang for good);
    "5" and inf failed later with TypeError or OverflowError."""
    token = mint_participant_token(KEY, room=ROOM, participant_id="alice")
    with pytest.raises(errors.InvalidInput):
        RemoteSecretsClient("http://127.0.0.1:8700", token=token, timeout=timeout)


def test_a_cut_answer_is_a_transport_error() -> None:
    async def cut(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": "1000"})
        await response.prepare(request)
        await response.write(b'{"secrets": [')
        assert request.transport is not None
        request.transport.close()
        return response

    async def scenario() -> None:
        async with garbage_server(cut) as url, _client(url) as client:
            with pytest.raises(errors.TransportError):
                await asyncio.wait_for(client.list_user_secrets(), 30)

    run(scenario())


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_an_answer_over_the_size_limit_is_refused_without_reading_it_all(declared: bool) -> None:
    """Found: the client read any answer whole into memory, then parsed it."""
    size = 4 * MAX_ANSWER_BYTES
    written = [0]

    async def huge(request: web.Request) -> web.StreamResponse:
        headers = {"Content-Length": str(size + 2)} if declared else {}
        response = web.StreamResponse(headers=headers)
        response.content_type = "application/json"
        await response.prepare(request)
        chunk = b" " * (1024 * 1024)
        with contextlib.suppress(ConnectionError):
            while written[0] < size:
                await response.write(chunk)
                written[0] += len(chunk)
            # Valid JSON once whole: only the size is wrong with it.
            await response.write(b"{}")
        return response

    async def scenario() -> None:
        async with garbage_server(huge) as url, _client(url) as client:
            with pytest.raises(errors.RoomSecretsError) as refused:
                await asyncio.wait_for(client.list_user_secrets(), 60)
            assert "limit" in str(refused.value)
        # The client stopped reading at the limit (socket buffers hold a few MiB more).
        assert written[0] < 2 * MAX_ANSWER_BYTES

    run(scenario())


def test_connect_to_a_server_that_never_answers_the_upgrade_times_out_typed() -> None:
    """Found: connect() waited aiohttp's 300-second default, not the client's timeout."""

    async def scenario() -> None:
        held: list[asyncio.StreamWriter] = []

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            held.append(writer)  # accept, read nothing, answer nothing

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with _client(f"http://127.0.0.1:{port}", timeout=1.0) as client:
                with pytest.raises(errors.RoomSecretsError):
                    await asyncio.wait_for(client.connect(), 30)
                assert not client.connected
        finally:
            for writer in held:
                writer.close()
            server.close()
            await server.wait_closed()

    run(scenario())


def _prompt_frame(request_id: str, expires_at: str) -> str:
    prompt = {
        "request_id": request_id, "authorization_url": "https://idp.example/auth?x=1",
        "state": "s" * 22, "code_challenge": None, "from_participant_id": "agent-1",
        "client_id": "c", "scopes": ["mail.read"],
        "redirect_uri": "http://127.0.0.1/oauth/callback", "expires_at": 0,
    }
    text = json.dumps({"type": "oauth_prompt", "prompt": prompt})
    return text.replace('"expires_at": 0', '"expires_at": ' + expires_at)


@pytest.mark.parametrize(
    "garbage",
    [
        "[" * 100_000 + "]" * 100_000,
        _prompt_frame("overflowing", "9" * 400),
        '{"type": "oauth_prompt", "prompt": {"request_id": []}}',
        "not json",
        "[]",
        _prompt_frame("x", "4e9").replace('"client_id": "c"', '"client_id": "c\\u001b[2J"'),
    ],
    ids=["deep", "expires_at-overflow", "malformed-prompt", "not-json", "not-an-object",
         "escape-in-client_id"],
)
def test_a_garbage_frame_does_not_end_the_prompt_stream(garbage: str) -> None:
    """Found (deep, expires_at-overflow): the frame reader died, and oauth_prompts()
    ended quietly as if the server had closed the socket. Found (escape-in-client_id):
    a prompt carrying a terminal escape was yielded (the CLI prints its fields)."""
    sent = asyncio.Event()

    async def socket(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(garbage)
        await ws.send_str(_prompt_frame("after-the-garbage", str(time.time() + 600)))
        sent.set()
        await ws.receive()  # until the client closes
        return ws

    async def scenario() -> None:
        async with garbage_server(socket) as url, _client(url) as client:
            stream = client.oauth_prompts()
            first = await asyncio.wait_for(stream.__anext__(), 30)
            assert first.request_id == "after-the-garbage"
            assert client.connected
            await stream.aclose()  # type: ignore[attr-defined]

    run(scenario())


_ESCAPES = "\x1b]0;owned\x07\x1b[2J\nsecond line\u009b31m\x00"


@pytest.mark.parametrize(
    "body",
    [
        {"error": "invalid_input", "message": "bad" + _ESCAPES},
        {"error": "request_cancelled", "message": "m", "details": {"reason": "x" + _ESCAPES}},
        {"error": "provider_unavailable", "message": "m" + _ESCAPES, "details": {}},
        {"error": "no_such_code", "message": "m" + _ESCAPES},
    ],
    ids=["message", "cancel-reason", "provider-message", "unknown-code"],
)
def test_a_servers_error_text_reaches_us_without_control_characters(
    body: dict[str, Any],
) -> None:
    """Found: escape sequences in a server's error went into the exception's message,
    which the CLI prints to a terminal."""

    async def scenario() -> None:
        async with garbage_server(_json(body, status=409)) as url, _client(url) as client:
            with pytest.raises(errors.RoomSecretsError) as failed:
                await client.list_user_secrets()
            text = str(failed.value)
            assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text), repr(text)
            assert "second line" in text  # the text itself is kept

    run(scenario())


def test_a_garbage_server_time_is_ignored_and_the_prompts_still_come() -> None:
    frames = [
        _prompt_frame("huge-time", str(time.time() + 600)).replace(
            '"type": "oauth_prompt"', '"server_time": ' + "9" * 400 + ', "type": "oauth_prompt"'
        ),
        _prompt_frame("text-time", str(time.time() + 600)).replace(
            '"type": "oauth_prompt"', '"server_time": "soon", "type": "oauth_prompt"'
        ),
        _prompt_frame("infinite-time", str(time.time() + 600)).replace(
            '"type": "oauth_prompt"', '"server_time": -Infinity, "type": "oauth_prompt"'
        ),
        _prompt_frame("plain", str(time.time() + 600)),
    ]

    async def socket(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        for frame in frames:
            await ws.send_str(frame)
        await ws.receive()
        return ws

    async def scenario() -> None:
        async with garbage_server(socket) as url, _client(url) as client:
            stream = client.oauth_prompts()
            seen = [(await asyncio.wait_for(stream.__anext__(), 30)).request_id
                    for _ in frames]
            assert seen == ["huge-time", "text-time", "infinite-time", "plain"]
            await stream.aclose()  # type: ignore[attr-defined]

    run(scenario())


def test_garbage_server_errors_keep_no_secret_in_the_message() -> None:
    # A server that echoes the bearer token in its error must not put it in ours.
    async def echo(request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"error": "mystery", "message": "x"}, status=418,
            headers={"X-Echo": request.headers["Authorization"]},
        )

    async def scenario() -> None:
        async with garbage_server(echo) as url, _client(url) as client:
            with pytest.raises(errors.RoomSecretsError) as failed:
                await client.list_user_secrets()
            token = client._token
            assert token not in str(failed.value) and token not in repr(failed.value)
            assert not isinstance(failed.value, InvalidParticipantToken)

    run(scenario())
