"""``TokenSet``: what a token endpoint gave us, with absolute expiry.

``expires_at`` is computed once, at receipt, from an injected clock
(``issued_at + expires_in``), so the refresh decision is a pure function of
the token set and the time the caller passes in.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from ..errors import InvalidInput
from ..values import frozen_value

__all__ = ["DEFAULT_REFRESH_LEEWAY", "TokenSet"]

#: Refresh this many seconds before expiry, unless the token lives too briefly (see
#: :meth:`TokenSet.needs_refresh`).
DEFAULT_REFRESH_LEEWAY = 60.0

# A fresh token is never treated as expiring: the leeway is capped at this
# fraction of the token's lifetime, so 30-second and 3-second tokens still work.
_MAX_LEEWAY_FRACTION = 0.5

_FORMAT_VERSION = 1


@frozen_value
class TokenSet:
    """An access token with what came with it.

    ``repr``/``str`` show the token type, times and scopes, never token values.

    >>> tokens = TokenSet(access_token="at", issued_at=1000.0, expires_at=4600.0)
    >>> tokens.needs_refresh(now=1000.0)
    False
    >>> tokens.needs_refresh(now=4550.0)
    True
    """

    access_token: str
    #: When the token was received (clock seconds).
    issued_at: float
    token_type: str = "Bearer"
    refresh_token: Optional[str] = None
    #: Absolute expiry (clock seconds); None when the token does not expire.
    expires_at: Optional[float] = None
    #: Scopes the token carries: as granted when the provider said, else as requested.
    scopes: tuple[str, ...] = ()
    id_token: Optional[str] = None
    #: Other fields of the token response (JSON values), kept for callers.
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.access_token, str) or not self.access_token:
            raise InvalidInput("TokenSet.access_token must be a non-empty string")
        if not isinstance(self.token_type, str) or not self.token_type:
            raise InvalidInput("TokenSet.token_type must be a non-empty string")
        if self.refresh_token is not None and (
            not isinstance(self.refresh_token, str) or not self.refresh_token
        ):
            raise InvalidInput("TokenSet.refresh_token must be a non-empty string or None")
        if not _is_finite_number(self.issued_at):
            raise InvalidInput("TokenSet.issued_at must be a finite number")
        if self.expires_at is not None and not _is_finite_number(self.expires_at):
            raise InvalidInput("TokenSet.expires_at must be a finite number or None")
        if isinstance(self.scopes, str) or not all(isinstance(s, str) for s in self.scopes):
            raise InvalidInput("TokenSet.scopes must be a sequence of strings")
        object.__setattr__(self, "scopes", tuple(self.scopes))
        if not isinstance(self.extra, Mapping):
            raise InvalidInput("TokenSet.extra must be a mapping")

    @property
    def lifetime(self) -> Optional[float]:
        """Seconds from receipt to expiry, or None when the token does not expire."""
        if self.expires_at is None:
            return None
        return max(0.0, self.expires_at - self.issued_at)

    def needs_refresh(self, now: float, leeway: float = DEFAULT_REFRESH_LEEWAY) -> bool:
        """True when the token is expired or within ``leeway`` seconds of expiry.

        The leeway is capped at half the token's lifetime, so a freshly issued
        token is never treated as expiring, however short-lived it is.
        """
        if self.expires_at is None:
            return False
        lifetime = self.expires_at - self.issued_at
        effective = min(max(leeway, 0.0), max(lifetime, 0.0) * _MAX_LEEWAY_FRACTION)
        return now >= self.expires_at - effective

    def covers(self, requested: Optional[Sequence[str]]) -> bool:
        """True when every requested scope is among this token's scopes."""
        if not requested:
            return True
        # One C call, where all(genexpr) ran a generator: it runs on every token read.
        return set(self.scopes).issuperset(requested)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, for storage. It contains the token values."""
        return {
            "version": _FORMAT_VERSION,
            "access_token": self.access_token,
            "token_type": self.token_type,
            "refresh_token": self.refresh_token,
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "scopes": list(self.scopes),
            "id_token": self.id_token,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TokenSet:
        """Rebuild a TokenSet from :meth:`to_dict` output; InvalidInput if malformed."""
        if not isinstance(data, Mapping):
            raise InvalidInput("stored token set must be a JSON object")
        if data.get("version") != _FORMAT_VERSION:
            raise InvalidInput("stored token set has an unknown format version")
        try:
            return cls(
                access_token=data["access_token"],
                token_type=data["token_type"],
                refresh_token=data.get("refresh_token"),
                issued_at=data["issued_at"],
                expires_at=data.get("expires_at"),
                scopes=tuple(data.get("scopes") or ()),
                id_token=data.get("id_token"),
                extra=dict(data.get("extra") or {}),
            )
        except (KeyError, TypeError) as exc:
            raise InvalidInput(
                f"stored token set is missing or mistypes a field ({exc.__class__.__name__})"
            ) from None

    def to_json(self) -> bytes:
        """:meth:`to_dict` as compact UTF-8 JSON bytes."""
        import json  # here, not at the top: the user's import stays cheap (bench_import)

        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> TokenSet:
        """Inverse of :meth:`to_json`."""
        import json  # here, not at the top: the user's import stays cheap (bench_import)

        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise InvalidInput("stored token set is not valid JSON") from None
        return cls.from_dict(data)

    def __repr__(self) -> str:
        return (
            f"TokenSet(token_type={self.token_type!r}, issued_at={self.issued_at!r}, "
            f"expires_at={self.expires_at!r}, scopes={self.scopes!r}, "
            f"has_refresh_token={self.refresh_token is not None}, "
            f"has_id_token={self.id_token is not None}, extra_keys={sorted(self.extra)!r})"
        )

    __str__ = __repr__


def _is_finite_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False
