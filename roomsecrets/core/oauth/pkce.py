"""PKCE (RFC 7636): code verifiers and their S256 challenges.

Only S256 is offered. RFC 7636 §4.2 allows ``plain`` for clients that cannot
hash, which every Python can, and ``plain`` sends the verifier itself through
the browser; we never use it.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from typing import Callable

from ..errors import ConfigurationError, InvalidInput

__all__ = [
    "MAX_VERIFIER_LENGTH",
    "MIN_VERIFIER_LENGTH",
    "generate_pkce_pair",
    "generate_verifier",
    "s256_challenge",
    "validate_verifier",
]

#: RFC 7636 §4.1: code-verifier = 43*128unreserved.
MIN_VERIFIER_LENGTH = 43
MAX_VERIFIER_LENGTH = 128

# RFC 7636 §4.1: unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


def generate_verifier(
    length: int = 64, *, token_bytes: Callable[[int], bytes] = secrets.token_bytes
) -> str:
    """Return a fresh code verifier of ``length`` characters (43-128).

    The characters are base64url (a subset of the unreserved set), 6 random bits
    each, so even the shortest verifier carries 258 bits (RFC 7636 §7.1 asks
    for 256). ``token_bytes`` is the randomness source, injected for tests.

    >>> len(generate_verifier())
    64
    """
    if type(length) is not int or not MIN_VERIFIER_LENGTH <= length <= MAX_VERIFIER_LENGTH:
        raise InvalidInput(
            f"PKCE verifier length must be an int from {MIN_VERIFIER_LENGTH} "
            f"to {MAX_VERIFIER_LENGTH}"
        )
    # 3 random bytes encode to 4 characters; draw enough and cut to length.
    raw = token_bytes((length * 3 + 3) // 4)
    if not isinstance(raw, bytes):
        raise ConfigurationError("the randomness source must return bytes")
    verifier = base64.urlsafe_b64encode(raw)[:length].decode("ascii")
    if len(verifier) < length or "=" in verifier:
        # An injected source that returned too few bytes: a short, guessable verifier.
        raise ConfigurationError("the randomness source returned too few bytes for the verifier")
    return verifier


def validate_verifier(verifier: object) -> str:
    """Return ``verifier`` if it is a valid RFC 7636 §4.1 code verifier, else raise.

    The message never contains the verifier.
    """
    if not isinstance(verifier, str) or _VERIFIER.fullmatch(verifier) is None:
        raise InvalidInput(
            "PKCE code verifier must be 43-128 characters of [A-Za-z0-9-._~] (RFC 7636 §4.1)"
        )
    return verifier


def s256_challenge(verifier: str) -> str:
    """Return BASE64URL(SHA256(ASCII(verifier))) without padding (RFC 7636 §4.2).

    Raises :class:`~roomsecrets.core.errors.InvalidInput` for an invalid verifier.
    """
    validate_verifier(verifier)
    return _challenge(verifier)


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def generate_pkce_pair(
    length: int = 64, *, token_bytes: Callable[[int], bytes] = secrets.token_bytes
) -> tuple[str, str]:
    """Return ``(verifier, s256_challenge)`` for a fresh verifier.

    The verifier is valid by construction, so it is not validated again.
    """
    verifier = generate_verifier(length, token_bytes=token_bytes)
    return verifier, _challenge(verifier)
