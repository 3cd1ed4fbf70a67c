"""Registering our client at an authorization server: OAuth 2.0 Dynamic Client
Registration (RFC 7591).

The MCP broker (``core/broker.py``) registers the room server once per
authorization server and keeps the result in the store, owned by the server.

* :func:`build_registration_request` builds the §3.1 POST: our redirect URI,
  grant types ``authorization_code`` and ``refresh_token``, response type
  ``code``, and the scopes asked for. It names no ``token_endpoint_auth_method``:
  the server picks, and :func:`parse_registration_response` records what it
  answered (§3.2.1), which every later token request and revocation uses.
* :class:`ClientRegistration` is what is kept; ``repr`` hides the secret.

Everything here is sans-I/O: data in, data out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

from ..errors import (
    InvalidInput,
    ProviderResponseError,
    ProviderUnavailable,
    RegistrationRefused,
    ResponseTooLarge,
    safe_text,
)
from ..inputs import MAX_CLIENT_ID, MAX_CLIENT_SECRET, check_vschar
from ..values import frozen_value
from .endpoints import check_endpoint
from .http import Headers, HttpRequest, header_value
from .token_request import ClientAuthMethod, ClientCredentials
from .token_response import parse_retry_after

__all__ = [
    "MAX_REGISTRATION_BYTES",
    "REGISTRATION_TYPE",
    "ClientRegistration",
    "build_registration_request",
    "parse_registration_response",
]

#: Registration answers echo the metadata sent plus a few fields: small.
MAX_REGISTRATION_BYTES = 64 * 1024

#: The type of the store record that keeps a registration.
REGISTRATION_TYPE = "application/vnd.roomsecrets.client-registration+json"

#: The client name we register with (RFC 7591 §2 ``client_name``, shown to people).
CLIENT_NAME = "roomsecrets"

_METHODS = {method.value: method for method in ClientAuthMethod}


@frozen_value
class ClientRegistration:
    """A client the server registered at ``issuer`` (RFC 7591 §3.2.1).

    ``auth_method`` is how the client authenticates at the token endpoint, as the
    server answered (``none`` for a public client). ``secret_expires_at`` is
    RFC 7591's ``client_secret_expires_at`` (None: it does not expire).
    """

    issuer: str
    registration_endpoint: str
    redirect_uri: str
    client_id: str
    client_secret: Optional[str] = None
    auth_method: ClientAuthMethod = ClientAuthMethod.NONE
    secret_expires_at: Optional[float] = None

    def __post_init__(self) -> None:
        if self.auth_method is not ClientAuthMethod.NONE and not self.client_secret:
            raise InvalidInput(f"a {self.auth_method.value} client needs a client_secret")

    @property
    def client(self) -> ClientCredentials:
        """The credentials token requests authenticate with."""
        if self.auth_method is ClientAuthMethod.NONE:
            return ClientCredentials(client_id=self.client_id)
        return ClientCredentials(
            client_id=self.client_id, client_secret=self.client_secret, method=self.auth_method
        )

    def expired(self, now: float) -> bool:
        """True once the client secret has expired (RFC 7591 §3.2.1)."""
        return self.secret_expires_at is not None and now >= self.secret_expires_at

    def to_json(self) -> bytes:
        import json  # here, not at the top: the user's import stays cheap (bench_import)

        data: dict[str, Any] = {
            "version": 1,
            "issuer": self.issuer,
            "registration_endpoint": self.registration_endpoint,
            "redirect_uri": self.redirect_uri,
            "client_id": self.client_id,
            "token_endpoint_auth_method": self.auth_method.value,
        }
        if self.client_secret is not None:
            data["client_secret"] = self.client_secret
        if self.secret_expires_at is not None:
            data["client_secret_expires_at"] = self.secret_expires_at
        return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ClientRegistration:
        """Inverse of :meth:`to_json`; InvalidInput if the bytes are not one."""
        import json

        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise InvalidInput("stored registration is not valid JSON") from None
        if not isinstance(data, dict) or data.get("version") != 1:
            raise InvalidInput("stored registration has an unknown format")
        strings = {
            name: data.get(name)
            for name in ("issuer", "registration_endpoint", "redirect_uri", "client_id")
        }
        if not all(isinstance(v, str) and v for v in strings.values()):
            raise InvalidInput("stored registration lacks a field")
        method = _METHODS.get(data.get("token_endpoint_auth_method"))  # type: ignore[arg-type]
        secret = data.get("client_secret")
        expires = data.get("client_secret_expires_at")
        if method is None or not (secret is None or isinstance(secret, str)):
            raise InvalidInput("stored registration has an unknown format")
        return cls(
            issuer=str(strings["issuer"]),
            registration_endpoint=str(strings["registration_endpoint"]),
            redirect_uri=str(strings["redirect_uri"]),
            client_id=str(strings["client_id"]),
            client_secret=secret,
            auth_method=method,
            secret_expires_at=float(expires) if isinstance(expires, (int, float)) else None,
        )

    def __repr__(self) -> str:
        return (
            f"ClientRegistration(issuer={self.issuer!r}, client_id={self.client_id!r}, "
            f"auth_method={self.auth_method.value!r})"
        )


def build_registration_request(
    *,
    registration_endpoint: str,
    redirect_uri: str,
    scopes: Optional[Sequence[str]] = None,
    allow_insecure_http: bool = False,
) -> HttpRequest:
    """The RFC 7591 §3.1 registration request for our client."""
    import json

    check_endpoint(
        registration_endpoint, what="registration_endpoint", allow_insecure_http=allow_insecure_http
    )
    metadata: dict[str, Any] = {
        "redirect_uris": [redirect_uri],
        # RFC 7591 §2: the grants we use, and the response type they imply.
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "client_name": CLIENT_NAME,
    }
    if scopes:
        metadata["scope"] = " ".join(scopes)
    return HttpRequest(
        method="POST",
        url=registration_endpoint,
        headers=(("Content-Type", "application/json"), ("Accept", "application/json")),
        body=json.dumps(metadata).encode(),
    )


def parse_registration_response(
    *,
    issuer: str,
    registration_endpoint: str,
    redirect_uri: str,
    status: int,
    headers: Headers,
    body: bytes,
    now: float,
    max_body: int = MAX_REGISTRATION_BYTES,
) -> ClientRegistration:
    """Turn the answer to a registration request into a :class:`ClientRegistration`.

    Raises:
        RegistrationRefused: a 4xx answer (RFC 7591 §3.2.2; its ``error`` and
            description, any echoed secret scrubbed).
        ProviderUnavailable: 5xx or 429 (retryable).
        ResponseTooLarge: the body is over ``max_body`` bytes.
        ProviderResponseError: a 2xx answer that is not a usable registration (no
            ``client_id``; an auth method we do not speak; a secret method
            without a secret).
    """
    import json

    if len(body) > max_body:
        raise ResponseTooLarge(
            f"registration answer of {len(body)} bytes exceeds the {max_body}-byte cap",
            status=status,
        )
    if status >= 500 or status == 429:
        raise ProviderUnavailable(
            f"the registration endpoint is unavailable (HTTP {status})",
            status=status,
            retry_after=parse_retry_after(header_value(headers, "Retry-After"), now),
        )
    try:
        fields = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        fields = None
    if not isinstance(fields, dict):
        fields = {}
    if 400 <= status < 500:
        error = fields.get("error")
        description = fields.get("error_description")
        raise RegistrationRefused(
            error if isinstance(error, str) else "registration_refused",
            description if isinstance(description, str) else None,
            status=status,
        )
    if not 200 <= status < 300:
        raise ProviderResponseError(
            f"the registration answer is HTTP {status}, not 201 (RFC 7591 §3.2.1)", status=status
        )
    client_id = fields.get("client_id")
    secret = fields.get("client_secret")
    try:
        # RFC 6749 Appendix A: both are VSCHAR; held to the lengths agents' are.
        check_vschar(client_id, "the registered client_id", limit=MAX_CLIENT_ID)
        if secret is not None:
            check_vschar(secret, "the registered client_secret", limit=MAX_CLIENT_SECRET)
    except InvalidInput as bad:
        raise ProviderResponseError(
            f"the registration answer is unusable (RFC 7591 §3.2.1): {bad}", status=status
        ) from None
    assert isinstance(client_id, str)
    named = fields.get("token_endpoint_auth_method")
    if named is None:
        # RFC 7591 §2: the default is client_secret_basic; a server that issued no
        # secret cannot mean it, so a client without one is public.
        method = (
            ClientAuthMethod.CLIENT_SECRET_BASIC if secret is not None else ClientAuthMethod.NONE
        )
    else:
        found = _METHODS.get(named) if isinstance(named, str) else None
        if found is None:
            shown = safe_text(named, 60) if isinstance(named, str) else type(named).__name__
            raise ProviderResponseError(
                f"the server registered us for token_endpoint_auth_method {shown!r}, which "
                "this server does not speak (none, client_secret_basic, client_secret_post)",
                status=status,
            )
        method = found
    if method is not ClientAuthMethod.NONE and secret is None:
        raise ProviderResponseError(
            f"the server registered us for {method.value} without a client_secret",
            status=status,
        )
    expires = fields.get("client_secret_expires_at")
    return ClientRegistration(
        issuer=issuer,
        registration_endpoint=registration_endpoint,
        redirect_uri=redirect_uri,
        client_id=client_id,
        client_secret=secret if method is not ClientAuthMethod.NONE else None,
        auth_method=method,
        # RFC 7591 §3.2.1: 0 means the secret does not expire.
        secret_expires_at=(
            float(expires)
            # 0: never (RFC 7591 §3.2.1); past year 9999 is no date a clock reaches.
            if isinstance(expires, (int, float))
            and not isinstance(expires, bool)
            and 0 < expires < 253_402_300_800
            else None
        ),
    )
