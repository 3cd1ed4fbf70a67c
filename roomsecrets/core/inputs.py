"""Checks on what callers pass to the public API, and the documented limits.

Every public method of :class:`~.client.SecretsClient` and
:meth:`~.service.SecretsService.connect` checks all of its arguments here
first, before any lookup, refresh or change of state: a value that fails
raises :class:`~.errors.InvalidInput` and nothing happens. Each limit below is
listed in ``docs/limits.md``; they are far above what real providers and
rooms use, and low enough that one call cannot make the service hold
megabytes or write a huge value into an audit event.

Character sets come from RFC 6749 Appendix A: ``client_id``, ``client_secret``,
``code`` and ``state`` are VSCHAR (%x20-7E); URIs are ASCII (RFC 3986 §2).
Names and ids are any text without control characters that UTF-8 can encode
(a lone surrogate such as ``"\\ud800"`` cannot, and would fail later inside
a JSON encoder, a store or a socket).
"""

from __future__ import annotations

import re
from typing import Optional

from .errors import InvalidInput
from .oauth.scopes import check_scope

__all__ = [
    "CLIENT_AUTH_METHODS",
    "MAX_CLIENT_ID",
    "MAX_CLIENT_SECRET",
    "MAX_CODE",
    "MAX_ERROR",
    "MAX_ID",
    "MAX_NAME",
    "MAX_REQUEST_ID",
    "MAX_SCOPES",
    "MAX_SCOPE_LENGTH",
    "MAX_SECRET_BYTES",
    "MAX_STATE",
    "MAX_TIMEOUT",
    "MAX_TYPE",
    "MAX_URL",
    "check_bytes",
    "check_client_auth_method",
    "check_flag",
    "check_id",
    "check_name",
    "check_scopes",
    "check_text",
    "check_timeout",
    "check_url",
    "check_vschar",
]

#: Participant ids (``from_participant_id``, ``delegated_by``, ``delegated_to``) and secret ids.
MAX_ID = 256
#: Display names of participants and secrets.
MAX_NAME = 256
#: A secret's MIME type.
MAX_TYPE = 256
#: ``client_id`` (RFC 6749 §2.2 sets no limit).
MAX_CLIENT_ID = 256
#: ``client_secret``.
MAX_CLIENT_SECRET = 1024
#: Authorization, token and redirect URIs, ``issuer`` and ``iss``.
MAX_URL = 2048
#: Scopes in one request, and characters in one scope.
MAX_SCOPES = 100
MAX_SCOPE_LENGTH = 256
#: An authorization ``code`` (some providers' codes run to ~1,500 characters).
MAX_CODE = 4096
#: An OAuth ``state`` echoed back by an answer.
MAX_STATE = 1024
#: An access token a caller reports as refused (``rejected_access_token``); JWTs
#: with many claims run to a few KB.
MAX_ACCESS_TOKEN = 16 * 1024
#: A pending request id (ours are 22 characters).
MAX_REQUEST_ID = 128
#: The ``error`` of ``reject_oauth_authorization`` (reduced to 64 RFC 6749 §5.2
#: characters before anyone sees it).
MAX_ERROR = 256
#: Seconds a ``request_oauth_token`` may wait: one day.
MAX_TIMEOUT = 86400.0
#: Bytes of one generic secret: 61 KiB. AWS Secrets Manager caps a whole secret
#: value at 65,536 bytes, and the AWS store keeps up to 2,568 bytes of key, type and
#: name beside the data, so every store takes every allowed secret.
MAX_SECRET_BYTES = 61 * 1024
#: The ``client_auth_method`` values a caller may name: RFC 6749 §2.3.1's two ways
#: to send a client secret (IANA "OAuth Token Endpoint Authentication Methods").
CLIENT_AUTH_METHODS = ("client_secret_basic", "client_secret_post")

# RFC 6749 Appendix A: VSCHAR = %x20-7E.
_VSCHAR = re.compile(r"[\x20-\x7e]*")
# RFC 3986 §2: a URI is ASCII, without spaces or controls.
_URI_CHARS = re.compile(r"[\x21-\x7e]*")
# C0 and C1 controls and DEL; text with them garbles logs and terminals.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def check_text(value: object, what: str, *, limit: int, empty: bool = False) -> str:
    """``value`` if it is a str of at most ``limit`` characters (at least one
    unless ``empty``) that UTF-8 can encode and that holds no control character."""
    if type(value) is not str:
        raise InvalidInput(f"{what} must be a string")
    if not (0 if empty else 1) <= len(value) <= limit:
        raise InvalidInput(f"{what} must be {'0' if empty else '1'}-{limit} characters long")
    if value.isprintable():
        # The usual id or name: a printable string has no control character (C0,
        # DEL, C1) and no lone surrogate, so UTF-8 encodes it; one C call instead
        # of a regular expression and an encoding.
        return value
    if _CONTROL.search(value):
        raise InvalidInput(f"{what} must not contain control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{what} must be valid Unicode text (no lone surrogates)") from None
    return value


def check_id(value: object, what: str) -> str:
    """A participant or secret id: 1-:data:`MAX_ID` characters of text."""
    return check_text(value, what, limit=MAX_ID)


#: Room names and participant ids the server keeps for its own records (its client
#: registrations are kept under room and owner ``roomsecrets:server``).
RESERVED_PREFIX = "roomsecrets:"


def check_not_reserved(value: str, what: str) -> str:
    """``value`` unless it starts with :data:`RESERVED_PREFIX`: nobody may act as the
    server's own records. ``what`` names the kind, plural ("participant ids")."""
    if value.startswith(RESERVED_PREFIX):
        raise InvalidInput(f"{what} starting with {RESERVED_PREFIX!r} are reserved for the server")
    return value


def check_name(value: object, what: str) -> Optional[str]:
    """An optional display name: None, or 0-:data:`MAX_NAME` characters of text."""
    if value is None:
        return None
    return check_text(value, what, limit=MAX_NAME, empty=True)


def check_vschar(value: object, what: str, *, limit: int) -> str:
    """1-``limit`` characters of RFC 6749 VSCHAR (printable ASCII and space)."""
    if type(value) is not str or not 1 <= len(value) <= limit:
        raise InvalidInput(f"{what} must be a string of 1-{limit} characters")
    if not _VSCHAR.fullmatch(value):
        raise InvalidInput(f"{what} must be printable ASCII (RFC 6749 Appendix A)")
    return value


def check_url(value: object, what: str) -> str:
    """1-:data:`MAX_URL` characters of ASCII without spaces (RFC 3986 §2).

    Only the characters: what a URL must look like is the endpoint checks' job.
    """
    if type(value) is not str or not 1 <= len(value) <= MAX_URL:
        raise InvalidInput(f"{what} must be a URL of 1-{MAX_URL} characters")
    if not _URI_CHARS.fullmatch(value):
        raise InvalidInput(
            f"{what} must be ASCII without spaces (RFC 3986 §2); percent-encode other characters"
        )
    return value


def check_scopes(scopes: object) -> tuple[str, ...]:
    """Caller scopes as a tuple, read once: None (no scopes) or a list/tuple of at
    most :data:`MAX_SCOPES` strings of at most :data:`MAX_SCOPE_LENGTH` characters.

    Reading once matters: a generator would otherwise be consumed by the first
    check and look empty to the next (the grant would be checked against no
    scopes at all). Each scope is one scope-token (RFC 6749 §3.3) without a
    comma or whitespace (:func:`~.oauth.scopes.check_scope`).
    """
    if scopes is None:
        return ()
    if not isinstance(scopes, (list, tuple)):
        raise InvalidInput("scopes must be a list of strings or None")
    if len(scopes) > MAX_SCOPES:
        raise InvalidInput(f"at most {MAX_SCOPES} scopes may be requested")
    for scope in scopes:
        if type(scope) is not str or len(scope) > MAX_SCOPE_LENGTH:
            raise InvalidInput(f"each scope must be a string of at most {MAX_SCOPE_LENGTH} chars")
        check_scope(scope)  # one scope: no comma, no whitespace (core/oauth/scopes.py)
    return tuple(scopes)


def check_timeout(value: object) -> float:
    """Seconds to wait: a finite number, ``0 < value <=`` :data:`MAX_TIMEOUT`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput("timeout must be a number of seconds")
    # Compare before converting: float(10**400) overflows. NaN fails the comparison.
    if not 0 < value <= MAX_TIMEOUT:
        raise InvalidInput(f"timeout must be more than 0 and at most {MAX_TIMEOUT:g} seconds")
    return float(value)


def check_flag(value: object, what: str) -> bool:
    """Exactly True or False: ``"false"`` or ``0`` must not silently mean something."""
    if type(value) is not bool:
        raise InvalidInput(f"{what} must be True or False")
    return value


def check_bytes(value: object, what: str, *, limit: int = MAX_SECRET_BYTES) -> bytes:
    """``value`` as plain bytes (bytes or bytearray), at most ``limit`` long."""
    if not isinstance(value, (bytes, bytearray)):
        raise InvalidInput(f"{what} must be bytes")
    if len(value) > limit:
        raise InvalidInput(f"{what} is larger than {limit} bytes")
    return bytes(value)


def check_client_auth_method(value: object, *, client_secret: object) -> Optional[str]:
    """None, or one of :data:`CLIENT_AUTH_METHODS` given together with a client secret.

    Both methods send a secret (RFC 6749 §2.3.1), so naming one without a
    ``client_secret`` is a mistake, not a request for a public client.
    """
    if value is None:
        return None
    if type(value) is not str or value not in CLIENT_AUTH_METHODS:
        raise InvalidInput(
            "client_auth_method must be 'client_secret_basic' or 'client_secret_post'"
        )
    if client_secret is None:
        raise InvalidInput(f"client_auth_method {value} needs a client_secret")
    return value
