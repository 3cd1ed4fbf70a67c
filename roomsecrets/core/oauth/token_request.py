"""Token endpoint requests as data (RFC 6749 §4.1.3, §6; client auth §2.3.1).

The functions return an :class:`~roomsecrets.core.oauth.http.HttpRequest`; sending it
is the transport's job.
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Sequence
from typing import Optional
from urllib.parse import quote_plus, urlencode

from ..errors import ConfigurationError, InvalidInput
from ..values import frozen_value
from .endpoints import check_endpoint, check_redirect_uri
from .http import HttpRequest
from .pkce import validate_verifier
from .scopes import join_scopes

__all__ = [
    "ClientAuthMethod",
    "ClientCredentials",
    "build_authorization_code_request",
    "build_client_authenticated_request",
    "build_refresh_request",
]


class ClientAuthMethod(enum.Enum):
    """How the client authenticates to the token endpoint."""

    #: Public client: ``client_id`` in the body, no secret (PKCE protects the code).
    NONE = "none"
    #: HTTP Basic with the form-urlencoded id and secret (RFC 6749 §2.3.1).
    CLIENT_SECRET_BASIC = "client_secret_basic"
    #: ``client_id`` and ``client_secret`` in the body (RFC 6749 §2.3.1).
    CLIENT_SECRET_POST = "client_secret_post"


@frozen_value
class ClientCredentials:
    """A client's id, optional secret and auth method. ``repr`` hides the secret.

    With a secret and no method given, ``client_secret_basic`` is used: RFC 6749
    §2.3.1 says servers MUST support it.
    """

    client_id: str
    client_secret: Optional[str] = None
    method: Optional[ClientAuthMethod] = None

    def __post_init__(self) -> None:
        if not isinstance(self.client_id, str) or not self.client_id:
            raise InvalidInput("client_id must be a non-empty string")
        if self.client_secret is not None and (
            not isinstance(self.client_secret, str) or not self.client_secret
        ):
            raise InvalidInput("client_secret must be a non-empty string or None")
        method = self.method
        if method is None:
            method = (
                ClientAuthMethod.NONE
                if self.client_secret is None
                else ClientAuthMethod.CLIENT_SECRET_BASIC
            )
            object.__setattr__(self, "method", method)
        if method is not ClientAuthMethod.NONE and self.client_secret is None:
            raise ConfigurationError(f"client auth method {method.value} needs a client_secret")
        if method is ClientAuthMethod.NONE and self.client_secret is not None:
            raise ConfigurationError("client auth method none cannot carry a client_secret")

    @property
    def auth_method(self) -> ClientAuthMethod:
        """The effective method (never None after construction)."""
        assert self.method is not None  # set in __post_init__
        return self.method

    def __repr__(self) -> str:
        secret = "<hidden>" if self.client_secret is not None else None
        return (
            f"ClientCredentials(client_id={self.client_id!r}, client_secret={secret}, "
            f"method={self.auth_method.value!r})"
        )


_FORM_HEADERS = (
    ("Content-Type", "application/x-www-form-urlencoded"),
    ("Accept", "application/json"),
)


def build_client_authenticated_request(
    endpoint: str,
    client: ClientCredentials,
    form: list[tuple[str, str]],
    allow_insecure_http: bool = False,
    *,
    what: str = "token_endpoint",
) -> HttpRequest:
    """A form POST of ``form`` to ``endpoint``, authenticated as ``client``.

    The one implementation of RFC 6749 §2.3.1 client authentication, shared by
    the token endpoint (§4.1.3, §6) and the revocation endpoint (RFC 7009 §2.1,
    which asks for the same credentials): ``client_secret_basic`` puts the
    form-encoded id and secret in ``Authorization: Basic``,
    ``client_secret_post`` puts them in the body, and a public client sends its
    ``client_id`` in the body. ``form`` is extended in place. ``what`` names the
    endpoint in the error an unusable URL raises (InvalidInput,
    InsecureEndpointError).
    """
    check_endpoint(endpoint, what=what, allow_insecure_http=allow_insecure_http)
    headers = list(_FORM_HEADERS)
    method = client.auth_method
    if method is ClientAuthMethod.CLIENT_SECRET_BASIC:
        assert client.client_secret is not None
        # RFC 6749 §2.3.1: id and secret are form-urlencoded (Appendix B) *before*
        # base64, so "a b:c" becomes "a+b%3Ac"; many clients forget this.
        pair = f"{quote_plus(client.client_id)}:{quote_plus(client.client_secret)}"
        headers.append(("Authorization", "Basic " + base64.b64encode(pair.encode()).decode()))
    else:
        # RFC 6749 §4.1.3: a client that does not authenticate sends client_id.
        form.append(("client_id", client.client_id))
        if method is ClientAuthMethod.CLIENT_SECRET_POST:
            assert client.client_secret is not None
            form.append(("client_secret", client.client_secret))
    return HttpRequest(
        method="POST",
        url=endpoint,
        headers=tuple(headers),
        body=urlencode(form).encode("ascii"),
    )


def build_authorization_code_request(
    *,
    token_endpoint: str,
    client: ClientCredentials,
    code: str,
    redirect_uri: str,
    code_verifier: Optional[str] = None,
    allow_insecure_http: bool = False,
    resource: Optional[str] = None,
) -> HttpRequest:
    """The ``authorization_code`` grant request (RFC 6749 §4.1.3, RFC 7636 §4.5).

    ``redirect_uri`` must be the one sent in the authorization request;
    ``code_verifier`` is None only when PKCE was turned off. ``resource`` is the
    RFC 8707 §2.2 resource indicator the token is for.
    """
    if not isinstance(code, str) or not code:
        raise InvalidInput("authorization code must be a non-empty string")
    check_redirect_uri(redirect_uri, allow_insecure_http=allow_insecure_http)
    form = [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirect_uri)]
    if code_verifier is not None:
        form.append(("code_verifier", validate_verifier(code_verifier)))
    if resource is not None:
        form.append(("resource", resource))
    return build_client_authenticated_request(token_endpoint, client, form, allow_insecure_http)


def build_refresh_request(
    *,
    token_endpoint: str,
    client: ClientCredentials,
    refresh_token: str,
    scopes: Optional[Sequence[str]] = None,
    allow_insecure_http: bool = False,
    resource: Optional[str] = None,
) -> HttpRequest:
    """The ``refresh_token`` grant request (RFC 6749 §6).

    ``scopes`` narrows the new token; None asks for the scopes originally granted.
    ``resource``: the RFC 8707 §2.2 resource indicator, sent again on refresh.
    """
    if not isinstance(refresh_token, str) or not refresh_token:
        raise InvalidInput("refresh token must be a non-empty string")
    form = [("grant_type", "refresh_token"), ("refresh_token", refresh_token)]
    scope = join_scopes(scopes)
    if scope is not None:
        form.append(("scope", scope))
    if resource is not None:
        form.append(("resource", resource))
    return build_client_authenticated_request(token_endpoint, client, form, allow_insecure_http)
