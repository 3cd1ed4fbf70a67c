"""The blocking file operations under :class:`~roomsecrets.adapters.file.FileSecretStore`.

All of them run in worker threads, never on the event loop. They raise
:class:`OSError`; the store turns it into
:class:`~roomsecrets.core.errors.StoreError` at its boundary.

* Every directory is made with mode 0700 and every file with 0600 at the moment
  of creation (``os.mkdir``/``os.open`` with a mode), then set to exactly that
  mode: a umask can only take bits away, and a umask that took the owner's own
  bits would leave files we could not read back.
* :func:`write_atomically` is the classic durable replace: write a temporary
  file in the same directory, ``fsync`` it, ``os.replace`` it over the target,
  ``fsync`` the directory. A reader sees the old file or the new one, never a
  mix (POSIX ``rename(2)``: the replacement is atomic), and once it returns the
  new one survives a power cut: Linux ``fsync(2)`` says the file's own
  ``fsync`` does not make its directory entry durable, "an explicit fsync()
  on a file descriptor for the directory is also needed". On macOS ``fsync``
  only reaches the drive's cache, so :func:`flush` adds ``F_FULLFSYNC``
  (Apple's ``fsync(2)``; SQLite's ``fullfsync`` does the same).
* :func:`exclusive` is an ``flock(2)`` on a lock file plus a
  :class:`threading.Lock` picked by the path (one of :data:`_STRIPES`, so
  memory stays bounded however many directories there are). ``flock``
  excludes other processes and other open files; the thread lock covers file
  systems where ``flock`` falls back to per-process POSIX locks (NFS), which
  would let two threads of one process in together. The kernel drops an
  ``flock`` when its holder dies, so a killed process never leaves a
  directory locked. Nothing ever holds two of these locks at once, so two
  paths sharing a stripe cannot deadlock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import stat
import threading
from collections.abc import Iterator
from typing import Optional

from .layout import TEMP_PREFIX

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "exclusive",
    "flush",
    "fsync_dir",
    "loose_permissions",
    "make_dirs",
    "read_bytes",
    "remove_temporaries",
    "write_atomically",
]

DIR_MODE = 0o700
FILE_MODE = 0o600
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_FULLFSYNC: Optional[int] = getattr(fcntl, "F_FULLFSYNC", None)  # macOS only

_STRIPES = 64
_thread_locks = tuple(threading.Lock() for _ in range(_STRIPES))


def make_dirs(path: str, *, stop: str) -> bool:
    """Create ``path`` and any missing parents below ``stop`` (which must exist).

    Each new directory gets mode 0700 and its parent is fsync'ed, so the new
    entry survives a crash. Returns True if anything was created.
    """
    if os.path.isdir(path):
        return False
    if path == stop:
        raise FileNotFoundError(f"store directory {path} is missing")
    parent = os.path.dirname(path)
    make_dirs(parent, stop=stop)
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        return False  # another process or thread made it first
    os.chmod(path, DIR_MODE)  # exactly 0700, whatever the umask took away
    fsync_dir(parent)
    return True


def flush(fd: int) -> None:
    """Make what was written to ``fd`` durable (see the module docstring)."""
    os.fsync(fd)
    if _FULLFSYNC is not None:
        fcntl.fcntl(fd, _FULLFSYNC)


def fsync_dir(path: str) -> None:
    """Flush the directory entry changes of ``path`` to disk."""
    fd = os.open(path, os.O_RDONLY | _CLOEXEC)
    try:
        flush(fd)
    finally:
        os.close(fd)


def read_bytes(path: str) -> Optional[bytes]:
    """The whole content of ``path``, or None if it does not exist. Never follows a symlink."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        chunks: list[bytes] = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_atomically(directory: str, name: str, content: bytes, *, durable: bool = True) -> None:
    """Replace ``directory/name`` with ``content`` in one step (see the module docstring).

    ``durable=False`` skips both ``fsync`` calls; the replace is still atomic.
    On any failure the temporary file is removed and the old file is untouched.
    """
    temp = os.path.join(directory, TEMP_PREFIX + secrets.token_hex(8))
    fd = os.open(
        temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, FILE_MODE
    )
    try:
        try:
            os.fchmod(fd, FILE_MODE)
            view = memoryview(content)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if durable:
                flush(fd)
        finally:
            os.close(fd)
        os.replace(temp, os.path.join(directory, name))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    if durable:
        fsync_dir(directory)


def remove_temporaries(directory: str) -> int:
    """Delete temporary files a killed writer left in ``directory``; return how many.

    Call it only while holding :func:`exclusive` on the directory: every live
    writer holds that lock for the whole life of its temporary file.
    """
    removed = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.startswith(TEMP_PREFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
    return removed


@contextlib.contextmanager
def exclusive(lock_path: str) -> Iterator[None]:
    """Hold the lock ``lock_path`` (created 0600 if missing) for the ``with`` block."""
    with _thread_lock(lock_path):
        # O_RDONLY is enough for flock(2) and works whatever mode the file has.
        fd = os.open(lock_path, os.O_RDONLY | os.O_CREAT | _NOFOLLOW | _CLOEXEC, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the last descriptor drops the flock


def _thread_lock(path: str) -> threading.Lock:
    return _thread_locks[hash(path) % _STRIPES]


def loose_permissions(path: str) -> Optional[str]:
    """Why others may reach into ``path``, or None when only its owner (us) can."""
    info = os.stat(path)
    reasons = []
    if stat.S_IMODE(info.st_mode) & 0o077:
        reasons.append(f"mode {stat.S_IMODE(info.st_mode):04o} lets group or others in")
    getuid = getattr(os, "getuid", None)
    if getuid is not None and info.st_uid != getuid():
        reasons.append(f"owned by uid {info.st_uid}, not by this process (uid {getuid()})")
    return "; ".join(reasons) or None
