"""How an OAuth credential is stored: as the approving person's secret, delegated
to the participant that asked for it.

One credential per (approver, requester, client_id, token_endpoint): its secret
id is derived from the client id and token endpoint, so a later request for the
same client and endpoint finds it. A request whose scopes the stored token does
not cover prompts again, and the new approval replaces the stored credential.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Optional
from urllib.parse import urlsplit

from .errors import InvalidInput
from .oauth.token_request import ClientAuthMethod
from .oauth.tokens import TokenSet
from .values import frozen_value

__all__ = [
    "OAUTH_TOKEN_TYPE",
    "StoredCredential",
    "brokered_credential_id",
    "credential_secret_id",
]

#: ``SecretInfo.type`` of OAuth credentials (SPEC.md); other secrets carry a MIME type.
OAUTH_TOKEN_TYPE = "oauth_token"

#: Format 1 has no issuer, revocation endpoint or client secret; the writer uses it
#: whenever none is set, so records readable by older versions stay that way.
_FORMAT_VERSION = 1
#: Format 2 adds ``issuer``, ``revocation_endpoint``, ``client_secret`` and
#: ``client_auth_method`` (each written only when set).
_FORMAT_VERSION_REVOCABLE = 2
#: Format 3 adds ``resource`` (RFC 8707) and ``brokered`` (the client is the
#: server's own registration, RFC 7591); written only when one is set.
_FORMAT_VERSION_RESOURCE = 3
_OPTIONAL_FIELDS = ("issuer", "revocation_endpoint", "client_secret")
_METHOD_FIELD = "client_auth_method"
#: The methods a credential records: only those that differ from the default
#: (``client_secret_basic`` with a secret, ``none`` without), so a credential
#: that uses the default is written exactly as before.
_RECORDED_METHODS = frozenset({ClientAuthMethod.CLIENT_SECRET_POST})


def credential_secret_id(
    client_id: str, token_endpoint: str, resource: Optional[str] = None
) -> str:
    """The secret id of the credential for ``client_id`` at ``token_endpoint`` (for
    ``resource``, RFC 8707, when the request named one).

    A hash, so ids are fixed-length and safe as file names and AWS secret names
    whatever the client id and URL contain.
    """
    text = f"{token_endpoint}\n{client_id}"
    if resource is not None:
        text += f"\n{resource}"
    digest = hashlib.sha256(text.encode()).hexdigest()
    return f"oauth-{digest[:32]}"


def brokered_credential_id(resource: str) -> str:
    """The secret id of the credential the broker got for ``resource`` (an MCP server's
    URL): by the resource alone, so the credential is found without discovery and
    outlives a new registration of the server's client."""
    digest = hashlib.sha256(f"resource\n{resource}".encode()).hexdigest()
    return f"oauth-{digest[:32]}"


@frozen_value
class StoredCredential:
    """A token set with the client and endpoints it belongs to. ``repr`` shows no token.

    ``issuer`` is the provider's issuer identifier when the credential was
    obtained through discovery (RFC 8414). ``revocation_endpoint`` is where
    ``delete_user_secret`` revokes it (RFC 7009). ``client_secret`` is kept only
    together with a revocation endpoint, because RFC 7009 §2.1 requires client
    authentication and the person who deletes the credential does not know the
    agent's client secret. This is a deliberate trade-off: the store already
    holds the refresh token, which is worth more than the client secret alone.
    ``repr`` shows none of the three.

    ``client_auth_method`` is how the client authenticated when the code was
    exchanged (RFC 6749 §2.3.1), so refreshes and the revocation use the same
    one: None for the default (``client_secret_basic`` with a secret, ``none``
    without), else ``ClientAuthMethod.CLIENT_SECRET_POST``.

    ``resource`` is the RFC 8707 resource indicator the token is for, sent again
    on every refresh. ``brokered`` says the client is the server's own
    registration (the MCP broker, RFC 7591), not an agent's: its secret is the
    server's, kept so the server can refresh and revoke with no agent present.
    """

    tokens: TokenSet
    client_id: str
    authorization_endpoint: str
    token_endpoint: str
    issuer: Optional[str] = None
    revocation_endpoint: Optional[str] = None
    client_secret: Optional[str] = None
    client_auth_method: Optional[ClientAuthMethod] = None
    resource: Optional[str] = None
    brokered: bool = False

    def __post_init__(self) -> None:
        for name in _OPTIONAL_FIELDS:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise InvalidInput(f"stored credential has no valid {name}")
        if self.resource is not None and (not isinstance(self.resource, str) or not self.resource):
            raise InvalidInput("stored credential has no valid resource")
        if not isinstance(self.brokered, bool) or (self.brokered and self.resource is None):
            raise InvalidInput("a brokered credential names its resource")
        if (
            self.client_secret is not None
            and self.revocation_endpoint is None
            and not self.brokered
        ):
            # Kept only for revocation, or as the server's own (see the class docstring).
            raise InvalidInput("a stored credential keeps a client_secret only for revocation")
        method = self.client_auth_method
        if method is not None:
            if method not in _RECORDED_METHODS:
                # One spelling per meaning: the default is recorded as None.
                raise InvalidInput("stored credential has no valid client_auth_method")
            if (
                self.revocation_endpoint is not None or self.brokered
            ) and self.client_secret is None:
                raise InvalidInput("a stored credential revoked with a client secret keeps it")

    @property
    def secret_id(self) -> str:
        """Where this credential is stored (see :func:`credential_secret_id` and
        :func:`brokered_credential_id`)."""
        if self.brokered:
            assert self.resource is not None
            return brokered_credential_id(self.resource)
        return credential_secret_id(self.client_id, self.token_endpoint, self.resource)

    @property
    def display_name(self) -> str:
        """A name for lists: the client id and the token endpoint's host."""
        return f"{self.client_id} @ {urlsplit(self.token_endpoint).hostname or '?'}"

    def matches(self, *, client_id: str, token_endpoint: str) -> bool:
        """True when this credential is for that client at that token endpoint."""
        return self.client_id == client_id and self.token_endpoint == token_endpoint

    def with_tokens(self, tokens: TokenSet) -> StoredCredential:
        """The same credential with new tokens (after a refresh)."""
        return dataclasses.replace(self, tokens=tokens)

    def to_json(self) -> bytes:
        """Compact JSON bytes for the store. Contains the token values (and the
        client secret, when one is kept).

        Format 1 when none of ``issuer``, ``revocation_endpoint``,
        ``client_secret`` and ``client_auth_method`` is set, format 2 otherwise.
        """
        data: dict[str, Any] = {
            "version": _FORMAT_VERSION,
            "client_id": self.client_id,
            "authorization_endpoint": self.authorization_endpoint,
            "token_endpoint": self.token_endpoint,
            "tokens": self.tokens.to_dict(),
        }
        for name in _OPTIONAL_FIELDS:
            value = getattr(self, name)
            if value is not None:
                data[name] = value
                data["version"] = _FORMAT_VERSION_REVOCABLE
        if self.client_auth_method is not None:
            data[_METHOD_FIELD] = self.client_auth_method.value
            data["version"] = _FORMAT_VERSION_REVOCABLE
        if self.resource is not None:
            data["resource"] = self.resource
            data["version"] = _FORMAT_VERSION_RESOURCE
        if self.brokered:
            data["brokered"] = True
        import json  # here, not at the top: the user's import stays cheap (bench_import)

        return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> StoredCredential:
        """Inverse of :meth:`to_json` (formats 1 and 2); InvalidInput if the bytes are
        not a credential."""
        import json  # here, not at the top: the user's import stays cheap (bench_import)

        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise InvalidInput("stored credential is not valid JSON") from None
        if not isinstance(data, dict):
            raise InvalidInput("stored credential has an unknown format")
        version = data.get("version")
        # The writer uses format 2 only with at least one of its fields, so a
        # "format 2" record without any was not written by us.
        if type(version) is not int or not (
            version == _FORMAT_VERSION
            or (version == _FORMAT_VERSION_RESOURCE and isinstance(data.get("resource"), str))
            or (
                version == _FORMAT_VERSION_REVOCABLE
                and any(
                    data.get(name) is not None for name in (*_OPTIONAL_FIELDS, _METHOD_FIELD)
                )
            )
        ):
            raise InvalidInput("stored credential has an unknown format")
        fields: dict[str, Optional[str]] = {
            name: data.get(name)
            for name in ("client_id", "authorization_endpoint", "token_endpoint")
        }
        for name, value in fields.items():
            if not isinstance(value, str) or not value:
                raise InvalidInput(f"stored credential has no valid {name}")
        optional: dict[str, Any] = {}
        if version == _FORMAT_VERSION_RESOURCE:
            optional["resource"] = data.get("resource")
            optional["brokered"] = data.get("brokered", False)
        if version in (_FORMAT_VERSION_REVOCABLE, _FORMAT_VERSION_RESOURCE):
            optional.update({name: data.get(name) for name in _OPTIONAL_FIELDS})
            method = data.get(_METHOD_FIELD)
            if method is not None:
                try:
                    optional[_METHOD_FIELD] = ClientAuthMethod(method)
                except (ValueError, TypeError):
                    raise InvalidInput(
                        "stored credential has no valid client_auth_method"
                    ) from None
        return cls(
            tokens=TokenSet.from_dict(data.get("tokens") or {}),
            client_id=str(fields["client_id"]),
            authorization_endpoint=str(fields["authorization_endpoint"]),
            token_endpoint=str(fields["token_endpoint"]),
            **optional,
        )

    def __repr__(self) -> str:
        return (
            f"StoredCredential(client_id={self.client_id!r}, "
            f"token_endpoint={self.token_endpoint!r}, tokens={self.tokens!r})"
        )
