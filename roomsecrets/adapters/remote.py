"""``RemoteSecretsClient``: the Secrets API of a room on a room server, over HTTP.

The same methods, keywords, return types and typed errors as the in-process
:class:`~roomsecrets.core.client.SecretsClient` (mypy checks both against
:class:`~roomsecrets.core.api.SecretsAPI`), so agent code does not change when
it moves out of process::

    async with RemoteSecretsClient("http://127.0.0.1:8700", token=jwt) as client:
        token = await client.request_oauth_token(client_id=..., ...,
                                                 from_participant_id="alice",
                                                 redirect_uri=...)

Each method is one HTTP call (:mod:`roomsecrets.adapters.server.http_api` lists them);
an error answer is rebuilt into the roomsecrets exception the server raised
(same class, ``code`` and message), and a failure to reach the server is a
:class:`~roomsecrets.core.errors.ConnectError` (never sent) or another
:class:`~roomsecrets.core.errors.TransportError`.

**Connected or not.** Calls need no connection: an agent that only asks for
tokens never opens one. A participant is *connected* (prompts can be addressed
to it, the participant list shows it) while this client holds its WebSocket:
:meth:`RemoteSecretsClient.connect` opens it, and so does the first
:meth:`~RemoteSecretsClient.oauth_prompts`; :meth:`~RemoteSecretsClient.close`
closes it, which ends pending requests to and from the participant, as
``SecretsClient.close()`` does. ``oauth_prompts()`` yields every prompt received
since ``connect()`` that is still open, then new ones as they arrive; it ends
when the WebSocket closes (with InvalidParticipantToken when the server closed it
because the participant token expired). As in process, prompts that ended drop out: the
server sends ``{"type": "oauth_prompt_ended", "request_id"}`` when one is
answered (by us, through ``/oauth/callback`` or another client), rejected,
cancelled or timed out, and a prompt is not yielded after that frame came.
(One that ends while the caller holds it can still be answered in vain:
UnknownRequest.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Optional, Union

import aiohttp

from ..core.api import DeletedSecret, OAuthPrompt, Prompt, SecretInfo, SecretsAPI
from ..core.errors import InvalidInput, ParticipantNotConnected, RoomSecretsError
from ..core.inputs import check_timeout
from ..core.participants import ParticipantInfo
from .aiohttp_transport import translate_aiohttp_error
from .server.http_api import (
    CLOSE_INVALID_TOKEN,
    InvalidParticipantToken,
    ParticipantAlreadyConnected,
    check_server_url,
    decode_data,
    encode_data,
    error_from_body,
    operation,
    prompt_from_json,
    secret_prompt_from_json,
    unverified_claims,
)

__all__ = ["RemoteSecretsClient"]

# How much longer than the request's own timeout a long request may take on the
# wire before we give up on the server.
_LONG_REQUEST_MARGIN = 30.0
#: The largest answer body the client reads; a longer one is refused unread. The
#: server's answers are lists of secret ids and at most a 64 KiB secret in base64:
#: far smaller. Without a limit, a broken or hostile server fills our memory.
MAX_ANSWER_BYTES = 16 * 1024 * 1024
_READ_CHUNK = 64 * 1024


class RemoteSecretsClient:
    """One participant's client of a room server (see the module docstring).

    Args:
        server_url: the server's base URL, e.g. ``http://127.0.0.1:8700``.
        token: the participant token (its ``room`` and ``sub`` claims say which
            room and who; the server verifies it).
        room: when given, must equal the token's room (InvalidInput otherwise).
        timeout: seconds an ordinary call may take (``request_oauth_token``
            waits its own ``timeout`` plus a margin); more than 0, at most a day
            (InvalidInput otherwise).
        allow_insecure_http: send the token over plain ``http`` to a host that is
            not loopback. Off by default: a bearer token must travel over TLS
            (RFC 6750 §5.3), or anyone on the path can act as the participant.
            Without it such a URL raises InsecureEndpointError.
    """

    def __init__(
        self,
        server_url: str,
        *,
        token: str,
        room: Optional[str] = None,
        timeout: float = 120.0,
        allow_insecure_http: bool = False,
    ) -> None:
        check_server_url(server_url, allow_insecure_http=allow_insecure_http)
        claims = unverified_claims(token)
        participant_id, token_room = claims.get("sub"), claims.get("room")
        if not isinstance(participant_id, str) or not isinstance(token_room, str):
            raise InvalidParticipantToken("the participant token has no sub or room claim")
        if room is not None and room != token_room:
            raise InvalidInput(f"the token is for room {token_room!r}, not {room!r}")
        # aiohttp reads 0, a negative number or NaN as "no timeout": a call could hang.
        timeout = check_timeout(timeout)
        self.participant_id: str = participant_id
        self.room: str = token_room
        self._base = server_url.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._session: Optional[aiohttp.ClientSession] = None
        self._ws: Optional[aiohttp.ClientWebSocketResponse] = None
        self._reader: Optional[asyncio.Task[None]] = None
        self._recent: dict[str, Prompt] = {}
        self._listeners: set[asyncio.Queue[Optional[Prompt]]] = set()
        # The server's clock minus ours, from the last prompt frame: expires_at is on
        # the server's clock, and ours may be minutes off.
        self._clock_offset = 0.0
        # How the server closed our last WebSocket (None: open, or closed by us).
        self._server_close_code: Optional[int] = None
        self._closed = False

    @property
    def server_url(self) -> str:
        """The server's base URL, without a trailing ``/``."""
        return self._base

    def __repr__(self) -> str:
        return (
            f"RemoteSecretsClient(server={self._base!r}, room={self.room!r}, "
            f"participant_id={self.participant_id!r})"
        )

    async def __aenter__(self) -> RemoteSecretsClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ParticipantNotConnected("this client is closed")
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {self._token}", "User-Agent": "roomsecrets"},
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    def _url(self, path: str) -> str:
        return self._base + path.replace("{room}", _quote(self.room))

    async def _call(
        self, name: str, body: Optional[dict[str, Any]] = None, *, timeout: Optional[float] = None
    ) -> dict[str, Any]:
        op = operation(name)
        session = self._http()
        what = f"{op.method} {op.path.replace('{room}', self.room)}"
        limit = self._timeout if timeout is None else timeout
        data: Optional[bytes] = None
        if op.method == "POST":
            try:
                data = json.dumps(body if body is not None else {}).encode("utf-8")
            except (TypeError, ValueError):
                # As SecretsClient does for a value of the wrong type; the value itself
                # is not quoted (it may be a secret).
                raise InvalidInput(f"{name}: an argument is not a JSON value") from None
        try:
            async with session.request(
                op.method,
                self._url(op.path),
                data=data,
                headers={"Content-Type": "application/json"} if data is not None else None,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=limit),
            ) as response:
                status = response.status
                raw = await _read_limited(response, what)
        except BaseException as exc:
            error = translate_aiohttp_error(what, exc, limit)
            if error is None:
                raise
            raise error from None
        try:
            answer = json.loads(raw) if raw else {}
        except (ValueError, RecursionError):  # RecursionError: nested deeper than json goes
            answer = None
        if status != 200:
            raise error_from_body(status, answer)
        if not isinstance(answer, dict):
            raise RoomSecretsError(f"{what}: the server's answer is not a JSON object")
        return answer

    # --- OAuth -----------------------------------------------------------------------

    async def request_oauth_token(
        self,
        *,
        client_id: Optional[str] = None,
        from_participant_id: str,
        redirect_uri: Optional[str] = None,
        authorization_endpoint: Optional[str] = None,
        token_endpoint: Optional[str] = None,
        client_secret: Optional[str] = None,
        scopes: Optional[Sequence[str]] = None,
        timeout: float = 300,
        no_pkce: bool = False,
        issuer: Optional[str] = None,
        client_auth_method: Optional[str] = None,
        delegate_to: Optional[str] = None,
        resource: Optional[str] = None,
        rejected_access_token: Optional[str] = None,
    ) -> str:
        """See :meth:`SecretsClient.request_oauth_token
        <roomsecrets.core.client.SecretsClient.request_oauth_token>`.

        ``redirect_uri=None`` (remote only): the server's
        ``PUBLIC_URL/oauth/callback``. The server fetches the issuer's metadata."""
        body: dict[str, Any] = _without_none(
            {
                "client_id": client_id,
                "authorization_endpoint": authorization_endpoint,
                "token_endpoint": token_endpoint,
                "from_participant_id": from_participant_id,
                "redirect_uri": redirect_uri,
                "issuer": issuer,
                "client_auth_method": client_auth_method,
                "delegate_to": delegate_to,
                "resource": resource,
                "rejected_access_token": rejected_access_token,
            }
        )
        body.update(
            client_secret=client_secret, scopes=_scopes(scopes), timeout=timeout, no_pkce=no_pkce
        )
        wait = timeout if isinstance(timeout, (int, float)) and timeout > 0 else 0
        answer = await self._call(
            "request_oauth_token", body, timeout=float(wait) + _LONG_REQUEST_MARGIN
        )
        return _string(answer, "access_token")

    async def get_offline_oauth_token(
        self,
        *,
        client_id: Optional[str] = None,
        authorization_endpoint: Optional[str] = None,
        token_endpoint: Optional[str] = None,
        client_secret: Optional[str] = None,
        scopes: Optional[Sequence[str]] = None,
        timeout: float = 300,
        delegated_by: Optional[str] = None,
        participant_name: Optional[str] = None,
        issuer: Optional[str] = None,
        client_auth_method: Optional[str] = None,
        delegated_to: Optional[str] = None,
        resource: Optional[str] = None,
        rejected_access_token: Optional[str] = None,
    ) -> Optional[str]:
        """See :meth:`SecretsClient.get_offline_oauth_token
        <roomsecrets.core.client.SecretsClient.get_offline_oauth_token>`."""
        body: dict[str, Any] = _without_none(
            {
                "client_id": client_id,
                "authorization_endpoint": authorization_endpoint,
                "token_endpoint": token_endpoint,
                "issuer": issuer,
                "client_auth_method": client_auth_method,
                "delegated_to": delegated_to,
                "resource": resource,
                "rejected_access_token": rejected_access_token,
            }
        )
        body.update(
            client_secret=client_secret,
            scopes=_scopes(scopes),
            timeout=timeout,
            delegated_by=delegated_by,
            participant_name=participant_name,
        )
        answer = await self._call("get_offline_oauth_token", body)
        token = answer.get("access_token")
        if token is not None and not isinstance(token, str):
            raise RoomSecretsError("the server's access_token is not a string")
        return token

    async def provide_oauth_authorization(
        self,
        *,
        request_id: str,
        code: str,
        state: Optional[str] = None,
        iss: Optional[str] = None,
    ) -> None:
        """See :meth:`SecretsClient.provide_oauth_authorization
        <roomsecrets.core.client.SecretsClient.provide_oauth_authorization>`."""
        body: dict[str, Any] = {"request_id": request_id, "code": code, "state": state}
        if iss is not None:
            body["iss"] = iss
        await self._call("provide_oauth_authorization", body)

    async def reject_oauth_authorization(self, *, request_id: str, error: str) -> None:
        """See :meth:`SecretsClient.reject_oauth_authorization
        <roomsecrets.core.client.SecretsClient.reject_oauth_authorization>`."""
        await self._call("reject_oauth_authorization", {"request_id": request_id, "error": error})

    # --- being connected -----------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while this client holds the participant's WebSocket."""
        return self._ws is not None and not self._ws.closed

    async def connect(self) -> None:
        """Open the WebSocket, making the participant connected (a no-op if open).

        Raises ParticipantAlreadyConnected (another WebSocket of this participant
        is open), InvalidParticipantToken, ConnectError.
        """
        if self.connected:
            return
        session = self._http()
        what = f"GET /rooms/{self.room}/ws"
        try:
            # The handshake would otherwise wait for the session's default (300 s).
            ws = await asyncio.wait_for(
                session.ws_connect(
                    self._url(operation("websocket").path),
                    heartbeat=30.0,
                    timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
                ),
                self._timeout,
            )
        except aiohttp.WSServerHandshakeError as refused:
            raise _handshake_error(refused.status) from None
        except BaseException as exc:
            error = translate_aiohttp_error(what, exc, self._timeout)
            if error is None:
                raise
            raise error from None
        self._ws = ws
        self._recent.clear()
        self._server_close_code = None
        self._reader = asyncio.ensure_future(self._read_frames(ws))

    async def _read_frames(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                # A frame we cannot read is skipped; it must not end the stream.
                with contextlib.suppress(ValueError, InvalidInput, RecursionError):
                    frame = json.loads(message.data)
                    if not isinstance(frame, dict):
                        continue
                    kind = frame.get("type")
                    if kind in ("oauth_prompt", "secret_prompt"):
                        prompt: Prompt = (
                            prompt_from_json(frame.get("prompt"))
                            if kind == "oauth_prompt"
                            else secret_prompt_from_json(frame.get("prompt"))
                        )
                        self._learn_server_time(frame.get("server_time"))
                        self._deliver(prompt)
                    elif frame.get("type") == "oauth_prompt_ended":
                        request_id = frame.get("request_id")
                        if isinstance(request_id, str):
                            # Iterators that have it queued skip it: see _is_open.
                            self._recent.pop(request_id, None)
        finally:
            self._server_close_code = ws.close_code
            for listener in self._listeners:
                listener.put_nowait(None)

    def _is_open(self, prompt: Prompt) -> bool:
        """True while ``prompt`` may still be answered, as far as we have heard:
        no ``oauth_prompt_ended`` frame for it, and its deadline has not passed
        (the server's frame for a timeout may not have arrived yet)."""
        return prompt.request_id in self._recent and prompt.expires_at > self._server_now()

    def _server_now(self) -> float:
        return time.time() + self._clock_offset

    def _learn_server_time(self, server_time: object) -> None:
        # A server that predates server_time sends none: our clock, as before.
        if isinstance(server_time, bool) or not isinstance(server_time, (int, float)):
            return
        try:
            offset = float(server_time) - time.time()
        except OverflowError:  # an int beyond any float
            return
        if math.isfinite(offset):
            self._clock_offset = offset

    def _deliver(self, prompt: Prompt) -> None:
        now = self._server_now()
        for request_id, old in list(self._recent.items()):
            if old.expires_at <= now:
                del self._recent[request_id]
        self._recent[prompt.request_id] = prompt
        for listener in self._listeners:
            listener.put_nowait(prompt)

    def oauth_prompts(self) -> AsyncIterator[OAuthPrompt]:
        """Prompts addressed to this participant (connects first if needed).

        Every prompt received since :meth:`connect` that is still open, then
        new ones as they arrive; prompts that ended (answered, rejected,
        cancelled, timed out) drop out. Ends when the WebSocket closes; raises
        InvalidParticipantToken when the server closed it because the token
        expired (close code 4401).
        """
        return _only_oauth(self._prompt_stream())

    def prompts(self) -> AsyncIterator[Prompt]:
        """Every prompt addressed to this participant, OAuth approvals and secrets to
        type in, as :meth:`oauth_prompts` yields the first kind."""
        return self._prompt_stream()

    async def _prompt_stream(self) -> AsyncIterator[Prompt]:
        await self.connect()
        queue: asyncio.Queue[Optional[Prompt]] = asyncio.Queue()
        for prompt in self._recent.values():
            queue.put_nowait(prompt)
        self._listeners.add(queue)
        try:
            while self.connected or not queue.empty():
                received = await queue.get()
                if received is None:
                    if self._server_close_code == CLOSE_INVALID_TOKEN:
                        # The token expired while the socket was open: as for an HTTP
                        # call with it, not as a quiet end the caller cannot tell apart.
                        raise InvalidParticipantToken(
                            "the server closed the WebSocket: the participant token "
                            "has expired or is no longer valid"
                        )
                    return
                # It may have ended while it waited in the queue (SPEC.md: prompts
                # that ended drop out).
                if self._is_open(received):
                    yield received
        finally:
            self._listeners.discard(queue)

    async def list_participants(self) -> list[ParticipantInfo]:
        """The room's connected participants (those with an open WebSocket)."""
        answer = await self._call("list_participants")
        found = answer.get("participants")
        if not isinstance(found, list) or not all(
            _has_strings(p, required=("id",), optional=("name",)) for p in found
        ):
            raise RoomSecretsError("the server's participant list is malformed")
        return [ParticipantInfo(id=p["id"], name=p.get("name")) for p in found]

    async def close(self, *, going_away: bool = False) -> None:
        """Close the WebSocket (the participant leaves) and the HTTP connections.

        ``going_away=True`` closes the socket as a browser tab that goes away does
        (1001, RFC 6455 §7.4.1): the server keeps the participant, and the prompts
        addressed to it, for its disconnect grace period. A normal close (1000)
        ends them at once.
        """
        self._closed = True
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close(
                code=aiohttp.WSCloseCode.GOING_AWAY if going_away else aiohttp.WSCloseCode.OK
            )
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(reader, 5.0)
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # --- our own secrets --------------------------------------------------------------------

    async def list_user_secrets(self) -> list[SecretInfo]:
        """See :meth:`SecretsClient.list_user_secrets
        <roomsecrets.core.client.SecretsClient.list_user_secrets>`."""
        return await self._secret_list("list_user_secrets")

    async def list_delegated_secrets(self) -> list[SecretInfo]:
        """See :meth:`SecretsClient.list_delegated_secrets
        <roomsecrets.core.client.SecretsClient.list_delegated_secrets>`."""
        return await self._secret_list("list_delegated_secrets")

    async def _secret_list(self, operation: str) -> list[SecretInfo]:
        answer = await self._call(operation, {})
        found = answer.get("secrets")
        if not isinstance(found, list) or not all(
            _has_strings(
                s, required=("id", "type"), optional=("name", "delegated_to", "delegated_by")
            )
            for s in found
        ):
            raise RoomSecretsError("the server's secret list is malformed")
        return [
            SecretInfo(
                id=s["id"],
                type=s["type"],
                name=s.get("name"),
                delegated_to=s.get("delegated_to"),
                delegated_by=s.get("delegated_by"),
            )
            for s in found
        ]

    async def delete_user_secret(self, *, id: str, delegated_to: Optional[str] = None) -> None:
        """See :meth:`SecretsClient.delete_user_secret
        <roomsecrets.core.client.SecretsClient.delete_user_secret>`."""
        await self.delete_secret(id=id, delegated_to=delegated_to)

    async def delete_secret(
        self, *, id: str, delegated_to: Optional[str] = None, type: Optional[str] = None
    ) -> DeletedSecret:
        """See :meth:`SecretsClient.delete_secret
        <roomsecrets.core.client.SecretsClient.delete_secret>`."""
        body: dict[str, Any] = {"id": id, "delegated_to": delegated_to}
        if type is not None:
            body["type"] = type
        return _deleted_from(await self._call("delete_user_secret", body), "delete_user_secret")

    async def delete_requested_secret(
        self, *, url: str, type: str, delegated_to: Optional[str] = None
    ) -> DeletedSecret:
        """See :meth:`SecretsClient.delete_requested_secret
        <roomsecrets.core.client.SecretsClient.delete_requested_secret>`."""
        body = {"url": url, "type": type, "delegated_to": delegated_to}
        answer = await self._call("delete_requested_secret", body)
        return _deleted_from(answer, "delete_requested_secret")

    # --- asking a person for a secret ---------------------------------------------------

    async def request_secret(
        self,
        *,
        url: str,
        type: str,
        from_participant_id: str,
        timeout: float = 300,
        delegate_to: Optional[str] = None,
    ) -> bytes:
        """See :meth:`SecretsClient.request_secret
        <roomsecrets.core.client.SecretsClient.request_secret>`."""
        body: dict[str, Any] = {
            "url": url,
            "type": type,
            "from_participant_id": from_participant_id,
            "timeout": timeout,
        }
        if delegate_to is not None:
            body["delegate_to"] = delegate_to
        wait = timeout if isinstance(timeout, (int, float)) and timeout > 0 else 0
        answer = await self._call(
            "request_secret", body, timeout=float(wait) + _LONG_REQUEST_MARGIN
        )
        data = answer.get("data")
        if not isinstance(data, str):
            raise RoomSecretsError("the server's answer to request_secret is malformed")
        return decode_data(data)

    async def provide_secret(self, *, request_id: str, data: bytes) -> None:
        """See :meth:`SecretsClient.provide_secret
        <roomsecrets.core.client.SecretsClient.provide_secret>`."""
        if not isinstance(data, (bytes, bytearray)):
            raise InvalidInput("data must be bytes")
        await self._call(
            "provide_secret", {"request_id": request_id, "data": encode_data(bytes(data))}
        )

    async def reject_secret(self, *, request_id: str, error: str) -> None:
        """See :meth:`SecretsClient.reject_secret
        <roomsecrets.core.client.SecretsClient.reject_secret>`."""
        await self._call("reject_secret", {"request_id": request_id, "error": error})

    async def set_secret(
        self,
        *,
        secret_id: str,
        data: bytes,
        type: str = "application/octet-stream",
        name: Optional[str] = None,
        delegated_to: Optional[str] = None,
    ) -> None:
        """See :meth:`SecretsClient.set_secret
        <roomsecrets.core.client.SecretsClient.set_secret>`."""
        if not isinstance(data, (bytes, bytearray)):
            raise InvalidInput("data must be bytes")  # as SecretsClient says; size: server
        await self._call(
            "set_secret",
            {
                "secret_id": secret_id,
                "data": encode_data(bytes(data)),
                "type": type,
                "name": name,
                "delegated_to": delegated_to,
            },
        )

    async def get_secret(
        self,
        *,
        secret_id: str,
        delegated_to: Optional[str] = None,
        delegated_by: Optional[str] = None,
    ) -> Optional[bytes]:
        """See :meth:`SecretsClient.get_secret
        <roomsecrets.core.client.SecretsClient.get_secret>`."""
        body: dict[str, Any] = {"secret_id": secret_id, "delegated_to": delegated_to}
        if delegated_by is not None:
            body["delegated_by"] = delegated_by
        answer = await self._call("get_secret", body)
        data = answer.get("data")
        return None if data is None else decode_data(data)


async def _read_limited(response: aiohttp.ClientResponse, what: str) -> bytes:
    """The body of ``response``, refused (RoomSecretsError) once over MAX_ANSWER_BYTES."""
    too_large = RoomSecretsError(
        f"{what}: the server's answer is over the {MAX_ANSWER_BYTES}-byte limit"
    )
    declared = response.content_length
    if declared is not None and declared > MAX_ANSWER_BYTES:
        raise too_large
    body = bytearray()
    async for chunk in response.content.iter_chunked(_READ_CHUNK):
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            raise too_large
    return bytes(body)


def _has_strings(entry: object, *, required: Sequence[str], optional: Sequence[str]) -> bool:
    """True if ``entry`` is a JSON object whose ``required`` keys hold strings and
    whose ``optional`` keys, when present, hold strings or null."""
    if not isinstance(entry, dict):
        return False
    return all(isinstance(entry.get(key), str) for key in required) and all(
        entry.get(key) is None or isinstance(entry[key], str) for key in optional
    )


def _quote(segment: str) -> str:
    from urllib.parse import quote

    return quote(segment, safe="")


def _without_none(fields: dict[str, Any]) -> dict[str, Any]:
    # Optional keys are left out rather than sent as null, so a server that
    # predates them (issuer, iss) still accepts calls that do not use them.
    return {key: value for key, value in fields.items() if value is not None}


def _scopes(scopes: Optional[Sequence[str]]) -> Union[list[Any], Any]:
    # JSON has lists only; anything else goes as it is and the server refuses it.
    if isinstance(scopes, (list, tuple)):
        return list(scopes)
    return scopes


def _string(answer: dict[str, Any], key: str) -> str:
    value = answer.get(key)
    if not isinstance(value, str):
        raise RoomSecretsError(f"the server's {key} is not a string")
    return value


def _handshake_error(status: int) -> RoomSecretsError:
    if status == 409:
        return ParticipantAlreadyConnected("this participant already has a WebSocket open")
    return error_from_body(status, None)


if TYPE_CHECKING:
    # mypy proves the remote client offers the whole public API.
    def _conforms(client: RemoteSecretsClient) -> SecretsAPI:
        return client


def _deleted_from(answer: Mapping[str, Any], operation: str) -> DeletedSecret:
    """The ``deleted`` object of a delete's answer; RoomSecretsError if malformed."""
    deleted = answer.get("deleted")
    fields = ("delegated_to", "host", "error")
    if not _has_strings(deleted, required=("id", "type", "revocation"), optional=fields):
        raise RoomSecretsError(f"the server's answer to {operation} is malformed")
    assert isinstance(deleted, dict)
    return DeletedSecret(
        id=deleted["id"],
        delegated_to=deleted.get("delegated_to"),
        type=deleted["type"],
        revocation=deleted["revocation"],
        host=deleted.get("host"),
        error=deleted.get("error"),
    )


async def _only_oauth(prompts: AsyncIterator[Prompt]) -> AsyncIterator[OAuthPrompt]:
    async for prompt in prompts:
        if isinstance(prompt, OAuthPrompt):
            yield prompt
