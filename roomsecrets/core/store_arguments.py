"""The argument checks and ordering every :class:`~.ports.SecretStore` shares.

One place for them, so that ``MemoryStore``, the file store, the AWS store and a
user's own store refuse the same bad arguments with the same
:class:`~.errors.InvalidInput`, raise the same
:class:`~.errors.VersionConflict`, and list in the same order.
"""

from __future__ import annotations

import math
from typing import Optional

from .errors import InvalidInput, VersionConflict
from .ports import Lease, SecretKey, SecretRecord

__all__ = [
    "check_expected_version",
    "check_key",
    "check_lease",
    "check_name",
    "check_ttl",
    "compare_version",
    "delegated_order",
    "list_order",
]


def check_name(what: str, value: object) -> None:
    """Raise InvalidInput unless ``value`` is a non-empty string."""
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{what} must be a non-empty string")


def check_key(key: object) -> None:
    """Raise InvalidInput unless ``key`` is a SecretKey of non-empty strings."""
    if not isinstance(key, SecretKey):
        raise InvalidInput(f"key must be a SecretKey, not {key.__class__.__name__}")
    # Every store call checks its key: the usual key (plain non-empty strings) in
    # one expression, the calls below only to name the field that is wrong.
    delegated_to = key.delegated_to
    if (
        type(key.room) is str and key.room
        and type(key.owner) is str and key.owner
        and type(key.secret_id) is str and key.secret_id
        and (delegated_to is None or (type(delegated_to) is str and delegated_to))
    ):
        return
    check_name("room", key.room)
    check_name("owner", key.owner)
    check_name("secret_id", key.secret_id)
    if key.delegated_to is not None:
        check_name("delegated_to", key.delegated_to)


def check_expected_version(expected: object) -> None:
    """Raise InvalidInput unless ``expected`` is None or an int >= 0 (not a bool)."""
    if expected is None:
        return
    if isinstance(expected, bool) or not isinstance(expected, int) or expected < 0:
        raise InvalidInput("expected_version must be None or an integer >= 0")


def check_ttl(ttl: object, what: str = "ttl") -> None:
    """Raise InvalidInput unless ``ttl`` is a finite number of seconds > 0."""
    if (
        isinstance(ttl, bool)
        or not isinstance(ttl, (int, float))
        or not math.isfinite(ttl)
        or ttl <= 0
    ):
        raise InvalidInput(f"{what} must be a finite number of seconds > 0")


def check_lease(lease: object) -> None:
    """Raise InvalidInput unless ``lease`` is a Lease with a name and a holder."""
    if not isinstance(lease, Lease):
        raise InvalidInput(f"lease must be a Lease, not {lease.__class__.__name__}")
    check_name("lease name", lease.name)
    check_name("holder", lease.holder)


def compare_version(expected: Optional[int], current: Optional[SecretRecord]) -> None:
    """Raise VersionConflict unless ``expected`` allows writing over ``current``.

    ``None``: always. ``0``: ``current`` must be None. ``n > 0``: ``current``
    must be at version ``n``.
    """
    if expected is None:
        return
    actual = None if current is None else current.version
    if expected != (actual or 0):
        found = "no record" if actual is None else f"version {actual}"
        raise VersionConflict(
            f"expected version {expected}, found {found}", expected=expected, actual=actual
        )


def list_order(record: SecretRecord) -> tuple[str, bool, str]:
    """The sort key of ``list``: by secret id, then ``delegated_to`` (None first)."""
    delegated_to = record.key.delegated_to
    return (record.key.secret_id, delegated_to is not None, delegated_to or "")


def delegated_order(record: SecretRecord) -> tuple[str, str]:
    """The sort key of ``list_delegated``: by owner, then secret id."""
    return (record.key.owner, record.key.secret_id)
