"""How an OAuth credential is stored: as the approving person's secret, delegated
to the participant that asked for it.

One credential per (approver, requester, client_id, token_endpoint): its secret
id is derived from the client id and token endpoint, so a later request for the
same client and endpoint finds it. A request whose scopes the stored token does
not cover prompts again, and the new approval replaces the stored credential.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Optional
from urllib.parse import urlsplit

from .errors import InvalidInput
from .tokens import TokenSet
from .values import frozen_value

__all__ = ["OAUTH_TOKEN_TYPE", "StoredCredential", "credential_secret_id"]

#: ``SecretInfo.type`` of OAuth credentials (SPEC.md); other secrets carry a MIME type.
OAUTH_TOKEN_TYPE = "oauth_token"

_FORMAT_VERSION = 1


def credential_secret_id(client_id: str, token_endpoint: str) -> str:
    """The secret id of the credential for ``client_id`` at ``token_endpoint``.

    A hash, so ids are fixed-length and safe as file names and AWS secret names
    whatever the client id and URL contain.
    """
    digest = hashlib.sha256(f"{token_endpoint}\n{client_id}".encode()).hexdigest()
    return f"oauth-{digest[:32]}"


@frozen_value
class StoredCredential:
    """A token set with the client and endpoints it belongs to. ``repr`` shows no token."""

    tokens: TokenSet
    client_id: str
    authorization_endpoint: str
    token_endpoint: str

    @property
    def secret_id(self) -> str:
        """Where this credential is stored (see :func:`credential_secret_id`)."""
        return credential_secret_id(self.client_id, self.token_endpoint)

    @property
    def display_name(self) -> str:
        """A name for lists: the client id and the token endpoint's host."""
        return f"{self.client_id} @ {urlsplit(self.token_endpoint).hostname or '?'}"

    def matches(self, *, client_id: str, token_endpoint: str) -> bool:
        """True when this credential is for that client at that token endpoint."""
        return self.client_id == client_id and self.token_endpoint == token_endpoint

    def with_tokens(self, tokens: TokenSet) -> StoredCredential:
        """The same credential with new tokens (after a refresh)."""
        return StoredCredential(
            tokens=tokens,
            client_id=self.client_id,
            authorization_endpoint=self.authorization_endpoint,
            token_endpoint=self.token_endpoint,
        )

    def to_json(self) -> bytes:
        """Compact JSON bytes for the store. Contains the token values."""
        data: dict[str, Any] = {
            "version": _FORMAT_VERSION,
            "client_id": self.client_id,
            "authorization_endpoint": self.authorization_endpoint,
            "token_endpoint": self.token_endpoint,
            "tokens": self.tokens.to_dict(),
        }
        return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> StoredCredential:
        """Inverse of :meth:`to_json`; InvalidInput if the bytes are not a credential."""
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise InvalidInput("stored credential is not valid JSON") from None
        if not isinstance(data, dict) or data.get("version") != _FORMAT_VERSION:
            raise InvalidInput("stored credential has an unknown format")
        fields: dict[str, Optional[str]] = {
            name: data.get(name)
            for name in ("client_id", "authorization_endpoint", "token_endpoint")
        }
        for name, value in fields.items():
            if not isinstance(value, str) or not value:
                raise InvalidInput(f"stored credential has no valid {name}")
        return cls(
            tokens=TokenSet.from_dict(data.get("tokens") or {}),
            client_id=str(fields["client_id"]),
            authorization_endpoint=str(fields["authorization_endpoint"]),
            token_endpoint=str(fields["token_endpoint"]),
        )

    def __repr__(self) -> str:
        return (
            f"StoredCredential(client_id={self.client_id!r}, "
            f"token_endpoint={self.token_endpoint!r}, tokens={self.tokens!r})"
        )
