"""Secrets Manager names for records and leases: injective, inside the prefix, <= 512 chars.

AWS allows only ``A-Za-z0-9/_+=.@-`` in a secret name and at most 512
characters. Every user-chosen component (room, owner, secret id, delegate,
lease name) is escaped on its own: lowercase ASCII letters and digits stay,
every other character becomes ``_`` plus two lowercase hex digits per UTF-8
byte (``"A"`` -> ``_41``, ``"/"`` -> ``_2f``, ``"_"`` -> ``_5f``). So:

* an escaped component never contains ``/``, so joining components with ``/``
  is injective, and no component can climb out of the prefix;
* uppercase letters are escaped too, so two keys never differ only by case
  (a safeguard: nothing in AWS's documentation promises that secret names are
  case-sensitive, although the ``name`` list filter is);
* ``-`` is escaped, so a name never ends in ``-`` plus six characters, which
  AWS could confuse with the random suffix of a partial ARN;
* an escaped component never starts with ``_l`` (``l`` is not a hex digit),
  so the lease folder ``_leases`` can never be mistaken for an escaped room.

Layout::

    {prefix}/{room}/{owner}/{secret_id}              a record, not delegated
    {prefix}/{room}/{owner}/{secret_id}/{delegate}   a record delegated to someone
    {prefix}/_leases/{lease name}                    a lease
    {prefix}/_leases/_h{sha256 of the lease name}    a lease whose name is too long
"""

from __future__ import annotations

import hashlib
import re

from ...core.errors import InvalidInput
from ...core.ports import SecretKey

__all__ = [
    "MAX_NAME",
    "check_prefix",
    "escape",
    "lease_secret_name",
    "owner_folder",
    "record_secret_name",
    "room_folder",
]

#: Secrets Manager's limit on a secret name.
MAX_NAME = 512

_LEASES = "_leases"
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
# AWS's name alphabet; a prefix may not start or end with "/" or hold "//"
# (an empty component would make the layout ambiguous).
_PREFIX = re.compile(r"[A-Za-z0-9_+=.@-]+(/[A-Za-z0-9_+=.@-]+)*")


def check_prefix(prefix: object) -> str:
    """Return ``prefix`` if it can start secret names; raise InvalidInput if not."""
    if not isinstance(prefix, str) or _PREFIX.fullmatch(prefix) is None:
        raise InvalidInput(
            "prefix must be non-empty, use only A-Za-z0-9/_+=.@- and not start or end with '/'"
        )
    if len(prefix) > MAX_NAME // 2:
        raise InvalidInput(f"prefix must be at most {MAX_NAME // 2} characters")
    return prefix


def escape(text: str) -> str:
    """Escape one name component (see the module docstring); injective.

    >>> escape("mail")
    'mail'
    >>> escape("Mail/2_ü")
    '_4dail_2f2_5f_c3_bc'
    """
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("ids must be text that UTF-8 can encode") from None
    if all(chr(byte) in _SAFE for byte in raw):
        return text
    return "".join(chr(byte) if chr(byte) in _SAFE else f"_{byte:02x}" for byte in raw)


def _checked(name: str, what: str) -> str:
    if len(name) > MAX_NAME:
        raise InvalidInput(
            f"{what} is too long for Secrets Manager: its escaped name has {len(name)} "
            f"characters, at most {MAX_NAME} are allowed"
        )
    return name


def room_folder(prefix: str, room: str) -> str:
    """The name prefix (ending in ``/``) shared by every record in ``room``."""
    return f"{prefix}/{escape(room)}/"


def owner_folder(prefix: str, room: str, owner: str) -> str:
    """The name prefix (ending in ``/``) shared by every record of ``owner`` in ``room``."""
    return f"{prefix}/{escape(room)}/{escape(owner)}/"


def record_secret_name(prefix: str, key: SecretKey) -> str:
    """The secret name of the record at ``key``; InvalidInput if longer than 512."""
    name = owner_folder(prefix, key.room, key.owner) + escape(key.secret_id)
    if key.delegated_to is not None:
        name += "/" + escape(key.delegated_to)
    return _checked(name, "the secret key")


def lease_secret_name(prefix: str, lease_name: str) -> str:
    """The secret name of the lease ``lease_name``.

    A lease name only has to tell leases apart, so one whose escaped form does
    not fit is replaced by ``_h`` and its SHA-256 (``h`` is not a hex digit, so
    no escaped name looks like that): the core names a credential's refresh
    lease after its key, and every key that fits must get its lease.
    """
    name = f"{prefix}/{_LEASES}/{escape(lease_name)}"
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(lease_name.encode("utf-8")).hexdigest()
    return f"{prefix}/{_LEASES}/_h{digest}"

