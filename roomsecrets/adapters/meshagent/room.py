"""The room WebSocket of meshagent-api at ``GET /rooms/{room}`` (aiohttp).

How a connection goes:

1. **Upgrade.** The SDK sends ``Authorization: Bearer <its participant token>``
   (:mod:`.tokens`). A refusal is HTTP 403 before the upgrade, with a JSON body: the
   SDK gives up at once on 403 and 404, and retries on any other status.
2. **Handshake.** The server sends ``room_ready {room_name, room_url, session_id}``
   and ``connected {type: "init", participantId, attributes}``; ``async with
   RoomClient`` returns when both came. Every connection gets its own random
   participant id; the token's ``name`` is who the connection is (whose secrets), so
   several connections may share a name and a reconnect keeps its secrets. The name
   is connected to the room's :class:`~roomsecrets.core.service.SecretsService`
   while it has a connection open here.
3. **Calls.** ``room.invoke_tool {toolkit, tool, participant_id, on_behalf_of_id,
   arguments, tool_call_id}`` runs in its own task on a session with the caller's
   grant (:mod:`.tools`); the answer is ``__response__`` with the call's message id.
   Any other message type a client waits on gets an error reply
   (:data:`MESSAGE_TYPES`); broken framing closes the socket (1007).
4. **Prompts.** Each open prompt addressed to the name is pushed to each of its
   connections as ``secrets.request_oauth_token {request_id, request, challenge}``,
   ``request`` shaped as the agent's own request (never the client secret).
5. **End.** A close, broken framing or the token's ``exp`` ends the connection; its
   calls are cancelled, and the name leaves the room with its last connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Mapping
from typing import Any, Callable, Optional, Protocol, Union

from aiohttp import WSMsgType, web

from ...core.api import SecretPrompt
from ...core.client import SecretsClient
from ...core.errors import InvalidInput, RoomSecretsError, UnknownRequest
from ...core.inputs import check_id
from ...core.service import SecretsService
from .content import ErrorReply, Reply, read_arguments
from .packets import (
    MAX_PACKET_DATA,
    MAX_TYPE_BYTES,
    Message,
    MessageAssembler,
    PacketError,
    encode_message,
    pack_payload,
    unpack_payload,
)
from .tokens import MeshAgentParticipant, read_token
from .tools import TOOLKIT, NotSupported, error_reply, run_tool

__all__ = ["MESSAGE_TYPES", "ROUTE", "RoomHost", "add_meshagent_routes"]

log = logging.getLogger("roomsecrets.server.meshagent")

#: Where the SDK connects (``websocket_room_url``: ``MESHAGENT_API_URL`` + ``/rooms/{room}``).
ROUTE = "/rooms/{room}"
#: Calls one connection may have running at once; more get an error reply.
MAX_CALLS_PER_CONNECTION = 64
# A packet is at most a 16-byte prefix and the type, or a 12-byte prefix and 1024 bytes.
_MAX_FRAME = 16 + max(MAX_TYPE_BYTES, MAX_PACKET_DATA)
# The longest a socket waits for a frame before it looks at its token's expiry again.
_EXPIRY_RECHECK = 3600.0
_CLOSE_INVALID_DATA = 1007
_CLOSE_UNSUPPORTED = 1003
_CLOSE_TOKEN_EXPIRED = 4401


class RoomHost(Protocol):
    """What this part needs of the room server (``create_app``'s rooms)."""

    jwt_key: Union[str, bytes]
    public_url: str
    max_body: int
    sockets: set[web.WebSocketResponse]
    #: Seconds a name whose last connection dropped stays in the room (0: none).
    disconnect_grace: float
    #: True once the server is shutting down: nobody lingers then.
    closing: bool

    def service(self, room: str) -> SecretsService: ...


class _Connection:
    """One SDK connection: its socket, participant id, who it is, its running calls."""

    def __init__(self, ws: web.WebSocketResponse, room: str, who: MeshAgentParticipant) -> None:
        self.ws = ws
        self.room = room
        self.who = who
        self.participant_id = "p-" + secrets.token_hex(12)
        self.calls: set[asyncio.Task[None]] = set()
        #: The client closed with 1000 (it is done), not dropped: no grace period.
        self.closed_normally = False
        self._send_lock = asyncio.Lock()
        self._next_id = 0

    async def send(
        self, type: str, header: Mapping[str, Any], data: bytes = b"",
        message_id: Optional[int] = None,
    ) -> None:
        """Send one message; its packets go out together (the SDK reads one at a time)."""
        if message_id is None:
            self._next_id += 1
            message_id = self._next_id
        packets = encode_message(message_id, type, pack_payload(dict(header), data))
        async with self._send_lock:
            for packet in packets:
                await self.ws.send_bytes(packet)


class _Name:
    """A token name connected to the room's service, and its open connections."""

    def __init__(self, client: SecretsClient, grant: object) -> None:
        self.client = client
        self.grant = grant
        self.connections: dict[str, _Connection] = {}
        #: While the name's last connection dropped less than the grace period ago:
        #: the task that makes it leave when the period ends.
        self.leaving: Optional[asyncio.Future[None]] = None


class _Connections:
    """Every open connection of every room, and the names they connected."""

    def __init__(self) -> None:
        self.by_id: dict[tuple[str, str], _Connection] = {}
        self.names: dict[tuple[str, str], _Name] = {}

    def join(self, service: SecretsService, conn: _Connection) -> None:
        """Count ``conn`` in; its name joins the room with its first connection.

        Raises InvalidInput when the name is connected through the server's own
        WebSocket (``/rooms/{room}/ws``): one door at a time.
        """
        key = (conn.room, conn.who.name)
        entry = self.names.get(key)
        if entry is not None and entry.leaving is not None:
            # Back within the grace period: the same participant, prompts and all,
            # unless the new token carries another grant (then it starts afresh).
            entry.leaving.cancel()
            entry.leaving = None
            if entry.grant != conn.who.grant:
                del self.names[key]
                service.disconnect(conn.who.name)
                entry = None
        if entry is None:
            if service.is_connected(conn.who.name):
                raise InvalidInput(
                    f"participant {conn.who.name!r} is connected through this server's "
                    "own WebSocket; close it first"
                )
            client = service.connect(conn.who.name, name=conn.who.name, grant=conn.who.grant)
            entry = self.names[key] = _Name(client, conn.who.grant)
        entry.connections[conn.participant_id] = conn
        self.by_id[(conn.room, conn.participant_id)] = conn

    async def leave(self, conn: _Connection, *, grace: float) -> None:
        """``conn`` closed. When it was its name's last connection, the name leaves
        the room (its requests end) at once, or after ``grace`` seconds if no new
        connection of the name comes back: the SDK reconnects after a drop."""
        self.by_id.pop((conn.room, conn.participant_id), None)
        key = (conn.room, conn.who.name)
        entry = self.names.get(key)
        if entry is None:
            return
        entry.connections.pop(conn.participant_id, None)
        if entry.connections:
            return
        if grace > 0:
            entry.leaving = asyncio.ensure_future(self._leave_later(key, entry, grace))
            return
        del self.names[key]
        await entry.client.close()

    async def _leave_later(self, key: tuple[str, str], entry: _Name, grace: float) -> None:
        await asyncio.sleep(grace)
        if self.names.get(key) is entry and not entry.connections:
            del self.names[key]
            entry.leaving = None
            await entry.client.close()

    async def close(self) -> None:
        """The server stops: every lingering name leaves now."""
        for key, entry in list(self.names.items()):
            if entry.leaving is not None:
                entry.leaving.cancel()
                del self.names[key]
                await entry.client.close()

    def resolve(self, room: str, reference: str) -> str:
        """The name behind a participant reference: an open connection's id, or a name."""
        found = self.by_id.get((room, reference))
        return found.who.name if found is not None else reference


_HOST = web.AppKey("roomsecrets.meshagent.host", RoomHost)
_CONNECTIONS = web.AppKey("roomsecrets.meshagent.connections", _Connections)


def add_meshagent_routes(
    app: web.Application,
    host: RoomHost,
    *,
    wrap: Optional[
        Callable[[Callable[[web.Request], Awaitable[web.StreamResponse]], str],
                 Callable[[web.Request], Awaitable[web.StreamResponse]]]
    ] = None,
) -> None:
    """Serve meshagent-api's room protocol on ``GET /rooms/{room}`` of ``app``;
    ``wrap(handler, path)``, if given, is what the route serves instead."""
    app[_HOST] = host
    connections = app[_CONNECTIONS] = _Connections()

    async def leave_all(app: web.Application) -> None:
        await connections.close()

    app.on_cleanup.append(leave_all)
    app.router.add_get(
        ROUTE, _room_socket if wrap is None else wrap(_room_socket, ROUTE), name="meshagent_room"
    )


def _refuse(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


async def _room_socket(request: web.Request) -> web.StreamResponse:
    host, connections = request.app[_HOST], request.app[_CONNECTIONS]
    room = request.match_info["room"]
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _refuse(
            403, "invalid_token", "send the participant token as 'Authorization: Bearer'"
        )
    try:
        check_id(room, "room")
        who = read_token(token.strip(), key=host.jwt_key, room=room)
    except InvalidInput as refused:
        return _refuse(403, refused.code, str(refused))
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=_MAX_FRAME)
    if not ws.can_prepare(request).ok:
        return _refuse(400, InvalidInput.code, "this route needs a WebSocket upgrade")
    service = host.service(room)
    conn = _Connection(ws, room, who)
    try:
        connections.join(service, conn)
    except InvalidInput as refused:
        return _refuse(403, refused.code, str(refused))
    host.sockets.add(ws)
    pusher: Optional[asyncio.Future[None]] = None
    try:
        await ws.prepare(request)
        await conn.send("room_ready", {
            "room_name": room,
            "room_url": _websocket_url(host.public_url, room),
            "session_id": secrets.token_hex(16),
        })
        await conn.send("connected", {
            "type": "init",
            "participantId": conn.participant_id,
            "attributes": {"name": who.name, "role": who.role},
        })
        pusher = asyncio.ensure_future(_push_prompts(conn, service))
        await _serve(conn, service, connections, host.max_body)
    except ConnectionError:
        pass  # the client went: nothing more to do than the cleanup
    finally:
        host.sockets.discard(ws)
        for task in [*conn.calls, *([pusher] if pusher is not None else [])]:
            task.cancel()
        for task in [*conn.calls, *([pusher] if pusher is not None else [])]:
            with contextlib.suppress(BaseException):
                await task
        dropped = not conn.closed_normally and not host.closing
        await connections.leave(conn, grace=host.disconnect_grace if dropped else 0)
        await ws.close()
    return ws


def _websocket_url(public_url: str, room: str) -> str:
    if public_url.startswith("https:"):
        return "wss:" + public_url[len("https:") :] + "/rooms/" + room
    return "ws:" + public_url[len("http:") :] + "/rooms/" + room


async def _serve(
    conn: _Connection, service: SecretsService, connections: _Connections, max_body: int
) -> None:
    """Read packets until the socket ends; start each whole message's work."""
    ws, assembler = conn.ws, MessageAssembler(max_message_bytes=max_body)
    while True:
        wait = _EXPIRY_RECHECK
        if conn.who.expires_at is not None:
            left = conn.who.expires_at - time.time()
            if left <= 0:
                await ws.close(code=_CLOSE_TOKEN_EXPIRED, message=b"invalid_token")
                return
            wait = min(left, wait)
        try:
            # Not receive(timeout=): that starts again after each ping or pong.
            frame = await asyncio.wait_for(ws.receive(), wait)
        except asyncio.TimeoutError:
            continue
        if frame.type == WSMsgType.BINARY:
            try:
                message = assembler.feed(frame.data)
            except PacketError as broken:
                log.info("closing a meshagent connection: %s", broken)
                await ws.close(code=_CLOSE_INVALID_DATA, message=b"invalid_packet")
                return
            if message is not None:
                await _dispatch(conn, service, connections, message)
        elif frame.type == WSMsgType.TEXT:
            await ws.close(code=_CLOSE_UNSUPPORTED, message=b"binary frames only")
            return
        else:  # CLOSE, CLOSING, CLOSED, ERROR
            # 1000: the client is done (``async with RoomClient`` ended); anything
            # else, or no close frame at all, is a drop it may come back from.
            conn.closed_normally = frame.type == WSMsgType.CLOSE and frame.data == 1000
            return


MessageHandler = Callable[[_Connection, SecretsService, _Connections, Message], Awaitable[Reply]]


async def _invoke_tool(
    conn: _Connection, service: SecretsService, connections: _Connections, message: Message
) -> Reply:
    request, trailer = unpack_payload(message.data)
    toolkit, tool = request.get("toolkit"), request.get("tool")
    if toolkit != TOOLKIT:
        shown = toolkit[:60] if isinstance(toolkit, str) else toolkit
        raise NotSupported(f"this server hosts only the {TOOLKIT!r} toolkit, not {shown!r}")
    if not isinstance(tool, str):
        raise InvalidInput("room.invoke_tool needs a tool name")
    if request.get("on_behalf_of_id") is not None:
        raise NotSupported("on_behalf_of_id is not supported by this server")
    arguments = read_arguments(request.get("arguments"), trailer)
    name = conn.who.name
    session = service.session(name, name=name, grant=conn.who.grant)
    try:
        return await run_tool(
            tool, session, name, arguments, lambda ref: connections.resolve(conn.room, ref)
        )
    finally:
        await session.close()


#: Message types a client sends -> their handler; None: a one-way message, ignored
#: (``set_attributes``). Every other type gets an error ``__response__``.
MESSAGE_TYPES: Mapping[str, Optional[MessageHandler]] = {
    "room.invoke_tool": _invoke_tool,
    "set_attributes": None,
}


async def _dispatch(
    conn: _Connection, service: SecretsService, connections: _Connections, message: Message
) -> None:
    if message.type in MESSAGE_TYPES and MESSAGE_TYPES[message.type] is None:
        return
    if len(conn.calls) >= MAX_CALLS_PER_CONNECTION:
        reply: Reply = ErrorReply(
            text=f"too_many_calls: at most {MAX_CALLS_PER_CONNECTION} calls at once",
            code=1002,
        )
        await _answer(conn, message, reply)
        return
    task = asyncio.ensure_future(_call(conn, service, connections, message))
    conn.calls.add(task)
    task.add_done_callback(conn.calls.discard)


async def _call(
    conn: _Connection, service: SecretsService, connections: _Connections, message: Message
) -> None:
    handler = MESSAGE_TYPES.get(message.type)
    try:
        if handler is None:
            raise NotSupported(
                f"this server answers only room.invoke_tool for the {TOOLKIT!r} toolkit"
            )
        reply = await handler(conn, service, connections, message)
    except RoomSecretsError as exc:
        reply = error_reply(exc)
    except Exception as exc:  # a bug: say nothing of it, log only its kind
        log.error("internal error in a meshagent call: %s", type(exc).__name__)
        reply = ErrorReply(text="internal_error: internal server error", code=1008)
    with contextlib.suppress(ConnectionError, RuntimeError):
        await _answer(conn, message, reply)


async def _answer(conn: _Connection, message: Message, reply: Reply) -> None:
    header, data = reply.content()
    await conn.send("__response__", header, data, message_id=message.message_id)


async def _push_prompts(conn: _Connection, service: SecretsService) -> None:
    """Push each open prompt addressed to the connection's name, as the SDK's
    ``secrets.request_oauth_token`` (``_ClientRequestOAuthTokenRequest``), or a
    secret prompt as ``secrets.request_secret`` (``_ClientRequestSecretRequest``)."""
    async for prompt in service.prompts(conn.who.name):
        if isinstance(prompt, SecretPrompt):
            # The SDK's _ClientRequestSecretRequest: {request_id, request: SecretRequestInfo}.
            await conn.send("secrets.request_secret", {
                "request_id": prompt.request_id,
                "request": {
                    "url": prompt.url,
                    "type": prompt.type,
                    "participant_id": conn.participant_id,
                    "timeout": max(0, int(prompt.expires_at - service.clock())),
                    "delegate_to": prompt.delegate_to,
                },
            })
            continue
        try:
            pending = service.registry.get(prompt.request_id)
        except UnknownRequest:
            continue  # it ended while we looked
        await conn.send("secrets.request_oauth_token", {
            "request_id": prompt.request_id,
            "request": {
                "connector": None,
                "oauth": {
                    "client_id": pending.client_id,
                    "authorization_endpoint": pending.authorization_endpoint,
                    "token_endpoint": pending.token_endpoint,
                    "no_pkce": prompt.code_challenge is None,
                    "scopes": list(pending.scopes),
                },
                "redirect_uri": prompt.redirect_uri,
                "participant_id": conn.participant_id,
                "timeout": max(0, int(prompt.expires_at - service.clock())),
                # The SDK's field is what the requester named: none when it is itself.
                "delegate_to": (
                    None if prompt.delegate_to == prompt.from_participant_id
                    else prompt.delegate_to
                ),
            },
            "challenge": prompt.code_challenge,
        })
