"""``OAuthProvider``: a small, strict OAuth 2.0 authorization server for development
and tests (public as :class:`roomsecrets.testing.OAuthProvider`).

Standard library only, outside ``core/``. It listens on 127.0.0.1 (OS-chosen
port; ``host=`` and ``port=`` choose others) in a daemon thread and behaves like a
careful real provider, so code that works against it is likely to work against a
real one (``roomsecrets dev-provider`` runs it as a command, docs/cli.md):

- ``GET /authorize`` (RFC 6749 §4.1.1): checks the client, the exact
  redirect URI, ``response_type=code``, the scope and PKCE (S256 only,
  required when the client is registered with ``require_pkce=True``, the
  default), then acts as if the configured person approved and redirects with
  ``code``, ``state`` and ``iss`` (RFC 9207 §2, the mix-up defence; turn it off
  with ``send_iss = False``). Errors follow §4.1.2.1: a redirect with
  ``error=`` (and ``iss``) when the redirect URI is trustworthy, a plain 400
  page when it is not.
- ``POST /token`` (RFC 6749 §4.1.3, §6): ``authorization_code`` and
  ``refresh_token`` grants. Codes are single-use and a reused code revokes the
  tokens issued from it (§4.1.2). Refresh tokens rotate, and replaying a used
  one revokes the whole grant (RFC 9700 §4.14.2), as real providers do. Client
  authentication per the client's registered method (§2.3).
- ``POST /revoke`` (RFC 7009): revoking a refresh token ends its whole grant
  (its access tokens die, and the refresh token then gets ``invalid_grant``);
  200 also for a token it does not know (§2.2). Failures are scripted with
  :meth:`OAuthProvider.queue_revocation_responses`.
- ``GET /check`` and ``GET /userinfo``: 200 for a valid bearer access token
  (RFC 6750 §2.1), 401 otherwise, so a test can prove an issued token works.
- ``GET /.well-known/oauth-authorization-server`` (RFC 8414 metadata at the
  :attr:`~OAuthProvider.issuer`, which is the base URL): the endpoints above,
  ``revocation_endpoint`` and ``authorization_response_iss_parameter_supported``
  (true while ``send_iss``).

Example::

    with OAuthProvider() as provider:
        provider.register_client("app", redirect_uris=["http://127.0.0.1/cb"])
        ...  # send the person to provider.authorization_endpoint, etc.

Tests steer it with plain attributes (``access_token_lifetime``,
``deny_next_authorization``, ...), read counters (``token_requests``,
``refresh_posts``, ``revoked_grants``, ...) and script failures with
:meth:`OAuthProvider.queue_token_responses` (a gateway's HTML 502, an error
inside HTTP 200, a form-encoded answer, a slow answer, a lost response). All
state sits behind one lock. ``on_secret=`` is called with every secret value the
provider issues or receives (client secrets, states, codes, verifiers, access
and refresh tokens), e.g. to check that none of them shows up in your logs.

A person who approves without a browser: :func:`authorization_redirect` opens
an authorization URL and returns where the provider redirects (the client's
redirect URI with ``code`` and ``state``); :func:`approve` returns that
``(code, state)``.
"""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import hmac
import json
import re
import secrets
import socket
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Optional, Union

__all__ = [
    "AUTH_METHODS",
    "ApprovalError",
    "BrowserPage",
    "CannedResponse",
    "OAuthProvider",
    "TokenQuirk",
    "approve",
    "authorization_redirect",
    "browser_get",
]

#: Client authentication methods a client can be registered with (RFC 7591 §2 names).
AUTH_METHODS = ("none", "client_secret_basic", "client_secret_post")

_HeaderList = tuple[tuple[str, str], ...]

_JSON = "application/json;charset=UTF-8"
# RFC 6749 §5.1: token responses must not be cached.
_NO_STORE: _HeaderList = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
# RFC 7636 §4.1: code-verifier = 43*128unreserved
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
# RFC 7636 §4.2: BASE64URL(SHA256(verifier)) without padding is always 43 characters.
_S256_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
_MAX_REQUEST_BODY = 1 << 20


# --- quirks: what queue_token_responses accepts ------------------------------------


@dataclass(frozen=True)
class CannedResponse:
    """A raw response the token endpoint sends instead of its own.

    ``process=False`` (default): the request is not looked at, as when a
    gateway in front of the provider answers (an HTML 502, a 503 with
    ``Retry-After``). ``process=True``: the provider handles the request for
    real first (a code is spent, a refresh token rotates) and then sends this,
    as when a response is lost after the provider acted. ``delay`` seconds
    pass before the response is sent. A ``Content-Length`` is added unless
    ``headers`` has one.
    """

    status: int = 200
    headers: _HeaderList = ()
    body: bytes = b""
    delay: float = 0.0
    process: bool = False

    @classmethod
    def json(
        cls,
        payload: object,
        *,
        status: int = 200,
        headers: _HeaderList = (),
        delay: float = 0.0,
        process: bool = False,
    ) -> CannedResponse:
        """A JSON body, e.g. ``CannedResponse.json({"error": "invalid_grant"}, status=200)``."""
        return cls(
            status=status,
            headers=(("Content-Type", _JSON), *headers),
            body=json.dumps(payload).encode(),
            delay=delay,
            process=process,
        )

    @classmethod
    def text(
        cls,
        body: str,
        *,
        status: int,
        content_type: str = "text/html; charset=utf-8",
        headers: _HeaderList = (),
        delay: float = 0.0,
        process: bool = False,
    ) -> CannedResponse:
        """A text body, e.g. a gateway's HTML error page."""
        return cls(
            status=status,
            headers=(("Content-Type", content_type), *headers),
            body=body.encode(),
            delay=delay,
            process=process,
        )


@dataclass(frozen=True)
class TokenQuirk:
    """Handle the request for real, then reshape the JSON answer like a quirky provider.

    ``form_encoded``: send the fields as ``application/x-www-form-urlencoded``
    (GitHub without ``Accept: application/json``). ``drop``: leave these fields
    out (Salesforce sends no ``expires_in``). ``extra``: add or replace fields
    (``{"expires_in": "3600"}`` as a string). ``status``: send this status
    instead (GitHub sends errors with 200). ``delay``: seconds to wait first.
    Applies to error answers too.
    """

    form_encoded: bool = False
    drop: tuple[str, ...] = ()
    extra: Mapping[str, object] = field(default_factory=dict)
    status: Optional[int] = None
    delay: float = 0.0


_Quirk = Union[CannedResponse, TokenQuirk]


# --- internal state ----------------------------------------------------------------


@dataclass(frozen=True)
class _Reply:
    status: int
    headers: _HeaderList = ()
    body: bytes = b""
    delay: float = 0.0


@dataclass
class _Client:
    client_id: str
    client_secret: Optional[str]
    auth_method: str
    redirect_uris: tuple[str, ...]
    require_pkce: bool
    scopes: Optional[frozenset[str]]


@dataclass
class _Grant:
    """One approval by the person: every token issued from it dies with it."""

    client_id: str
    scope: tuple[str, ...]
    revoked: bool = False


@dataclass
class _Code:
    client_id: str
    grant_scope: tuple[str, ...]
    #: The redirect URI the authorization request used (sent or the registered default).
    redirect_uri: str
    #: RFC 6749 §4.1.3: the token request must repeat it only if it was sent.
    redirect_uri_sent: bool
    challenge: Optional[str]
    expires_at: float
    used: bool = False
    grant: Optional[_Grant] = None


@dataclass
class _AccessToken:
    grant: _Grant
    scope: tuple[str, ...]
    expires_at: float
    revoked: bool = False


@dataclass
class _RefreshToken:
    grant: _Grant
    used: bool = False


class _OAuthFailure(Exception):
    """Internal: an RFC 6749 §5.2 error answer."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(error)
        self.error = error
        self.description = description


class OAuthProvider:
    """A strict OAuth 2.0 authorization server for development and tests, on
    127.0.0.1 unless ``host=`` names another address.

    Use as a context manager (``with OAuthProvider() as provider:``) or call
    :meth:`start` and :meth:`close`.

    Settable attributes (read on every request):

    - ``access_token_lifetime`` (seconds, default 3600; ``expires_in`` is its
      whole part),
    - ``code_lifetime`` (seconds, default 600),
    - ``deny_next_authorization``: the next valid authorization request ends
      with ``error=access_denied``; resets itself,
    - ``rotate_refresh_tokens`` (default True): False keeps the refresh token
      and leaves ``refresh_token`` out of refresh responses, like Google,
    - ``issue_refresh_tokens`` (default True),
    - ``send_iss`` (default True): put ``iss`` on every authorization redirect
      and say so in the metadata (RFC 9207); False behaves like a provider that
      does neither,
    - ``advertised_auth_methods`` (default :data:`AUTH_METHODS`): what the
      metadata lists as ``token_endpoint_auth_methods_supported`` and
      ``revocation_endpoint_auth_methods_supported`` (RFC 8414 §2). Only the
      list changes: each client is still held to the one method it registered
      (``invalid_client`` for any other),
    - ``clock`` (default ``time.time``): where code and token expiry read the
      time, so a test can move it instead of sleeping past a lifetime.

    Read-only records (copies, taken under the lock): ``token_requests``,
    ``refresh_posts``, ``revoked_grants``, ``revocation_requests``,
    ``authorization_requests``, ``check_requests``, ``metadata_requests``.

    ``on_secret``: called (under the provider's lock, so keep it quick) with
    each secret value issued or received; it must not raise.
    """

    def __init__(
        self,
        *,
        user: str = "person@fake-provider.test",
        access_token_lifetime: float = 3600.0,
        code_lifetime: float = 600.0,
        on_secret: Optional[Callable[[str], None]] = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError("port must be a whole number from 0 to 65535 (0: any free one)")
        if not isinstance(host, str) or not host:
            raise ValueError("host must be a host name or an IP address")
        self._on_secret = on_secret
        #: The address :meth:`start` listens on; the issuer is ``http://HOST:PORT``.
        self.host = host
        self._port = port
        #: The person who approves every authorization request.
        self.user = user
        self.access_token_lifetime = access_token_lifetime
        self.code_lifetime = code_lifetime
        self.deny_next_authorization = False
        self.rotate_refresh_tokens = True
        self.issue_refresh_tokens = True
        self.send_iss = True
        self.advertised_auth_methods: tuple[str, ...] = AUTH_METHODS
        self.clock: Callable[[], float] = time.time
        self._lock = threading.RLock()
        self._closing = threading.Event()
        self._clients: dict[str, _Client] = {}
        self._codes: dict[str, _Code] = {}
        self._access: dict[str, _AccessToken] = {}
        self._refresh: dict[str, _RefreshToken] = {}
        self._quirks: collections.deque[_Quirk] = collections.deque()
        self._revocation_quirks: collections.deque[CannedResponse] = collections.deque()
        self._token_requests: list[tuple[str, str]] = []
        self._authorization_requests: list[dict[str, str]] = []
        self._refresh_posts = 0
        self._revoked_grants = 0
        self._revocation_requests = 0
        self._check_requests = 0
        self._metadata_requests = 0
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None

    # --- lifecycle ----------------------------------------------------------------

    def start(self) -> OAuthProvider:
        """Start listening on ``host:port`` (default 127.0.0.1, a free port); return self.

        Raises OSError when it cannot listen there (the port is taken, the host is
        not an address of this machine).
        """
        if self._server is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        self._server = _Server(self, (self.host, self._port))
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            args=(0.05,),
            name="roomsecrets-dev-provider",
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the server; delayed responses are cut short."""
        self._closing.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> OAuthProvider:
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.base_url if self._server is not None else "stopped"
        return f"{type(self).__name__}({where})"

    def _note_secret(self, value: Optional[str]) -> None:
        if value and self._on_secret is not None:
            self._on_secret(value)

    # --- addresses ----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` (``http://127.0.0.1:<port>`` by default; an IPv6 host
        in brackets); only while started."""
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self._server.server_address[1]}"

    @property
    def issuer(self) -> str:
        """The RFC 8414 issuer identifier (the base URL)."""
        return self.base_url

    @property
    def authorization_endpoint(self) -> str:
        return self.base_url + "/authorize"

    @property
    def token_endpoint(self) -> str:
        return self.base_url + "/token"

    @property
    def revocation_endpoint(self) -> str:
        return self.base_url + "/revoke"

    @property
    def check_endpoint(self) -> str:
        """GET with ``Authorization: Bearer <token>``: 200 if valid, else 401."""
        return self.base_url + "/check"

    @property
    def userinfo_endpoint(self) -> str:
        """Same as :attr:`check_endpoint`."""
        return self.base_url + "/userinfo"

    # --- configuration ------------------------------------------------------------

    def register_client(
        self,
        client_id: str,
        *,
        client_secret: Optional[str] = None,
        auth_method: str = "none",
        redirect_uris: Iterable[str] = (),
        require_pkce: bool = True,
        scopes: Optional[Iterable[str]] = None,
    ) -> None:
        """Register (or replace) a client.

        ``auth_method`` is one of :data:`AUTH_METHODS`; the secret is required
        for the two secret methods and refused for ``"none"``. ``redirect_uris``
        are matched exactly (RFC 9700 §4.1.3). ``scopes``: the scopes this
        client may ask for (None: any).
        """
        if auth_method not in AUTH_METHODS:
            raise ValueError(f"auth_method must be one of {AUTH_METHODS}")
        if (auth_method == "none") != (client_secret is None):
            raise ValueError("a client_secret goes with client_secret_basic/_post only")
        uris = tuple(redirect_uris)
        if not uris:
            raise ValueError("register at least one redirect URI")
        for uri in uris:
            parts = urllib.parse.urlsplit(uri)
            if not parts.scheme or not parts.netloc or parts.fragment:
                raise ValueError(
                    "redirect URIs are absolute and have no fragment (RFC 6749 §3.1.2)"
                )
        self._note_secret(client_secret)
        with self._lock:
            self._clients[client_id] = _Client(
                client_id=client_id,
                client_secret=client_secret,
                auth_method=auth_method,
                redirect_uris=uris,
                require_pkce=require_pkce,
                scopes=None if scopes is None else frozenset(scopes),
            )

    def queue_token_responses(self, *responses: _Quirk) -> None:
        """Make the next ``len(responses)`` token-endpoint POSTs answer with these, in order.

        Each item is a :class:`CannedResponse` (a raw answer) or a
        :class:`TokenQuirk` (the real answer, reshaped). After they are used
        up, the endpoint behaves normally again.
        """
        for response in responses:
            if not isinstance(response, (CannedResponse, TokenQuirk)):
                raise TypeError("queue CannedResponse or TokenQuirk values")
        with self._lock:
            self._quirks.extend(responses)

    def queue_revocation_responses(self, *responses: CannedResponse) -> None:
        """Make the next ``len(responses)`` revocation POSTs answer with these, in order.

        With ``process=False`` (default) the token is not revoked (a gateway's
        500, a 503 with ``Retry-After``, a slow answer); with ``process=True`` it
        is revoked first and the answer is lost or replaced.
        """
        for response in responses:
            if not isinstance(response, CannedResponse):
                raise TypeError("queue CannedResponse values")
        with self._lock:
            self._revocation_quirks.extend(responses)

    # --- records ------------------------------------------------------------------

    @property
    def token_requests(self) -> list[tuple[str, str]]:
        """(grant_type, outcome) per token POST; outcome is "ok", an error code or "canned"."""
        with self._lock:
            return list(self._token_requests)

    @property
    def refresh_posts(self) -> int:
        """Token POSTs with ``grant_type=refresh_token``, whatever their outcome."""
        with self._lock:
            return self._refresh_posts

    @property
    def revoked_grants(self) -> int:
        """Grants revoked: by a replayed refresh token, a reused code or /revoke."""
        with self._lock:
            return self._revoked_grants

    @property
    def revocation_requests(self) -> int:
        """POSTs to the revocation endpoint."""
        with self._lock:
            return self._revocation_requests

    @property
    def metadata_requests(self) -> int:
        """GETs of the metadata document."""
        with self._lock:
            return self._metadata_requests

    @property
    def check_requests(self) -> int:
        """Requests to /check or /userinfo."""
        with self._lock:
            return self._check_requests

    @property
    def authorization_requests(self) -> list[dict[str, str]]:
        """The query parameters of every /authorize request, in order."""
        with self._lock:
            return [dict(params) for params in self._authorization_requests]

    @property
    def pending_quirks(self) -> int:
        """Queued token responses not yet served."""
        with self._lock:
            return len(self._quirks)

    def is_active(self, access_token: str) -> bool:
        """True if ``access_token`` would pass /check now."""
        with self._lock:
            return self._active_access(access_token) is not None

    # --- request handling (called from the server's threads) ----------------------

    def _handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> _Reply:
        """Answer one request; ``headers`` has lower-case names."""
        path, _, query = target.partition("?")
        routes: dict[str, tuple[str, Callable[[], _Reply]]] = {
            "/authorize": ("GET", lambda: self._authorize(query)),
            "/token": ("POST", lambda: self._token(headers, query, body)),
            "/revoke": ("POST", lambda: self._revoke(headers, query, body)),
            "/check": ("GET", lambda: self._check(headers)),
            "/userinfo": ("GET", lambda: self._check(headers)),
            "/.well-known/oauth-authorization-server": ("GET", self._metadata),
        }
        route = routes.get(path)
        if route is None:
            return _json_reply(404, {"error": "not_found"})
        allowed, answer = route
        if method != allowed:
            return _json_reply(405, {"error": "method_not_allowed"}, (("Allow", allowed),))
        return answer()

    # /authorize -----------------------------------------------------------------

    def _authorize(self, query: str) -> _Reply:
        params, repeated = _parse_form(query)
        with self._lock:
            self._authorization_requests.append(params)
            client = self._clients.get(params.get("client_id", ""))
            # RFC 6749 §4.1.2.1: without a known client and a registered redirect
            # URI, tell the person, never redirect.
            if client is None or "client_id" in repeated:
                return _page(400, "invalid_request: unknown or missing client_id")
            sent_uri = params.get("redirect_uri")
            if "redirect_uri" in repeated:
                return _page(400, "invalid_request: repeated redirect_uri")
            if sent_uri is None:
                if len(client.redirect_uris) != 1:
                    return _page(400, "invalid_request: redirect_uri is required")
                redirect_uri = client.redirect_uris[0]
            elif sent_uri in client.redirect_uris:
                redirect_uri = sent_uri
            else:
                return _page(400, "invalid_request: redirect_uri is not registered")
            state = params.get("state")
            self._note_secret(state)
            try:
                scope, challenge = self._check_authorization(client, params, repeated)
            except _OAuthFailure as failure:
                return _redirect(
                    redirect_uri,
                    error=failure.error,
                    error_description=failure.description,
                    state=state,
                    iss=self._iss(),
                )
            if self.deny_next_authorization:
                self.deny_next_authorization = False
                return _redirect(
                    redirect_uri,
                    error="access_denied",
                    error_description="the person denied the request",
                    state=state,
                    iss=self._iss(),
                )
            code = "ac_" + secrets.token_urlsafe(32)
            self._note_secret(code)
            self._codes[code] = _Code(
                client_id=client.client_id,
                grant_scope=scope,
                redirect_uri=redirect_uri,
                redirect_uri_sent=sent_uri is not None,
                challenge=challenge,
                expires_at=self.clock() + self.code_lifetime,
            )
        return _redirect(redirect_uri, code=code, state=state, iss=self._iss())

    def _iss(self) -> Optional[str]:
        # RFC 9207 §2: the issuer identifier rides on every authorization response,
        # success and error alike.
        return self.issuer if self.send_iss else None

    def _check_authorization(
        self, client: _Client, params: dict[str, str], repeated: set[str]
    ) -> tuple[tuple[str, ...], Optional[str]]:
        """Return (scope, code_challenge) or raise _OAuthFailure (RFC 6749 §4.1.2.1)."""
        if repeated:
            # RFC 6749 §3.1: parameters must not be included more than once.
            raise _OAuthFailure("invalid_request", f"repeated parameter {sorted(repeated)[0]}")
        response_type = params.get("response_type")
        if response_type is None:
            raise _OAuthFailure("invalid_request", "response_type is missing")
        if response_type != "code":
            raise _OAuthFailure("unsupported_response_type", "only response_type=code")
        scope = _parse_scope(params.get("scope"))
        if client.scopes is not None and not set(scope) <= client.scopes:
            raise _OAuthFailure("invalid_scope", "scope not allowed for this client")
        challenge = params.get("code_challenge")
        method = params.get("code_challenge_method")
        if challenge is None:
            if method is not None:
                raise _OAuthFailure("invalid_request", "code_challenge_method without challenge")
            if client.require_pkce:
                # RFC 7636 §4.4.1
                raise _OAuthFailure("invalid_request", "code challenge required")
            return scope, None
        if method != "S256":
            # RFC 7636 §4.4.1; a missing method means "plain" (§4.3), refused too.
            raise _OAuthFailure("invalid_request", "transform algorithm not supported")
        if not _S256_CHALLENGE.fullmatch(challenge):
            raise _OAuthFailure("invalid_request", "code_challenge is malformed")
        return scope, challenge

    # /token ---------------------------------------------------------------------

    def _token(self, headers: Mapping[str, str], query: str, body: bytes) -> _Reply:
        params, repeated = _parse_body(headers, body)
        grant_type = params.get("grant_type", "") if params is not None else ""
        with self._lock:
            if grant_type == "refresh_token":
                self._refresh_posts += 1
            quirk = self._quirks.popleft() if self._quirks else None
            if isinstance(quirk, CannedResponse) and not quirk.process:
                self._token_requests.append((grant_type, "canned"))
                return _Reply(quirk.status, quirk.headers, quirk.body, quirk.delay)
            try:
                if params is None:
                    raise _OAuthFailure(
                        "invalid_request", "body must be application/x-www-form-urlencoded"
                    )
                payload = self._token_grant(headers, query, params, repeated)
            except _OAuthFailure as failure:
                self._token_requests.append((grant_type, failure.error))
                status = 401 if failure.error == "invalid_client" else 400
                payload = {"error": failure.error, "error_description": failure.description}
            else:
                self._token_requests.append((grant_type, "ok"))
                status = 200
        if isinstance(quirk, CannedResponse):
            return _Reply(quirk.status, quirk.headers, quirk.body, quirk.delay)
        extra_headers: _HeaderList = ()
        if status == 401:
            extra_headers = (("WWW-Authenticate", 'Basic realm="roomsecrets-dev-provider"'),)
        if isinstance(quirk, TokenQuirk):
            return _reshape(quirk, status, payload, extra_headers)
        return _json_reply(status, payload, _NO_STORE + extra_headers)

    def _token_grant(
        self, headers: Mapping[str, str], query: str, params: dict[str, str], repeated: set[str]
    ) -> dict[str, object]:
        if query:
            # RFC 6749 §3.2: parameters travel in the body, never the URL.
            raise _OAuthFailure("invalid_request", "parameters in the URL are not accepted")
        if repeated:
            raise _OAuthFailure("invalid_request", f"repeated parameter {sorted(repeated)[0]}")
        client = self._authenticate(headers, params)
        grant_type = params.get("grant_type")
        if grant_type is None:
            raise _OAuthFailure("invalid_request", "grant_type is missing")
        if grant_type == "authorization_code":
            return self._exchange_code(client, params)
        if grant_type == "refresh_token":
            return self._refresh_grant(client, params)
        raise _OAuthFailure("unsupported_grant_type", "only authorization_code and refresh_token")

    def _authenticate(self, headers: Mapping[str, str], params: dict[str, str]) -> _Client:
        """RFC 6749 §2.3: one method per request, the one the client registered."""
        body_id = params.get("client_id")
        body_secret = params.get("client_secret")
        secret: Optional[str]
        authorization = headers.get("authorization")
        if authorization is not None:
            scheme, _, credentials = authorization.partition(" ")
            if scheme.lower() != "basic":
                raise _OAuthFailure("invalid_client", "unsupported authentication scheme")
            decoded = _decode_basic(credentials.strip())
            if decoded is None:
                raise _OAuthFailure("invalid_client", "malformed Basic credentials")
            if body_secret is not None:
                raise _OAuthFailure("invalid_request", "more than one client authentication method")
            client_id, secret = decoded
            if body_id is not None and body_id != client_id:
                raise _OAuthFailure(
                    "invalid_client", "client_id differs from the Basic credentials"
                )
            used = "client_secret_basic"
        elif body_secret is not None:
            if body_id is None:
                raise _OAuthFailure("invalid_client", "client_secret without client_id")
            client_id, secret, used = body_id, body_secret, "client_secret_post"
        else:
            if body_id is None:
                raise _OAuthFailure("invalid_client", "no client authentication included")
            client_id, secret, used = body_id, None, "none"
        client = self._clients.get(client_id)
        if client is None:
            raise _OAuthFailure("invalid_client", "unknown client")
        if used != client.auth_method:
            raise _OAuthFailure(
                "invalid_client", f"this client authenticates with {client.auth_method}"
            )
        if secret is not None and not hmac.compare_digest(
            secret.encode(), (client.client_secret or "").encode()
        ):
            raise _OAuthFailure("invalid_client", "client authentication failed")
        return client

    def _exchange_code(self, client: _Client, params: dict[str, str]) -> dict[str, object]:
        value = params.get("code")
        if not value:
            raise _OAuthFailure("invalid_request", "code is missing")
        code = self._codes.get(value)
        if code is None or code.client_id != client.client_id:
            raise _OAuthFailure("invalid_grant", "unknown authorization code")
        if code.used:
            # RFC 6749 §4.1.2: a reused code revokes what it was exchanged for.
            if code.grant is not None:
                self._revoke_grant(code.grant)
            raise _OAuthFailure("invalid_grant", "authorization code already used")
        # Spent by any attempt from its client, right or wrong: a failed PKCE
        # check must not leave the code open to guessing.
        code.used = True
        if self.clock() >= code.expires_at:
            raise _OAuthFailure("invalid_grant", "authorization code expired")
        sent_uri = params.get("redirect_uri")
        if (code.redirect_uri_sent or sent_uri is not None) and sent_uri != code.redirect_uri:
            raise _OAuthFailure("invalid_grant", "redirect_uri does not match")  # §4.1.3
        verifier = params.get("code_verifier")
        self._note_secret(verifier)
        if code.challenge is None:
            if verifier is not None:
                # RFC 9700 §2.1.1: a verifier without a challenge is a downgrade attempt.
                raise _OAuthFailure("invalid_grant", "code_verifier without code_challenge")
        elif verifier is None:
            raise _OAuthFailure("invalid_grant", "code_verifier is missing")
        elif not _VERIFIER.fullmatch(verifier) or not hmac.compare_digest(
            _s256(verifier), code.challenge
        ):
            raise _OAuthFailure("invalid_grant", "PKCE verification failed")  # RFC 7636 §4.6
        grant = _Grant(client_id=client.client_id, scope=code.grant_scope)
        code.grant = grant
        return self._issue(grant, grant.scope, with_refresh=self.issue_refresh_tokens)

    def _refresh_grant(self, client: _Client, params: dict[str, str]) -> dict[str, object]:
        value = params.get("refresh_token")
        if not value:
            raise _OAuthFailure("invalid_request", "refresh_token is missing")
        token = self._refresh.get(value)
        if token is None or token.grant.client_id != client.client_id:
            raise _OAuthFailure("invalid_grant", "unknown refresh token")
        grant = token.grant
        if grant.revoked:
            raise _OAuthFailure("invalid_grant", "grant revoked")
        if token.used:
            # RFC 9700 §4.14.2: a rotated-out token coming back means it leaked;
            # revoke everything issued from this approval.
            self._revoke_grant(grant)
            raise _OAuthFailure("invalid_grant", "refresh token reused; grant revoked")
        scope = grant.scope
        if "scope" in params:
            scope = _parse_scope(params["scope"])
            if not set(scope) <= set(grant.scope):
                raise _OAuthFailure("invalid_scope", "scope exceeds the original grant")  # §6
        if self.rotate_refresh_tokens:
            token.used = True
        return self._issue(grant, scope, with_refresh=self.rotate_refresh_tokens)

    def _issue(
        self, grant: _Grant, scope: tuple[str, ...], *, with_refresh: bool
    ) -> dict[str, object]:
        lifetime = self.access_token_lifetime
        access = "at_" + secrets.token_urlsafe(32)
        self._note_secret(access)
        self._access[access] = _AccessToken(grant, scope, self.clock() + lifetime)
        payload: dict[str, object] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": int(lifetime),
        }
        if with_refresh:
            refresh = "rt_" + secrets.token_urlsafe(32)
            self._note_secret(refresh)
            self._refresh[refresh] = _RefreshToken(grant)
            payload["refresh_token"] = refresh
        if scope:
            payload["scope"] = " ".join(scope)
        return payload

    def _revoke_grant(self, grant: _Grant) -> None:
        if not grant.revoked:
            grant.revoked = True
            self._revoked_grants += 1

    # /revoke (RFC 7009) ---------------------------------------------------------------

    def _revoke(self, headers: Mapping[str, str], query: str, body: bytes) -> _Reply:
        params, repeated = _parse_body(headers, body)
        with self._lock:
            self._revocation_requests += 1
            quirk = self._revocation_quirks.popleft() if self._revocation_quirks else None
            if quirk is not None and not quirk.process:
                return _Reply(quirk.status, quirk.headers, quirk.body, quirk.delay)
            try:
                if params is None:
                    raise _OAuthFailure(
                        "invalid_request", "body must be application/x-www-form-urlencoded"
                    )
                if query or repeated:
                    raise _OAuthFailure("invalid_request", "malformed revocation request")
                client = self._authenticate(headers, params)
                value = params.get("token")
                if not value:
                    raise _OAuthFailure("invalid_request", "token is missing")
                # §2.1: the hint only speeds up the search; search everywhere.
                refresh = self._refresh.get(value)
                access = self._access.get(value)
                owner = refresh.grant if refresh else access.grant if access else None
                if owner is not None and owner.client_id != client.client_id:
                    raise _OAuthFailure("unauthorized_client", "token belongs to another client")
                if refresh is not None:
                    # §2.1: revoking a refresh token ends its whole grant.
                    self._revoke_grant(refresh.grant)
                elif access is not None:
                    access.revoked = True
            except _OAuthFailure as failure:
                status = 401 if failure.error == "invalid_client" else 400
                body_out = {"error": failure.error, "error_description": failure.description}
                return _json_reply(status, body_out, _NO_STORE)
        if quirk is not None:
            return _Reply(quirk.status, quirk.headers, quirk.body, quirk.delay)
        # §2.2: 200 whether or not the token was known.
        return _Reply(200, _NO_STORE)

    # /check, /userinfo (RFC 6750) -------------------------------------------------

    def _check(self, headers: Mapping[str, str]) -> _Reply:
        authorization = headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        with self._lock:
            self._check_requests += 1
            if scheme.lower() != "bearer" or not token.strip():
                challenge = 'Bearer realm="roomsecrets-dev-provider"'
                return _json_reply(
                    401, {"error": "unauthorized"}, (("WWW-Authenticate", challenge),)
                )
            active = self._active_access(token.strip())
            if active is None:
                challenge = 'Bearer realm="roomsecrets-dev-provider", error="invalid_token"'
                return _json_reply(
                    401, {"error": "invalid_token"}, (("WWW-Authenticate", challenge),)
                )
            info = {
                "sub": self.user,
                "client_id": active.grant.client_id,
                "scope": " ".join(active.scope),
            }
        return _json_reply(200, info, _NO_STORE)

    def _active_access(self, value: str) -> Optional[_AccessToken]:
        token = self._access.get(value)
        if token is None or token.revoked or token.grant.revoked:
            return None
        if self.clock() >= token.expires_at:
            return None
        return token

    def _metadata(self) -> _Reply:
        with self._lock:
            self._metadata_requests += 1
        return _json_reply(
            200,
            {
                # RFC 8414 §2; the issuer has no path, so the metadata sits at
                # /.well-known/oauth-authorization-server (§3.1).
                "issuer": self.issuer,
                "authorization_endpoint": self.authorization_endpoint,
                "token_endpoint": self.token_endpoint,
                "revocation_endpoint": self.revocation_endpoint,
                "userinfo_endpoint": self.userinfo_endpoint,
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": list(self.advertised_auth_methods),
                "revocation_endpoint_auth_methods_supported": list(
                    self.advertised_auth_methods
                ),
                "authorization_response_iss_parameter_supported": self.send_iss,
            },
        )


# --- helpers ------------------------------------------------------------------------


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _parse_form(text: str) -> tuple[dict[str, str], set[str]]:
    """Parse form/query text; return (first value of each name, names that repeat)."""
    params: dict[str, str] = {}
    repeated: set[str] = set()
    for name, value in urllib.parse.parse_qsl(text, keep_blank_values=True):
        if name in params:
            repeated.add(name)
        else:
            params[name] = value
    return params, repeated


def _parse_body(
    headers: Mapping[str, str], body: bytes
) -> tuple[Optional[dict[str, str]], set[str]]:
    """Parse a form-encoded body; (None, set()) if it is not one (RFC 6749 §4.1.3)."""
    content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return None, set()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None, set()
    return _parse_form(text)


def _parse_scope(raw: Optional[str]) -> tuple[str, ...]:
    """RFC 6749 §3.3: space-delimited scope tokens; strict about empty tokens."""
    if raw is None or raw == "":
        return ()
    tokens = raw.split(" ")
    if not all(_SCOPE_TOKEN.fullmatch(token) for token in tokens):
        raise _OAuthFailure("invalid_scope", "malformed scope")
    return tuple(dict.fromkeys(tokens))


def _decode_basic(credentials: str) -> Optional[tuple[str, str]]:
    """RFC 6749 §2.3.1: base64 of form-urlencoded id ":" form-urlencoded secret."""
    try:
        text = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, colon, secret = text.partition(":")
    if not colon:
        return None
    return urllib.parse.unquote_plus(client_id), urllib.parse.unquote_plus(secret)


def _json_reply(status: int, payload: object, headers: _HeaderList = ()) -> _Reply:
    return _Reply(status, (("Content-Type", _JSON), *headers), json.dumps(payload).encode())


def _page(status: int, message: str) -> _Reply:
    body = f"<!doctype html><title>Error</title><p>{message}</p>".encode()
    return _Reply(status, (("Content-Type", "text/html; charset=utf-8"),), body)


def _redirect(redirect_uri: str, **params: Optional[str]) -> _Reply:
    """302 to ``redirect_uri`` with ``params`` added to its query (RFC 6749 §4.1.2)."""
    parts = urllib.parse.urlsplit(redirect_uri)
    added = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    query = f"{parts.query}&{added}" if parts.query else added
    location = urllib.parse.urlunsplit(parts._replace(query=query))
    return _Reply(302, (("Location", location), *_NO_STORE))


def _reshape(
    quirk: TokenQuirk, status: int, payload: dict[str, object], extra_headers: _HeaderList
) -> _Reply:
    fields = {k: v for k, v in payload.items() if k not in quirk.drop}
    fields.update(quirk.extra)
    status = quirk.status if quirk.status is not None else status
    if quirk.form_encoded:
        body = urllib.parse.urlencode({k: str(v) for k, v in fields.items()}).encode()
        headers: _HeaderList = (
            ("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"),
            *_NO_STORE,
            *extra_headers,
        )
        return _Reply(status, headers, body, quirk.delay)
    reply = _json_reply(status, fields, _NO_STORE + extra_headers)
    return _Reply(reply.status, reply.headers, reply.body, quirk.delay)


# --- HTTP plumbing ---------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 drops bursts of concurrent clients

    def __init__(self, provider: OAuthProvider, address: tuple[str, int]) -> None:
        # The address family follows the host: an IPv6 literal needs AF_INET6.
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)
        self.provider = provider


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    # HTTP/1.0: one request per connection, so no idle keep-alive threads
    # outlive a test.
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: object) -> None:
        pass  # request lines carry codes and state; tests keep quiet

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        provider = self.server.provider
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_REQUEST_BODY:
            self._write(_json_reply(413 if length > 0 else 400, {"error": "invalid_request"}))
            return
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = provider._handle(self.command, self.path, headers, body)
        if reply.delay > 0 and provider._closing.wait(reply.delay):
            return  # shutting down: drop the connection unanswered
        self._write(reply)

    def _write(self, reply: _Reply) -> None:
        try:
            self.send_response(reply.status)
            for name, value in reply.headers:
                self.send_header(name, value)
            if not any(name.lower() == "content-length" for name, _ in reply.headers):
                self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        except OSError:
            pass  # the client gave up (timeouts under test do this)


# --- the person, without a browser -------------------------------------------------

_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class ApprovalError(Exception):
    """The authorization request did not end in a redirect carrying a code.

    ``error`` / ``description``: the RFC 6749 §4.1.2.1 ``error`` and
    ``error_description`` from the redirect, if it carried them. ``status``:
    the HTTP status when the provider did not redirect at all.
    """

    def __init__(
        self,
        message: str,
        *,
        error: Optional[str] = None,
        description: Optional[str] = None,
        status: Optional[int] = None,
    ) -> None:
        super().__init__(message)
        self.error = error
        self.description = description
        self.status = status


@dataclass(frozen=True)
class BrowserPage:
    """What :func:`browser_get` received."""

    status: int
    headers: Mapping[str, str]
    body: bytes


def _opener() -> urllib.request.OpenerDirector:
    # Built by hand: no redirect handler (we want the Location, not the
    # client's redirect URI), no error processor (a 400 page is an answer),
    # no environment proxies (the provider is on 127.0.0.1).
    opener = urllib.request.OpenerDirector()
    handler: urllib.request.BaseHandler
    for handler in (
        urllib.request.ProxyHandler({}),
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(),
    ):
        opener.add_handler(handler)
    return opener


def browser_get(url: str, *, timeout: float = 10.0, limit: int = 1 << 20) -> BrowserPage:
    """GET ``url`` once, as a browser tab would, but without following a redirect.

    Returns the status, the headers (names in lower case) and up to ``limit``
    bytes of the body; a 4xx or 5xx is an answer, not an exception. Environment
    proxies are ignored. Blocking (urllib).
    """
    response = _opener().open(url, timeout=timeout)
    with response:
        headers = {name.lower(): value for name, value in response.headers.items()}
        return BrowserPage(status=response.status, headers=headers, body=response.read(limit))


def authorization_redirect(authorization_url: str, *, timeout: float = 10.0) -> str:
    """GET ``authorization_url``; return the ``Location`` it redirects to.

    Raises :class:`ApprovalError` if the answer is not a redirect.
    """
    page = browser_get(authorization_url, timeout=timeout, limit=500)
    location = page.headers.get("location")
    if page.status not in _REDIRECTS or not location:
        text = page.body.decode("utf-8", "replace")
        raise ApprovalError(
            f"authorization endpoint answered HTTP {page.status} without a redirect: {text!r}",
            status=page.status,
        )
    return location


def approve(authorization_url: str, *, timeout: float = 10.0) -> tuple[str, str]:
    """Approve the prompt at ``authorization_url``; return ``(code, state)``.

    Raises :class:`ApprovalError` if the provider redirects with an ``error``
    (e.g. ``access_denied``), without a code or without a state, or does not
    redirect at all.
    """
    location = authorization_redirect(authorization_url, timeout=timeout)
    params = dict(
        urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query, keep_blank_values=True)
    )
    error = params.get("error")
    if error is not None:
        description = params.get("error_description")
        detail = f": {description}" if description else ""
        raise ApprovalError(
            f"authorization refused with {error}{detail}", error=error, description=description
        )
    code, state = params.get("code"), params.get("state")
    if not code:
        raise ApprovalError("the redirect carries no code")
    if state is None:
        raise ApprovalError("the redirect carries no state")
    return code, state
