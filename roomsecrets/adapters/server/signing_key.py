"""Where the room server's participant-token signing key comes from, and which store
``--store`` names (SPEC.md, "The room server, the remote client and the CLI").

The key: the environment variable ``ROOMSECRETS_JWT_KEY`` (at least 32 bytes of
UTF-8), else the file ``DIR/jwt.key`` of the file store ``--store file:DIR``,
created by ``roomsecrets serve`` on first use with mode 0600 and 32 random bytes
(hex). ``roomsecrets token mint`` reads it the same way but never creates it
(``create=False``): a key it made up would sign tokens no server accepts, in a
folder it made up. With ``--store memory`` or ``aws:PREFIX`` there is no folder to
keep it in: set ``ROOMSECRETS_JWT_KEY``.

Whoever can choose the key can mint any participant token, so the key file is
used only if the file itself (opened without following a symlink, then checked
with ``fstat``) is a regular file owned by the effective user with mode exactly
0600; anything else is refused with a message naming the check and the file.

Standard library only: ``token mint`` and ``--help`` must not load aiohttp or boto3.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Mapping
from typing import Optional

from ...core.errors import ConfigurationError, InvalidInput
from ...core.values import frozen_value

__all__ = [
    "DEFAULT_STORE",
    "JWT_KEY_ENV",
    "KEY_FILE_NAME",
    "StoreSpec",
    "key_file_path",
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
_KEY_FILE_MODE = 0o600
_POSIX = os.name == "posix"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


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


def load_signing_key(
    store: StoreSpec, *, environ: Optional[Mapping[str, str]] = None, create: bool = True
) -> bytes:
    """The HS256 key participant tokens are signed with (see the module docstring).

    ``create=False`` (``token mint``): a missing key file is an error, and no file
    or folder is made.

    Raises InvalidInput when the environment's key is too short, when there is no
    key for a memory or AWS store, or when the key file cannot be opened, is too
    short, is a symlink or not a regular file, is owned by another user, or has a
    mode other than 0600; ConfigurationError when ``create`` is False and there is
    no key file (its message says where it looked and that ``serve`` makes it).
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    from_env = env.get(JWT_KEY_ENV)
    if from_env:
        key = from_env.encode("utf-8")
        if len(key) < _MIN_KEY_BYTES:
            raise InvalidInput(f"{JWT_KEY_ENV} must be at least {_MIN_KEY_BYTES} bytes")
        return key
    path = key_file_path(store, environ=env)
    if path is None:
        raise InvalidInput(
            f"set {JWT_KEY_ENV}: only a file store (--store file:DIR) keeps the signing key "
            f"in its folder"
        )
    if create:
        return _key_file(path)
    try:
        return _read_key_file(path)
    except FileNotFoundError:
        raise ConfigurationError(
            f"no signing key: {JWT_KEY_ENV} is not set and {os.path.abspath(path)} does not "
            f"exist; 'roomsecrets serve --store file:{store.location}' creates it when it "
            f"starts (or set {JWT_KEY_ENV} to the server's key)"
        ) from None


def key_file_path(
    store: StoreSpec, *, environ: Optional[Mapping[str, str]] = None
) -> Optional[str]:
    """Where :func:`load_signing_key` finds the key: the file ``DIR/jwt.key`` of a file
    store, or None when it comes from ``ROOMSECRETS_JWT_KEY`` or the store has no folder."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    if env.get(JWT_KEY_ENV) or store.kind != "file" or store.location is None:
        return None
    return os.path.join(store.location, KEY_FILE_NAME)


def _key_file(path: str) -> bytes:
    try:
        return _read_key_file(path)
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    # Write a private temporary file, then link it into place: two processes
    # starting at once agree on one key, and nobody reads a half-written file.
    # O_EXCL|O_NOFOLLOW: a name someone planted (a symlink included) is never
    # opened; link(2) never replaces an existing name, and follow_symlinks=False
    # links the temporary name itself even if someone swapped it for a symlink
    # (which _read_key_file then refuses).
    temporary = f"{path}.tmp-{secrets.token_hex(8)}"
    descriptor = os.open(
        temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, _KEY_FILE_MODE
    )
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            if _POSIX:
                # Exactly 0600 whatever the umask took away: _read_key_file wants that.
                os.fchmod(file.fileno(), _KEY_FILE_MODE)
            file.write(secrets.token_hex(_MIN_KEY_BYTES) + "\n")
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileExistsError):
            if os.link in os.supports_follow_symlinks:
                os.link(temporary, path, follow_symlinks=False)
            else:  # pragma: no cover - a platform whose link() always follows
                os.link(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    return _read_key_file(path)


def _read_key_file(path: str) -> bytes:
    """The key in ``path``, once the opened file proved to be a regular file of ours, 0600.

    The checks run on the opened descriptor (``fstat``), not on the name, so the
    file cannot be swapped between the check and the read. O_NONBLOCK: a FIFO
    planted under the name opens at once (and is refused) instead of hanging.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | _NONBLOCK | _NOFOLLOW | _CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as error:
        # O_NOFOLLOW on a symlink: ELOOP (Linux, macOS) or EMLINK (FreeBSD).
        if error.errno in (errno.ELOOP, errno.EMLINK) and os.path.islink(path):
            raise InvalidInput(f"signing key file {path} is a symlink; refusing it") from None
        raise InvalidInput(
            f"signing key file {path} cannot be opened: {error.strerror or type(error).__name__}"
        ) from None
    with os.fdopen(descriptor, "rb") as file:
        _check_key_file(path, os.fstat(file.fileno()))
        key = file.read().strip()
    if len(key) < _MIN_KEY_BYTES:
        raise InvalidInput(f"signing key file {path} holds fewer than {_MIN_KEY_BYTES} bytes")
    return key


def _check_key_file(path: str, info: os.stat_result) -> None:
    """Refuse a key file someone else could have written or can read."""
    if not stat.S_ISREG(info.st_mode):
        raise InvalidInput(f"signing key file {path} is not a regular file; refusing it")
    if not _POSIX:
        return
    # Whoever owns the file chose the key: a user who can write the store's folder
    # could plant one they know and mint any participant token.
    if info.st_uid != os.geteuid():
        raise InvalidInput(
            f"signing key file {path} is owned by uid {info.st_uid}, not you "
            f"(uid {os.geteuid()}); refusing it"
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode != _KEY_FILE_MODE:
        raise InvalidInput(
            f"signing key file {path} has mode {mode:04o}; it must be 0600 (chmod 600 {path})"
        )
