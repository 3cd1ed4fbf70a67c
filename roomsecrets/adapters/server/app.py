"""The room server: many rooms' secrets over HTTP and WebSocket (aiohttp).

Routes, JSON shapes, WebSocket frames and error statuses are listed in
:mod:`roomsecrets.adapters.server.http_api`, the one table this module registers its
routes from (``GET /openapi.json`` is built from it too).

How it works:

- **Rooms.** One :class:`~roomsecrets.core.service.SecretsService` per room,
  made on the first authenticated call for that room, all on one store and one
  pooled :class:`~roomsecrets.adapters.aiohttp_transport.AiohttpTransport`.
- **Who calls.** Every ``/rooms/{room}/...`` route reads the participant token
  from ``Authorization: Bearer`` (never from a URL) and verifies it
  (:mod:`~roomsecrets.adapters.server.participant_tokens`); any failure is a 401.
- **HTTP calls** run on a :meth:`SecretsService.session
  <roomsecrets.core.service.SecretsService.session>` made for the call, with the
  token's grant: the caller acts as itself without being *connected*, so an
  agent needs no WebSocket, and any number of calls may share a token. The
  session is closed when the call ends; if the caller drops a long
  ``request_oauth_token``, the pending request is cancelled.
- **The WebSocket** ``/rooms/{room}/ws`` connects the participant
  (``service.connect``) while it is open and pushes each prompt addressed to it,
  then ``{"type": "oauth_prompt_ended"}`` when it ends. Programs authenticate with
  the header; a browser, which cannot set one, sends the token in its first frame
  (``{"type": "authenticate", "token"}``), and a request whose ``Origin`` is not the
  server's own is refused (403). A normal close (1000) disconnects at once
  (pending requests to and from it end); a drop keeps the participant for
  ``disconnect_grace`` seconds, and a new socket within it takes it back. A socket
  is closed (4401) when its token expires, and the participant leaves at once.
- **The approval page** ``/approve`` (:mod:`~roomsecrets.adapters.server.approval`).
- **``/oauth/callback``** finds the open request by its ``state`` (at least 128
  random bits: the state is the proof, no token is needed) and answers it as its
  addressee would, with the addressee's own grant.
- **Logs.** One access record per request (:mod:`.access_log`): method, the
  route's template (never the raw path or the query string), room, participant,
  status, error code, duration. By default a record on the
  ``roomsecrets.server.access`` logger, the same values in its ``roomsecrets``
  attribute for structured handlers; ``roomsecrets serve`` writes the same line
  straight to its log stream (``create_app(access_log=StreamAccessLog(...))``). Run the app with
  :func:`start_server`, or pass ``access_log=None`` and ``logger=protocol_log`` to
  aiohttp's runner: its own access log prints query strings, which on
  ``/oauth/callback`` hold the code, and so do its reports of requests it cannot parse.

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
import functools
import json
import logging
import re
import socket
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any, Callable, Optional, TypeVar, Union

from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.http_websocket import WebSocketError

from ...core.api import OAuthPrompt
from ...core.client import SecretsClient
from ...core.errors import (
    InvalidInput,
    RoomSecretsError,
    UnknownRequest,
    safe_text,
)
from ...core.participants import Participant
from ...core.pending.registry import PendingRequest
from ...core.ports import HttpTransport, SecretStore
from ...core.service import SecretsService
from ..aiohttp_transport import AiohttpTransport
from ..meshagent.room import add_meshagent_routes
from .access_log import ACCESS_LOGGER, AccessLog
from .approval import PAGE_PATH, add_approval_page, public_origin
from .cluster import NODE_HEADER, ClusterNode
from .http_api import (
    CLOSE_ALREADY_CONNECTED,
    CLOSE_BAD_FRAME,
    CLOSE_INVALID_TOKEN,
    OPERATIONS,
    BodyTooLarge,
    InvalidParticipantToken,
    NodeUnreachable,
    Operation,
    ParticipantAlreadyConnected,
    decode_data,
    deleted_to_json,
    encode_data,
    error_body,
    prompt_to_json,
    secret_info_to_json,
    secret_prompt_to_json,
    status_for,
)
from .openapi import ROOT_PATH, openapi_document
from .participant_tokens import Key, ParticipantToken, VerifiedTokens

__all__ = ["RunningServer", "create_app", "start_server"]

access_log = ACCESS_LOGGER
log = logging.getLogger("roomsecrets.server")
#: What aiohttp's HTTP protocol says (requests it cannot parse), redacted: see
#: :class:`_RedactedProtocolLog`. :func:`start_server` hands it to aiohttp.
protocol_log = logging.getLogger("roomsecrets.server.http")

#: Default request body limit: a 64 KiB secret in base64 plus the rest of the JSON.
DEFAULT_MAX_BODY = 256 * 1024
#: Default seconds a participant whose WebSocket dropped stays connected: a page
#: reload or a network blip must not cancel the prompts waiting for a person.
DEFAULT_DISCONNECT_GRACE = 30.0
#: Seconds after its last request that an idle room's service is let go (create_app).
DEFAULT_ROOM_IDLE_TTL = 600.0
# How long a WebSocket without an Authorization header has to send its token.
_LOGIN_TIMEOUT = 10.0
# How many requesters' display names the server remembers for its prompts.
_NAMES_REMEMBERED = 4096
# Sessions kept for the calls that open no pending request (see _Rooms.reader).
_READERS_KEPT = 4096
# Those calls: a session they use has nothing to end when they return, so one is
# kept per verified token rather than made and closed for every call.
_READS = frozenset({"get_offline_oauth_token", "get_secret"})
_MAX_WS_MESSAGE = 64 * 1024
# The longest a WebSocket waits for a frame before it looks at its token's expiry again.
_EXPIRY_RECHECK = 3600.0
# How often a long request checks that its caller is still there.
_DISCONNECT_POLL = 0.2
# Not a real status: what nginx logs when the client closed the request first.
_CLIENT_GONE = 499
_NO_STORE = {"Cache-Control": "no-store"}

T = TypeVar("T")

# Who the current request acts for, and how it failed: set by handlers, read by
# the access log (a context variable: _access_and_errors awaits the handler in the
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
        disconnect_grace: float,
        room_idle_ttl: float,
        access_log: AccessLog,
    ) -> None:
        self.store = store
        self.access_log = access_log
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
        self.disconnect_grace = disconnect_grace
        self.origin = public_origin(self.public_url)
        self.presences: dict[tuple[str, str], _Presence] = {}
        # Display names of recent requesters, from their verified tokens: a
        # prompt names who asks, and an agent calling over HTTP is not connected.
        self.names: dict[tuple[str, str], Optional[str]] = {}
        self.closing = False
        #: Cluster mode: this node, and the HTTP session for calls to the others.
        self.cluster: Optional[ClusterNode] = None
        self.peers: Any = None
        self._background: set[asyncio.Future[None]] = set()
        # Rooms are made on demand; without letting idle ones go, a long-running server
        # would keep a service for every room it ever saw.
        self.room_idle_ttl = room_idle_ttl
        self._calls: dict[str, int] = {}  # requests (WebSockets too) running, by room
        self._last_used: dict[str, float] = {}
        # (room, participant id) -> (the verified token, its session).
        self._readers: dict[tuple[str, str], tuple[ParticipantToken, SecretsClient]] = {}

    def service(self, room: str) -> SecretsService:
        found = self.services.get(room)
        if found is None:
            found = SecretsService(
                store=self.store, room=room, transport=self.transport, **self._service_options
            )
            self.services[room] = found
        return found

    def reader(self, who: ParticipantToken) -> SecretsClient:
        """A session of ``who`` in its room's service for calls that open no pending request
        (:data:`_READS`), shared by such calls while the token is the same one.

        A session's ``close()`` only ends the pending requests made through it, and
        these calls make none; the token is the verified one remembered by
        ``tokens`` (the same object while it is remembered), so the grant and name
        are the token's own. A room's readers go with its service (evict_idle).
        """
        key = (who.room, who.participant_id)
        found = self._readers.get(key)
        if found is not None and found[0] is who:
            return found[1]
        service = self.service(who.room)
        client = service.session(who.participant_id, name=who.name, grant=who.grant)
        if len(self._readers) >= _READERS_KEPT:
            self._readers.clear()
        self._readers[key] = (who, client)
        return client

    def call_started(self, room: str) -> None:
        self._calls[room] = self._calls.get(room, 0) + 1

    def call_ended(self, room: str, now: float) -> None:
        left = self._calls.get(room, 1) - 1
        if left > 0:
            self._calls[room] = left
        else:
            self._calls.pop(room, None)
        # Only a room with a service is remembered: any caller, with no token at all,
        # can name a new room in every URL, and evict_idle forgets only rooms it evicts.
        if room in self.services:
            self._last_used[room] = now

    def evict_idle(self, now: float) -> list[str]:
        """Let go of the services of rooms unused for ``room_idle_ttl`` seconds that
        hold nothing the store does not (see ``SecretsService.idle``); return them."""
        present = {room for room, _ in self.presences}
        gone = []
        for room, service in list(self.services.items()):
            if room in self._calls or room in present or not service.idle:
                continue
            if now - self._last_used.get(room, now) < self.room_idle_ttl:
                continue
            del self.services[room]
            self._last_used.pop(room, None)
            gone.append(room)
        if gone:
            evicted = set(gone)
            for key in [key for key in self._readers if key[0] in evicted]:
                del self._readers[key]
        return gone

    async def evict_idle_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(60.0, self.room_idle_ttl / 2))
            self.evict_idle(loop.time())

    def find_by_state(self, state: str) -> tuple[SecretsService, PendingRequest]:
        """The room and open request whose OAuth ``state`` this is; UnknownRequest."""
        for service in self.services.values():
            with contextlib.suppress(UnknownRequest):
                return service, service.registry.find_by_oauth_state(state)
        raise UnknownRequest("no open pending request has this state")

    def holds_state(self, state: str) -> bool:
        """True when an open request of this node has this OAuth ``state``."""
        try:
            self.find_by_state(state)
        except UnknownRequest:
            return False
        return True

    def remember_name(self, who: ParticipantToken) -> None:
        if len(self.names) >= _NAMES_REMEMBERED:
            self.names.clear()
        self.names[(who.room, who.participant_id)] = who.name

    def name_of(self, room: str, participant_id: str) -> Optional[str]:
        service = self.services.get(room)
        if service is not None and service.is_connected(participant_id):
            return service.participant(participant_id).name
        return self.names.get((room, participant_id))

    def secrets_changed(self, room: str, participant_id: str) -> None:
        """Tell the participant's open WebSocket (if any) that its secrets changed,
        so the approval page lists them again."""
        presence = self.presences.get((room, participant_id))
        ws = presence.socket if presence is not None else None
        if ws is not None and not ws.closed:
            task = asyncio.ensure_future(_send_quietly(ws, {"type": "secrets_changed"}))
            # The loop keeps only weak references to tasks: hold it until done.
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def join(self, who: ParticipantToken) -> _Presence:
        """Connect ``who`` for a new WebSocket, or give it back the presence it
        left less than the grace period ago (same name and grant), prompts and all.

        Raises ParticipantAlreadyConnected while another WebSocket of ``who`` is open.
        """
        key = (who.room, who.participant_id)
        service = self.service(who.room)
        found = self.presences.get(key)
        if found is not None and found.socket is None:
            if found.name == who.name and found.grant == who.grant:
                found.stay()
                return found
            # A new token with another name or grant: the old presence ends now.
            found.stay()
            await self.leave(found)
        if service.is_connected(who.participant_id):
            raise ParticipantAlreadyConnected(
                f"participant {who.participant_id!r} already has a WebSocket open"
            )
        client = service.connect(who.participant_id, name=who.name, grant=who.grant)
        presence = _Presence(who, client, service.participant(who.participant_id))
        self.presences[key] = presence
        return presence

    async def release(self, presence: _Presence, *, grace: float) -> None:
        """Its WebSocket closed: ``presence`` leaves after ``grace`` seconds
        unless a new WebSocket takes it back first (at once for 0)."""
        presence.socket = None
        if self.closing or grace <= 0:
            await self.leave(presence)
        else:
            presence.leaving = asyncio.ensure_future(self._leave_later(presence, grace))

    async def _leave_later(self, presence: _Presence, grace: float) -> None:
        await asyncio.sleep(grace)
        await self.leave(presence)

    async def leave(self, presence: _Presence) -> None:
        """The participant leaves: pending requests to and from it end at once."""
        if self.presences.get(presence.key) is presence:
            del self.presences[presence.key]
        if presence.left:
            return
        presence.left = True
        await presence.client.close()

    async def close(self) -> None:
        self.closing = True
        for ws in list(self.sockets):
            await ws.close(code=1001, message=b"server shutting down")
        for presence in list(self.presences.values()):
            presence.stay()
            await self.leave(presence)
        if self._own_transport and isinstance(self.transport, AiohttpTransport):
            await self.transport.aclose()


class _Presence:
    """A participant connected through WebSockets: its client, the socket open
    now (None during the grace period after a drop), and the pending leave."""

    def __init__(self, who: ParticipantToken, client: SecretsClient, participant: Participant):
        self.key = (who.room, who.participant_id)
        self.name = who.name
        self.grant = who.grant
        self.client = client
        self.participant = participant
        self.socket: Optional[web.WebSocketResponse] = None
        self.leaving: Optional[asyncio.Future[None]] = None
        self.left = False

    def stay(self) -> None:
        """Cancel a pending leave (a new WebSocket came back in time)."""
        if self.leaving is not None and not self.leaving.done():
            self.leaving.cancel()
        self.leaving = None


_ROOMS = web.AppKey("roomsecrets.rooms", _Rooms)


def create_app(
    *,
    store: SecretStore,
    jwt_key: Key,
    public_url: str,
    transport: Optional[HttpTransport] = None,
    max_body: int = DEFAULT_MAX_BODY,
    service_options: Optional[Mapping[str, Any]] = None,
    disconnect_grace: float = DEFAULT_DISCONNECT_GRACE,
    room_idle_ttl: float = DEFAULT_ROOM_IDLE_TTL,
    cluster: Optional[ClusterNode] = None,
    access_log: Optional[AccessLog] = None,
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
        disconnect_grace: seconds a participant whose WebSocket dropped (no
            close frame, or "going away" as a browser sends on reload) stays
            connected; a new WebSocket within it keeps its prompts. A normal
            close (code 1000) leaves at once.
        room_idle_ttl: seconds after its last request that a room's service is let
            go, when nobody is connected there and it holds no open request, running
            refresh or unsaved credential; the next request makes a new one from the
            store. Keeps a long-running server's memory bounded by its busy rooms.
        cluster: cluster mode (``serve --node-url``): this node's
            :class:`~.cluster.ClusterNode`. Its request ids and states name it, and
            a callback or an answer for a request another node holds is forwarded
            there (``docs/scaling.md``).
        access_log: where the access records go (default: an
            :class:`~.access_log.AccessLog`, records on the
            ``roomsecrets.server.access`` logger). ``roomsecrets serve`` passes a
            :class:`~.access_log.StreamAccessLog`.
    """
    if not isinstance(public_url, str) or not public_url.startswith(("http://", "https://")):
        raise InvalidInput("public_url must be an http or https URL")
    _check_public_url(public_url)
    if max_body < 1024:
        raise InvalidInput("max_body must be at least 1024 bytes")
    if (
        isinstance(disconnect_grace, bool)
        or not isinstance(disconnect_grace, (int, float))
        or not 0 <= disconnect_grace <= 3600
    ):
        raise InvalidInput("disconnect_grace must be between 0 and 3600 seconds")
    if (
        isinstance(room_idle_ttl, bool)
        or not isinstance(room_idle_ttl, (int, float))
        or not 0 < room_idle_ttl <= 86400
    ):
        raise InvalidInput("room_idle_ttl must be more than 0 and at most 86400 seconds")
    options = dict(service_options or {})
    if cluster is not None:
        # Every request id and state this node issues names it, bound by a MAC.
        if "token_urlsafe" in options:
            options["token_urlsafe"] = cluster.token_urlsafe(options["token_urlsafe"])
        else:
            options["token_urlsafe"] = cluster.token_urlsafe()
    rooms = _Rooms(
        store=store,
        jwt_key=jwt_key,
        public_url=public_url,
        transport=transport,
        service_options=options,
        max_body=max_body,
        disconnect_grace=float(disconnect_grace),
        room_idle_ttl=float(room_idle_ttl),
        access_log=AccessLog() if access_log is None else access_log,
    )
    # No middleware: every route's handler is wrapped instead (_served), which
    # saves aiohttp's middleware chain on every request.
    app = web.Application(client_max_size=max_body)
    app[_ROOMS] = rooms

    def served(handler: Handler, route: str) -> Handler:
        return _served(rooms, route, handler)

    for op in sorted(OPERATIONS, key=lambda op: op.name not in _REPEATED_READS):
        app.router.add_route(
            op.method, op.path, served(_handler_for(op, rooms), op.path), name=op.name
        )
    add_approval_page(app, public_url=rooms.public_url, wrap=served)
    # Someone who opens the server's address in a browser wants the approval page.
    app.router.add_get(ROOT_PATH, served(_to_the_approval_page, ROOT_PATH), name="root")
    add_meshagent_routes(app, rooms, wrap=served)

    async def evict_idle_rooms(app: web.Application) -> AsyncIterator[None]:
        sweeper = asyncio.ensure_future(rooms.evict_idle_forever())
        yield
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper

    async def close_rooms(app: web.Application) -> None:
        await rooms.close()

    app.cleanup_ctx.append(evict_idle_rooms)
    app.on_shutdown.append(close_rooms)
    if cluster is not None:
        rooms.cluster = cluster
        app.router.add_post(
            _CLUSTER_CALLBACK, served(_forwarded_callback, _CLUSTER_CALLBACK),
            name="cluster_callback",
        )

        async def run_cluster(app: web.Application) -> AsyncIterator[None]:
            import aiohttp

            await cluster.start()
            rooms.peers = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=cluster.timeout), trust_env=False
            )
            yield
            await rooms.peers.close()
            await cluster.stop()

        app.cleanup_ctx.append(run_cluster)
    # Last: aiohttp tries it after every other route (its index key is "/").
    app.router.add_route("*", _UNMATCHED_PATH, served(_unmatched, _UNMATCHED), name="unmatched")
    for route in app.router.routes():
        handler = route.handler
        if not (isinstance(handler, functools.partial) and handler.func is _access_and_errors):
            raise AssertionError(f"route {route.resource!r} is not served by _served")
        template = handler.keywords["route"]
        canonical = route.resource.canonical if route.resource is not None else None
        if template != _UNMATCHED and template != canonical:
            raise AssertionError(f"route {canonical!r} is logged as {template!r}")
    return app


# Registered first: aiohttp tries the routes that share a path prefix ("/rooms")
# one by one, in registration order, each a coroutine and a regular expression;
# an agent makes these calls every time it uses a credential or secret, the
# others once per approval or change.
_REPEATED_READS = frozenset({"get_offline_oauth_token", "get_secret"})


def _check_public_url(public_url: str) -> None:
    """InvalidInput unless ``public_url`` can stand before ``/oauth/callback``: a host,
    ASCII, no user name or password, no query and no fragment (RFC 6749 §3.1.2: a
    redirect URI has no fragment; with a query, the callback path would land inside it)."""
    try:
        parts = urllib.parse.urlsplit(public_url)
        _ = parts.port  # raises ValueError for a port that is not one
    except ValueError:
        raise InvalidInput("public_url is not a valid URL") from None
    if not parts.hostname:
        raise InvalidInput("public_url must name a host")
    if not public_url.isascii() or " " in public_url:
        # RFC 3986 §2: the redirect URI built on it must be ASCII; a browser sends an
        # internationalised host as its A-label (punycode) in Origin.
        raise InvalidInput(
            "public_url must be ASCII without spaces: write an internationalised host "
            "in its punycode form (xn--...) and percent-encode the path"
        )
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("public_url must not hold a user name or password")
    if parts.query or parts.fragment or "?" in public_url or "#" in public_url:
        raise InvalidInput("public_url must have no query and no fragment")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _handler_for(op: Operation, rooms: _Rooms) -> Handler:
    if op.json_operation:
        # A partial, not a closure: one coroutine per request instead of two. The
        # rooms are given, not looked up (request.app[...] is three Python calls).
        return functools.partial(_json_operation, op=op, rooms=rooms)
    handlers: dict[str, Handler] = {
        "list_participants": _list_participants,
        "websocket": _websocket,
        "oauth_callback": _oauth_callback,
        "openapi": _openapi,
    }
    return handlers[op.name]


# --- every route: errors as JSON, one access record per request ------------------------


def _served(rooms: _Rooms, route: str, handler: Handler) -> Handler:
    """``handler`` as the server serves every route (see :func:`_access_and_errors`);
    ``route`` is its template, what the access record names."""
    return functools.partial(_access_and_errors, rooms=rooms, route=route, handler=handler)


async def _access_and_errors(
    request: web.Request, *, rooms: _Rooms, route: str, handler: Handler
) -> web.StreamResponse:
    """Run ``handler``: a typed error becomes its JSON answer, anything else a bare
    500; then write the request's access record."""
    started = time.monotonic()
    error: Optional[str] = None
    record: dict[str, Optional[str]] = {}
    _ACCESS.set(record)
    room = request.match_info.get("room")
    if room is not None:
        rooms.call_started(room)
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
        log.error("internal error handling %s: %s", route, type(exc).__name__)
        response = web.json_response(
            {"error": error, "message": "internal server error"}, status=500
        )
    finally:
        if room is not None:
            rooms.call_ended(room, asyncio.get_running_loop().time())
    access = rooms.access_log
    if access.enabled():
        access.write(
            method=request.method,
            route=route,
            room=room,
            participant=record.get("participant"),
            status=response.status,
            error=error or record.get("error"),
            duration_ms=(time.monotonic() - started) * 1000,
        )
    return response


# The route every request no other route takes goes to (its variable is not "room":
# no room's count of running calls is touched), and how its access record names it.
_UNMATCHED_PATH = "/{unmatched_path:.*}"
_UNMATCHED = "<unmatched>"


async def _unmatched(request: web.Request) -> web.StreamResponse:
    """No route has this path (404), or none has it for this method (405, with the
    methods that it has), as aiohttp itself answers."""
    allowed: set[str] = set()
    own = request.match_info.route.resource
    for resource in request.app.router.resources():
        if resource is not own:
            _, methods = await resource.resolve(request)
            allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: BodyTooLarge.code}


# A URL's query (up to the quote or space that ends the quoted request line) and a
# bearer credential, as aiohttp quotes them in its parse errors.
_QUERY = re.compile(r"\?[^\s'\"]*")
_BEARER = re.compile(r"(?i)\bbearer\s+[^\s'\"]*")


class _RedactedProtocolLog(logging.Filter):
    """aiohttp logs a request it cannot parse at ERROR, quoting the offending line
    in the exception: a request line holds the query (on ``/oauth/callback``, the
    code), a header line may hold a participant token. Each record becomes one line,
    the exception's kind and message with queries and bearer credentials removed,
    without the traceback (whose frames quote the same bytes)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text += f": {type(exc).__name__}: {exc}"
        text = _BEARER.sub("Bearer <removed>", _QUERY.sub("?<query removed>", text))
        record.msg, record.args = text, ()
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


protocol_log.addFilter(_RedactedProtocolLog())


class _ClientGone(Exception):
    """The caller closed the connection before the answer was ready."""


# --- authentication and bodies --------------------------------------------------------


def _authenticate(
    request: web.Request, rooms: Optional[_Rooms] = None
) -> tuple[_Rooms, ParticipantToken]:
    if rooms is None:
        rooms = request.app[_ROOMS]
    room = request.match_info["room"]
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidParticipantToken("send the participant token as 'Authorization: Bearer'")
    who = rooms.tokens.read(token.strip(), room=room)  # checks the room name too
    record = _ACCESS.get(None)  # (what _note does, without its call on every request)
    if record is not None:
        record["participant"] = who.participant_id
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
        except (ValueError, UnicodeDecodeError, RecursionError):
            # RecursionError: JSON nested deeper than the parser's stack, well under the
            # size cap; it is bad input like any other, not a server fault.
            raise InvalidInput("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object")
    keys = body.keys()
    if not keys <= op.allowed:
        unknown = sorted(keys - op.allowed)
        raise InvalidInput(f"{op.name} takes no field {unknown[0][:40]!r}")
    if not op.required <= keys:
        missing = sorted(op.required - keys)
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


async def _list_delegated_secrets(
    client: SecretsClient, args: dict[str, Any], request: web.Request
) -> dict[str, Any]:
    infos = await client.list_delegated_secrets()
    return {"secrets": [secret_info_to_json(info) for info in infos]}


async def _delete_user_secret(
    client: SecretsClient, args: dict[str, Any], request: web.Request
) -> dict[str, Any]:
    return {"deleted": deleted_to_json(await client.delete_secret(**args))}


async def _request_oauth_token(
    client: SecretsClient, args: dict[str, Any], request: web.Request
) -> dict[str, Any]:
    callback = request.app[_ROOMS].callback_url
    if args.get("client_id") is None and args.get("redirect_uri", callback) != callback:
        # The broker's client is the server's: its codes come back to this server only.
        raise InvalidInput(
            "with resource and no client_id the redirect_uri is the server's own "
            "PUBLIC_URL/oauth/callback: leave redirect_uri out"
        )
    args.setdefault("redirect_uri", callback)
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


async def _request_secret(
    client: SecretsClient, args: dict[str, Any], request: web.Request
) -> dict[str, Any]:
    data = await _unless_caller_leaves(request, client.request_secret(**args))
    return {"data": encode_data(data)}


async def _provide_secret(
    client: SecretsClient, args: dict[str, Any], request: web.Request
) -> dict[str, Any]:
    args["data"] = decode_data(args["data"])
    await client.provide_secret(**args)
    return {}


async def _reject_secret(
    client: SecretsClient, args: dict[str, Any], request: web.Request
) -> dict[str, Any]:
    await client.reject_secret(**args)
    return {}


async def _delete_requested_secret(
    client: SecretsClient, args: dict[str, Any], request: web.Request
) -> dict[str, Any]:
    return {"deleted": deleted_to_json(await client.delete_requested_secret(**args))}


_RUNNERS: dict[str, Runner] = {
    "list_user_secrets": _list_user_secrets,
    "list_delegated_secrets": _list_delegated_secrets,
    "delete_user_secret": _delete_user_secret,
    "request_oauth_token": _request_oauth_token,
    "get_offline_oauth_token": _get_offline_oauth_token,
    "provide_oauth_authorization": _provide_oauth_authorization,
    "reject_oauth_authorization": _reject_oauth_authorization,
    "set_secret": _set_secret,
    "get_secret": _get_secret,
    "request_secret": _request_secret,
    "provide_secret": _provide_secret,
    "reject_secret": _reject_secret,
    "delete_requested_secret": _delete_requested_secret,
}
# Operations after which the caller's own secrets may differ.
_CHANGES_SECRETS = frozenset({
    "delete_user_secret",
    "set_secret",
    "provide_oauth_authorization",
    "provide_secret",
    "delete_requested_secret",
})
# Answers that carry a token or a secret must not be cached anywhere.
_SECRET_ANSWERS = frozenset(
    {"request_oauth_token", "get_offline_oauth_token", "get_secret", "request_secret"}
)


async def _json_operation(
    request: web.Request, op: Operation, rooms: _Rooms
) -> web.StreamResponse:
    rooms, who = _authenticate(request, rooms)
    args = await _read_body(request, op)
    if op.name in ("request_oauth_token", "request_secret"):
        rooms.remember_name(who)
    if op.name in _READS:
        result = await _RUNNERS[op.name](rooms.reader(who), args, request)
        return web.json_response(result, headers=_NO_STORE)
    service = rooms.service(who.room)
    client = service.session(who.participant_id, name=who.name, grant=who.grant)
    try:
        result = await _RUNNERS[op.name](client, args, request)
    except UnknownRequest:
        # Cluster mode: an answer to a request another node holds goes there.
        holder = _holder(request, rooms, args.get("request_id"), op.name)
        if holder is None:
            raise
        return await _forward_answer(request, rooms, holder)
    finally:
        await client.close()
    if op.name in _CHANGES_SECRETS:
        rooms.secrets_changed(who.room, who.participant_id)
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
    rooms = request.app[_ROOMS]
    # A browser always sends Origin; another site's page must not act for the
    # person whose token it found nowhere but could try to reuse (RFC 6455 §10.2).
    origin = request.headers.get("Origin")
    if origin is not None and origin != rooms.origin:
        _note(error="forbidden_origin")
        return web.json_response(
            {"error": "forbidden_origin", "message": "this WebSocket is for the server's own page"},
            status=403,
        )
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=_MAX_WS_MESSAGE)
    if "Authorization" in request.headers:
        # Programs: the token in the header, refusals as HTTP statuses before the upgrade.
        _, who = _authenticate(request)
        if not ws.can_prepare(request).ok:
            raise InvalidInput("this route needs a WebSocket upgrade")
        presence = await rooms.join(who)
        try:
            await ws.prepare(request)
        except BaseException:
            await rooms.release(presence, grace=0)
            raise
        expires_at = who.expires_at
    else:
        # Browsers cannot set headers on a WebSocket, and a token in its URL
        # would reach logs: the first frame carries it instead.
        if not ws.can_prepare(request).ok:
            raise InvalidInput("this route needs a WebSocket upgrade")
        await ws.prepare(request)
        found = await _log_in_by_first_frame(ws, rooms, request.match_info["room"])
        if found is None:
            return ws
        presence, expires_at = found
    await _serve_socket(ws, rooms, presence, expires_at)
    return ws


async def _log_in_by_first_frame(
    ws: web.WebSocketResponse, rooms: _Rooms, room: str
) -> Optional[tuple[_Presence, float]]:
    """Read ``{"type": "authenticate", "token": JWT}``; connect its participant and
    answer ``{"type": "authenticated", ...}`` (return the presence and the token's
    expiry), or send an error frame and close (return None)."""
    try:
        # One deadline for the whole sign-in: receive()'s own timeout starts again
        # after each ping it answers, so a pinging client would never time out.
        message = await asyncio.wait_for(ws.receive(), _LOGIN_TIMEOUT)
    except asyncio.TimeoutError:
        await _refuse(ws, CLOSE_BAD_FRAME, "invalid_input", "no authenticate frame in time")
        return None
    token: object = None
    if message.type == WSMsgType.TEXT:
        # RecursionError: a deeply nested frame under the size limit.
        with contextlib.suppress(ValueError, RecursionError):
            frame = json.loads(message.data)
            if isinstance(frame, dict) and frame.get("type") == "authenticate":
                token = frame.get("token")
    if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
        return None
    if not isinstance(token, str):
        _note(error=InvalidInput.code)
        await _refuse(
            ws,
            CLOSE_BAD_FRAME,
            "invalid_input",
            'the first frame must be {"type": "authenticate", "token": "<participant token>"}',
        )
        return None
    try:
        who = rooms.tokens.read(token, room=room)
    except InvalidParticipantToken as refused:
        _note(error=refused.code)
        await _refuse(ws, CLOSE_INVALID_TOKEN, refused.code, str(refused))
        return None
    _note(participant=who.participant_id)
    try:
        presence = await rooms.join(who)
    except ParticipantAlreadyConnected as refused:
        _note(error=refused.code)
        await _refuse(ws, CLOSE_ALREADY_CONNECTED, refused.code, str(refused))
        return None
    service = rooms.service(room)
    try:
        await ws.send_json(
            {
                "type": "authenticated",
                "room": room,
                "participant": {"id": who.participant_id, "name": who.name},
                # The service's clock: prompts' expires_at are on it, not the browser's.
                "server_time": service.clock(),
                "disconnect_grace": rooms.disconnect_grace,
            }
        )
    except ConnectionError:
        await rooms.release(presence, grace=rooms.disconnect_grace)
        return None
    return presence, who.expires_at


async def _refuse(ws: web.WebSocketResponse, close_code: int, code: str, message: str) -> None:
    with contextlib.suppress(ConnectionError):
        await _send_error(ws, code, message)
    await ws.close(code=close_code, message=code.encode("ascii"))


async def _serve_socket(
    ws: web.WebSocketResponse, rooms: _Rooms, presence: _Presence, expires_at: float
) -> None:
    presence.socket = ws
    rooms.sockets.add(ws)
    room = presence.key[0]
    pusher = asyncio.ensure_future(_push_prompts(ws, presence.participant, rooms, room))
    # A drop (no close frame, or 1001 "going away" as a browser sends when the
    # page reloads) keeps the participant for the grace period; a normal close
    # or a protocol error leaves at once.
    grace = rooms.disconnect_grace
    try:
        while True:
            # The token authenticated the socket only until its exp (RFC 7519 §4.1.4):
            # then the participant leaves, as the approval page signs out on its clock.
            left = expires_at - time.time()
            if left <= 0:
                with contextlib.suppress(ConnectionError):
                    await _send_error(
                        ws, InvalidParticipantToken.code, "the participant token has expired"
                    )
                await ws.close(code=CLOSE_INVALID_TOKEN, message=b"invalid_token")
                grace = 0
                break
            try:
                # Not receive(timeout=): that starts again after each ping or pong.
                message = await asyncio.wait_for(ws.receive(), min(left, _EXPIRY_RECHECK))
            except asyncio.TimeoutError:
                continue
            if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                try:
                    if message.type == WSMsgType.TEXT:
                        await _answer_frame(ws, message.data)
                    else:
                        await _send_error(
                            ws, "invalid_input", "send JSON text frames, not binary ones"
                        )
                except ConnectionError:
                    break  # the client went while we answered: a drop, not a server fault
            elif message.type == WSMsgType.CLOSE:
                if message.data == WSCloseCode.OK:
                    grace = 0
                break
            elif message.type == WSMsgType.ERROR:
                if isinstance(message.data, WebSocketError):
                    grace = 0
                break
            elif message.type in (WSMsgType.CLOSING, WSMsgType.CLOSED):
                break
    finally:
        rooms.sockets.discard(ws)
        pusher.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await pusher
        await rooms.release(presence, grace=grace)
        await ws.close()


async def _answer_frame(ws: web.WebSocketResponse, text: str) -> None:
    try:
        frame = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        await _send_error(ws, "invalid_input", "a frame must be a JSON object")
        return
    if not isinstance(frame, dict) or frame.get("type") != "ping":
        await _send_error(ws, "invalid_input", 'the only frame a client sends is {"type": "ping"}')
        return
    await ws.send_json({"type": "pong"})


async def _send_quietly(ws: web.WebSocketResponse, frame: dict[str, Any]) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):
        await ws.send_json(frame)


async def _send_error(ws: web.WebSocketResponse, code: str, message: str) -> None:
    await ws.send_json({"type": "error", "error": code, "message": message})


async def _push_prompts(
    ws: web.WebSocketResponse, participant: Participant, rooms: _Rooms, room: str
) -> None:
    """Send each open prompt once (those open before the socket too, in arrival
    order), as ``oauth_prompt`` or ``secret_prompt``, and
    ``{"type": "oauth_prompt_ended", "request_id"}`` when one of either kind ends
    (answered, rejected, timed out, cancelled), until the participant leaves."""
    loop = asyncio.get_running_loop()
    sent: set[str] = set()
    while not participant.closed and not ws.closed:
        # Watch before looking, so a change made while we send is not missed.
        watcher: asyncio.Future[None] = loop.create_future()
        participant.watchers.append(watcher)
        try:
            open_now = dict(participant.prompts)
            for request_id in [rid for rid in sent if rid not in open_now]:
                sent.discard(request_id)
                await ws.send_json({"type": "oauth_prompt_ended", "request_id": request_id})
            for request_id, prompt in open_now.items():
                if request_id in sent:
                    continue
                sent.add(request_id)
                is_oauth = isinstance(prompt, OAuthPrompt)
                await ws.send_json(
                    {
                        "type": "oauth_prompt" if is_oauth else "secret_prompt",
                        "prompt": prompt_to_json(prompt)
                        if isinstance(prompt, OAuthPrompt)
                        else secret_prompt_to_json(prompt),
                        "from_participant_name": rooms.name_of(
                            room, prompt.from_participant_id
                        ),
                        # expires_at is on the service's clock; a client whose own
                        # clock is off judges the deadline by this.
                        "server_time": rooms.service(room).clock(),
                    }
                )
            await watcher
        finally:
            if watcher in participant.watchers:
                participant.watchers.remove(watcher)


# --- the server's address in a browser ---------------------------------------------------


async def _to_the_approval_page(request: web.Request) -> web.StreamResponse:
    # The public URL, not a relative one: behind a proxy that routes by path, "/" here
    # is PUBLIC_URL/ there, and the page must open on the origin its WebSocket checks.
    # Returned, not raised: _access_and_errors turns a raised HTTPException into JSON.
    location = request.app[_ROOMS].public_url + PAGE_PATH
    return web.Response(status=302, headers={"Location": location, **_NO_STORE})


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
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
}


def _page(status: int, title: str, text: str) -> web.Response:
    # Only fixed texts and error codes reach the page: nothing from the query.
    return web.Response(
        status=status,
        text=_PAGE.format(title=title, text=text),
        content_type="text/html",
        headers=_PAGE_HEADERS,
    )


#: The error codes of an authorization response (RFC 6749 §4.1.2.1).
_AUTHORIZATION_ERRORS = frozenset({
    "invalid_request", "unauthorized_client", "access_denied", "unsupported_response_type",
    "invalid_scope", "server_error", "temporarily_unavailable",
})

#: The authorization-response parameters the callback reads (RFC 6749 §4.1.2, §4.1.2.1;
#: RFC 9207 §2).
_CALLBACK_PARAMETERS = ("code", "state", "error", "error_description", "iss")


async def _oauth_callback(request: web.Request) -> web.StreamResponse:
    rooms = request.app[_ROOMS]
    query = request.query
    # RFC 6749 §3.1: a response parameter appears at most once. Taking the first of two
    # would let whoever added the second decide which one counts; refuse both.
    if any(len(query.getall(name, [])) > 1 for name in _CALLBACK_PARAMETERS):
        _note(error=InvalidInput.code)
        return _page(400, "Not an authorization answer", "A parameter appears more than once.")
    state, code, error = query.get("state"), query.get("code"), query.get("error")
    if not state or (code is None and error is None):
        _note(error=InvalidInput.code)
        return _page(400, "Not an authorization answer", "The provider sent no state or code.")
    params = {name: query[name] for name in _CALLBACK_PARAMETERS if name in query}
    cluster = rooms.cluster
    if cluster is not None and not rooms.holds_state(state):
        return await _callback_elsewhere(rooms, cluster, params)
    return await _complete_callback(rooms, params)


async def _complete_callback(rooms: _Rooms, params: Mapping[str, str]) -> web.Response:
    """Complete a callback for a request this node holds (or say it has none)."""
    state, code, error = params.get("state", ""), params.get("code"), params.get("error")
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
                if reason == "access_denied":
                    return _page(
                        200, "Request declined", "You declined the request. You can close this tab."
                    )
                # The provider refused, not the person. Only RFC 6749's own codes are
                # shown: the page holds nothing taken from the query as it came.
                code = reason if reason in _AUTHORIZATION_ERRORS else "an error"
                return _page(
                    200,
                    "Request ended by the provider",
                    f"The provider ended the request with <code>{code}</code>. "
                    "You can close this tab.",
                )
            # RFC 9207 §2.4: the issuer's `iss`, checked against the one the request expects.
            await client.provide_oauth_authorization(
                request_id=pending.request_id, code=code or "", state=state, iss=params.get("iss")
            )
        finally:
            await client.close()
        rooms.secrets_changed(service.room, pending.target)
    except RoomSecretsError as exc:
        _note(error=exc.code)
        return _page(
            status_for(exc),
            "The request could not be completed",
            f"The request ended with the error <code>{exc.code}</code>.",
        )
    return _page(200, "Approved", "The request is approved. You can close this tab.")


# --- cluster mode: forwarding to the node that holds the request ---------------------

#: Where a node forwards a callback to another (a POST: the code goes in the body).
_CLUSTER_CALLBACK = "/cluster/callback"
#: Answers that may be forwarded: those naming a request id.
_FORWARDED_ANSWERS = frozenset(
    {"provide_oauth_authorization", "reject_oauth_authorization", "provide_secret",
     "reject_secret"}
)


def _holder(
    request: web.Request, rooms: _Rooms, request_id: object, op_name: str
) -> Optional[str]:
    """The other node that holds ``request_id`` (cluster mode; a MAC-verified id), or
    None: not cluster mode, not an answer, already forwarded once, or ours."""
    cluster = rooms.cluster
    if cluster is None or op_name not in _FORWARDED_ANSWERS:
        return None
    if cluster.authentic(request.headers.get(NODE_HEADER)):
        return None  # forwarded to us already: never a second hop
    holder = cluster.node_of(request_id)
    if holder is None or holder == cluster.node_id:
        return None
    return holder


async def _peer_url(rooms: _Rooms, holder: str) -> str:
    """Where node ``holder`` is; UnknownRequest when it has no record (it stopped, and
    its requests ended with it)."""
    assert rooms.cluster is not None
    record = await rooms.cluster.find(holder)
    if record is None:
        raise UnknownRequest(f"no open pending request with this id (node {holder} is gone)")
    return record.url


async def _forward_answer(request: web.Request, rooms: _Rooms, holder: str) -> web.Response:
    """Send the caller's answer to the node that holds its request; relay its reply.

    The caller's own participant token goes along (every node verifies it); the
    node key marks the call as forwarded, so it is never forwarded again."""
    import aiohttp

    assert rooms.cluster is not None
    # The raw path: a room name with an escaped "/" or "?" must reach the same route.
    url = await _peer_url(rooms, holder) + request.rel_url.raw_path
    headers = {
        "Authorization": request.headers.get("Authorization", ""),
        "Content-Type": "application/json",
        NODE_HEADER: rooms.cluster.keys.node,
    }
    try:
        async with rooms.peers.post(
            url, data=await request.read(), headers=headers, allow_redirects=False
        ) as answer:
            body = await answer.read()
            status = answer.status
            kind = answer.headers.get("Content-Type", "application/json")
    except (aiohttp.ClientError, asyncio.TimeoutError):
        raise NodeUnreachable(
            f"node {holder}, which holds the request, cannot be reached; the request stays "
            "open there: answer again later"
        ) from None
    _note(error=None if status < 400 else f"forwarded:{holder}")
    return web.Response(status=status, body=body, headers={"Content-Type": kind})


async def _callback_elsewhere(
    rooms: _Rooms, cluster: ClusterNode, params: Mapping[str, str]
) -> web.Response:
    """A callback for a request this node does not hold: to the node its state names."""
    import aiohttp

    holder = cluster.node_of(params.get("state"))
    if holder is None:
        # A state no node of ours issued (or one whose node id was rewritten): no
        # node is asked anything.
        _note(error="invalid_state")
        return _page(400, "Not an authorization answer",
                     "This answer's state was not issued by this service.")
    if holder == cluster.node_id:
        return await _complete_callback(rooms, params)  # ours, and ended
    try:
        url = await _peer_url(rooms, holder) + _CLUSTER_CALLBACK
    except UnknownRequest:
        _note(error=UnknownRequest.code)
        return _page(404, "Request not found",
                     "This request has already ended, or it never existed.")
    try:
        async with rooms.peers.post(
            url, json=dict(params), headers={NODE_HEADER: cluster.keys.node},
            allow_redirects=False,
        ) as answer:
            page = await answer.text()
            status = answer.status
    except (aiohttp.ClientError, asyncio.TimeoutError):
        _note(error=NodeUnreachable.code)
        return _unreachable_page()
    # The holder's page, with this server's page headers (no-store, CSP, no framing).
    return web.Response(status=status, text=page, content_type="text/html", charset="utf-8",
                        headers=_PAGE_HEADERS)


def _unreachable_page() -> web.Response:
    return _page(
        502,
        "Try again in a moment",
        "The server holding this request cannot be reached right now. If it is only "
        "busy or briefly down, the request stays open there and may still complete: "
        "reload this page in a moment. If it was restarted, the request is gone: the "
        "agent has to ask again.",
    )


async def _forwarded_callback(request: web.Request) -> web.StreamResponse:
    """``POST /cluster/callback`` from another node: complete it here, never forward."""
    rooms = request.app[_ROOMS]
    cluster = rooms.cluster
    if cluster is None or not cluster.authentic(request.headers.get(NODE_HEADER)):
        _note(error="invalid_token")
        return web.json_response({"error": "invalid_token", "message": "not a node"},
                                 status=401)
    try:
        data = json.loads(await request.read())
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(name, ""), str) for name in _CALLBACK_PARAMETERS
    ):
        return _page(400, "Not an authorization answer", "The forwarded answer is malformed.")
    params = {name: data[name] for name in _CALLBACK_PARAMETERS if name in data}
    return await _complete_callback(rooms, params)


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
    each request itself. aiohttp's reports of requests it cannot parse go to
    ``roomsecrets.server.http`` without query strings or bearer tokens. Handlers
    are cancelled when their client disconnects.
    """
    runner = web.AppRunner(
        app,
        access_log=None,
        logger=protocol_log,
        handler_cancellation=True,
        shutdown_timeout=shutdown_timeout,
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
