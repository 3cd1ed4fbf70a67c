"""Where the room server's participant-token signing key comes from, and which store
``--store`` names (SPEC.md, "The room server, the remote client and the CLI").

The key: the environment variable ``ROOMSECRETS_JWT_KEY`` (at least 32 bytes of
UTF-8), else the file ``DIR/jwt.key`` of the file store ``--store file:DIR``,
created on first use with mode 0600 and 32 random bytes (hex). ``roomsecrets
serve`` and ``roomsecrets token mint`` read it the same way, so tokens minted on
the server's machine are accepted by it. With ``--store memory`` or ``aws:PREFIX``
there is no folder to keep it in: set ``ROOMSECRETS_JWT_KEY``.

Standard library only: ``token mint`` and ``--help`` must not load aiohttp or boto3.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from typing import Optional

from ...core.errors import InvalidInput
from ...core.values import frozen_value

__all__ = [
    "DEFAULT_STORE",
    "JWT_KEY_ENV",
    "KEY_FILE_NAME",
    "StoreSpec",
    "load_signing_key",
    "parse_store_spec",
]

#: The environment variable that holds the signing key.
JWT_KEY_ENV = "ROOMSECRETS_JWT_KEY"
#: The key file's name in the file store's folder.
KEY_FILE_NAME = "jwt.key"
#: ``--store`` when none is given.
DEFAULT_STORE = "file:./.roomsecrets"
# RFC 7518 §3.2: an HS256 key is at least as long as the hash output.
_MIN_KEY_BYTES = 32


@frozen_value
class StoreSpec:
    """A parsed ``--store`` value: ``kind`` is ``"file"``, ``"memory"`` or ``"aws"``;
    ``location`` is the folder (file) or the name prefix (aws)."""

    kind: str
    location: Optional[str]


def parse_store_spec(text: str) -> StoreSpec:
    """``file:DIR``, ``memory`` or ``aws:PREFIX`` -> a :class:`StoreSpec`.

    Raises InvalidInput for anything else.
    """
    kind, colon, rest = text.partition(":")
    if kind == "memory" and not colon:
        return StoreSpec(kind="memory", location=None)
    if kind in ("file", "aws") and colon and rest:
        return StoreSpec(kind=kind, location=rest)
    raise InvalidInput(f"--store must be file:DIR, memory or aws:PREFIX, not {text!r}")


def load_signing_key(store: StoreSpec, *, environ: Optional[dict[str, str]] = None) -> bytes:
    """The HS256 key participant tokens are signed with (see the module docstring).

    Raises InvalidInput when the environment's key is too short, when there is no
    key for a memory or AWS store, or when the key file is unreadable, too short,
    or readable by others.
    """
    env = os.environ if environ is None else environ
    from_env = env.get(JWT_KEY_ENV)
    if from_env:
        key = from_env.encode("utf-8")
        if len(key) < _MIN_KEY_BYTES:
            raise InvalidInput(f"{JWT_KEY_ENV} must be at least {_MIN_KEY_BYTES} bytes")
        return key
    if store.kind != "file" or store.location is None:
        raise InvalidInput(
            f"set {JWT_KEY_ENV}: only a file store (--store file:DIR) keeps the signing key "
            f"in its folder"
        )
    return _key_file(os.path.join(store.location, KEY_FILE_NAME))


def _key_file(path: str) -> bytes:
    try:
        return _read_key_file(path)
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    # Write a private temporary file, then link it into place: two processes
    # starting at once agree on one key, and nobody reads a half-written file.
    temporary = f"{path}.tmp-{secrets.token_hex(8)}"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            file.write(secrets.token_hex(_MIN_KEY_BYTES) + "\n")
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    return _read_key_file(path)


def _read_key_file(path: str) -> bytes:
    with open(path, "rb") as file:
        mode = os.fstat(file.fileno()).st_mode
        key = file.read().strip()
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InvalidInput(f"{path} may be read by others: chmod 600 it")
    if len(key) < _MIN_KEY_BYTES:
        raise InvalidInput(f"{path} holds fewer than {_MIN_KEY_BYTES} bytes")
    return key
