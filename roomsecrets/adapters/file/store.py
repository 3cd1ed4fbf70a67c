"""``FileSecretStore``: a :class:`~roomsecrets.core.ports.SecretStore` in a directory.

Standard library only (POSIX: it needs ``fcntl``); the optional encryption at
rest imports ``cryptography`` when a key is given. Several processes may share
one directory on one machine's local file system (network file systems are
not relied on: their ``flock`` and ``rename`` guarantees vary).

It follows the rules every store follows (``MemoryStore``'s module docstring,
checked by :class:`roomsecrets.testing.StoreContract`). How it keeps them with
files:

Layout
    One file per secret: ``ROOT/secrets/<room>/<owner>/<secret_id>[.<delegated_to>].secret``,
    each id escaped so that none can leave the root or meet another id, even on
    a case-insensitive file system (``roomsecrets.adapters.file.layout``).
    Directories are 0700 and files 0600 from the moment they exist. A root
    that others may enter (group/world bits, or another owner) gets an
    :class:`InsecureStoreWarning`, not an error: everything below it is 0700,
    so others still cannot read a secret; they can only see that ``secrets/``
    and ``leases/`` exist.

Writes
    Atomic and durable: temporary file in the same directory, ``fsync``,
    ``os.replace``, ``fsync`` of the directory. A crash (even SIGKILL in the
    middle of a write) leaves the old file or the new one, never a mix; the
    temporary files it may leave are removed by the next ``list`` of that
    directory. Each put, get and delete touches one directory entry and a few
    small files, so it costs the same with ten secrets or a million.

Compare-and-swap across processes
    Every read-check-write of a secret runs under an exclusive ``flock`` on its
    directory's ``.lock`` (one lock per ``(room, owner)``), plus a thread lock
    for the threads of one process. Reads (``get``, ``list``) take no lock:
    ``os.replace`` makes each file change atomic for them.

Versions across deletes (the ABA rule)
    Each ``(room, owner)`` directory has a ``.versions`` file with two numbers:
    ``deleted`` (no version of a key without a file here is above it) and
    ``issued`` (no version ever written here is above it). A write gives
    ``max(current version, deleted) + 1``; a delete first raises ``deleted``
    to the version it removes. Both files change under the lock, the counter
    first, so a crash between the two only leaves the counter ahead. ``issued``
    is reserved a block at a time (so a write rarely rewrites the counter);
    a damaged secret is moved aside only after ``deleted`` was raised to
    ``issued``, so its unknown versions are never handed out again. If the
    counter file itself is lost or damaged, it is rebuilt 2**32 above the
    highest version in the directory, with a logged warning.

Leases
    ``ROOT/leases/<name>.lease`` holds ``(name, holder, expires_at)`` and
    changes under an exclusive ``flock`` on ``leases/.lock``, with expiry
    decided by the injected clock, exactly as in ``MemoryStore``. A holder that
    dies simply stops renewing, and its lease is free once ``expires_at``
    passes. Lease files are replaced atomically but not ``fsync``'ed: a lease
    only means something while its holder is alive, and a power loss ends
    every holder on the machine.

Damaged files
    A file whose header, length or SHA-256 does not check out (the disk's
    doing, or a person's: we never write one) raises :class:`CorruptStoreFile`
    naming the secret or lease, never its data, and is renamed
    ``*.corrupt-<time>-<random>`` beside where it was; everything else keeps
    working, and the next ``get`` of that key returns None.

Encryption at rest (off by default)
    With ``encryption_key``, secret data is AES-GCM encrypted with the key's
    room, owner, secret id, delegate, type, name and version bound in as
    associated data (``roomsecrets.adapters.file.format``). Each file names
    the key id that encrypted it. A wrong or missing key raises
    :class:`SecretDecryptionError` on any operation that meets such a file and
    changes nothing (the file is not moved aside). Files written without
    encryption stay readable, and are encrypted when next written.

Threads
    Every blocking call runs in a worker thread (``asyncio.to_thread``), never
    on the event loop. ``OSError`` never escapes: it becomes
    :class:`~roomsecrets.core.errors.StoreError`. A cancelled call may still
    complete in its thread (a write that was already under way is not undone).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import secrets
import threading
import time
import warnings
from typing import TYPE_CHECKING, Callable, Optional, TypeVar, Union

from ...core.errors import InvalidInput, LeaseLost, StoreError
from ...core.ports import Clock, Lease, SecretKey, SecretRecord
from ...core.store_arguments import (
    check_expected_version,
    check_key,
    check_lease,
    check_name,
    check_ttl,
    compare_version,
    delegated_order,
    list_order,
)
from .format import (
    Cipher,
    CorruptStoreFile,
    DamagedFile,
    SecretDecryptionError,
    VersionCounter,
    decode_lease,
    decode_secret,
    decode_versions,
    encode_lease,
    encode_secret,
    encode_versions,
)
from .io import (
    exclusive,
    fsync_dir,
    loose_permissions,
    make_dirs,
    read_bytes,
    remove_temporaries,
    write_atomically,
)
from .layout import (
    CORRUPT_MARK,
    LOCK_NAME,
    SECRET_SUFFIX,
    TEMP_PREFIX,
    VERSIONS_NAME,
    Layout,
    escape,
)

if TYPE_CHECKING:
    from ...core.ports import SecretStore

__all__ = [
    "CorruptStoreFile",
    "FileSecretStore",
    "InsecureStoreWarning",
    "SecretDecryptionError",
]

_log = logging.getLogger("roomsecrets.adapters.file")  # the name users configured before the move
_T = TypeVar("_T")

#: Versions ``issued`` reserves at once, so most writes leave ``.versions`` alone.
_RESERVE = 1024
#: How far above the highest version seen a lost ``.versions`` is rebuilt.
_REBUILD_GAP = 2**32


class InsecureStoreWarning(UserWarning):
    """The store root can be entered by other users (see ``FileSecretStore``)."""


class FileSecretStore:
    """Keeps each secret in its own file under ``root``; see the module docstring.

    ``root`` is created (0700) on first use if missing. ``clock`` decides lease
    expiry. ``encryption_key`` (16, 24 or 32 random bytes) turns on AES-GCM
    encryption of secret data; it needs the ``cryptography`` package.

    Raises :class:`~roomsecrets.core.errors.ConfigurationError` for a bad key
    or a missing ``cryptography``; operations raise
    :class:`~roomsecrets.core.errors.InvalidInput` for bad arguments (as
    ``MemoryStore`` does), :class:`~roomsecrets.core.errors.VersionConflict`,
    :class:`~roomsecrets.core.errors.LeaseLost`, :class:`CorruptStoreFile`,
    :class:`SecretDecryptionError`, and
    :class:`~roomsecrets.core.errors.StoreError` for any I/O failure.

    >>> import asyncio, tempfile
    >>> store = FileSecretStore(tempfile.mkdtemp())
    >>> key = SecretKey(room="r", owner="alice", secret_id="s")
    >>> first = asyncio.run(store.put(key, type="text/plain", name=None, data=b"x"))
    >>> asyncio.run(store.delete(key))
    True
    >>> again = asyncio.run(store.put(key, type="text/plain", name=None, data=b"x"))
    >>> again.version > first.version
    True
    """

    def __init__(
        self,
        root: Union[str, os.PathLike[str]],
        *,
        clock: Clock = time.time,
        encryption_key: Optional[bytes] = None,
    ) -> None:
        # Absolute, so the thread locks (keyed by path) match however it was spelled.
        self._layout = Layout(os.path.abspath(os.fspath(root)))
        self._clock = clock
        self._cipher = None if encryption_key is None else Cipher(encryption_key)
        self._ready = False
        self._ready_lock = threading.Lock()

    @property
    def root(self) -> str:
        """The absolute path of the store's directory."""
        return self._layout.root

    def __repr__(self) -> str:
        key_id = None if self._cipher is None else self._cipher.key_id
        return f"FileSecretStore(root={self.root!r}, encryption_key_id={key_id!r})"

    # --- the async port -----------------------------------------------------------

    async def get(self, key: SecretKey) -> Optional[SecretRecord]:
        """Return the record at ``key``, or None."""
        check_key(key)
        return await self._in_thread(f"read {_describe(key)}", self._get, key)

    async def put(
        self,
        key: SecretKey,
        *,
        type: str,
        name: Optional[str],
        data: bytes,
        expected_version: Optional[int] = None,
    ) -> SecretRecord:
        """Write ``data`` at ``key`` durably; return the stored record with its new version.

        Raises :class:`~roomsecrets.core.errors.VersionConflict` (and changes
        nothing) when ``expected_version`` does not match.
        """
        check_key(key)
        check_name("type", type)
        if name is not None and not isinstance(name, str):
            raise InvalidInput("name must be a string or None")
        if not isinstance(data, bytes):
            raise InvalidInput(f"data must be bytes, not {data.__class__.__name__}")
        check_expected_version(expected_version)
        # bytes(): a bytes subclass could carry mutable state.
        return await self._in_thread(
            f"write {_describe(key)}", self._put, key, type, name, bytes(data), expected_version
        )

    async def delete(self, key: SecretKey, *, expected_version: Optional[int] = None) -> bool:
        """Delete ``key``; True if something was deleted.

        Raises :class:`~roomsecrets.core.errors.VersionConflict` (and deletes
        nothing) when ``expected_version`` does not match.
        """
        check_key(key)
        check_expected_version(expected_version)
        return await self._in_thread(
            f"delete {_describe(key)}", self._delete, key, expected_version
        )

    async def acquire_lease(self, name: str, *, holder: str, ttl: float) -> Optional[Lease]:
        """Take the lease ``name`` for ``ttl`` seconds; None if someone else holds it.

        The same holder acquiring again extends its lease to ``now + ttl``.
        """
        check_name("lease name", name)
        check_name("holder", holder)
        check_ttl(ttl)
        return await self._in_thread(
            f"acquire lease {name!r}", self._acquire_lease, name, holder, ttl
        )

    async def renew_lease(self, lease: Lease, *, ttl: float) -> Lease:
        """Extend a held lease to ``now + ttl``.

        Raises :class:`~roomsecrets.core.errors.LeaseLost` if it expired or
        another holder has it now.
        """
        check_lease(lease)
        check_ttl(ttl)
        return await self._in_thread(
            f"renew lease {lease.name!r}", self._renew_lease, lease, ttl
        )

    async def release_lease(self, lease: Lease) -> None:
        """Give the lease back; a no-op if it expired or another holder has it now."""
        check_lease(lease)
        await self._in_thread(f"release lease {lease.name!r}", self._release_lease, lease)

    # --- running blocking code ----------------------------------------------------

    async def _in_thread(self, doing: str, function: Callable[..., _T], *args: object) -> _T:
        return await asyncio.to_thread(self._translated, doing, function, *args)

    def _translated(self, doing: str, function: Callable[..., _T], *args: object) -> _T:
        """Run ``function`` (in a worker thread); OSError becomes StoreError here."""
        try:
            self._prepare()
            return function(*args)
        except OSError as exc:
            code = errno.errorcode.get(exc.errno or 0, "")
            detail = f"{code} {exc.strerror}" if exc.strerror else type(exc).__name__
            raise StoreError(f"file store could not {doing}: {detail.strip()}") from exc

    def _prepare(self) -> None:
        """Create the root and its two directories once; warn if others may enter the root."""
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            root = self._layout.root
            if not os.path.isdir(root):
                os.makedirs(os.path.dirname(root), exist_ok=True)  # parents are not ours
                make_dirs(root, stop=os.path.dirname(root))
            if not os.path.isdir(root):
                raise NotADirectoryError(errno.ENOTDIR, "the store root is not a directory", root)
            problem = loose_permissions(root)
            if problem is not None:
                warnings.warn(
                    f"secret store root {root} is not private: {problem}; run "
                    f"'chmod 700 {root}'",
                    InsecureStoreWarning,
                    stacklevel=2,
                )
            make_dirs(self._layout.secrets_dir, stop=root)
            make_dirs(self._layout.leases_dir, stop=root)
            with exclusive(os.path.join(self._layout.leases_dir, LOCK_NAME)):
                remove_temporaries(self._layout.leases_dir)
            self._ready = True

    # --- secrets (worker thread) --------------------------------------------------

    def _get(self, key: SecretKey) -> Optional[SecretRecord]:
        directory, name = self._layout.secret_path(key)
        content = read_bytes(os.path.join(directory, name))
        if content is None:
            return None
        try:
            return self._decode(content, key)
        except DamagedFile:
            pass
        # Look again under the lock before moving anything: only then is the
        # file surely not about to be replaced.
        with exclusive(os.path.join(directory, LOCK_NAME)):
            return self._read_current(directory, name, key)

    def _put(
        self,
        key: SecretKey,
        type: str,
        name: Optional[str],
        data: bytes,
        expected_version: Optional[int],
    ) -> SecretRecord:
        directory, file_name = self._layout.secret_path(key)
        make_dirs(directory, stop=self._layout.secrets_dir)
        with exclusive(os.path.join(directory, LOCK_NAME)):
            counter = self._read_counter(directory)
            current = self._read_current(directory, file_name, key)
            compare_version(expected_version, current)
            version = max(0 if current is None else current.version, counter.deleted) + 1
            if version > counter.issued:
                counter = VersionCounter(
                    deleted=counter.deleted, issued=version + _RESERVE - 1
                )
                self._write_counter(directory, counter)
            record = SecretRecord(key=key, type=type, name=name, data=data, version=version)
            write_atomically(directory, file_name, encode_secret(record, self._cipher))
            return record

    def _delete(self, key: SecretKey, expected_version: Optional[int]) -> bool:
        directory, file_name = self._layout.secret_path(key)
        if not os.path.isdir(directory):
            compare_version(expected_version, None)
            return False
        with exclusive(os.path.join(directory, LOCK_NAME)):
            counter = self._read_counter(directory)
            current = self._read_current(directory, file_name, key)
            compare_version(expected_version, current)
            if current is None:
                return False
            if current.version > counter.deleted:
                # Raise the floor first: a crash before the unlink only leaves it high.
                self._write_counter(
                    directory,
                    VersionCounter(
                        deleted=current.version, issued=max(counter.issued, current.version)
                    ),
                )
            os.unlink(os.path.join(directory, file_name))
            fsync_dir(directory)
            return True

    def _list(self, room: str, owner: str) -> list[SecretRecord]:
        directory = self._layout.owner_dir(room, owner)
        records: list[SecretRecord] = []
        damaged: list[str] = []
        leftovers = False
        try:
            with os.scandir(directory) as entries:
                names = [entry.name for entry in entries]
        except FileNotFoundError:
            return []
        for file_name in names:
            if file_name.startswith(TEMP_PREFIX):
                leftovers = True
            if file_name.startswith(".") or not file_name.endswith(SECRET_SUFFIX):
                continue
            content = read_bytes(os.path.join(directory, file_name))
            if content is None:
                continue  # deleted since the scan
            try:
                record = decode_secret(content, self._cipher, what=repr(file_name))
                if (record.key.room, record.key.owner) != (room, owner):
                    raise DamagedFile("holds a secret of another room or owner")
            except DamagedFile:
                damaged.append(file_name)
                continue
            records.append(record)
        if damaged or leftovers:
            with exclusive(os.path.join(directory, LOCK_NAME)):
                if leftovers:
                    remove_temporaries(directory)
                for file_name in damaged:
                    # Raises CorruptStoreFile unless a writer replaced the file meanwhile.
                    replaced = self._read_current(
                        directory, file_name, None, room=room, owner=owner
                    )
                    if replaced is not None:
                        records.append(replaced)
        records.sort(key=list_order)
        return records

    def _list_delegated(self, room: str, delegated_to: str) -> list[SecretRecord]:
        room_dir = self._layout.room_dir(room)
        # A file's name ends in ".<delegate>.secret" unless it was too long and
        # hashed ("~..."); those are read to learn whose they are.
        ending = "." + escape(delegated_to) + SECRET_SUFFIX
        records: list[SecretRecord] = []
        try:
            with os.scandir(room_dir) as entries:
                owner_dirs = [entry.name for entry in entries if not entry.name.startswith(".")]
        except FileNotFoundError:
            return []
        for owner_dir in owner_dirs:
            directory = os.path.join(room_dir, owner_dir)
            try:
                with os.scandir(directory) as entries:
                    names = [entry.name for entry in entries]
            except (FileNotFoundError, NotADirectoryError):
                continue
            for file_name in names:
                if not (file_name.endswith(ending) or (
                    file_name.startswith("~") and file_name.endswith(SECRET_SUFFIX)
                )):
                    continue
                content = read_bytes(os.path.join(directory, file_name))
                if content is None:
                    continue  # deleted since the scan
                try:
                    record = decode_secret(content, self._cipher, what=repr(file_name))
                except DamagedFile:
                    # Not ours to move aside: its owner's next get or list does that,
                    # under the owner's lock, and says so.
                    continue
                key = record.key
                if key.room != room or key.delegated_to != delegated_to:
                    continue  # a hashed name of another delegate's secret
                if self._layout.secret_path(key) != (directory, file_name):
                    continue  # a file that claims another key is damaged; see above
                records.append(record)
        records.sort(key=delegated_order)
        return records

    def _decode(self, content: bytes, key: SecretKey) -> SecretRecord:
        record = decode_secret(content, self._cipher, what=_describe(key))
        if record.key != key:
            raise DamagedFile("holds another secret's key")
        return record

    def _read_current(
        self,
        directory: str,
        file_name: str,
        key: Optional[SecretKey],
        *,
        room: str = "",
        owner: str = "",
    ) -> Optional[SecretRecord]:
        """The record in ``directory/file_name`` (lock held), or None if there is none.

        A damaged file is moved aside and raises CorruptStoreFile. ``key`` None
        means "whatever secret of ``owner`` in ``room`` this file holds" (list).
        """
        content = read_bytes(os.path.join(directory, file_name))
        if content is None:
            return None
        try:
            if key is not None:
                return self._decode(content, key)
            record = decode_secret(content, self._cipher, what=repr(file_name))
            if (record.key.room, record.key.owner) != (room, owner):
                raise DamagedFile("holds a secret of another room or owner")
            return record
        except DamagedFile as damage:
            what = (
                _describe(key)
                if key is not None
                else f"file {file_name!r} of {owner!r} in room {room!r}"
            )
            moved_to = self._move_aside(directory, file_name, counted=True)
            raise CorruptStoreFile(
                f"secret {what} was damaged ({damage.reason}) and has been moved aside "
                f"to {moved_to!r}; its value is lost"
            ) from None

    def _move_aside(self, directory: str, file_name: str, *, counted: bool) -> str:
        """Rename a damaged file out of the way (lock held); return its new name.

        ``counted``: a secret, whose versions must stay retired, so first raise
        ``deleted`` to ``issued`` (every version this directory ever gave).
        """
        if counted:
            counter = self._read_counter(directory)
            if counter.deleted < counter.issued:
                self._write_counter(
                    directory, VersionCounter(deleted=counter.issued, issued=counter.issued)
                )
        moved_to = f"{file_name}{CORRUPT_MARK}{int(time.time())}-{secrets.token_hex(4)}"
        os.rename(os.path.join(directory, file_name), os.path.join(directory, moved_to))
        fsync_dir(directory)
        _log.warning("file store: moved damaged file %s aside to %s", file_name, moved_to)
        return moved_to

    # --- the version counter (lock held) ------------------------------------------

    def _read_counter(self, directory: str) -> VersionCounter:
        content = read_bytes(os.path.join(directory, VERSIONS_NAME))
        if content is not None:
            try:
                return decode_versions(content)
            except DamagedFile as damage:
                moved_to = self._move_aside(directory, VERSIONS_NAME, counted=False)
                _log.warning(
                    "file store: version counter in %s was damaged (%s), moved to %s; "
                    "rebuilding it",
                    directory,
                    damage.reason,
                    moved_to,
                )
                return self._rebuild_counter(directory)
        with os.scandir(directory) as entries:
            fresh = all(
                entry.name == LOCK_NAME or entry.name.startswith(TEMP_PREFIX)
                for entry in entries
            )
        if fresh:
            return VersionCounter(deleted=0, issued=0)
        _log.warning("file store: version counter in %s is missing; rebuilding it", directory)
        return self._rebuild_counter(directory)

    def _rebuild_counter(self, directory: str) -> VersionCounter:
        """A counter above every version this directory can have given (lock held).

        The versions of deleted or damaged keys are unknown now, so jump far
        above the highest one still readable.
        """
        highest = 0
        with os.scandir(directory) as entries:
            names = [entry.name for entry in entries if entry.name.endswith(SECRET_SUFFIX)]
        for file_name in names:
            content = read_bytes(os.path.join(directory, file_name))
            with contextlib.suppress(DamagedFile, SecretDecryptionError):
                if content is not None:
                    highest = max(highest, decode_secret(content, self._cipher, what="").version)
        top = highest + _REBUILD_GAP
        counter = VersionCounter(deleted=top, issued=top)
        self._write_counter(directory, counter)
        return counter

    def _write_counter(self, directory: str, counter: VersionCounter) -> None:
        write_atomically(directory, VERSIONS_NAME, encode_versions(counter))

    # --- leases (worker thread) ---------------------------------------------------

    def _read_lease(self, name: str) -> Optional[Lease]:
        """The stored lease ``name`` (leases lock held), or None."""
        file_name = self._layout.lease_file_name(name)
        content = read_bytes(os.path.join(self._layout.leases_dir, file_name))
        if content is None:
            return None
        try:
            lease = decode_lease(content)
            if lease.name != name:
                raise DamagedFile("holds another lease")
            return lease
        except DamagedFile as damage:
            moved_to = self._move_aside(self._layout.leases_dir, file_name, counted=False)
            raise CorruptStoreFile(
                f"lease {name!r} was damaged ({damage.reason}) and has been moved aside "
                f"to {moved_to!r}; the lease is free now"
            ) from None

    def _write_lease(self, lease: Lease) -> None:
        # Not fsync'ed: see "Leases" in the module docstring.
        write_atomically(
            self._layout.leases_dir,
            self._layout.lease_file_name(lease.name),
            encode_lease(lease),
            durable=False,
        )

    def _leases_locked(self) -> contextlib.AbstractContextManager[None]:
        return exclusive(os.path.join(self._layout.leases_dir, LOCK_NAME))

    def _acquire_lease(self, name: str, holder: str, ttl: float) -> Optional[Lease]:
        with self._leases_locked():
            now = self._clock()
            current = self._read_lease(name)
            if current is not None and current.holder != holder and current.expires_at > now:
                return None
            lease = Lease(name=name, holder=holder, expires_at=now + ttl)
            self._write_lease(lease)
            return lease

    def _renew_lease(self, lease: Lease, ttl: float) -> Lease:
        with self._leases_locked():
            now = self._clock()
            current = self._read_lease(lease.name)
            if current is None or current.holder != lease.holder or current.expires_at <= now:
                raise LeaseLost(f"lease {lease.name!r} is no longer held by {lease.holder!r}")
            renewed = Lease(name=lease.name, holder=lease.holder, expires_at=now + ttl)
            self._write_lease(renewed)
            return renewed

    def _release_lease(self, lease: Lease) -> None:
        with self._leases_locked():
            current = self._read_lease(lease.name)
            # An expired lease of the same holder is free either way; dropping it is harmless.
            if current is not None and current.holder == lease.holder:
                os.unlink(
                    os.path.join(self._layout.leases_dir, self._layout.lease_file_name(lease.name))
                )

    async def list_delegated(self, room: str, delegated_to: str) -> list[SecretRecord]:
        """Every record in ``room`` delegated to ``delegated_to``, ordered by (owner, secret_id).

        Reads every owner's directory in the room without taking a lock; a
        damaged file is skipped here and moved aside by its owner's next
        ``get`` or ``list``.
        """
        check_name("room", room)
        check_name("delegated_to", delegated_to)
        return await self._in_thread(
            f"list the secrets delegated to {delegated_to!r} in room {room!r}",
            self._list_delegated,
            room,
            delegated_to,
        )

    # Last, because inside the class body ``list`` names this method from here on.
    async def list(self, room: str, owner: str) -> list[SecretRecord]:
        """Every record ``owner`` has in ``room``, ordered by (secret_id, delegated_to).

        Reads one directory. ``delegated_to=None`` sorts before any delegate.
        """
        check_name("room", room)
        check_name("owner", owner)
        return await self._in_thread(
            f"list the secrets of {owner!r} in room {room!r}", self._list, room, owner
        )


def _describe(key: SecretKey) -> str:
    """Names a secret in messages: ids only (they are not secret), never data."""
    text = f"{key.secret_id!r} of {key.owner!r} in room {key.room!r}"
    if key.delegated_to is not None:
        text += f" delegated to {key.delegated_to!r}"
    return text


if TYPE_CHECKING:
    # mypy proves FileSecretStore satisfies the port.
    _conforms: SecretStore = FileSecretStore(".")
