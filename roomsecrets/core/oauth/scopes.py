"""What a scope is: one rule for the grant check, the requests we build and the answers we read.

RFC 6749 §3.3 separates scopes with spaces, and its scope-token allows a comma
inside one. Providers disagree: GitHub and Slack separate granted scopes with
commas, so ``"channels:read,admin"`` is one scope to the RFC and two to them. We
take the stricter reading everywhere: a single scope never contains a comma or
whitespace, and text from a provider is split on both. The grant check
(``core/grants.py``), the authorization and token requests (``join_scopes``) and
the token-response parser (``split_scopes``) all use this module, so a scope
the grant check allowed is the scope the provider sees.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Optional

from ..errors import InvalidInput

__all__ = ["check_scope", "join_scopes", "split_all", "split_scopes"]

#: Between scopes: whitespace (RFC 6749 §3.3) or commas (GitHub, Slack).
_SEPARATORS = re.compile(r"[\s,]+")
#: One scope-token: NQCHAR = %x21 / %x23-5B / %x5D-7E (RFC 6749 §3.3), at least one.
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


def check_scope(scope: object) -> str:
    """``scope`` if it is one scope: non-empty RFC 6749 §3.3 scope-token characters
    (``%x21 / %x23-5B / %x5D-7E``) without a comma; InvalidInput otherwise.

    >>> check_scope("mail.read")
    'mail.read'
    >>> check_scope("channels:read,admin")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    roomsecrets.core.errors.InvalidInput: a scope must not contain a comma...
    """
    if not isinstance(scope, str) or not _SCOPE_TOKEN.fullmatch(scope):
        raise InvalidInput(
            "each scope must be a non-empty string of printable ASCII without spaces, "
            "quotes or backslashes (RFC 6749 §3.3)"
        )
    if "," in scope:
        raise InvalidInput(
            f"a scope must not contain a comma: {scope[:64]!r} is several scopes to "
            "providers that split on commas (GitHub, Slack); give each as its own entry"
        )
    return scope


def split_scopes(text: str) -> tuple[str, ...]:
    """The scopes in ``text`` as a provider means them: split on whitespace and commas.

    >>> split_scopes("repo,user  read:org")
    ('repo', 'user', 'read:org')
    """
    return tuple(s for s in _SEPARATORS.split(text) if s)


def split_all(scopes: Iterable[str]) -> tuple[str, ...]:
    """Every scope in ``scopes``, each entry split as :func:`split_scopes` does."""
    found: list[str] = []
    for entry in scopes:
        found.extend(split_scopes(entry))
    return tuple(found)


def join_scopes(scopes: Optional[Sequence[str]]) -> Optional[str]:
    """Space-join scopes for a request (RFC 6749 §3.3), each checked by :func:`check_scope`."""
    if scopes is None:
        return None
    if isinstance(scopes, str):
        raise InvalidInput("scopes must be a list of strings, not one string")
    for scope in scopes:
        check_scope(scope)
    return " ".join(scopes) if scopes else None
