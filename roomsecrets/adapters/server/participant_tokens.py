"""Participant tokens: HS256 JWTs (PyJWT) that say who is calling, in which room, with
what grant (SPEC.md, "The room server").

Claims: ``room``, ``sub`` (participant id), ``name`` (display name or null),
``grant`` (``SecretsGrant.to_dict()``), ``exp`` (and ``iat``). Reading one
accepts HS256 only, so ``alg: none`` and RS/HS confusion tokens are refused;
an expired token, a wrong signature, a missing claim, a malformed grant or a
token for another room raises
:class:`~roomsecrets.adapters.server.http_api.InvalidParticipantToken` (HTTP 401). The
messages say which check failed, never the token.

Example::

    key = secrets.token_bytes(32)
    token = mint_participant_token(key, room="myroom", participant_id="agent-1",
                                   grant=SecretsGrant.allow_all(), ttl=3600)
    who = read_participant_token(token, key, room="myroom")
    who.participant_id, who.grant
"""

from __future__ import annotations

import math
import time
from typing import Callable, Optional, Union

import jwt

from ...core.errors import InvalidInput
from ...core.grants import SecretsGrant
from ...core.inputs import check_id, check_name, check_not_reserved
from ...core.values import frozen_value
from .http_api import InvalidParticipantToken

__all__ = [
    "ParticipantToken",
    "VerifiedTokens",
    "mint_participant_token",
    "read_participant_token",
]

_ALGORITHM = "HS256"
_REQUIRED = ("room", "sub", "grant", "exp")
# The shortest key we sign with: RFC 7518 §3.2 asks for a key at least as long
# as the hash output (32 bytes for HS256).
MIN_KEY_BYTES = 32
#: The longest token :func:`mint_participant_token` makes: it travels in an
#: ``Authorization: Bearer`` header, and aiohttp's server refuses a header value
#: over 8190 bytes (``max_field_size``) with a plain-text 400 before any handler runs.
MAX_TOKEN_LENGTH = 8190 - len("Bearer ")

Key = Union[str, bytes]


@frozen_value
class ParticipantToken:
    """A verified participant token's claims."""

    room: str
    participant_id: str
    name: Optional[str]
    grant: SecretsGrant
    expires_at: float


def _key_bytes(key: Key) -> bytes:
    raw = key.encode("utf-8") if isinstance(key, str) else key
    if not isinstance(raw, bytes) or len(raw) < MIN_KEY_BYTES:
        raise InvalidInput(f"the signing key must be at least {MIN_KEY_BYTES} bytes")
    return raw


def mint_participant_token(
    key: Key,
    *,
    room: str,
    participant_id: str,
    name: Optional[str] = None,
    grant: Optional[SecretsGrant] = None,
    ttl: float = 3600.0,
    now: Optional[float] = None,
) -> str:
    """A signed token for ``participant_id`` in ``room``, valid for ``ttl`` seconds.

    ``grant`` defaults to ``SecretsGrant()`` (own secrets and own prompts only).
    Raises InvalidInput for a short key, a bad id, name or ttl, or a grant so
    large that the token would be over :data:`MAX_TOKEN_LENGTH` characters.
    """
    check_id(room, "room")
    check_id(participant_id, "participant_id")
    # No token may act as the server's own records (client registrations).
    check_not_reserved(room, "room names")
    check_not_reserved(participant_id, "participant ids")
    check_name(name, "name")
    if grant is None:
        grant = SecretsGrant()
    if not isinstance(grant, SecretsGrant):
        raise InvalidInput("grant must be a SecretsGrant")
    if (
        isinstance(ttl, bool)
        or not isinstance(ttl, (int, float))
        or not (ttl > 0 and math.isfinite(ttl))
    ):
        raise InvalidInput("ttl must be a positive number of seconds")
    issued = time.time() if now is None else now
    claims = {
        "room": room,
        "sub": participant_id,
        "name": name,
        "grant": grant.to_dict(),
        "iat": int(issued),
        "exp": int(issued + ttl),
    }
    token = jwt.encode(claims, _key_bytes(key), algorithm=_ALGORITHM)
    if len(token) > MAX_TOKEN_LENGTH:
        # A server could never read it: better refused now than a 400 on every call.
        raise InvalidInput(
            f"the token would be {len(token)} characters, over the {MAX_TOKEN_LENGTH} "
            "a request header holds: give it a smaller grant (fewer or shorter rules)"
        )
    return token


def read_participant_token(token: str, key: Key, *, room: str) -> ParticipantToken:
    """Verify ``token`` (HS256, signature, expiry, claims) for ``room``; return its claims.

    Raises :class:`~roomsecrets.adapters.server.http_api.InvalidParticipantToken`.
    """
    return _verify(token, key, room=room)[0]


def _verify(token: str, key: Key, *, room: str) -> tuple[ParticipantToken, bool]:
    """:func:`read_participant_token`, and whether the token has an ``nbf`` claim."""
    if not isinstance(token, str) or not token:
        raise InvalidParticipantToken("no participant token")
    try:
        claims = jwt.decode(
            token,
            _key_bytes(key),
            algorithms=[_ALGORITHM],
            options={
                "require": list(_REQUIRED),
                # RFC 7519 §4.1.6: iat only says when the token was made. PyJWT refuses
                # one in the future, so a token minted on a host whose clock runs a
                # little ahead of the server's would fail for its first seconds.
                "verify_iat": False,
                # exp and sub are checked below, the same way on every PyJWT >= 2.8.
                "verify_exp": False,
                "verify_sub": False,
            },
        )
    except (TypeError, OverflowError):
        # PyJWT before 2.10 lets these out of its claim checks (int(None), int(inf)).
        raise InvalidParticipantToken("the participant token is malformed") from None
    except jwt.ImmatureSignatureError:
        # RFC 7519 §4.1.5: nbf, "not before".
        raise InvalidParticipantToken("the participant token is not valid yet (nbf)") from None
    except jwt.InvalidAlgorithmError:
        raise InvalidParticipantToken("the participant token is not HS256") from None
    except jwt.InvalidSignatureError:
        raise InvalidParticipantToken("the participant token's signature is wrong") from None
    except jwt.MissingRequiredClaimError as missing:
        raise InvalidParticipantToken(
            f"the participant token has no {missing.claim!r} claim"
        ) from None
    except jwt.InvalidTokenError:
        raise InvalidParticipantToken("the participant token is malformed") from None
    if claims.get("room") != room:
        raise InvalidParticipantToken("the participant token is for another room")
    try:
        # Checked here, where a verified token is remembered with its room: a
        # remembered (token, room) pair is not checked again.
        check_id(room, "room")
    except InvalidInput:  # only a key holder can sign one: minting checks the room
        raise InvalidParticipantToken("the room name is invalid") from None
    exp = claims["exp"]
    # RFC 7519 §2: a NumericDate is a JSON number. PyJWT would also take a string,
    # and an integer too large for a float, which failed later as a server error.
    if isinstance(exp, bool) or not isinstance(exp, (int, float)) or not _finite(exp):
        raise InvalidParticipantToken("the participant token's exp is not a usable NumericDate")
    if exp <= time.time():  # RFC 7519 §4.1.4
        raise InvalidParticipantToken("the participant token has expired")
    name = claims.get("name")
    try:
        participant_id = check_id(claims.get("sub"), "sub")
        check_name(name, "name")
        grant = SecretsGrant.from_dict(claims.get("grant"))
    except InvalidInput as bad:
        raise InvalidParticipantToken(
            f"the participant token's claims are invalid: {bad}"
        ) from None
    who = ParticipantToken(
        room=room,
        participant_id=participant_id,
        name=name,
        grant=grant,
        expires_at=float(exp),
    )
    return who, "nbf" in claims


def _finite(number: float) -> bool:
    try:
        return math.isfinite(number)
    except OverflowError:  # an int beyond any float
        return False


class VerifiedTokens:
    """Reads participant tokens for one key, remembering the ones already verified.

    An agent sends the same token on every call; verifying it (base64, HMAC,
    JSON, the grant) was the largest cost of a cheap request. The same token
    string under the same key always verifies the same way, except for expiry,
    which is checked on every hit. Only verified tokens are remembered, so junk
    cannot fill the memory; the memory is bounded and starts afresh when full.
    A token with an ``nbf`` ("not before", RFC 7519 §4.1.5) claim is never
    remembered: whether it is valid yet depends on the clock, which can step back
    (our own tokens have none).
    """

    def __init__(self, key: Key, *, size: int = 4096, clock: Callable[[], float] = time.time):
        self._key = key
        self._size = size
        self._clock = clock
        self._verified: dict[tuple[str, str], ParticipantToken] = {}

    def read(self, token: str, *, room: str) -> ParticipantToken:
        """:func:`read_participant_token` with this key, remembered until the token expires."""
        hit = self._verified.get((token, room))
        if hit is not None and hit.expires_at > self._clock():
            return hit
        who, not_before = _verify(token, self._key, room=room)
        if not_before:
            return who
        if len(self._verified) >= self._size:
            self._verified.clear()
        self._verified[(token, room)] = who
        return who
