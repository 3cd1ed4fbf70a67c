"""The room server: many rooms' secrets over HTTP and WebSocket (aiohttp).

Routes, JSON shapes, WebSocket frames and error statuses are listed in
:mod:`roomsecrets.adapters.http_api`, the one table this module registers its
routes from (``GET /openapi.json`` is built from it too).

How it works:

- **Rooms.** One :class:`~roomsecrets.core.service.SecretsService` per room,
  made on the first authenticated call for that room, all on one store and one
  pooled :class:`~roomsecrets.adapters.aiohttp_transport.AiohttpTransport`.
- **Who calls.** Every ``/rooms/{room}/...`` route reads the participant token
  from ``Authorization: Bearer`` (never from a URL) and verifies it
  (:mod:`~roomsecrets.adapters.participant_tokens`); any failure is a 401.
- **HTTP calls** run on a :meth:`SecretsService.session
  <roomsecrets.core.service.SecretsService.session>` made for the call, with the
  token's grant: the caller acts as itself without being *connected*, so an
  agent needs no WebSocket, and any number of calls may share a token. The
  session is closed when the call ends; if the caller drops a long
  ``request_oauth_token``, the pending request is cancelled.
- **The WebSocket** ``/rooms/{room}/ws`` connects the participant
  (``service.connect``) while it is open and pushes each prompt addressed to it;
  closing it disconnects (pending requests to and from it end at once).
- **``/oauth/callback``** finds the open request by its ``state`` (at least 128
  random bits: the state is the proof, no token is needed) and answers it as its
  addressee would, with the addressee's own grant.
- **Logs.** One access record per request on the ``roomsecrets.server.access``
  logger: method, the route's template (never the raw path or the query string),
  room, participant, status, error code, duration; the same values ride in the
  record's ``roomsecrets`` attribute for structured handlers. Run the app with
  :func:`start_server`, or pass ``access_log=None`` to aiohttp's runner: its own
  access log prints query strings, which on ``/oauth/callback`` hold the code.

Example::

    app = create_app(store=FileSecretStore("./data"), jwt_key=key,
                     public_url="http://127.0.0.1:8700")
    server = await start_server(app, host="127.0.0.1", port=8700)
    ...
    await server.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import socket
import time
from collections.abc import Awaitable, Mapping
from typing import Any, Callable, Optional, TypeVar, Union

from aiohttp import WSMsgType, web

from ..core.api import OAuthPrompt
from ..core.client import SecretsClient
from ..core.errors import (
    InvalidInput,
    RoomSecretsError,
    UnknownRequest,
    safe_text,
)
from ..core.inputs import check_id
from ..core.pending_registry import PendingRequest
from ..core.ports import HttpTransport, SecretStore
from ..core.service import SecretsService
from .aiohttp_transport import AiohttpTransport
from .http_api import (
    OPERATIONS,
    BodyTooLarge,
    InvalidParticipantToken,
    Operation,
    ParticipantAlreadyConnected,
    decode_data,
    encode_data,
    error_body,
    prompt_to_json,
    secret_info_to_json,
    status_for,
)
from .openapi import openapi_document
from .participant_tokens import Key, ParticipantToken, VerifiedTokens

__all__ = ["RunningServer", "create_app", "start_server"]

access_log = logging.getLogger("roomsecrets.server.access")
log = logging.getLogger("roomsecrets.server")

#: Default request body limit: a 64 KiB secret in base64 plus the rest of the JSON.
DEFAULT_MAX_BODY = 256 * 1024
_MAX_WS_MESSAGE = 64 * 1024
# How often a long request checks that its caller is still there.
_DISCONNECT_POLL = 0.2
# Not a real status: what nginx logs when the client closed the request first.
_CLIENT_GONE = 499
_NO_STORE = {"Cache-Control": "no-store"}

T = TypeVar("T")

# Who the current request acts for, and how it failed: set by handlers, read by
# the access log (a context variable: the middleware awaits the handler in the
# same task).
_ACCESS: contextvars.ContextVar[dict[str, Optional[str]]] = contextvars.ContextVar(
    "roomsecrets_access"
)


def _note(**fields: Optional[str]) -> None:
    record = _ACCESS.get(None)
    if record is not None:
        record.update(fields)


class _Rooms:
    """Every room's service, made on demand, and what they share."""

    def __init__(
        self,
        *,
        store: SecretStore,
        jwt_key: Key,
        public_url: str,
        transport: Optional[HttpTransport],
        service_options: Mapping[str, Any],
        max_body: int,
    ) -> None:
        self.store = store
        self.max_body = max_body
        self.jwt_key = jwt_key
        self.tokens = VerifiedTokens(jwt_key)
        self.public_url = public_url.rstrip("/")
        self.callback_url = self.public_url + "/oauth/callback"
        self._own_transport = transport is None
        self.transport: HttpTransport = AiohttpTransport() if transport is None else transport
        self._service_options = dict(service_options)
        self.services: dict[str, SecretsService] = {}
        self.sockets: set[web.WebSocketResponse] = set()

    def service(self, room: str) -> SecretsService:
        found = self.services.get(room)
        if found is None:
            found = SecretsService(
                store=self.store, room=room, transport=self.transport, **self._service_options
            )
            self.services[room] = found
        return found

    def find_by_state(self, state: str) -> tuple[SecretsService, PendingRequest]:
        """The room and open request whose OAuth ``state`` this is; UnknownRequest."""
        for service in self.services.values():
            with contextlib.suppress(UnknownRequest):
                return service, service.registry.find_by_oauth_state(state)
        raise UnknownRequest("no open pending request has this state")

    async def close(self) -> None:
        for ws in list(self.sockets):
            await ws.close(code=1001, message=b"server shutting down")
        if self._own_transport and isinstance(self.transport, AiohttpTransport):
            await self.transport.aclose()


_ROOMS = web.AppKey("roomsecrets.rooms", _Rooms)


def create_app(
    *,
    store: SecretStore,
    jwt_key: Key,
    public_url: str,
    transport: Optional[HttpTransport] = None,
    max_body: int = DEFAULT_MAX_BODY,
    service_options: Optional[Mapping[str, Any]] = None,
) -> web.Application:
    """The room server as an aiohttp application, for embedding or :func:`start_server`.

    Args:
        store: where every room's secrets live.
        jwt_key: the HS256 key participant tokens are signed with (32+ bytes).
        public_url: where browsers and providers reach this server; the default
            redirect URI is ``public_url + "/oauth/callback"``.
        transport: how token requests are sent (default: an AiohttpTransport the
            app closes on cleanup).
        max_body: the largest request body accepted; larger ones get 413.
        service_options: extra keyword arguments for each room's
            :class:`~roomsecrets.core.service.SecretsService` (``clock``,
            ``audit``, ``retry``, ``http_timeout``, ``allow_insecure_http``, ...).
    """
    if not isinstance(public_url, str) or not public_url.startswith(("http://", "https://")):
        raise InvalidInput("public_url must be an http or https URL")
    if max_body < 1024:
        raise InvalidInput("max_body must be at least 1024 bytes")
    rooms = _Rooms(
        store=store,
        jwt_key=jwt_key,
        public_url=public_url,
        transport=transport,
        service_options=service_options or {},
        max_body=max_body,
    )
    app = web.Application(client_max_size=max_body, middlewares=[_access_and_errors])
    app[_ROOMS] = rooms
    for op in OPERATIONS:
        app.router.add_route(op.method, op.path, _handler_for(op), name=op.name)

    async def close_rooms(app: web.Application) -> None:
        await rooms.close()

    app.on_shutdown.append(close_rooms)
    return app


def _handler_for(op: Operation) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    if op.json_operation:

        async def run_operation(request: web.Request) -> web.StreamResponse:
            return await _json_operation(request, op)

        return run_operation
    handlers: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] = {
        "list_participants": _list_participants,
        "websocket": _websocket,
        "oauth_callback": _oauth_callback,
        "openapi": _openapi,
    }
    return handlers[op.name]


# --- middleware: errors as JSON, one access record per request ------------------------


@web.middleware
async def _access_and_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    started = time.monotonic()
    error: Optional[str] = None
    record: dict[str, Optional[str]] = {}
    _ACCESS.set(record)
    try:
        response = await handler(request)
    except RoomSecretsError as exc:
        error = exc.code
        response = web.json_response(error_body(exc), status=status_for(exc))
        if isinstance(exc, InvalidParticipantToken):
            response.headers["WWW-Authenticate"] = 'Bearer realm="roomsecrets"'
    except _ClientGone:
        error = "client_closed_request"
        response = web.Response(status=_CLIENT_GONE)
    except web.HTTPException as exc:
        error = _HTTP_CODES.get(exc.status, "http_error")
        response = web.json_response({"error": error, "message": exc.reason}, status=exc.status)
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
    except Exception as exc:
        # A bug: say nothing of it to the caller, and log only its kind (its
        # message or traceback locals may hold a secret).
        error = "internal_error"
        log.error("internal error handling %s: %s", _route(request), type(exc).__name__)
        response = web.json_response(
            {"error": error, "message": "internal server error"}, status=500
        )
    _log_access(request, response.status, error or record.get("error"), record, started)
    return response


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: BodyTooLarge.code}


def _route(request: web.Request) -> str:
    """The matched route's template, never the raw path (nor the query string)."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "<unmatched>"


def _log_access(
    request: web.Request,
    status: int,
    error: Optional[str],
    record: dict[str, Optional[str]],
    started: float,
) -> None:
    duration_ms = (time.monotonic() - started) * 1000
    room = request.match_info.get("room")
    participant = record.get("participant")
    fields = {
        "method": request.method,
        "route": _route(request),
        "room": room,
        "participant": participant,
        "status": status,
        "error": error,
        "duration_ms": round(duration_ms, 1),
    }
    access_log.info(
        "%s %s %s room=%r participant=%r error=%s %.1fms",
        request.method,
        fields["route"],
        status,
        room,
        participant,
        error or "-",
        duration_ms,
        extra={"roomsecrets": fields},
    )


class _ClientGone(Exception):
    """The caller closed the connection before the answer was ready."""


# --- authentication and bodies --------------------------------------------------------


def _authenticate(request: web.Request) -> tuple[_Rooms, ParticipantToken]:
    rooms = request.app[_ROOMS]
    room = request.match_info["room"]
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidParticipantToken("send the participant token as 'Authorization: Bearer'")
    who = rooms.tokens.read(token.strip(), room=room)
    _note(participant=who.participant_id)
    try:
        check_id(room, "room")
    except InvalidInput:  # pragma: no cover - a token names only valid rooms
        raise InvalidParticipantToken("the room name is invalid") from None
    return rooms, who


async def _read_body(request: web.Request, op: Operation) -> dict[str, Any]:
    """The JSON object of a POST body, with only ``op``'s keys and all required ones."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise BodyTooLarge(
            f"the request body is over the server's limit of {request.app[_ROOMS].max_body} bytes"
        ) from None
    if not raw.strip():
        body: object = {}
    else:
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise InvalidInput("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object")
    unknown = sorted(set(body) - op.allowed)
    if unknown:
        raise InvalidInput(f"{op.name} takes no field {unknown[0][:40]!r}")
    missing = sorted(op.required - set(body))
    if missing:
        raise InvalidInput(f"{op.name} needs the field {missing[0]!r}")
    return body


async def _unless_caller_leaves(request: web.Request, work: Awaitable[T]) -> T:
    """Await ``work``; if the caller closes the connection first, cancel it.

    aiohttp cancels handlers on disconnect only when the runner asks for it
    (``handler_cancellation``); this works either way.
    """
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=_DISCONNECT_POLL)
            if done:
                return task.result()
            transport = request.transport
            if transport is None or transport.is_closing():
                break
    except BaseException:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        raise
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    raise _ClientGone()


# --- the JSON operations --------------------------------------------------------------


Runner = Callable[[SecretsClient, dict[str, Any], web.Request], Awaitable[dict[str, Any]]]


async def _list_user_secrets(
    client: SecretsClient, args: dict[str, Any], request: web.Request
) -> dict[str, Any]:
    return {"secrets": [secret_info_to_json(info) for info in await client.list_user_secrets()]}


async def _delete_user_secret(
    client: SecretsClient, args: dict[str, Any], request: web.Request
) -> dict[str, Any]:
    await client.delete_user_secret(**args)
    return {}


async def _request_oauth_token(
    client: SecretsClient, args: dict[str, Any], request: web.Request
) -> dict[str, Any]:
    args.setdefault("redirect_uri", request.app[_ROOMS].callback_url)
    token = await _unless_caller_leaves(request, client.request_oauth_token(**args))
    return {"access_token": token}


async def _get_offline_oauth_token(
    client: SecretsClient, args: dict[str, Any], request: web.Request
) -> dict[str, Any]:
    return {"access_token": await client.get_offline_oauth_token(**args)}


async def _provide_oauth_authorization(
    client: SecretsClient, args: dict[str, Any], request: web.Request
) -> dict[str, Any]:
    await client.provide_oauth_authorization(**args)
    return {}


async def _reject_oauth_authorization(
    client: SecretsClient, args: dict[str, Any], request: web.Request
) -> dict[str, Any]:
    await client.reject_oauth_authorization(**args)
    return {}


async def _set_secret(
    client: SecretsClient, args: dict[str, Any], request: web.Request
) -> dict[str, Any]:
    args["data"] = decode_data(args["data"])
    await client.set_secret(**args)
    return {}


async def _get_secret(
    client: SecretsClient, args: dict[str, Any], request: web.Request
) -> dict[str, Any]:
    data = await client.get_secret(**args)
    return {"data": None if data is None else encode_data(data)}


_RUNNERS: dict[str, Runner] = {
    "list_user_secrets": _list_user_secrets,
    "delete_user_secret": _delete_user_secret,
    "request_oauth_token": _request_oauth_token,
    "get_offline_oauth_token": _get_offline_oauth_token,
    "provide_oauth_authorization": _provide_oauth_authorization,
    "reject_oauth_authorization": _reject_oauth_authorization,
    "set_secret": _set_secret,
    "get_secret": _get_secret,
}
# Answers that carry a token or a secret must not be cached anywhere.
_SECRET_ANSWERS = frozenset({"request_oauth_token", "get_offline_oauth_token", "get_secret"})


async def _json_operation(request: web.Request, op: Operation) -> web.StreamResponse:
    rooms, who = _authenticate(request)
    args = await _read_body(request, op)
    service = rooms.service(who.room)
    client = service.session(who.participant_id, name=who.name, grant=who.grant)
    try:
        result = await _RUNNERS[op.name](client, args, request)
    finally:
        await client.close()
    headers = _NO_STORE if op.name in _SECRET_ANSWERS else None
    return web.json_response(result, headers=headers)


async def _list_participants(request: web.Request) -> web.StreamResponse:
    rooms, who = _authenticate(request)
    participants = rooms.service(who.room).connected_participants()
    return web.json_response({"participants": [{"id": p.id, "name": p.name} for p in participants]})


async def _openapi(request: web.Request) -> web.StreamResponse:
    return web.json_response(openapi_document(public_url=request.app[_ROOMS].public_url))


# --- the WebSocket --------------------------------------------------------------------


async def _websocket(request: web.Request) -> web.StreamResponse:
    rooms, who = _authenticate(request)
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=_MAX_WS_MESSAGE)
    if not ws.can_prepare(request).ok:
        raise InvalidInput("this route needs a WebSocket upgrade")
    service = rooms.service(who.room)
    if service.is_connected(who.participant_id):
        raise ParticipantAlreadyConnected(
            f"participant {who.participant_id!r} already has a WebSocket open"
        )
    client = service.connect(who.participant_id, name=who.name, grant=who.grant)
    pusher: Optional[asyncio.Future[None]] = None
    try:
        await ws.prepare(request)
        rooms.sockets.add(ws)
        pusher = asyncio.ensure_future(_push_prompts(ws, client))
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await _answer_frame(ws, message.data)
            elif message.type == WSMsgType.BINARY:
                await _send_error(ws, "invalid_input", "send JSON text frames, not binary ones")
            elif message.type == WSMsgType.ERROR:
                break
    finally:
        rooms.sockets.discard(ws)
        if pusher is not None:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await pusher
        # Leaving: pending requests to and from this participant end at once.
        await client.close()
        await ws.close()
    return ws


async def _answer_frame(ws: web.WebSocketResponse, text: str) -> None:
    try:
        frame = json.loads(text)
    except ValueError:
        await _send_error(ws, "invalid_input", "a frame must be a JSON object")
        return
    if not isinstance(frame, dict) or frame.get("type") != "ping":
        await _send_error(ws, "invalid_input", 'the only frame a client sends is {"type": "ping"}')
        return
    await ws.send_json({"type": "pong"})


async def _send_error(ws: web.WebSocketResponse, code: str, message: str) -> None:
    await ws.send_json({"type": "error", "error": code, "message": message})


async def _push_prompts(ws: web.WebSocketResponse, client: SecretsClient) -> None:
    prompt: OAuthPrompt
    async for prompt in client.oauth_prompts():
        if ws.closed:
            return
        await ws.send_json({"type": "oauth_prompt", "prompt": prompt_to_json(prompt)})


# --- the provider's redirect ----------------------------------------------------------

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">
<title>{title}</title></head>
<body><h1>{title}</h1><p>{text}</p></body></html>
"""
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'",
}


def _page(status: int, title: str, text: str) -> web.Response:
    # Only fixed texts and error codes reach the page: nothing from the query.
    return web.Response(
        status=status,
        text=_PAGE.format(title=title, text=text),
        content_type="text/html",
        headers=_PAGE_HEADERS,
    )


async def _oauth_callback(request: web.Request) -> web.StreamResponse:
    rooms = request.app[_ROOMS]
    query = request.query
    state, code, error = query.get("state"), query.get("code"), query.get("error")
    if not state or (code is None and error is None):
        _note(error=InvalidInput.code)
        return _page(400, "Not an authorization answer", "The provider sent no state or code.")
    try:
        service, pending = rooms.find_by_state(state)
    except UnknownRequest:
        _note(error=UnknownRequest.code)
        return _page(
            404, "Request not found", "This request has already ended, or it never existed."
        )
    _note(participant=pending.target)
    try:
        # Answer as the addressee would, with the addressee's own grant.
        addressee = service.participant(pending.target)
        client = service.session(pending.target, name=addressee.name, grant=addressee.grant)
        try:
            if error is not None:
                reason = safe_text(error, 64) or "access_denied"
                await client.reject_oauth_authorization(request_id=pending.request_id, error=reason)
                return _page(
                    200, "Request declined", "You declined the request. You can close this tab."
                )
            await client.provide_oauth_authorization(
                request_id=pending.request_id, code=code or "", state=state
            )
        finally:
            await client.close()
    except RoomSecretsError as exc:
        _note(error=exc.code)
        return _page(
            status_for(exc),
            "The request could not be completed",
            f"The request ended with the error <code>{exc.code}</code>.",
        )
    return _page(200, "Approved", "The request is approved. You can close this tab.")


# --- running it -----------------------------------------------------------------------


class RunningServer:
    """A started server: ``url`` is where it listens; ``close()`` stops it."""

    def __init__(self, runner: web.AppRunner, url: str) -> None:
        self.runner = runner
        self.url = url

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_server(
    app: web.Application,
    *,
    host: str = "127.0.0.1",
    port: int = 8700,
    sock: Optional[socket.socket] = None,
    shutdown_timeout: float = 5.0,
) -> RunningServer:
    """Serve ``app`` on ``host:port`` (or on a bound ``sock``) until ``close()``.

    aiohttp's own access log is off (it prints query strings); this app logs
    each request itself. Handlers are cancelled when their client disconnects.
    """
    runner = web.AppRunner(
        app, access_log=None, handler_cancellation=True, shutdown_timeout=shutdown_timeout
    )
    await runner.setup()
    site: Union[web.SockSite, web.TCPSite] = (
        web.TCPSite(runner, host, port) if sock is None else web.SockSite(runner, sock)
    )
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    address = runner.addresses[0]
    bound_host, bound_port = address[0], address[1]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    return RunningServer(runner, f"http://{shown}:{bound_port}")
