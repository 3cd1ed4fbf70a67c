"""``McpServer``: a real MCP server built with the official ``mcp`` Python SDK (2.x,
``mcp.server.mcpserver.MCPServer``; 1.x called it ``FastMCP``) on 127.0.0.1, with the
SDK's own OAuth routes, for testing MCP clients against code we did not write.

What the SDK serves (mcp 2.3.0, ``mcp/server/auth/routes.py`` and
``mcp/server/lowlevel/server.py``), the issuer being the server's origin
``http://127.0.0.1:PORT`` (no path, no trailing slash):

- ``POST /mcp``, ``GET /mcp``, ``DELETE /mcp``: streamable HTTP, behind
  ``RequireAuthMiddleware``. Without a valid bearer token: 401 with
  ``WWW-Authenticate: Bearer error="invalid_token", error_description="Authentication
  required", resource_metadata="http://127.0.0.1:PORT/.well-known/oauth-protected-resource/mcp"``
  (the ``resource_metadata`` part only while ``resource_metadata=True``). A token without a
  required scope: 403 ``insufficient_scope``. An expired token counts as none (401).
- ``GET /.well-known/oauth-protected-resource/mcp`` (RFC 9728 §3.1, path-inserted): the
  protected-resource document, ``resource`` = :attr:`McpServer.url`,
  ``authorization_servers`` = ``[issuer]``. The host-root
  ``/.well-known/oauth-protected-resource`` is *not* served (404). The SDK's own document
  has no ``resource_name`` and takes ``scopes_supported`` from ``required_scopes``; this
  fixture swaps in one built by the SDK's ``create_protected_resource_routes`` with
  ``resource_name`` and ``scopes_supported=scopes``.
- ``GET /.well-known/oauth-authorization-server`` (RFC 8414 at the root: the issuer has
  no path): ``authorization_endpoint``, ``token_endpoint``, ``registration_endpoint``
  (while ``registration=True``), ``revocation_endpoint``, ``scopes_supported``,
  ``code_challenge_methods_supported: ["S256"]``, ``grant_types_supported:
  ["authorization_code", "refresh_token"]``, ``token_endpoint_auth_methods_supported:
  ["client_secret_post", "client_secret_basic"]`` (``none`` is not advertised, yet a client
  registered with ``none`` is accepted). No OpenID Connect discovery document.
- ``POST /register`` (RFC 7591): the SDK's handler. A request without
  ``token_endpoint_auth_method`` is registered as ``client_secret_post`` with a 64-hex-char
  ``client_secret`` and ``client_secret_expires_at: 0``; ``none`` gets no secret;
  ``private_key_jwt`` is refused (400 ``invalid_client_metadata``). Without ``scope`` the
  client gets ``scopes`` (``default_scopes``); a scope outside ``scopes`` is refused.
  ``grant_types`` defaults to ``["authorization_code", "refresh_token"]``. Answer: 201.
- ``GET``/``POST /authorize``: the SDK validates the client, the exact redirect URI
  (optional when the client registered exactly one), ``response_type=code``, the scope
  against the client's registered ``scope``, and a PKCE ``code_challenge`` (required; only
  ``S256``), then calls the provider here, which approves at once as :attr:`McpServer.user`
  (302 to the redirect URI with ``code`` and ``state``; no ``iss``).
- ``POST /token``: ``authorization_code`` and ``refresh_token``. Client authentication is
  exactly the registered method (``client_secret_basic`` requires the Basic header;
  ``client_secret_post`` reads only the form's ``client_secret``), and *the form must
  carry ``client_id`` in every case*, Basic included ("Missing client_id", 401
  ``invalid_client`` otherwise). The SDK checks PKCE against the stored challenge and the
  redirect URI; this provider checks ``resource`` (RFC 8707): when the authorization
  request named one, the token request must name the same one (``invalid_target``), and
  any resource named must be :attr:`McpServer.url`.
- ``POST /revoke`` (RFC 7009): client authentication as for ``/token``; revoking either
  token of a pair revokes both; 200 for unknown tokens. The SDK requires a ``client_secret``
  form field even from a ``client_secret_basic`` client (400 ``invalid_request``
  "client_secret: Field required" without one; ``lenient_basic_revocation=True`` works
  around it).

Recording: an ASGI middleware in front of the SDK's app records the raw requests to
``/register``, ``/authorize``, ``/token`` and ``/revoke`` (and re-feeds the body to the
app), each as a dict, in :attr:`McpServer.registrations`, :attr:`~McpServer.authorizations`,
:attr:`~McpServer.token_requests` and :attr:`~McpServer.revocations`::

    {"method": "POST", "path": "/token",
     "params": {...},        # query (GET) or form/JSON body, as sent; a repeated key -> list
     "headers": {...},       # lower-cased names
     "client_auth": "client_secret_basic" | "client_secret_post" | "none",
     "basic_client_id": str | None,   # from an Authorization: Basic header
     "status": 200, "response": {...} | None, "location": str | None}

plus, for a registration, ``client_id``, ``client_secret`` and
``token_endpoint_auth_method`` from the answer. :attr:`McpServer.provider_calls` lists what
the SDK handed the provider (``{"call": "authorize", ...}``).

Every secret value the server issues or receives (client secrets, codes, states, code
verifiers, access and refresh tokens) goes to ``on_secret`` (by default the session's leak
watch, like ``FakeProvider``). Uvicorn's access log is off: it would log ``state``.

Example::

    with McpServer(user="alice") as server:
        ...  # discover from server.url, register, authorize, token, call "whoami"
        server.expire_all()  # the client must refresh now
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import json
import logging
import secrets
import socket
import threading
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, Optional, Union

import uvicorn
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    AuthorizeError,
    RefreshToken,
    TokenError,
    construct_redirect_uri,
)
from mcp.server.auth.routes import build_resource_metadata_url, create_protected_resource_routes
from mcp.server.auth.settings import AuthSettings, ClientRegistrationOptions, RevocationOptions
from mcp.server.mcpserver import MCPServer
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from pydantic import AnyHttpUrl, AnyUrl

from tests.support import leak_watch

__all__ = ["McpServer"]

#: The parsed form of the /token (or /revoke) request being handled, for the provider:
#: the SDK hands it the stored code, not the request's ``resource``.
_current_params: contextvars.ContextVar[Optional[dict[str, Any]]] = contextvars.ContextVar(
    "mcp_server_current_params", default=None
)

_RECORDED_PATHS = {
    "/register": "registrations",
    "/authorize": "authorizations",
    "/token": "token_requests",
    "/revoke": "revocations",
}

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CODE_LIFETIME = 300


def _params(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Query or form pairs as a dict; a key sent more than once maps to the list of values."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            previous = out[key]
            out[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            out[key] = value
    return out


def _same_resource(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


class _Provider:
    """The in-memory ``OAuthAuthorizationServerProvider`` the SDK asks for.

    Opaque random tokens; each maps to its user (``subject``), client, scopes and
    resource. All state sits behind ``lock`` (the tests read it from their own thread).
    """

    def __init__(self, owner: McpServer) -> None:
        self.owner = owner
        self.lock = threading.Lock()
        self.clients: dict[str, OAuthClientInformationFull] = {}
        self.codes: dict[str, AuthorizationCode] = {}
        self.access: dict[str, AccessToken] = {}
        self.refresh: dict[str, RefreshToken] = {}
        #: access token -> the refresh token issued with it, and back
        self.pair: dict[str, str] = {}
        self.revoked: set[str] = set()

    def _secret(self, value: Optional[str]) -> None:
        if value and self.owner.on_secret is not None:
            self.owner.on_secret(value)

    def _log(self, call: str, **details: Any) -> None:
        self.owner.provider_calls.append({"call": call, **details})

    # -- clients -------------------------------------------------------------------

    async def get_client(self, client_id: str) -> Optional[OAuthClientInformationFull]:
        with self.lock:
            return self.clients.get(client_id)

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        self._secret(client_info.client_secret)
        self._log("register_client", client=client_info.model_dump(mode="json"))
        with self.lock:
            self.clients[client_info.client_id] = client_info

    # -- authorization code ------------------------------------------------------------

    async def authorize(
        self, client: OAuthClientInformationFull, params: AuthorizationParams
    ) -> str:
        self._secret(params.state)
        self._log("authorize", client_id=client.client_id, **params.model_dump(mode="json"))
        if params.resource is not None and not _same_resource(params.resource, self.owner.url):
            raise AuthorizeError("invalid_target", f"unknown resource {params.resource!r}")
        if not self.owner.approve:
            raise AuthorizeError("access_denied", "the person denied the request")
        if params.scopes is not None:
            scopes = list(params.scopes)
        elif client.scope:
            scopes = client.scope.split()
        else:
            scopes = list(self.owner.scopes)
        code = secrets.token_urlsafe(32)
        self._secret(code)
        with self.lock:
            self.codes[code] = AuthorizationCode(
                code=code,
                scopes=scopes,
                expires_at=time.time() + CODE_LIFETIME,
                client_id=client.client_id,
                code_challenge=params.code_challenge,
                redirect_uri=params.redirect_uri,
                redirect_uri_provided_explicitly=params.redirect_uri_provided_explicitly,
                resource=params.resource,
                subject=self.owner.user,
            )
        return construct_redirect_uri(str(params.redirect_uri), code=code, state=params.state)

    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> Optional[AuthorizationCode]:
        self._secret(authorization_code)
        with self.lock:
            code = self.codes.get(authorization_code)
        if code is None or code.client_id != client.client_id:
            return None
        return code

    def _requested_resource(self) -> Optional[str]:
        """The ``resource`` of the token request being handled; several: TokenError."""
        params = _current_params.get() or {}
        for name in ("code_verifier", "refresh_token", "client_secret"):
            value = params.get(name)
            if isinstance(value, str):
                self._secret(value)
        resource = params.get("resource")
        if isinstance(resource, list):
            raise TokenError("invalid_target", "one resource per request, please")
        if resource is not None and not _same_resource(resource, self.owner.url):
            raise TokenError("invalid_target", f"unknown resource {resource!r}")
        return resource

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: AuthorizationCode
    ) -> OAuthToken:
        requested = self._requested_resource()
        self._log(
            "exchange_authorization_code",
            client_id=client.client_id,
            code=authorization_code.model_dump(mode="json"),
            requested_resource=requested,
        )
        bound = authorization_code.resource
        if bound is not None:
            if requested is None:
                raise TokenError(
                    "invalid_target", "the authorization request named a resource; name it here too"
                )
            if not _same_resource(requested, bound):
                raise TokenError("invalid_target", "not the resource of the authorization request")
        with self.lock:
            if self.codes.pop(authorization_code.code, None) is None:
                raise TokenError("invalid_grant", "authorization code already used")
        return self._issue(
            client.client_id,
            authorization_code.scopes,
            bound if bound is not None else requested,
            authorization_code.subject,
        )

    # -- refresh -------------------------------------------------------------------------

    async def load_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: str
    ) -> Optional[RefreshToken]:
        self._secret(refresh_token)
        with self.lock:
            token = self.refresh.get(refresh_token)
            if token is None or refresh_token in self.revoked:
                return None
        if token.client_id != client.client_id:
            return None
        return token

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: RefreshToken, scopes: list[str]
    ) -> OAuthToken:
        requested = self._requested_resource()
        self._log(
            "exchange_refresh_token",
            client_id=client.client_id,
            refresh_token=refresh_token.model_dump(mode="json"),
            scopes=scopes,
            requested_resource=requested,
        )
        if (
            requested is not None
            and refresh_token.resource is not None
            and not _same_resource(requested, refresh_token.resource)
        ):
            raise TokenError("invalid_target", "not the resource the grant was made for")
        rotate = self.owner.rotate_refresh_tokens
        with self.lock:
            if refresh_token.token not in self.refresh or refresh_token.token in self.revoked:
                raise TokenError("invalid_grant", "refresh token already used")
            if rotate:
                del self.refresh[refresh_token.token]
        return self._issue(
            client.client_id,
            scopes,
            refresh_token.resource,
            refresh_token.subject,
            keep_refresh=None if rotate else refresh_token.token,
        )

    def _issue(
        self,
        client_id: str,
        scopes: list[str],
        resource: Optional[str],
        subject: Optional[str],
        keep_refresh: Optional[str] = None,
    ) -> OAuthToken:
        lifetime = self.owner.access_token_lifetime
        access = secrets.token_urlsafe(32)
        refresh = keep_refresh or secrets.token_urlsafe(32)
        self._secret(access)
        self._secret(refresh)
        with self.lock:
            self.access[access] = AccessToken(
                token=access,
                client_id=client_id,
                scopes=scopes,
                expires_at=int(time.time()) + lifetime,
                resource=resource,
                subject=subject,
            )
            if keep_refresh is None:
                self.refresh[refresh] = RefreshToken(
                    token=refresh,
                    client_id=client_id,
                    scopes=scopes,
                    resource=resource,
                    subject=subject,
                )
            self.pair[access] = refresh
        return OAuthToken(
            access_token=access,
            expires_in=lifetime,
            scope=" ".join(scopes),
            # not rotating: the answer leaves refresh_token out, as RFC 6749 §6 allows
            refresh_token=None if keep_refresh else refresh,
        )

    # -- access tokens and revocation ------------------------------------------------------

    async def load_access_token(self, token: str) -> Optional[AccessToken]:
        # Expired tokens are returned: the SDK's bearer backend checks ``expires_at``
        # itself, and revoking an expired token should still find it.
        with self.lock:
            if token in self.revoked:
                return None
            return self.access.get(token)

    async def revoke_token(self, token: Union[AccessToken, RefreshToken]) -> None:
        self._log("revoke_token", kind=type(token).__name__, client_id=token.client_id)
        with self.lock:
            self.revoked.add(token.token)
            if isinstance(token, AccessToken):
                partner = self.pair.get(token.token)
                if partner is not None:
                    self.revoked.add(partner)
            else:
                for access, refresh in self.pair.items():
                    if refresh == token.token:
                        self.revoked.add(access)

    async def exchange_identity_assertion(self, client: Any, params: Any) -> OAuthToken:
        raise TokenError("unsupported_grant_type", "not supported here")


class _Recorder:
    """ASGI middleware: records the raw requests to the OAuth endpoints and what was answered."""

    def __init__(self, app: Callable[..., Awaitable[None]], owner: McpServer) -> None:
        self.app = app
        self.owner = owner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope.get("type") == "http":
            # Every request, by method and path: "nothing was fetched" is checkable.
            self.owner.requests.append(f"{scope.get('method')} {path}")
        if scope.get("type") != "http" or path not in _RECORDED_PATHS:
            await self.app(scope, receive, send)
            return

        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # a disconnect before the body ended
                await self.app(scope, receive, send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        params: Any
        if method == "GET":
            query = scope.get("query_string", b"").decode("latin-1")
            params = _params(urllib.parse.parse_qsl(query, keep_blank_values=True))
        elif content_type == "application/json":
            try:
                params = json.loads(body)
            except ValueError:
                params = body.decode("utf-8", "replace")
        elif content_type == "application/x-www-form-urlencoded":
            params = _params(
                urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
            )
        else:
            params = body.decode("utf-8", "replace")

        basic_client_id = None
        authorization = headers.get("authorization", "")
        if authorization[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(authorization[6:]).decode("utf-8")
                basic_client_id = urllib.parse.unquote(decoded.split(":", 1)[0])
            except (ValueError, UnicodeDecodeError, binascii.Error):
                basic_client_id = ""
            client_auth = "client_secret_basic"
        elif isinstance(params, dict) and "client_secret" in params:
            client_auth = "client_secret_post"
        else:
            client_auth = "none"

        record: dict[str, Any] = {
            "method": method,
            "path": path,
            "params": params,
            "headers": headers,
            "client_auth": client_auth,
            "basic_client_id": basic_client_id,
            "status": None,
            "response": None,
            "location": None,
        }
        getattr(self.owner, _RECORDED_PATHS[path]).append(record)
        if (
            path == "/revoke"
            and self.owner.lenient_basic_revocation
            and client_auth == "client_secret_basic"
            and isinstance(params, dict)
            and "client_secret" not in params
        ):
            # mcp 2.3.0's RevocationRequest requires a client_secret form field even when the
            # client authenticates with Basic (400 "client_secret: Field required"); an empty
            # one satisfies it, and the Basic header is what is checked.
            body += b"&client_secret=" if body else b"client_secret="
            scope = dict(scope)
            scope["headers"] = [
                *(h for h in scope["headers"] if h[0].lower() != b"content-length"),
                (b"content-length", str(len(body)).encode()),
            ]
            record["amended"] = "client_secret="
        response_chunks: list[bytes] = []

        replayed = False

        async def replay() -> Message:
            # The app reads the body we consumed; after it, the client's real messages
            # (a disconnect) follow.
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def recording_send(message: Message) -> None:
            # The record is complete before the last byte goes out, so a test that has
            # its answer can read it.
            if message["type"] == "http.response.start":
                record["status"] = message["status"]
                for key, value in message.get("headers", []):
                    if key.lower() == b"location":
                        record["location"] = value.decode("latin-1")
            elif message["type"] == "http.response.body":
                response_chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    raw = b"".join(response_chunks)
                    try:
                        record["response"] = json.loads(raw) if raw else None
                    except ValueError:
                        record["response"] = raw.decode("utf-8", "replace")
                    answer = record["response"]
                    if path == "/register" and isinstance(answer, dict):
                        record["client_id"] = answer.get("client_id")
                        record["client_secret"] = answer.get("client_secret")
                        record["token_endpoint_auth_method"] = answer.get(
                            "token_endpoint_auth_method"
                        )
            await send(message)

        reset = _current_params.set(params if isinstance(params, dict) else None)
        try:
            await self.app(scope, replay, recording_send)
        finally:
            _current_params.reset(reset)


class McpServer:
    """``with McpServer() as server:`` a real SDK MCP server with its OAuth routes on 127.0.0.1.

    Constructor (keyword arguments; all attributes of the same name can be changed while
    it runs, except those that shape the routes: ``registration``, ``resource_metadata``,
    ``resource_name``, ``scopes``, ``required_scopes``, ``revocation``,
    ``validate_token_resource``):

    - ``user``: whom ``/authorize`` authorizes (approval is automatic, as a person who
      clicks Approve); ``approve=False`` denies instead (``error=access_denied``).
    - ``access_token_lifetime``: seconds (``expires_in``).
    - ``registration``: False, no ``/register`` route and no ``registration_endpoint``;
      clients come from :meth:`add_client`.
    - ``resource_metadata``: False, no RFC 9728 document and no ``resource_metadata=`` in
      the 401's ``WWW-Authenticate``.
    - ``resource_name``: the RFC 9728 ``resource_name``.
    - ``scopes``: ``scopes_supported`` (both documents), the scopes a client may register
      and the default a client registering without ``scope`` gets.
    - ``required_scopes``: scopes a token must carry to use ``/mcp`` (403 otherwise);
      default ``scopes``; ``[]`` for none.
    - ``rotate_refresh_tokens``: True, every refresh returns a new refresh token and the old
      one stops working; False, the refresh token stays and the answer omits it.
    - ``revocation``: False, no ``/revoke``.
    - ``validate_token_resource``: the SDK's ``AuthSettings.validate_token_resource``: only
      tokens bound to :attr:`url` (the ``resource`` of the token request, RFC 8707) work at
      ``/mcp``; a client that never sends ``resource`` is then refused. Needs
      ``resource_metadata=True``.
    - ``lenient_basic_revocation``: mcp 2.3.0 answers a ``client_secret_basic`` client's
      ``/revoke`` with 400 (``client_secret: Field required``) unless the form also carries
      a ``client_secret`` field (any value, even empty: only the Basic header is checked).
      True adds an empty one to such requests before the SDK sees them (the recording
      keeps what was sent, and ``"amended"``); default False, the SDK as it is.
    - ``on_secret``: called with every secret value issued or received; default: the test
      session's leak watch.

    Attributes once entered: :attr:`url`, :attr:`issuer`, :attr:`resource_metadata_url`
    (None without ``resource_metadata``), :attr:`port`; recorded requests
    :attr:`registrations`, :attr:`authorizations`, :attr:`token_requests`,
    :attr:`revocations`, :attr:`provider_calls`; :attr:`revoked` (the set of revoked
    access and refresh tokens).
    """

    def __init__(
        self,
        *,
        user: str = "alice",
        access_token_lifetime: int = 3600,
        registration: bool = True,
        resource_metadata: bool = True,
        resource_name: Optional[str] = "Test MCP",
        scopes: Optional[list[str]] = None,
        required_scopes: Optional[list[str]] = None,
        rotate_refresh_tokens: bool = True,
        revocation: bool = True,
        validate_token_resource: bool = False,
        approve: bool = True,
        lenient_basic_revocation: bool = False,
        on_secret: Optional[Callable[[str], None]] = leak_watch.remember_secret,
    ) -> None:
        if validate_token_resource and not resource_metadata:
            raise ValueError("validate_token_resource needs resource_metadata=True")
        self.user = user
        self.access_token_lifetime = access_token_lifetime
        self.registration = registration
        self.resource_metadata = resource_metadata
        self.resource_name = resource_name
        self.scopes = list(scopes) if scopes is not None else ["mcp:tools"]
        self.required_scopes = (
            list(required_scopes) if required_scopes is not None else list(self.scopes)
        )
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.revocation = revocation
        self.validate_token_resource = validate_token_resource
        self.approve = approve
        self.lenient_basic_revocation = lenient_basic_revocation
        self.on_secret = on_secret

        self.registrations: list[dict[str, Any]] = []
        self.authorizations: list[dict[str, Any]] = []
        self.token_requests: list[dict[str, Any]] = []
        self.revocations: list[dict[str, Any]] = []
        self.provider_calls: list[dict[str, Any]] = []
        #: Every HTTP request the server got, as "METHOD /path".
        self.requests: list[str] = []

        self.port = 0
        self.url = ""
        self.issuer = ""
        self.resource_metadata_url: Optional[str] = None
        self._provider = _Provider(self)
        self._socket: Optional[socket.socket] = None
        self._server: Optional[uvicorn.Server] = None
        self._thread: Optional[threading.Thread] = None

    # -- tokens ------------------------------------------------------------------------------

    @property
    def revoked(self) -> set[str]:
        """Every revoked access and refresh token (a copy)."""
        with self._provider.lock:
            return set(self._provider.revoked)

    def forget_clients(self) -> None:
        """Forget every registered client, as a server that lost or purged them: their
        next token request gets ``invalid_client``."""
        with self._provider.lock:
            self._provider.clients.clear()

    def expire_all(self) -> None:
        """Make every access token issued so far expire now (``/mcp`` then answers 401)."""
        past = int(time.time()) - 1
        with self._provider.lock:
            for token in self._provider.access.values():
                token.expires_at = past

    def is_active(self, access_token: str) -> bool:
        """True for an access token this server issued that is neither expired nor revoked."""
        with self._provider.lock:
            token = self._provider.access.get(access_token)
            if token is None or access_token in self._provider.revoked:
                return False
        return token.expires_at is None or token.expires_at >= int(time.time())

    def token_info(self, access_token: str) -> Optional[dict[str, Any]]:
        """What the server knows of an access token: user, client_id, scopes, resource,
        expires_at, refresh_token (the one issued with it), revoked. None if unknown."""
        with self._provider.lock:
            token = self._provider.access.get(access_token)
            if token is None:
                return None
            return {
                "user": token.subject,
                "client_id": token.client_id,
                "scopes": list(token.scopes),
                "resource": token.resource,
                "expires_at": token.expires_at,
                "refresh_token": self._provider.pair.get(access_token),
                "revoked": access_token in self._provider.revoked,
            }

    def add_client(
        self,
        redirect_uris: list[str],
        *,
        token_endpoint_auth_method: str = "client_secret_post",
        client_id: Optional[str] = None,
        client_secret: Optional[str] = None,
        scope: Optional[str] = None,
        grant_types: Optional[list[str]] = None,
    ) -> dict[str, Any]:
        """Register a client out of band (e.g. with ``registration=False``). A secret is made
        for any method but ``none``. Returns the client record as ``/register`` would."""
        if token_endpoint_auth_method != "none" and client_secret is None:
            client_secret = secrets.token_hex(32)
        if token_endpoint_auth_method == "none":
            client_secret = None
        info = OAuthClientInformationFull(
            client_id=client_id or secrets.token_urlsafe(12),
            client_secret=client_secret,
            client_id_issued_at=int(time.time()),
            client_secret_expires_at=0 if client_secret else None,
            redirect_uris=[AnyUrl(uri) for uri in redirect_uris],
            token_endpoint_auth_method=token_endpoint_auth_method,
            grant_types=grant_types or ["authorization_code", "refresh_token"],
            scope=scope if scope is not None else " ".join(self.scopes),
        )
        if client_secret and self.on_secret is not None:
            self.on_secret(client_secret)
        with self._provider.lock:
            self._provider.clients[info.client_id] = info
        return info.model_dump(mode="json", exclude_none=True)

    # -- the app -------------------------------------------------------------------------------

    def _build_app(self) -> Any:
        # Strings, not AnyHttpUrl(...): AuthSettings keeps a path-less issuer without the
        # trailing slash a bare AnyHttpUrl adds (RFC 8414 compares issuers as strings).
        auth = AuthSettings.model_validate(
            {
                "issuer_url": self.issuer,
                "resource_server_url": self.url if self.resource_metadata else None,
                # Named whenever there is a resource_server_url: left unset, the SDK warns
                # (MCPDeprecationWarning; 3.0 will default it to True). Without one it must
                # stay unset.
                "validate_token_resource": (
                    self.validate_token_resource if self.resource_metadata else None
                ),
                "required_scopes": self.required_scopes or None,
                "client_registration_options": ClientRegistrationOptions(
                    enabled=self.registration,
                    valid_scopes=self.scopes,
                    default_scopes=self.scopes,
                ),
                "revocation_options": RevocationOptions(enabled=self.revocation),
            }
        )
        # MCPServer() calls logging.basicConfig(level="INFO"), which would configure the
        # root logger of the whole test process if it had no handler yet: undo that.
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        try:
            mcp = MCPServer("roomsecrets-test-mcp", auth_server_provider=self._provider, auth=auth)
        finally:
            for handler in root.handlers[:]:
                if handler not in handlers:
                    root.removeHandler(handler)
            root.setLevel(level)

        @mcp.tool()
        def whoami() -> str:
            """The user the access token of this call was issued for."""
            token = get_access_token()
            if token is None or token.subject is None:
                raise ValueError("no authenticated user")
            return token.subject

        app = mcp.streamable_http_app(streamable_http_path="/mcp", host="127.0.0.1")
        if auth.resource_server_url is not None:
            # The SDK's RFC 9728 route has no resource_name and takes scopes_supported from
            # required_scopes; put the SDK's own route builder's answer in its place.
            (ours,) = create_protected_resource_routes(
                resource_url=auth.resource_server_url,
                authorization_servers=[auth.issuer_url],
                scopes_supported=self.scopes,
                resource_name=self.resource_name,
            )
            app.router.routes[:] = [
                ours if getattr(route, "path", None) == ours.path else route
                for route in app.router.routes
            ]
        return _Recorder(app, self)

    def __enter__(self) -> McpServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._socket = sock
        self.port = sock.getsockname()[1]
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.issuer}/mcp"
        self.resource_metadata_url = None
        if self.resource_metadata:
            self.resource_metadata_url = str(build_resource_metadata_url(AnyHttpUrl(self.url)))
        config = uvicorn.Config(
            self._build_app(),
            log_config=None,
            access_log=False,  # it would log /authorize's query, state included
            log_level="warning",
            lifespan="on",
            ws="none",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="mcp-server", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError("the MCP server did not start")
            time.sleep(0.01)
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None
