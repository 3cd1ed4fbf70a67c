"""``RoomSecretsAuth``: an agent's MCP session, authorized as a person of the room.

The official MCP Python SDK (``mcp``) talks HTTP through an ``httpx2.AsyncClient``;
this module gives that client an ``httpx2.Auth`` that puts a person's access token
on every request to one MCP server. The token comes from the room (the in-process
:class:`~roomsecrets.core.client.SecretsClient` or a
:class:`~roomsecrets.adapters.remote.RemoteSecretsClient`), which brokers the whole
OAuth flow for the server's URL: it reads the server's metadata (RFC 9728), registers
its own client at the authorization server (RFC 7591), asks the person, keeps the
credential and refreshes it. The agent never sees a client id, a secret or a refresh
token; it names the MCP server and the person::

    import httpx2
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    from roomsecrets.adapters.mcp import RoomSecretsAuth
    from roomsecrets.adapters.remote import RemoteSecretsClient

    async with RemoteSecretsClient(room_server_url, token=agent_jwt) as secrets:
        auth = RoomSecretsAuth(secrets, resource=mcp_url, person="alice")
        # The SDK's own timeouts: a server may hold an event stream open for minutes.
        timeout = httpx2.Timeout(30, read=300)
        async with httpx2.AsyncClient(auth=auth, timeout=timeout) as http, \\
                streamable_http_client(mcp_url, http_client=http) as (read, write), \\
                ClientSession(read, write) as session:
            await session.initialize()
            result = await session.call_tool("whoami", {})

What each request does:

1. It carries the token held by this object; the first one gets it from the room
   without asking anyone (``get_offline_oauth_token``: the stored credential,
   refreshed if it expired), and only when the room has none asks the person
   (``request_oauth_token``: a prompt; the request waits for the answer). Concurrent
   requests share one lookup and one prompt.
2. When the MCP server answers 401, the token was refused (expired early, revoked;
   RFC 6750 §3.1 ``invalid_token``). The room is told which token was refused and
   refreshes the credential now if it still holds that token (single-flight: many
   requests reporting one token cause one refresh); the request is sent once more
   with the new token.
3. When the room cannot refresh (no refresh token, the grant was revoked, the person
   deleted the credential) or the new token is refused too, the person is asked again,
   and the request is sent one last time. A request is sent at most three times; what
   the server answers the last time is what the caller gets. The room is told which
   token was refused last (``rejected_access_token``), so it asks the person rather
   than hand that token back; a room that hands it back anyway gets no third try:
   the 401 stands.

The token goes only to the MCP server's origin (scheme, host and port of
``resource``): a request elsewhere through the same client is sent as it is, without
it. It never appears in this object's ``repr``, a log line or an exception message.
Async only (``httpx2.AsyncClient``): the room's client is async, and a synchronous
client raises at its first request. Installed with ``pip install 'roomsecrets[mcp]'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Generator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Optional, Protocol

try:
    import httpx2
except ImportError as missing:  # pragma: no cover - the mcp extra installs it
    raise ImportError(
        "roomsecrets.adapters.mcp needs httpx2, the MCP SDK's HTTP client: "
        "pip install 'roomsecrets[mcp]'"
    ) from missing

__all__ = ["RoomSecretsAuth", "TokenBroker"]

_log = logging.getLogger(__name__)


class TokenBroker(Protocol):
    """The two calls of the room's client this auth makes: both
    :class:`~roomsecrets.core.client.SecretsClient` and
    :class:`~roomsecrets.adapters.remote.RemoteSecretsClient` have them.

    ``redirect_uri`` is required by the in-process client; the remote one defaults
    it to the room server's ``/oauth/callback``, and :class:`RoomSecretsAuth` passes
    it only when it was given one.
    """

    async def request_oauth_token(
        self,
        *,
        from_participant_id: str,
        redirect_uri: str,
        scopes: Optional[Sequence[str]] = ...,
        timeout: float = ...,
        resource: Optional[str] = ...,
        rejected_access_token: Optional[str] = ...,
    ) -> str: ...

    async def get_offline_oauth_token(
        self,
        *,
        scopes: Optional[Sequence[str]] = ...,
        delegated_by: Optional[str] = ...,
        resource: Optional[str] = ...,
        rejected_access_token: Optional[str] = ...,
    ) -> Optional[str]: ...


def _waiting_on_a_person() -> AbstractContextManager[None]:
    """Stop the MCP request's own timeout while the person is asked.

    A prompt can take minutes; the SDK's ``ClientSession`` may time a request
    (``read_timeout_seconds``), and its own OAuth provider pauses that clock around
    its prompt with this helper. It is not public API of the SDK, so without it
    (another version, or no ``mcp`` installed) the clock just runs.
    """
    try:
        from mcp.shared._request_clock import waiting_on_a_person
    except ImportError:
        return contextlib.nullcontext()
    return waiting_on_a_person()


def _origin(url: httpx2.URL) -> tuple[str, str, Optional[int]]:
    # httpx2 lower-cases the scheme and host and drops a scheme's default port,
    # so equal origins compare equal as tuples.
    return (url.scheme, url.host, url.port)


class RoomSecretsAuth(httpx2.Auth):
    """``httpx2.Auth`` carrying ``person``'s access token for the MCP server ``resource``.

    Args:
        secrets: the agent's client of the room (see :class:`TokenBroker`); its grant
            must allow OAuth requests to ``person`` for ``resource``.
        resource: the MCP server's URL, as the MCP client is given it (the protected
            resource of RFC 9728 and RFC 8707).
        person: the participant id of the person whose account the token is for.
        scopes: the scopes to ask for; None leaves it to the room (the MCP server's
            ``scopes_supported``).
        timeout: seconds a prompt waits for the person.
        redirect_uri: the redirect URI of the authorization; None: the remote client's
            default (the room server's callback). The in-process client needs one.
    """

    def __init__(
        self,
        secrets: TokenBroker,
        *,
        resource: str,
        person: str,
        scopes: Optional[Sequence[str]] = None,
        timeout: float = 300,
        redirect_uri: Optional[str] = None,
    ) -> None:
        if isinstance(scopes, str):
            # A string is a sequence of one-letter scopes: surely a mistake.
            raise TypeError("scopes must be a sequence of strings, not a string")
        self._secrets = secrets
        self._resource = resource
        self._resource_origin = _origin(httpx2.URL(resource))
        self._person = person
        self._scopes = None if scopes is None else list(scopes)
        self._timeout = timeout
        self._redirect_uri = redirect_uri
        #: The token requests carry now; None until the first request gets one.
        self._token: Optional[str] = None
        #: The last refused token the room could not refresh: requests refused with
        #: it together go straight to the person rather than each asking the room.
        self._unrefreshable: Optional[str] = None
        # One lookup, refresh or prompt at a time: concurrent requests that need a
        # token wait for the one under way and take its result.
        self._lock = asyncio.Lock()

    @property
    def resource(self) -> str:
        return self._resource

    @property
    def person(self) -> str:
        return self._person

    def __repr__(self) -> str:
        # Never the token.
        return f"RoomSecretsAuth(resource={self._resource!r}, person={self._person!r})"

    # --- httpx2.Auth -----------------------------------------------------------------

    def auth_flow(
        self, request: httpx2.Request
    ) -> Generator[httpx2.Request, httpx2.Response, None]:
        raise self._async_only()

    def sync_auth_flow(
        self, request: httpx2.Request
    ) -> Generator[httpx2.Request, httpx2.Response, None]:
        raise self._async_only()

    @staticmethod
    def _async_only() -> RuntimeError:
        return RuntimeError(
            "RoomSecretsAuth is async-only: the room's client is async. "
            "Use it with httpx2.AsyncClient (as the MCP SDK does), not httpx2.Client."
        )

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        if _origin(request.url) != self._resource_origin:
            # The token is for this MCP server only (RFC 8707 audience): a request
            # the same client sends elsewhere goes without it.
            yield request
            return

        # The request may have to go again after a 401: a streamed body is read into
        # memory now so it can (the SDK's JSON bodies already are).
        await request.aread()
        token = await self._current_token()
        response = yield self._authorized(request, token)
        if response.status_code != 401:
            return
        # RFC 6750 §3.1: 401 (invalid_token) means this token is no good here any
        # more: expired early, revoked, or issued for something else. Its
        # WWW-Authenticate may name the server's metadata (RFC 9728 §5.1), which the
        # room already found from ``resource``; only the status matters here.
        refused = [token]
        fresh = await self._refreshed(token)
        if fresh is not None and fresh not in refused:
            response = yield self._authorized(request, fresh)
            if response.status_code != 401:
                return
            refused.append(fresh)
        # The room could not refresh it, or the refreshed token is refused too:
        # only the person can help now. Once; then the 401 is the answer.
        fresh = await self._asked_again(refused)
        if fresh is None:
            return
        yield self._authorized(request, fresh)

    # --- the token ---------------------------------------------------------------------

    @staticmethod
    def _authorized(request: httpx2.Request, token: str) -> httpx2.Request:
        request.headers["Authorization"] = f"Bearer {token}"  # RFC 6750 §2.1
        return request

    async def _current_token(self) -> str:
        """The token to use: the one held, else the room's stored one, else a prompt."""
        token = self._token
        if token is not None:
            return token
        async with self._lock:
            if self._token is None:  # not fetched by a request we waited for
                token = await self._secrets.get_offline_oauth_token(
                    resource=self._resource, delegated_by=self._person, scopes=self._scopes
                )
                self._token = token if token is not None else await self._ask()
            return self._token

    async def _refreshed(self, rejected: str) -> Optional[str]:
        """A replacement for ``rejected`` without a prompt (the room refreshes), or None."""
        async with self._lock:
            if self._token is not None and self._token != rejected:
                return self._token  # another request replaced it while we waited
            if rejected == self._unrefreshable:
                return None  # another request found it cannot be refreshed
            _log.debug("the MCP server %s refused the token (401): refreshing", self._resource)
            fresh = await self._secrets.get_offline_oauth_token(
                resource=self._resource,
                delegated_by=self._person,
                scopes=self._scopes,
                rejected_access_token=rejected,
            )
            if fresh is None or fresh == rejected:
                self._unrefreshable = rejected
                return None
            self._token = fresh
            return fresh

    async def _asked_again(self, refused: list[str]) -> Optional[str]:
        """A new token from the person, or None if what the room gives was refused already."""
        async with self._lock:
            if self._token is not None and self._token not in refused:
                return self._token  # another request asked the person while we waited
            _log.info(
                "the MCP server %s refused the token and it could not be refreshed: "
                "asking %s again", self._resource, self._person,
            )
            # The token refused last is not handed back: the person is asked.
            fresh = await self._ask(rejected=refused[-1])
            self._token = fresh
        if fresh in refused:
            # The room handed back a token the server refused (it still counts as
            # valid there): asking again cannot help, so the 401 stands.
            _log.warning(
                "the MCP server %s refused the token the room holds for %s; giving up",
                self._resource, self._person,
            )
            return None
        return fresh

    async def _ask(self, rejected: Optional[str] = None) -> str:
        """Ask the person (the room prompts them); waits for their answer. ``rejected``:
        a token the server refused, which the room must not hand back instead."""
        extra: dict[str, Any] = {}
        if self._redirect_uri is not None:
            extra["redirect_uri"] = self._redirect_uri
        if rejected is not None:
            extra["rejected_access_token"] = rejected
        with _waiting_on_a_person():
            return await self._secrets.request_oauth_token(
                resource=self._resource,
                from_participant_id=self._person,
                scopes=self._scopes,
                timeout=self._timeout,
                **extra,
            )
