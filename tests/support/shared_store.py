"""One MemoryStore shared by several processes, for cross-process tests.

The store lives in a ``multiprocessing`` manager server on 127.0.0.1; every
process talks to it through :class:`SharedStoreClient`, an async
``SecretStore`` whose calls are atomic on the server (one lock around the
MemoryStore). This stands in for any shared backend (a file store, AWS
Secrets Manager) until those arrive, and exercises only the store contract.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from multiprocessing.managers import BaseManager
from typing import Any, Optional, TypeVar

from roomsecrets.core.errors import LeaseLost, VersionConflict
from roomsecrets.core.memory_store import MemoryStore
from roomsecrets.core.ports import Lease, SecretKey, SecretRecord

_T = TypeVar("_T")
AUTHKEY = b"roomsecrets-tests"


def _run_now(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine that never awaits anything real (MemoryStore's methods)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("MemoryStore awaited something")


class _LockedStore:
    """The server side: a MemoryStore behind a lock; typed errors returned as data
    (their constructors take keywords, which pickling across processes drops)."""

    def __init__(self) -> None:
        self._store = MemoryStore()
        self._lock = threading.Lock()

    def call(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, Any]:
        with self._lock:
            try:
                return "ok", _run_now(getattr(self._store, method)(*args, **kwargs))
            except VersionConflict as exc:
                return "conflict", (str(exc), exc.expected, exc.actual)
            except LeaseLost as exc:
                return "lease_lost", str(exc)


_shared = _LockedStore()


class StoreManager(BaseManager):
    pass


StoreManager.register("store", callable=lambda: _shared)


def serve() -> StoreManager:
    """Start the manager server on 127.0.0.1 (an OS-chosen port); caller shuts it down."""
    manager = StoreManager(address=("127.0.0.1", 0), authkey=AUTHKEY)
    manager.start()
    return manager


class SharedStoreClient:
    """An async SecretStore talking to the manager at ``address``."""

    def __init__(self, address: tuple[str, int]) -> None:
        manager = StoreManager(address=address, authkey=AUTHKEY)
        manager.connect()
        self._proxy = manager.store()  # type: ignore[attr-defined]
        self._lock = threading.Lock()  # a proxy is not safe across threads at once

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        def call() -> tuple[str, Any]:
            with self._lock:
                return self._proxy.call(method, args, kwargs)  # type: ignore[no-any-return]

        status, value = await asyncio.to_thread(call)
        if status == "conflict":
            message, expected, actual = value
            raise VersionConflict(message, expected=expected, actual=actual)
        if status == "lease_lost":
            raise LeaseLost(value)
        return value

    async def get(self, key: SecretKey) -> Optional[SecretRecord]:
        return await self._call("get", key)  # type: ignore[no-any-return]

    async def put(self, key: SecretKey, *, type: str, name: Optional[str], data: bytes,
                  expected_version: Optional[int] = None) -> SecretRecord:
        return await self._call("put", key, type=type, name=name, data=data,  # type: ignore[no-any-return]
                                expected_version=expected_version)

    async def delete(self, key: SecretKey, *, expected_version: Optional[int] = None) -> bool:
        return await self._call("delete", key, expected_version=expected_version)  # type: ignore[no-any-return]

    async def list(self, room: str, owner: str) -> list[SecretRecord]:
        return await self._call("list", room, owner)  # type: ignore[no-any-return]

    async def acquire_lease(self, name: str, *, holder: str, ttl: float) -> Optional[Lease]:
        return await self._call("acquire_lease", name, holder=holder, ttl=ttl)  # type: ignore[no-any-return]

    async def renew_lease(self, lease: Lease, *, ttl: float) -> Lease:
        return await self._call("renew_lease", lease, ttl=ttl)  # type: ignore[no-any-return]

    async def release_lease(self, lease: Lease) -> None:
        await self._call("release_lease", lease)
