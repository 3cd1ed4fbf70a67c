"""The room server over raw HTTP and WebSocket, on 127.0.0.1: tokens, the error
table, body limits, the WebSocket protocol, dropped requests, ``/oauth/callback``,
``/openapi.json`` and the access log. The seed flow through the remote client is
in ``test_remote_seed_flow.py``."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, Optional

import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("jwt")

import aiohttp
import jwt

from roomsecrets.adapters.server import create_app
from roomsecrets.adapters.server.app import _ROOMS
from roomsecrets.adapters.server.http_api import OPERATIONS, error_body, error_from_body
from roomsecrets.adapters.server.participant_tokens import (
    mint_participant_token,
    read_participant_token,
)
from roomsecrets.core import errors
from roomsecrets.core.grants import SecretsGrant
from roomsecrets.core.memory_store import MemoryStore
from roomsecrets.core.pending.machine import PendingInput, PendingState
from tests.adapters.server_kit import (
    KEY,
    ROOM,
    Served,
    approve_via_callback,
    bearer_websocket_status,
    get_page,
    oauth_args,
    running_provider,
    serving,
)
from tests.support.fake_provider import CannedResponse, TokenQuirk
from tests.support.forged_jwt import UNREACHABLE_JKU, hand_signed
from tests.support.headless_person import authorization_redirect


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def post(
    served: Served,
    operation: str,
    body: Any = None,
    *,
    headers: Optional[dict[str, str]] = None,
    participant: Optional[str] = "alice",
    raw: Optional[bytes] = None,
    room: str = ROOM,
    **token: Any,
) -> tuple[int, Any, Any]:
    """POST one operation; return (status, JSON body or text, response headers)."""
    sent = dict(headers or {})
    if participant is not None and "Authorization" not in sent:
        sent.update(served.headers(participant, **token))
    data = raw if raw is not None else json.dumps({} if body is None else body).encode()
    url = f"{served.url}/rooms/{room}/{operation}"
    async with aiohttp.ClientSession() as session:
        response = await session.post(url, data=data, headers=sent)
        text = await response.text()
        try:
            answer = json.loads(text)
        except ValueError:
            answer = text
        return response.status, answer, response.headers


def pending_count(served: Served) -> int:
    return sum(len(s.registry) for s in served.app[_ROOMS].services.values())


async def until(condition: Any, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


async def still_serving(served: Served) -> None:
    status, answer, _ = await post(served, "list_user_secrets")
    assert (status, answer) == (200, {"secrets": []})


# --- participant tokens ------------------------------------------------------------


def _forged(
    claims: dict[str, Any], *, key: bytes = KEY, headers: Optional[dict[str, Any]] = None
) -> str:
    return jwt.encode(claims, key, algorithm="HS256", headers=headers)


def _claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "room": ROOM,
        "sub": "alice",
        "name": "Alice",
        "grant": SecretsGrant.allow_all().to_dict(),
        "exp": int(time.time()) + 600,
    }
    for key, value in changes.items():
        if value is _DROP:
            claims.pop(key)
        else:
            claims[key] = value
    return claims


_DROP = object()


#: Each bad token, and the words of the 401 message that name the check it fails.
BAD_TOKENS: dict[str, tuple[Callable[[], str], str]] = {
    "alg none": (lambda: hand_signed({"alg": "none", "typ": "JWT"}, _claims(), None),
                 "not HS256"),
    "alg none signed": (lambda: hand_signed({"alg": "none", "typ": "JWT"}, _claims(), KEY),
                        "not HS256"),
    "wrong key": (lambda: _forged(_claims(), key=b"x" * 32), "signature is wrong"),
    "expired": (lambda: _forged(_claims(exp=int(time.time()) - 5)), "expired"),
    "other room": (lambda: _forged(_claims(room="another-room")), "another room"),
    # Signed with the server's own key: only the algorithm is wrong.
    "HS512": (lambda: hand_signed({"alg": "HS512", "typ": "JWT"}, _claims(), KEY, "sha512"),
              "not HS256"),
    "HS384": (lambda: hand_signed({"alg": "HS384", "typ": "JWT"}, _claims(), KEY, "sha384"),
              "not HS256"),
    # RS256/HS256 confusion: HMAC under the key a naive verifier would take for the
    # RSA public key.
    "RS256 confusion": (lambda: hand_signed({"alg": "RS256", "typ": "JWT"}, _claims(), KEY),
                        "not HS256"),
    "jku with another key": (
        lambda: _forged(_claims(), key=b"x" * 32, headers={"jku": UNREACHABLE_JKU, "kid": "k1"}),
        "signature is wrong",
    ),
    "no sub": (lambda: _forged(_claims(sub=_DROP)), "no 'sub' claim"),
    "no room": (lambda: _forged(_claims(room=_DROP)), "no 'room' claim"),
    "no exp": (lambda: _forged(_claims(exp=_DROP)), "no 'exp' claim"),
    "no grant": (lambda: _forged(_claims(grant=_DROP)), "no 'grant' claim"),
    "bad grant": (lambda: _forged(_claims(grant={"oauth": "everything"})), "claims are invalid"),
    "empty sub": (lambda: _forged(_claims(sub="")), "claims are invalid"),
    "not a jwt": (lambda: "not.a.jwt", "malformed"),
    "garbage": (lambda: "garbage", "malformed"),
}


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
def test_every_bad_token_is_401_with_a_json_body(case: str) -> None:
    async def scenario() -> None:
        async with serving() as served:
            make, why = BAD_TOKENS[case]
            token = make()
            status, answer, headers = await post(
                served, "list_user_secrets", headers={"Authorization": f"Bearer {token}"}
            )
            assert status == 401
            assert answer["error"] == "invalid_token"
            assert why in answer["message"]
            assert token not in answer["message"]
            assert headers["WWW-Authenticate"].startswith("Bearer")
            assert await bearer_websocket_status(served, ROOM, token) == 401
            await still_serving(served)

    run(scenario())


@pytest.mark.parametrize(
    "header", [{"kid": "k1"}, {"jku": UNREACHABLE_JKU}, {"jku": UNREACHABLE_JKU, "kid": "k1"}]
)
def test_a_good_token_whose_header_names_a_key_elsewhere_is_verified_with_the_server_key(
    header: dict[str, Any],
) -> None:
    # kid and jku (RFC 7515 §4.1.4, §4.1.2) are ignored: the server has one key.
    async def scenario() -> None:
        async with serving() as served:
            token = _forged(_claims(), headers=header)
            status, answer, _ = await post(
                served, "list_user_secrets", headers={"Authorization": f"Bearer {token}"}
            )
            assert (status, answer) == (200, {"secrets": []})

    run(scenario())


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Bearer ", "Basic YWxpY2U6cHc=", "Token abc"]
)
def test_a_missing_or_non_bearer_authorization_is_401(header: Optional[str]) -> None:
    async def scenario() -> None:
        async with serving() as served:
            headers = {} if header is None else {"Authorization": header}
            status, answer, _ = await post(
                served, "list_user_secrets", headers=headers, participant=None
            )
            assert (status, answer["error"]) == (401, "invalid_token")

    run(scenario())


def test_a_token_for_one_room_is_refused_on_another_rooms_routes() -> None:
    async def scenario() -> None:
        async with serving() as served:
            headers = served.headers("alice", room="room-a")
            status, answer, _ = await post(
                served, "list_user_secrets", headers=headers, room="room-b"
            )
            assert (status, answer["error"]) == (401, "invalid_token")
            assert "another room" in answer["message"]

    run(scenario())


def test_rooms_share_the_store_but_not_their_secrets() -> None:
    async def scenario() -> None:
        async with serving() as served:
            data = base64.b64encode(b"in a").decode()
            assert (
                await post(served, "set_secret", {"secret_id": "s", "data": data}, room="a", **{})
            )[0] == 401  # the default token is for ROOM
            headers_a = served.headers("alice", room="room-a")
            status, _, _ = await post(
                served,
                "set_secret",
                {"secret_id": "s", "data": data},
                headers=headers_a,
                room="room-a",
            )
            assert status == 200
            headers_b = served.headers("alice", room="room-b")
            status, answer, _ = await post(
                served, "get_secret", {"secret_id": "s"}, headers=headers_b, room="room-b"
            )
            assert (status, answer) == (200, {"data": None})
            assert sorted(served.app[_ROOMS].services) == ["room-a", "room-b"]

    run(scenario())


def test_mint_and_read_round_trip_and_refuse_short_keys() -> None:
    grant = SecretsGrant.allow_all()
    token = mint_participant_token(KEY, room="r", participant_id="p", name="P", grant=grant)
    who = read_participant_token(token, KEY, room="r")
    assert (who.room, who.participant_id, who.name, who.grant) == ("r", "p", "P", grant)
    with pytest.raises(errors.InvalidInput):
        mint_participant_token(b"short", room="r", participant_id="p")
    with pytest.raises(errors.InvalidInput):
        mint_participant_token(KEY, room="r", participant_id="p", ttl=0)
    default = read_participant_token(
        mint_participant_token(KEY, room="r", participant_id="p"), KEY, room="r"
    )
    assert default.grant == SecretsGrant()


# --- bad input and the error table -------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"text"', "must be a JSON object"),
        (b"\xff\xfe", "not valid JSON"),
        (b'{"secret_id": "x"}', "needs the field 'data'"),
        (b'{"secret_id": "x", "data": "aGk=", "colour": "red"}', "no field 'colour'"),
        (b'{"secret_id": "x", "data": "not base64!"}', "not valid base64"),
        (b'{"secret_id": 7, "data": "aGk="}', "secret id"),
        (b'{"secret_id": "x", "data": "aGk=", "type": "nope"}', "MIME"),
    ],
)
def test_malformed_bodies_are_400_and_change_nothing(raw: bytes, text: str) -> None:
    async def scenario() -> None:
        async with serving() as served:
            status, answer, _ = await post(served, "set_secret", raw=raw)
            assert status == 400, answer
            assert answer["error"] == "invalid_input"
            assert text in answer["message"]
            await still_serving(served)

    run(scenario())


def test_a_body_over_the_limit_is_413() -> None:
    async def scenario() -> None:
        async with serving(max_body=4096) as served:
            data = base64.b64encode(b"x" * 8000).decode()
            status, answer, _ = await post(served, "set_secret", {"secret_id": "x", "data": data})
            assert (status, answer["error"]) == (413, "body_too_large")
            await still_serving(served)

    run(scenario())


def test_unknown_routes_and_methods_answer_json() -> None:
    async def scenario() -> None:
        async with serving() as served, aiohttp.ClientSession() as session:
            async with session.get(served.url + "/nowhere?code=SECRETCODE") as response:
                assert response.status == 404
                assert (await response.json())["error"] == "not_found"
            async with session.get(f"{served.url}/rooms/{ROOM}/set_secret") as response:
                assert response.status == 405
                assert (await response.json())["error"] == "method_not_allowed"

    run(scenario())


def test_requests_no_route_takes_get_aiohttps_status_as_json_and_one_access_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The server has no middleware: one route takes every request the others do not,
    # and answers as aiohttp would (404, or 405 naming the methods the path has).
    caplog.set_level(logging.INFO, logger="roomsecrets")

    async def scenario() -> None:
        async with serving() as served, aiohttp.ClientSession() as session:
            cases = [
                ("GET", "/nowhere", 404, None),
                ("HEAD", "/nowhere/deeper", 404, None),
                ("POST", f"/rooms/{ROOM}/no_such_operation", 404, None),
                ("GET", f"/rooms/{ROOM}/get_offline_oauth_token", 405, "POST"),
                ("DELETE", "/", 405, "GET,HEAD"),
                ("PUT", "/openapi.json", 405, "GET"),
                ("POST", f"/rooms/{ROOM}", 405, "GET,HEAD"),
            ]
            for method, path, status, allow in cases:
                caplog.clear()
                async with session.request(method, served.url + path) as response:
                    assert response.status == status, (method, path)
                    assert response.headers.get("Allow") == allow
                    if method != "HEAD":
                        error = "not_found" if status == 404 else "method_not_allowed"
                        assert (await response.json())["error"] == error
                access = [r for r in caplog.records if r.name == "roomsecrets.server.access"]
                assert len(access) == 1
                fields = access[0].roomsecrets  # type: ignore[attr-defined]
                assert (fields["method"], fields["route"], fields["room"], fields["status"]) == (
                    method, "<unmatched>", None, status
                )
            rooms = served.app[_ROOMS]
            assert not rooms._calls and ROOM not in rooms._last_used

    run(scenario())


def test_a_route_not_served_through_the_access_wrapper_is_refused_at_creation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from roomsecrets.adapters.server import app as app_module

    real = app_module.add_approval_page

    def forgetful(app: Any, *, public_url: str, wrap: Any = None) -> None:
        real(app, public_url=public_url)  # registers its routes unwrapped

    monkeypatch.setattr(app_module, "add_approval_page", forgetful)
    with pytest.raises(AssertionError, match="is not served by _served"):
        create_app(store=MemoryStore(), jwt_key=KEY, public_url="http://127.0.0.1:1")


def test_a_grant_denial_is_403() -> None:
    async def scenario() -> None:
        with running_provider() as provider:
            async with serving(provider=provider) as served:
                status, answer, _ = await post(
                    served,
                    "get_offline_oauth_token",
                    {**oauth_args(provider), "delegated_by": "bob"},
                    grant=SecretsGrant(),
                )
                assert (status, answer["error"]) == (403, "grant_denied")

    run(scenario())


def test_asking_someone_not_connected_is_409_and_an_unknown_request_404() -> None:
    async def scenario() -> None:
        with running_provider() as provider:
            async with serving(provider=provider) as served:
                status, answer, _ = await post(
                    served,
                    "request_oauth_token",
                    {**oauth_args(provider), "from_participant_id": "bob"},
                    participant="agent-1",
                    grant=SecretsGrant.allow_all(),
                )
                assert (status, answer["error"]) == (409, "participant_not_connected")
                status, answer, _ = await post(
                    served, "provide_oauth_authorization", {"request_id": "nope", "code": "c"}
                )
                assert (status, answer["error"]) == (404, "unknown_request")

    run(scenario())


async def _open_ws(served: Served, participant: str, **token: Any) -> Any:
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(
        f"{served.url}/rooms/{ROOM}/ws", headers=served.headers(participant, **token)
    )
    return session, ws


async def _next_prompt(ws: Any) -> dict[str, Any]:
    while True:
        frame = await asyncio.wait_for(ws.receive_json(), 10)
        if frame["type"] == "oauth_prompt":
            return frame["prompt"]


async def _ask(served: Served, provider: Any, **extra: Any) -> asyncio.Task[Any]:
    return asyncio.create_task(
        post(
            served,
            "request_oauth_token",
            {**oauth_args(provider), "from_participant_id": "alice", **extra},
            participant="agent-1",
            grant=SecretsGrant.allow_all(),
        )
    )


def test_answering_twice_is_409_and_a_failed_exchange_is_502_for_both_sides() -> None:
    async def scenario() -> None:
        with running_provider() as provider:
            async with serving(provider=provider) as served:
                session, ws = await _open_ws(served, "alice")
                try:
                    # A slow token endpoint keeps the first answer exchanging.
                    provider.queue_token_responses(TokenQuirk(delay=1.0))
                    request = await _ask(served, provider)
                    prompt = await _next_prompt(ws)
                    location = await asyncio.to_thread(
                        authorization_redirect, prompt["authorization_url"]
                    )
                    code = location.split("code=")[1].split("&")[0]
                    first = asyncio.create_task(
                        post(
                            served,
                            "provide_oauth_authorization",
                            {"request_id": prompt["request_id"], "code": code},
                        )
                    )
                    await asyncio.sleep(0.3)
                    status, answer, _ = await post(
                        served,
                        "provide_oauth_authorization",
                        {"request_id": prompt["request_id"], "code": code},
                    )
                    assert (status, answer["error"]) == (409, "illegal_transition")
                    assert answer["details"] == {"state": "EXCHANGING", "event": "PROVIDE"}
                    assert (await first)[0] == 200
                    status, answer, headers = await request
                    assert status == 200 and answer["access_token"]
                    assert headers["Cache-Control"] == "no-store"

                    # The provider refuses the next code: both sides get its error.
                    await post(
                        served,
                        "delete_user_secret",
                        {"id": (await _secret_ids(served))[0], "delegated_to": "agent-1"},
                    )
                    provider.queue_token_responses(
                        CannedResponse.json({"error": "invalid_grant"}, status=400)
                    )
                    request = await _ask(served, provider)
                    prompt = await _next_prompt(ws)
                    status, headers, page = await asyncio.to_thread(
                        approve_via_callback, prompt["authorization_url"]
                    )
                    assert status == 502 and "invalid_grant" in page
                    assert headers["Cache-Control"] == "no-store"
                    status, answer, _ = await request
                    assert (status, answer["error"]) == (502, "invalid_grant")
                    rebuilt = error_from_body(status, answer)
                    assert type(rebuilt) is errors.InvalidGrant
                    assert pending_count(served) == 0
                finally:
                    await ws.close()
                    await session.close()

    run(scenario())


async def _secret_ids(served: Served) -> list[str]:
    _, answer, _ = await post(served, "list_user_secrets")
    return [s["id"] for s in answer["secrets"]]


def test_every_error_class_survives_the_round_trip_through_json() -> None:
    samples: list[errors.RoomSecretsError] = [
        errors.InvalidInput("bad"),
        errors.StateMismatch("state"),
        errors.GrantDenied("no"),
        errors.NotAddressedToYou("not you"),
        errors.UnknownRequest("gone"),
        errors.IllegalTransition(PendingState.EXCHANGING, PendingInput.PROVIDE),
        errors.ParticipantNotConnected("away"),
        errors.RequestRejected("user_cancelled"),
        errors.RequestCancelled("target_left"),
        errors.RequestTimedOut("late"),
        errors.TooManyPendingRequests("many", limit=16),
        errors.InvalidGrant("invalid_grant", "expired", None, 400),
        errors.OAuthError("weird_error", None, None, 400),
        errors.ProviderUnavailable("busy", status=503, retry_after=2.0),
        errors.ProviderTimeout("slow"),
        errors.ConnectError("refused"),
        errors.StoreError("disk"),
        errors.RefreshBusy("busy"),
        errors.VersionConflict("race", expected=1, actual=2),
    ]
    from roomsecrets.adapters.server.http_api import status_for

    for error in samples:
        body = json.loads(json.dumps(error_body(error)))
        rebuilt = error_from_body(status_for(error), body)
        assert type(rebuilt) is type(error), error
        assert str(rebuilt) == str(error)
        assert rebuilt.code == error.code
    # An unknown code falls back on the status.
    assert type(error_from_body(403, {"error": "new_kind", "message": "m"})) is errors.GrantDenied
    assert type(error_from_body(502, "<html>")) is errors.ProviderError


# --- the WebSocket ---------------------------------------------------------------------


def test_malformed_websocket_frames_get_error_frames_and_the_connection_stays() -> None:
    async def scenario() -> None:
        async with serving() as served:
            session, ws = await _open_ws(served, "alice", name="Alice")
            try:
                for bad in ("not json", "[1]", '{"type": "provide"}', "{}", "null"):
                    await ws.send_str(bad)
                    frame = await asyncio.wait_for(ws.receive_json(), 5)
                    assert frame["type"] == "error" and frame["error"] == "invalid_input"
                await ws.send_bytes(b"\x00\x01")
                frame = await asyncio.wait_for(ws.receive_json(), 5)
                assert frame["type"] == "error"
                await ws.send_json({"type": "ping"})
                assert await asyncio.wait_for(ws.receive_json(), 5) == {"type": "pong"}
                status, _answer, _ = await post(served, "list_user_secrets", participant="bob")
                assert status == 200
                async with aiohttp.ClientSession() as other:
                    response = await other.get(
                        f"{served.url}/rooms/{ROOM}/participants", headers=served.headers("bob")
                    )
                    assert await response.json() == {
                        "participants": [{"id": "alice", "name": "Alice"}]
                    }
            finally:
                await ws.close()
                await session.close()
            service = served.app[_ROOMS].services[ROOM]
            await until(lambda: not service.is_connected("alice"), "alice disconnected")

    run(scenario())


def test_an_oversized_websocket_frame_closes_only_that_socket() -> None:
    async def scenario() -> None:
        async with serving() as served:
            session, ws = await _open_ws(served, "alice")
            try:
                await ws.send_str("x" * 100_000)
                message = await asyncio.wait_for(ws.receive(), 5)
                assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            finally:
                await ws.close()
                await session.close()
            service = served.app[_ROOMS].services[ROOM]
            await until(lambda: not service.is_connected("alice"), "alice disconnected")
            await still_serving(served)

    run(scenario())


def test_a_second_websocket_of_a_connected_participant_is_409() -> None:
    async def scenario() -> None:
        async with serving() as served:
            session, ws = await _open_ws(served, "alice")
            try:
                async with aiohttp.ClientSession() as other:
                    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                        await other.ws_connect(
                            f"{served.url}/rooms/{ROOM}/ws", headers=served.headers("alice")
                        )
                    assert refused.value.status == 409
                    async with other.get(
                        f"{served.url}/rooms/{ROOM}/ws", headers=served.headers("alice")
                    ) as plain:
                        assert plain.status in (400, 409)
            finally:
                await ws.close()
                await session.close()

    run(scenario())


def test_prompts_open_before_the_socket_are_sent_when_it_opens_and_none_is_left_after_close() -> (
    None
):
    async def scenario() -> None:
        with running_provider() as provider:
            async with serving(provider=provider) as served:
                session, ws = await _open_ws(served, "alice")
                request = await _ask(served, provider)
                prompt = await _next_prompt(ws)
                assert prompt["from_participant_id"] == "agent-1"
                assert prompt["redirect_uri"] == served.callback_url
                assert set(prompt) == {
                    "request_id",
                    "authorization_url",
                    "state",
                    "code_challenge",
                    "from_participant_id",
                    "client_id",
                    "scopes",
                    "redirect_uri",
                    "expires_at",
                    "delegate_to",
                    "resource",
                    "resource_name",
                    "brokered",
                }
                assert prompt["delegate_to"] == "agent-1"
                # The person's connection drops mid-request.
                await ws.close()
                await session.close()
                status, answer, _ = await asyncio.wait_for(request, 10)
                assert (status, answer["error"]) == (410, "request_cancelled")
                assert pending_count(served) == 0
                await still_serving(served)

    run(scenario())


# --- long requests ---------------------------------------------------------------------


def test_a_requester_that_drops_its_long_request_leaves_nothing_pending() -> None:
    async def scenario() -> None:
        with running_provider() as provider:
            async with serving(provider=provider) as served:
                session, ws = await _open_ws(served, "alice")
                try:
                    request = await _ask(served, provider)
                    await _next_prompt(ws)
                    assert pending_count(served) == 1
                    request.cancel()  # the HTTP client gives up and closes the connection
                    with pytest.raises(asyncio.CancelledError):
                        await request
                    await until(lambda: pending_count(served) == 0, "the request is cancelled")
                    service = served.app[_ROOMS].services[ROOM]
                    assert service.participant("alice").prompts == {}
                    await still_serving(served)
                finally:
                    await ws.close()
                    await session.close()

    run(scenario())


def test_a_dropped_long_request_is_cancelled_even_without_handler_cancellation() -> None:
    # Embedders may run the app on their own runner, where aiohttp does not cancel
    # handlers on disconnect: the server notices the closed connection itself.
    from aiohttp import web

    from tests.adapters.server_kit import CLIENT_ID, bound_socket

    async def scenario() -> None:
        with running_provider() as provider:
            sock = bound_socket()
            url = f"http://127.0.0.1:{sock.getsockname()[1]}"
            provider.register_client(CLIENT_ID, redirect_uris=[url + "/oauth/callback"])
            app = create_app(store=MemoryStore(), jwt_key=KEY, public_url=url)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.SockSite(runner, sock).start()
            served = Served(url, app, None)  # type: ignore[arg-type]
            try:
                session, ws = await _open_ws(served, "alice")
                request = await _ask(served, provider)
                await _next_prompt(ws)
                request.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await request
                await until(lambda: pending_count(served) == 0, "the request is cancelled")
                await ws.close()
                await session.close()
            finally:
                await runner.cleanup()

    run(scenario())


def test_a_long_request_times_out_with_504() -> None:
    async def scenario() -> None:
        with running_provider() as provider:
            async with serving(provider=provider) as served:
                session, ws = await _open_ws(served, "alice")
                try:
                    status, answer, _ = await (await _ask(served, provider, timeout=0.5))
                    assert (status, answer["error"]) == (504, "request_timeout")
                    assert pending_count(served) == 0
                finally:
                    await ws.close()
                    await session.close()

    run(scenario())


# --- /oauth/callback ---------------------------------------------------------------------


def test_the_callback_completes_or_rejects_and_never_logs_its_query(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        with running_provider() as provider:
            async with serving(provider=provider) as served:
                session, ws = await _open_ws(served, "alice")
                try:
                    # ?error= rejects.
                    request = await _ask(served, provider)
                    prompt = await _next_prompt(ws)
                    url = f"{served.callback_url}?error=access_denied&state={prompt['state']}"
                    status, headers, page = await asyncio.to_thread(get_page, url)
                    assert status == 200 and "declined" in page
                    assert headers["Cache-Control"] == "no-store"
                    assert headers["Referrer-Policy"] == "no-referrer"
                    status, answer, _ = await request
                    assert (status, answer["error"]) == (409, "request_rejected")
                    assert answer["details"] == {
                        "reason": "access_denied", "what": "authorization request"}
                    # code & state completes.
                    request = await _ask(served, provider)
                    prompt = await _next_prompt(ws)
                    location = await asyncio.to_thread(
                        authorization_redirect, prompt["authorization_url"]
                    )
                    assert location.startswith(served.callback_url + "?")
                    status, headers, page = await asyncio.to_thread(get_page, location)
                    assert status == 200 and "approved" in page.lower()
                    assert headers["Cache-Control"] == "no-store"
                    assert headers["Referrer-Policy"] == "no-referrer"
                    status, answer, _ = await request
                    assert status == 200 and provider.is_active(answer["access_token"])
                    # The same redirect again: the request is gone.
                    status, _, page = await asyncio.to_thread(_get_status, location)
                    assert status == 404
                    query = location.split("?", 1)[1]
                    code = query.split("code=")[1].split("&")[0]
                    for record in caplog.records:
                        text = record.getMessage()
                        assert query not in text and code not in text
                        assert prompt["state"] not in text
                    access = [r for r in caplog.records if r.name == "roomsecrets.server.access"]
                    callbacks = [r for r in access if "/oauth/callback" in r.getMessage()]
                    assert len(callbacks) == 3
                    fields = callbacks[1].roomsecrets  # type: ignore[attr-defined]
                    assert fields["route"] == "/oauth/callback"
                    assert fields["participant"] == "alice"
                    assert fields["status"] == 200
                    last = callbacks[2].roomsecrets  # type: ignore[attr-defined]
                    assert (last["status"], last["error"]) == (404, "unknown_request")
                finally:
                    await ws.close()
                    await session.close()

    caplog.set_level(logging.INFO, logger="roomsecrets")
    run(scenario())


def _get_status(url: str) -> tuple[int, dict[str, str], str]:
    import urllib.error

    try:
        return get_page(url)
    except urllib.error.HTTPError as error:  # pragma: no cover - the opener raises none
        return error.code, dict(error.headers.items()), ""


@pytest.mark.parametrize(
    ("query", "status"),
    [("", 400), ("?code=abc", 400), ("?state=abc", 400), ("?code=abc&state=unknown", 404)],
)
def test_a_callback_that_matches_no_request_says_so(query: str, status: int) -> None:
    async def scenario() -> None:
        async with serving() as served:
            got, headers, page = await asyncio.to_thread(_get_status, served.callback_url + query)
            assert got == status
            assert headers["Cache-Control"] == "no-store"
            assert headers["Referrer-Policy"] == "no-referrer"
            assert "abc" not in page

    run(scenario())


# --- /openapi.json and the access log ------------------------------------------------


def test_openapi_describes_exactly_the_routes_the_server_serves() -> None:
    async def scenario() -> None:
        async with serving() as served:
            async with aiohttp.ClientSession() as session:
                response = await session.get(served.url + "/openapi.json")
                assert response.status == 200
                document = await response.json()
            assert document["openapi"].startswith("3.1")
            assert document["servers"] == [{"url": served.url}]
            documented = {
                (method.upper(), path)
                for path, methods in document["paths"].items()
                for method in methods
            }
            served_routes = {
                (route.method, route.resource.canonical)
                for route in served.app.router.routes()
                if route.method != "HEAD" and route.resource is not None
                # Where requests no route takes get their 404 or 405: not an API route.
                and route.resource.name != "unmatched"
            }
            assert documented == served_routes
            for op in OPERATIONS:
                doc = document["paths"][op.path][op.method.lower()]
                for status in op.errors:
                    assert str(status) in doc["responses"]
                if op.json_operation:
                    schema = doc["requestBody"]["content"]["application/json"]["schema"]
                    assert set(schema["properties"]) == op.allowed
                    assert set(schema["required"]) == op.required

    run(scenario())


def test_the_access_log_names_routes_not_paths_and_holds_no_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> str:
        async with serving() as served:
            token = served.token("alice")
            data = base64.b64encode(b"top secret bytes").decode()
            await post(
                served,
                "set_secret",
                {"secret_id": "s", "data": data},
                headers={"Authorization": f"Bearer {token}"},
            )
            await post(served, "list_user_secrets", headers={"Authorization": "Bearer bad"})
            return token

    caplog.set_level(logging.INFO, logger="roomsecrets")
    token = run(scenario())
    access = [r for r in caplog.records if r.name == "roomsecrets.server.access"]
    assert len(access) == 2
    first, second = (r.roomsecrets for r in access)  # type: ignore[attr-defined]
    assert first == {
        "method": "POST",
        "route": "/rooms/{room}/set_secret",
        "room": ROOM,
        "participant": "alice",
        "status": 200,
        "error": None,
        "duration_ms": first["duration_ms"],
    }
    assert (second["status"], second["error"], second["participant"]) == (
        401,
        "invalid_token",
        None,
    )
    for record in caplog.records:
        assert token not in record.getMessage()
        assert "dG9wIHNlY3JldCBieXRlcw" not in record.getMessage()


def test_create_app_refuses_bad_settings() -> None:
    with pytest.raises(errors.InvalidInput):
        create_app(store=MemoryStore(), jwt_key=KEY, public_url="ftp://x")
    with pytest.raises(errors.InvalidInput):
        create_app(store=MemoryStore(), jwt_key=KEY, public_url="http://x", max_body=10)


@pytest.mark.parametrize(
    ("error", "shown"),
    [("invalid_scope", "invalid_scope"), ("server_error", "server_error"),
     ("<script>x</script>", "an error")],
)
def test_a_provider_error_on_the_callback_is_not_called_the_persons_decline(
    error: str, shown: str
) -> None:
    async def scenario() -> None:
        with running_provider() as provider:
            async with serving(provider=provider) as served:
                session, ws = await _open_ws(served, "alice")
                try:
                    request = await _ask(served, provider)
                    prompt = await _next_prompt(ws)
                    query = urllib.parse.urlencode({"error": error, "state": prompt["state"]})
                    status, _, page = await asyncio.to_thread(
                        get_page, f"{served.callback_url}?{query}"
                    )
                    assert status == 200 and "declined" not in page
                    # Only RFC 6749's own codes reach the page, never the query as it came.
                    assert f"<code>{shown}</code>" in page and "<script>" not in page
                    status, answer, _ = await request
                    assert (status, answer["error"]) == (409, "request_rejected")
                finally:
                    await ws.close()
                    await session.close()

    run(scenario())
