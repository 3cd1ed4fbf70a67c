"""Where :class:`~roomsecrets.adapters.file.FileSecretStore` keeps each thing under its root.

::

    ROOT/                                   0700, checked at start (warning if others may enter)
      secrets/                              0700
        <room>/<owner>/                     0700, one directory per (room, owner)
          .lock                             flock'ed around every read-check-write here
          .versions                         the version counter of this directory
          <secret_id>.secret                a secret not delegated to anyone
          <secret_id>.<delegated_to>.secret a secret delegated to someone
          .tmp-<random>                     a write in progress (or left by a crash)
          <name>.corrupt-<time>-<random>    a damaged file, moved aside
      leases/                               0700
        .lock                               flock'ed around every lease operation
        <lease name>.lease

Every id becomes a file name through :func:`escape`, which keeps only
``[a-z0-9_-]`` and writes every other UTF-8 byte as ``%xx`` with lowercase hex.
So a name never contains ``/``, ``.`` or an upper-case letter: no id can
climb out of the root (``..``), hide (``.x``), or meet another id on a
case-insensitive file system (``a`` is ``a``, ``A`` is ``%41``). Decoding is
unambiguous, so two different ids never share a name. ``.`` only ever
separates the parts of a file name, and names we make ourselves start with
``.``, which no escaped id does.

A name longer than :data:`MAX_NAME` characters (NAME_MAX is 255 bytes on
ext4, XFS, APFS and NTFS) becomes ``~`` and the SHA-256 of the id instead;
``~`` is not in the escaped alphabet either. The file itself records the full
key, and readers check it.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Optional

from ...core.ports import SecretKey

__all__ = [
    "CORRUPT_MARK",
    "LEASE_SUFFIX",
    "LOCK_NAME",
    "MAX_NAME",
    "SECRET_SUFFIX",
    "TEMP_PREFIX",
    "VERSIONS_NAME",
    "Layout",
    "escape",
]

#: Longest escaped name used as is; longer ones are hashed.
MAX_NAME = 200
SECRET_SUFFIX = ".secret"
LEASE_SUFFIX = ".lease"
LOCK_NAME = ".lock"
VERSIONS_NAME = ".versions"
TEMP_PREFIX = ".tmp-"
CORRUPT_MARK = ".corrupt-"

_KEEP = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")


def escape(text: str) -> str:
    """Return ``text`` as a file-name part: ``[a-z0-9_-]`` kept, every other byte ``%xx``.

    >>> escape("Mail/a.b")
    '%4dail%2fa%2eb'
    """
    if all(char in _KEEP for char in text):
        return text
    parts: list[str] = []
    for char in text:
        if char in _KEEP:
            parts.append(char)
        else:
            # surrogatepass: a lone surrogate is still a distinct id (MemoryStore
            # accepts it), so it gets a distinct name rather than an error.
            parts.extend(f"%{byte:02x}" for byte in char.encode("utf-8", "surrogatepass"))
    return "".join(parts)


def _hashed(*parts: Optional[str]) -> str:
    canonical = json.dumps(parts, ensure_ascii=True).encode("ascii")
    return "~" + hashlib.sha256(canonical).hexdigest()


def _component(text: str) -> str:
    name = escape(text)
    return name if len(name) <= MAX_NAME else _hashed(text)


def secret_file_name(secret_id: str, delegated_to: Optional[str]) -> str:
    """The file name of a secret inside its (room, owner) directory."""
    name = escape(secret_id)
    if delegated_to is not None:
        name += "." + escape(delegated_to)
    if len(name) > MAX_NAME:
        name = _hashed(secret_id, delegated_to)
    return name + SECRET_SUFFIX


class Layout:
    """Paths under one store root (see the module docstring)."""

    __slots__ = ("leases_dir", "root", "secrets_dir")

    def __init__(self, root: str) -> None:
        self.root = root
        self.secrets_dir = os.path.join(root, "secrets")
        self.leases_dir = os.path.join(root, "leases")

    def room_dir(self, room: str) -> str:
        """The directory holding every owner's directory in ``room``."""
        return os.path.join(self.secrets_dir, _component(room))

    def owner_dir(self, room: str, owner: str) -> str:
        """The directory holding ``owner``'s secrets in ``room``."""
        return os.path.join(self.secrets_dir, _component(room), _component(owner))

    def secret_path(self, key: SecretKey) -> tuple[str, str]:
        """``(directory, file name)`` of the secret at ``key``."""
        return (
            self.owner_dir(key.room, key.owner),
            secret_file_name(key.secret_id, key.delegated_to),
        )

    def lease_file_name(self, name: str) -> str:
        """The file name of the lease ``name`` inside :attr:`leases_dir`."""
        return _component(name) + LEASE_SUFFIX
