"""FileSecretStore passes the store contract kit, and keeps its own promises."""

from __future__ import annotations

import asyncio
import base64
import doctest
import errno
import logging
import multiprocessing
import os
import shutil
import signal
import stat
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import pytest

from roomsecrets.adapters.file import (
    CorruptStoreFile,
    FileSecretStore,
    InsecureStoreWarning,
    SecretDecryptionError,
)
from roomsecrets.adapters.file import format as _file_format
from roomsecrets.adapters.file import io as file_io
from roomsecrets.adapters.file import layout as _file_layout
from roomsecrets.adapters.file import store as file_store
from roomsecrets.core.errors import ConfigurationError, InvalidInput, StoreError, VersionConflict
from roomsecrets.core.ports import SecretKey, SecretStore
from roomsecrets.testing import FakeClock, StoreContract


def _scratch_parent() -> str | None:
    # tmpfs when there is one: fsync is free there, so the model machine's
    # thousands of writes test the logic quickly. The crash and durability
    # tests below use the real disk.
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


class TestFileSecretStoreContract(StoreContract):
    async def make_store(self, clock: FakeClock) -> SecretStore:
        return FileSecretStore(tempfile.mkdtemp(prefix="rs-file-", dir=_scratch_parent()), clock=clock)

    async def close_store(self, store: SecretStore) -> None:
        assert isinstance(store, FileSecretStore)
        shutil.rmtree(store.root, ignore_errors=True)


# --- helpers ----------------------------------------------------------------------------

KEY = SecretKey(room="room", owner="alice", secret_id="mail")
OTHER = SecretKey(room="room", owner="alice", secret_id="drive")
TYPE = "application/octet-stream"
DATA = b"VERY-SECRET-DATA-7c1e"


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def secret_files(root: Path) -> list[Path]:
    return sorted((root / "secrets").glob("*/*/*.secret"))


def aside_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.corrupt-*"))


def only_file(root: Path, key: SecretKey = KEY) -> Path:
    (path,) = [p for p in secret_files(root) if p.name.startswith(key.secret_id)]
    return path


def rewrite_body(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Edit a file's JSON body and write it back with a valid header and checksum."""
    content = path.read_bytes()
    kind = content.split(b" ", 3)[2].decode()
    body = _file_format._unpack(kind, content)
    change(body)
    path.write_bytes(_file_format._pack(kind, body))


# --- layout, names and permissions --------------------------------------------------


def test_each_secret_is_one_file_in_its_owners_directory(tmp_path: Path) -> None:
    store = FileSecretStore(tmp_path / "store")
    run(store.put(KEY, type=TYPE, name="Mail", data=DATA))
    run(store.put(replace(KEY, delegated_to="bot"), type=TYPE, name=None, data=DATA))
    run(store.put(replace(KEY, owner="bob"), type=TYPE, name=None, data=DATA))
    names = [p.relative_to(tmp_path / "store").as_posix() for p in secret_files(tmp_path / "store")]
    assert names == [
        "secrets/room/alice/mail.bot.secret",
        "secrets/room/alice/mail.secret",
        "secrets/room/bob/mail.secret",
    ]


def test_ids_cannot_escape_the_root_or_collide_by_case(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = FileSecretStore(root)
    hostile = [
        SecretKey(room="..", owner="../..", secret_id="../../../etc/passwd"),
        SecretKey(room="/abs", owner=".", secret_id=".hidden"),
        SecretKey(room="r", owner="Alice", secret_id="MAIL"),
        SecretKey(room="r", owner="alice", secret_id="mail"),
        SecretKey(room="r", owner="alice", secret_id="mail.secret", delegated_to="x"),
        SecretKey(room="r", owner="alice", secret_id="mail", delegated_to="secret"),
        SecretKey(room="r", owner="alice", secret_id="a\x00b\\c:d"),
    ]
    for index, key in enumerate(hostile):
        run(store.put(key, type=TYPE, name=None, data=b"%d" % index))
    files = [p for p in root.rglob("*") if p.is_file()]
    for path in files:
        assert path.resolve().is_relative_to(root.resolve()), path
        relative = path.relative_to(root).as_posix()
        # Lower case only: nothing can meet on a case-insensitive file system.
        assert relative == relative.lower(), relative
    assert len(secret_files(root)) == len(hostile)
    for index, key in enumerate(hostile):
        got = run(store.get(key))
        assert got is not None and got.data == b"%d" % index, key


def test_long_and_odd_ids_round_trip(tmp_path: Path) -> None:
    store = FileSecretStore(tmp_path)
    keys = [
        SecretKey(room="r" * 300, owner="ü" * 100, secret_id="🔑" * 200, delegated_to="x" * 250),
        SecretKey(room="r", owner="o", secret_id="\ud800 lone surrogate"),
        SecretKey(room="r", owner="o", secret_id="x" * 199, delegated_to="y"),
    ]
    for key in keys:
        run(store.put(key, type=TYPE, name="n", data=b"d"))
        got = run(store.get(key))
        assert got is not None and got.key == key
    assert [r.key for r in run(store.list(keys[0].room, keys[0].owner))] == [keys[0]]
    for path in tmp_path.rglob("*"):
        assert len(path.name) <= 255


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
def test_directories_are_0700_and_files_0600_whatever_the_umask(
    tmp_path: Path, umask: int
) -> None:
    old = os.umask(umask)
    try:
        store = FileSecretStore(tmp_path / "store")
        run(store.put(KEY, type=TYPE, name=None, data=DATA))
        run(store.acquire_lease("refresh", holder="h", ttl=30))
        assert run(store.get(KEY)) is not None
    finally:
        os.umask(old)
    seen = {"dir": 0, "file": 0}
    for path in [tmp_path / "store", *(tmp_path / "store").rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_dir():
            seen["dir"] += 1
            assert mode == 0o700, (path, oct(mode))
        elif path.name != ".lock":  # lock files are only ever flock'ed
            seen["file"] += 1
            assert mode == 0o600, (path, oct(mode))
        else:
            assert mode & 0o077 == 0, (path, oct(mode))
    assert seen["dir"] >= 5 and seen["file"] >= 3, seen


class _WatchedOs:
    """The ``os`` module as ``adapters/file/io.py`` sees it, with the mode of the file
    observed at every call that creates it, writes it, changes its mode, flushes it
    or renames it: right after ``open`` returns, and before and after the others."""

    def __init__(self) -> None:
        #: (call, path, permission bits) for every observation.
        self.seen: list[tuple[str, str, int]] = []
        self._paths: dict[int, str] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def _note(self, call: str, path: str, mode: int) -> None:
        self.seen.append((call, path, stat.S_IMODE(mode)))

    def _note_fd(self, call: str, fd: int) -> None:
        self._note(call, self._paths.get(fd, f"fd {fd}"), os.fstat(fd).st_mode)

    def _note_path(self, call: str, path: Any) -> None:
        self._note(call, os.fspath(path), os.lstat(path).st_mode)

    def open(self, path: Any, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
        fd = os.open(path, flags, mode, **kwargs)
        self._paths[fd] = os.fspath(path)
        self._note_fd("open", fd)
        return fd

    def close(self, fd: int) -> None:
        self._paths.pop(fd, None)
        os.close(fd)

    def write(self, fd: int, data: Any) -> int:
        self._note_fd("write", fd)
        written = os.write(fd, data)
        self._note_fd("write", fd)
        return written

    def fchmod(self, fd: int, mode: int) -> None:
        self._note_fd("fchmod", fd)
        os.fchmod(fd, mode)
        self._note_fd("fchmod", fd)

    def chmod(self, path: Any, mode: int, **kwargs: Any) -> None:
        self._note_path("chmod", path)
        os.chmod(path, mode, **kwargs)
        self._note_path("chmod", path)

    def fsync(self, fd: int) -> None:
        self._note_fd("fsync", fd)
        os.fsync(fd)
        self._note_fd("fsync", fd)

    def replace(self, source: Any, target: Any, **kwargs: Any) -> None:
        self._note_path("replace", source)
        os.replace(source, target, **kwargs)
        self._note_path("replace", target)


def test_files_are_never_readable_by_others_even_while_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # umask 0: the modes the store asks for are the modes files get, so a file
    # created 0644 and tightened later would show here.
    watched = _WatchedOs()
    monkeypatch.setattr(file_io, "os", watched)
    old = os.umask(0)
    try:
        store = FileSecretStore(tmp_path / "s")
        run(store.put(KEY, type=TYPE, name=None, data=DATA))
        run(store.put(KEY, type=TYPE, name="again", data=DATA * 2))
        run(store.acquire_lease("refresh", holder="h", ttl=30))
    finally:
        os.umask(old)
    loose = [(call, path, oct(mode)) for call, path, mode in watched.seen if mode & 0o077]
    assert loose == []
    calls = {call for call, _, _ in watched.seen}
    assert {"open", "write", "fchmod", "fsync", "replace"} <= calls, calls
    assert run(store.get(KEY)) is not None  # the watched calls did the real work


def test_a_root_others_can_enter_gets_a_warning(tmp_path: Path) -> None:
    root = tmp_path / "shared"
    root.mkdir()
    root.chmod(0o755)
    store = FileSecretStore(root)
    with pytest.warns(InsecureStoreWarning, match="not private"):
        run(store.put(KEY, type=TYPE, name=None, data=DATA))
    private = tmp_path / "private"
    with warnings.catch_warnings():
        warnings.simplefilter("error", InsecureStoreWarning)
        run(FileSecretStore(private).put(KEY, type=TYPE, name=None, data=DATA))
    assert stat.S_IMODE(private.stat().st_mode) == 0o700


def test_repr_shows_the_root_and_key_id_only(tmp_path: Path) -> None:
    key = b"k" * 32
    store = FileSecretStore(tmp_path, encryption_key=key)
    shown = repr(store)
    assert str(tmp_path) in shown and "encryption_key_id=" in shown
    assert "kkkk" not in shown


def test_docstring_examples() -> None:
    for module in (file_store, _file_layout):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__


# --- arguments and I/O errors ----------------------------------------------------------


def test_bad_arguments_raise_invalid_input_and_touch_nothing(tmp_path: Path) -> None:
    root = tmp_path / "never"
    store = FileSecretStore(root)
    calls = [
        store.get("not a key"),  # type: ignore[arg-type]
        store.put(replace(KEY, secret_id=""), type=TYPE, name=None, data=b""),
        store.put(KEY, type="", name=None, data=b""),
        store.put(KEY, type=TYPE, name=1, data=b""),  # type: ignore[arg-type]
        store.put(KEY, type=TYPE, name=None, data="text"),  # type: ignore[arg-type]
        store.put(KEY, type=TYPE, name=None, data=b"", expected_version=-1),
        store.delete(KEY, expected_version=True),  # type: ignore[arg-type]
        store.list("", "alice"),
        store.acquire_lease("l", holder="h", ttl=0),
        store.acquire_lease("l", holder="", ttl=1),
        store.renew_lease("lease", ttl=1),  # type: ignore[arg-type]
    ]
    for call in calls:
        with pytest.raises(InvalidInput):
            run(call)
    assert not root.exists()


def test_os_errors_become_store_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="could not write 'mail' of 'alice'") as caught:
        run(FileSecretStore(blocker).put(KEY, type=TYPE, name=None, data=DATA))
    assert not isinstance(caught.value, OSError)

    store = FileSecretStore(tmp_path / "s")
    first = run(store.put(KEY, type=TYPE, name=None, data=b"old"))

    def disk_full(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", disk_full)
    with pytest.raises(StoreError, match="ENOSPC") as caught:
        run(store.put(KEY, type=TYPE, name=None, data=DATA))
    assert DATA.decode() not in str(caught.value)
    monkeypatch.undo()
    assert run(store.get(KEY)) == first
    assert not list((tmp_path / "s").rglob(".tmp-*")), "a failed write left its temporary file"


def test_a_failed_replace_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileSecretStore(tmp_path)
    first = run(store.put(KEY, type=TYPE, name=None, data=b"old"))

    def broken_replace(src: Any, dst: Any) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(StoreError, match="EIO"):
        run(store.put(KEY, type=TYPE, name=None, data=b"new", expected_version=first.version))
    monkeypatch.undo()
    assert run(store.get(KEY)) == first
    assert not list(tmp_path.rglob(".tmp-*"))


def test_list_removes_temporary_files_left_by_a_killed_writer(tmp_path: Path) -> None:
    store = FileSecretStore(tmp_path)
    record = run(store.put(KEY, type=TYPE, name=None, data=DATA))
    leftover = only_file(tmp_path).parent / ".tmp-0123456789abcdef"
    leftover.write_bytes(b"half a secr")
    assert run(store.list("room", "alice")) == [record]
    assert not leftover.exists()


# --- damaged files ------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda b: b[: len(b) // 2], id="truncated"),
        pytest.param(lambda b: b"", id="empty"),
        pytest.param(lambda b: b[:-5] + bytes([b[-5] ^ 0x20]) + b[-4:], id="bit-flip"),
        pytest.param(lambda b: b"\0" * len(b), id="zeroed"),
        pytest.param(lambda b: b + b"\n", id="appended"),
    ],
)
def test_a_damaged_secret_raises_a_typed_error_and_is_moved_aside(
    tmp_path: Path, damage: Callable[[bytes], bytes]
) -> None:
    store = FileSecretStore(tmp_path)
    damaged = run(store.put(KEY, type=TYPE, name=None, data=DATA))
    kept = run(store.put(OTHER, type=TYPE, name=None, data=b"kept"))
    path = only_file(tmp_path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CorruptStoreFile) as caught:
        run(store.get(KEY))
    message = str(caught.value)
    assert "'mail'" in message and "moved aside" in message
    assert DATA.decode() not in message
    assert isinstance(caught.value, StoreError) and caught.value.code == "corrupt_store_file"
    (aside,) = aside_files(tmp_path)
    assert aside.name.startswith("mail.secret.corrupt-")
    # The rest of the store works, and the damaged key starts a new life whose
    # versions the lost one can never have had.
    assert run(store.get(KEY)) is None
    assert run(store.list("room", "alice")) == [kept]
    again = run(store.put(KEY, type=TYPE, name=None, data=b"new", expected_version=0))
    assert again.version > damaged.version
    with pytest.raises(VersionConflict):
        run(store.put(KEY, type=TYPE, name=None, data=b"x", expected_version=damaged.version))


def test_damage_found_by_put_delete_and_list(tmp_path: Path) -> None:
    store = FileSecretStore(tmp_path)
    for operation in (
        lambda: store.put(KEY, type=TYPE, name=None, data=b"x"),
        lambda: store.delete(KEY),
        lambda: store.list("room", "alice"),
    ):
        run(store.put(KEY, type=TYPE, name=None, data=DATA))
        path = only_file(tmp_path)
        path.write_bytes(path.read_bytes()[:40])
        with pytest.raises(CorruptStoreFile, match="mail"):
            run(operation())
        assert not path.exists()
        assert run(store.list("room", "alice")) == []
    assert len(aside_files(tmp_path)) == 3


def test_a_file_holding_another_key_is_damaged(tmp_path: Path) -> None:
    store = FileSecretStore(tmp_path)
    run(store.put(KEY, type=TYPE, name=None, data=DATA))
    run(store.put(OTHER, type=TYPE, name=None, data=b"other"))
    only_file(tmp_path, OTHER).write_bytes(only_file(tmp_path, KEY).read_bytes())
    with pytest.raises(CorruptStoreFile, match="another secret's key"):
        run(store.get(OTHER))
    assert run(store.get(KEY)) is not None


def test_a_damaged_lease_raises_and_frees_the_lease(tmp_path: Path) -> None:
    store = FileSecretStore(tmp_path)
    run(store.acquire_lease("refresh/x", holder="h1", ttl=30))
    (path,) = (tmp_path / "leases").glob("*.lease")
    path.write_bytes(b"garbage")
    with pytest.raises(CorruptStoreFile, match="refresh/x"):
        run(store.acquire_lease("refresh/x", holder="h2", ttl=30))
    lease = run(store.acquire_lease("refresh/x", holder="h2", ttl=30))
    assert lease is not None and lease.holder == "h2"


@pytest.mark.parametrize("how", ["damaged", "missing"])
def test_a_lost_version_counter_is_rebuilt_above_every_version(
    tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = FileSecretStore(tmp_path)
    run(store.put(OTHER, type=TYPE, name=None, data=b"stays"))
    old = run(store.put(KEY, type=TYPE, name=None, data=DATA))
    run(store.delete(KEY))
    counter = only_file(tmp_path, OTHER).parent / ".versions"
    if how == "damaged":
        counter.write_bytes(counter.read_bytes()[:10])
    else:
        counter.unlink()
    with caplog.at_level(logging.WARNING, logger="roomsecrets.adapters.file"):
        again = run(store.put(KEY, type=TYPE, name=None, data=b"new", expected_version=0))
    assert again.version > old.version
    assert "version counter" in caplog.text
    assert counter.exists()


def test_a_newer_format_is_refused_and_left_alone(tmp_path: Path) -> None:
    store = FileSecretStore(tmp_path)
    run(store.put(KEY, type=TYPE, name=None, data=DATA))
    path = only_file(tmp_path)
    newer = path.read_bytes().replace(b"roomsecrets-file 1 ", b"roomsecrets-file 2 ", 1)
    path.write_bytes(newer)
    with pytest.raises(StoreError, match="newer version") as caught:
        run(store.get(KEY))
    assert not isinstance(caught.value, CorruptStoreFile)
    assert path.read_bytes() == newer and not aside_files(tmp_path)


# --- encryption at rest -----------------------------------------------------------


def test_encrypted_data_is_not_on_disk_and_round_trips(tmp_path: Path) -> None:
    key = os.urandom(32)
    store = FileSecretStore(tmp_path, encryption_key=key)
    put = run(store.put(KEY, type=TYPE, name="Mail", data=DATA))
    content = only_file(tmp_path).read_bytes()
    assert DATA not in content and base64.b64encode(DATA) not in content
    assert b'"algorithm":"AES-GCM"' in content
    assert b'"key_id":"%s"' % store._cipher.key_id.encode() in content  # type: ignore[union-attr]
    assert run(FileSecretStore(tmp_path, encryption_key=key).get(KEY)) == put
    assert run(store.list("room", "alice")) == [put]


@pytest.mark.parametrize("other_key", [b"w" * 32, None], ids=["wrong-key", "no-key"])
def test_a_wrong_key_raises_and_changes_nothing(tmp_path: Path, other_key: bytes | None) -> None:
    store = FileSecretStore(tmp_path, encryption_key=b"k" * 32)
    put = run(store.put(KEY, type=TYPE, name=None, data=DATA))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    wrong = FileSecretStore(tmp_path, encryption_key=other_key)
    for call in (
        lambda: wrong.get(KEY),
        lambda: wrong.list("room", "alice"),
        lambda: wrong.put(KEY, type=TYPE, name=None, data=b"overwrite"),
        lambda: wrong.delete(KEY),
    ):
        with pytest.raises(SecretDecryptionError, match=r"'mail'|mail\.secret") as caught:
            run(call())
        assert caught.value.retryable is False
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before and not aside_files(tmp_path)
    assert run(store.get(KEY)) == put


def test_the_key_and_metadata_are_bound_into_the_ciphertext(tmp_path: Path) -> None:
    store = FileSecretStore(tmp_path, encryption_key=b"k" * 32)
    run(store.put(KEY, type=TYPE, name="Mail", data=DATA))
    path = only_file(tmp_path)
    original = path.read_bytes()

    def retype(body: dict[str, Any]) -> None:
        body["type"] = "text/plain"

    rewrite_body(path, retype)  # a valid checksum, but not the data that was encrypted
    with pytest.raises(SecretDecryptionError, match="failed authentication"):
        run(store.get(KEY))
    assert not aside_files(tmp_path)

    # Moved to another key's path with its key fields rewritten to match.
    path.write_bytes(original)
    run(store.put(OTHER, type=TYPE, name="Mail", data=b"other"))
    other_path = only_file(tmp_path, OTHER)
    other_path.write_bytes(original)

    def rekey(body: dict[str, Any]) -> None:
        body["key"]["secret_id"] = OTHER.secret_id

    rewrite_body(other_path, rekey)
    with pytest.raises(SecretDecryptionError, match="failed authentication"):
        run(store.get(OTHER))


def test_plaintext_files_stay_readable_after_turning_encryption_on(tmp_path: Path) -> None:
    run(FileSecretStore(tmp_path).put(KEY, type=TYPE, name=None, data=DATA))
    encrypted = FileSecretStore(tmp_path, encryption_key=b"k" * 32)
    old = run(encrypted.get(KEY))
    assert old is not None and old.data == DATA
    run(encrypted.put(KEY, type=TYPE, name=None, data=DATA, expected_version=old.version))
    assert DATA not in only_file(tmp_path).read_bytes()


def test_bad_or_unusable_keys_are_configuration_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in (b"short", "k" * 32, b"k" * 33):
        with pytest.raises(ConfigurationError, match="16, 24 or 32"):
            FileSecretStore("unused", encryption_key=bad)  # type: ignore[arg-type]
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.ciphers.aead", None)
    with pytest.raises(ConfigurationError, match="pip install cryptography"):
        FileSecretStore("unused", encryption_key=b"k" * 32)


# --- threads and processes ----------------------------------------------------------


def test_a_slow_disk_does_not_stall_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        time.sleep(0.2)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)

    async def main() -> tuple[float, list[float]]:
        store = FileSecretStore(tmp_path)
        ticks: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            while not done.is_set():
                ticks.append(time.perf_counter())
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0.02)
        start = time.perf_counter()
        await store.put(KEY, type=TYPE, name=None, data=DATA)
        elapsed = time.perf_counter() - start
        done.set()
        await task
        return elapsed, [t for t in ticks if t >= start]

    elapsed, ticks = run(main())
    gaps = [later - earlier for earlier, later in zip(ticks, ticks[1:])]
    assert elapsed >= 0.4, f"the put took {elapsed:.3f}s: the slow fsync was not called"
    assert max(gaps) < 0.1, f"the loop stalled for {max(gaps):.3f}s during a {elapsed:.3f}s put"
    assert len(ticks) >= elapsed / 0.01 / 3, f"{len(ticks)} ticks in {elapsed:.3f}s"


def _increment_in_process(root: str, times: int) -> None:
    """Child process: ``times`` read-modify-write increments with CAS retries."""

    async def main() -> None:
        store = FileSecretStore(root)
        for _ in range(times):
            while True:
                record = await store.get(KEY)
                assert record is not None
                try:
                    await store.put(KEY, type=TYPE, name=None, data=b"%d" % (int(record.data) + 1),
                                    expected_version=record.version)
                    break
                except VersionConflict:
                    continue

    asyncio.run(main())


def test_compare_and_swap_holds_across_processes(tmp_path: Path) -> None:
    store = FileSecretStore(tmp_path)
    run(store.put(KEY, type=TYPE, name=None, data=b"0", expected_version=0))
    ctx = multiprocessing.get_context("spawn")
    processes, times = 4, 15
    procs = [ctx.Process(target=_increment_in_process, args=(str(tmp_path), times))
             for _ in range(processes)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    final = run(store.get(KEY))
    assert final is not None and final.data == b"%d" % (processes * times)


def _hold_lease(root: str, ready: Any) -> None:
    """Child process: take the lease, say so, then hang until killed."""

    async def main() -> None:
        lease = await FileSecretStore(root).acquire_lease("refresh/k", holder="child", ttl=1.0)
        assert lease is not None
        ready.set()
        await asyncio.sleep(3600)

    asyncio.run(main())


def test_a_lease_held_in_another_process_excludes_until_its_holder_dies_and_it_expires(
    tmp_path: Path,
) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    child = ctx.Process(target=_hold_lease, args=(str(tmp_path), ready))
    child.start()
    try:
        assert ready.wait(60)
        store = FileSecretStore(tmp_path)
        assert run(store.acquire_lease("refresh/k", holder="parent", ttl=5)) is None
    finally:
        child.kill()
        child.join(10)
    assert child.exitcode == -signal.SIGKILL
    deadline = time.time() + 5
    lease = None
    while lease is None and time.time() < deadline:
        lease = run(store.acquire_lease("refresh/k", holder="parent", ttl=5))
        time.sleep(0.05)
    assert lease is not None and lease.holder == "parent"
