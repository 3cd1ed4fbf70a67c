"""FileSecretStore: put and get cost the same with 100 or 10,000 secrets; listing 10,000.

(a) ``put`` (overwrite of one key, atomic and durable) and ``get`` of one key in
    an owner directory holding 100 secrets and in one holding 10,000, measured
    side by side in the same run (interleaved rounds, best of each). Target:
    10,000 / 100 <= 1.5 for both. Measured on tmpfs (``/dev/shm``) when there
    is one, where ``fsync`` is free, so that any cost growing with the number
    of files shows instead of drowning in disk latency.
(b) The same ``put`` on the real disk (tmp dir) with its two ``fsync`` calls:
    informational, the latency a caller sees.
(c) ``list`` of the owner with 10,000 secrets (every file read and checked).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Coroutine
from typing import Any, Callable, Optional

from roomsecrets.adapters.file import FileSecretStore
from roomsecrets.core.ports import SecretKey

from .harness import Row, interleaved_best

TARGET = 1.5
SIZES = (100, 10_000)
TYPE = "oauth_token"
DATA = b"x" * 600  # about a stored OAuth credential


def _key(index: int) -> SecretKey:
    return SecretKey(room="bench", owner="alice", secret_id=f"secret-{index:05d}",
                     delegated_to="agent-1" if index % 2 else None)


def _fill(root: str, count: int) -> FileSecretStore:
    store = FileSecretStore(root)

    async def fill() -> None:
        # 64 puts at a time: the worker threads overlap their file system calls.
        for start in range(0, count, 64):
            await asyncio.gather(*(
                store.put(_key(i), type=TYPE, name="n", data=DATA)
                for i in range(start, min(start + 64, count))
            ))

    asyncio.run(fill())
    return store


def _tmpfs() -> Optional[str]:
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


def run(quick: bool = False) -> list[Row]:
    rows: list[Row] = []
    fast_parent = _tmpfs()
    where = "tmpfs" if fast_parent else "disk"
    scratch = [tempfile.mkdtemp(prefix="rs-bench-", dir=fast_parent), tempfile.mkdtemp(prefix="rs-bench-")]
    loop = asyncio.new_event_loop()
    try:
        stores = {size: _fill(os.path.join(scratch[0], str(size)), size) for size in SIZES}

        def call(make: Callable[[], Coroutine[Any, Any, object]]) -> Callable[[], object]:
            return lambda: loop.run_until_complete(make())

        target = _key(7)
        fns: dict[str, Callable[[], object]] = {}
        for size, store in stores.items():
            fns[f"put {size}"] = call(
                lambda store=store: store.put(target, type=TYPE, name="n", data=DATA))
            fns[f"get {size}"] = call(lambda store=store: store.get(target))
        best = interleaved_best(fns, number=50 if quick else 300, repeat=5 if quick else 9)
        small, big = SIZES
        for op in ("put", "get"):
            for size in SIZES:
                rows.append(Row("file store", f"{op} with {size} secrets ({where})",
                                best[f"{op} {size}"] * 1e6, "us"))
            ratio = best[f"{op} {big}"] / best[f"{op} {small}"]
            rows.append(Row("file store", f"{op}: {big} / {small} secrets", ratio, "x",
                            f"<= {TARGET}", ratio <= TARGET))

        # The real disk: the same directories copied over (no fsync needed to set up).
        disk = {}
        for size in SIZES:
            copy = os.path.join(scratch[1], str(size))
            shutil.copytree(stores[size].root, copy)
            disk[size] = FileSecretStore(copy)
        disk_fns = {
            f"put {size}": call(lambda store=store: store.put(target, type=TYPE, name="n", data=DATA))
            for size, store in disk.items()
        }
        disk_best = interleaved_best(disk_fns, number=10 if quick else 40, repeat=3 if quick else 5)
        for size in SIZES:
            rows.append(Row("file store", f"durable put with {size} secrets (disk, fsync)",
                            disk_best[f"put {size}"] * 1e3, "ms"))
        rows.append(Row("file store", f"durable put: {big} / {small} secrets (disk)",
                        disk_best[f"put {big}"] / disk_best[f"put {small}"], "x"))

        listing = float("inf")
        for _ in range(2 if quick else 5):
            started = time.perf_counter()
            listed = loop.run_until_complete(stores[big].list("bench", "alice"))
            listing = min(listing, time.perf_counter() - started)
            assert len(listed) == big
        rows.append(Row("file store", f"list of {big} secrets ({where})", listing * 1e3, "ms"))
    finally:
        loop.close()
        for path in scratch:
            shutil.rmtree(path, ignore_errors=True)
    return rows
