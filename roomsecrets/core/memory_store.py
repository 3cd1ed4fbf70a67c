"""``MemoryStore``: the stdlib :class:`~roomsecrets.core.ports.SecretStore`.

Everything lives in dicts owned by one event loop. No method awaits, so each call
runs start to finish without another task getting in between: every operation is
atomic, which is what makes compare-and-swap and leases correct here without a lock.

The rules every store follows (``roomsecrets.testing.StoreContract`` checks them):

Versions
    A version is a positive integer that names one write of one key forever: no
    two writes of a key ever return the same version, not even after the key was
    deleted and written again. So a compare-and-swap with a version read before a
    delete can never succeed against the record created after it (the ABA
    problem: a refresh that started before a person deleted and re-approved a
    credential must not overwrite the new approval). Versions need not be
    consecutive; ``MemoryStore`` draws them from one counter for the whole store,
    so they also grow with every write.

Compare-and-swap (``expected_version``)
    ``None``: unconditional. ``0``: the key must not exist. ``n > 0``: the stored
    version must be ``n``. Anything else raises
    :class:`~roomsecrets.core.errors.VersionConflict` and changes nothing. For
    ``delete`` the same rule applies: ``0`` on a missing key is satisfied and
    returns False (nothing to delete); ``n > 0`` on a missing key is a conflict.

Leases
    A lease belongs to its ``(name, holder)`` pair; ``Lease.expires_at`` is only
    information for the holder. A lease with ``expires_at <= now`` (the injected
    clock) is free: anyone may acquire it, and renewing it raises
    :class:`~roomsecrets.core.errors.LeaseLost` even if nobody took it. The same
    holder acquiring again extends its lease to ``now + ttl``. Releasing a lease
    someone else holds now is a no-op. Holders must be unique per process/task.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Optional

from .errors import InvalidInput, LeaseLost
from .ports import Clock, Lease, SecretKey, SecretRecord
from .store_arguments import (
    check_expected_version,
    check_key,
    check_lease,
    check_name,
    check_ttl,
    compare_version,
    delegated_order,
    list_order,
)

if TYPE_CHECKING:
    from .ports import SecretStore

__all__ = ["MemoryStore"]


class MemoryStore:
    """Keeps secrets and leases in memory; the default store and the reference one.

    Records are immutable (:class:`SecretRecord` holding ``bytes``), so handing the
    stored record to callers shares nothing they can change. ``clock`` decides
    lease expiry; tests inject a fake one.

    Invalid arguments (empty ids, non-bytes data, ``ttl <= 0``, negative
    ``expected_version``) raise :class:`~roomsecrets.core.errors.InvalidInput`.

    >>> import asyncio
    >>> store = MemoryStore()
    >>> key = SecretKey(room="r", owner="alice", secret_id="s")
    >>> first = asyncio.run(store.put(key, type="text/plain", name=None, data=b"x"))
    >>> asyncio.run(store.delete(key))
    True
    >>> again = asyncio.run(store.put(key, type="text/plain", name=None, data=b"x"))
    >>> again.version > first.version
    True
    """

    def __init__(self, *, clock: Clock = time.time) -> None:
        self._clock = clock
        # (room, owner) -> (secret id, delegate) -> record: ``list`` reads one bucket,
        # not everything. Plain tuples as keys: hashing and comparing them is done in
        # C, a SecretKey's (a dataclass) in Python, on every read.
        self._buckets: dict[tuple[str, str], dict[tuple[str, Optional[str]], SecretRecord]] = {}
        self._leases: dict[str, Lease] = {}
        # One counter for every write of every key: a version is never handed out
        # twice, so a deleted key written again cannot repeat an old version.
        self._last_version = 0

    def __repr__(self) -> str:
        records = sum(len(bucket) for bucket in self._buckets.values())
        return f"MemoryStore(records={records}, leases={len(self._leases)})"

    async def get(self, key: SecretKey) -> Optional[SecretRecord]:
        """Return the record at ``key``, or None."""
        check_key(key)
        bucket = self._buckets.get((key.room, key.owner))
        return None if bucket is None else bucket.get((key.secret_id, key.delegated_to))

    async def put(
        self,
        key: SecretKey,
        *,
        type: str,
        name: Optional[str],
        data: bytes,
        expected_version: Optional[int] = None,
    ) -> SecretRecord:
        """Write ``data`` at ``key``; return the stored record with its new version.

        Raises :class:`VersionConflict` (and changes nothing) when
        ``expected_version`` does not match.
        """
        check_key(key)
        check_name("type", type)
        if name is not None and not isinstance(name, str):
            raise InvalidInput("name must be a string or None")
        if not isinstance(data, bytes):
            raise InvalidInput(f"data must be bytes, not {data.__class__.__name__}")
        check_expected_version(expected_version)
        current = self._buckets.get((key.room, key.owner), {}).get(
            (key.secret_id, key.delegated_to)
        )
        compare_version(expected_version, current)
        self._last_version += 1
        record = SecretRecord(
            key=key,
            type=type,
            name=name,
            data=bytes(data),  # a bytes subclass could carry mutable state
            version=self._last_version,
        )
        bucket = self._buckets.setdefault((key.room, key.owner), {})
        bucket[(key.secret_id, key.delegated_to)] = record
        return record

    async def delete(self, key: SecretKey, *, expected_version: Optional[int] = None) -> bool:
        """Delete ``key``; True if something was deleted.

        Raises :class:`VersionConflict` (and deletes nothing) when
        ``expected_version`` does not match.
        """
        check_key(key)
        check_expected_version(expected_version)
        bucket = self._buckets.get((key.room, key.owner), {})
        current = bucket.get((key.secret_id, key.delegated_to))
        compare_version(expected_version, current)
        if current is None:
            return False
        del bucket[(key.secret_id, key.delegated_to)]
        if not bucket:
            del self._buckets[(key.room, key.owner)]
        return True

    async def acquire_lease(self, name: str, *, holder: str, ttl: float) -> Optional[Lease]:
        """Take the lease ``name`` for ``ttl`` seconds; None if someone else holds it.

        The same holder acquiring again extends its lease to ``now + ttl``.
        """
        check_name("lease name", name)
        check_name("holder", holder)
        check_ttl(ttl)
        now = self._clock()
        current = self._leases.get(name)
        if current is not None and current.holder != holder and current.expires_at > now:
            return None
        lease = Lease(name=name, holder=holder, expires_at=now + ttl)
        self._leases[name] = lease
        return lease

    async def renew_lease(self, lease: Lease, *, ttl: float) -> Lease:
        """Extend a held lease to ``now + ttl``.

        Raises :class:`LeaseLost` if it expired or another holder has it now.
        """
        check_lease(lease)
        check_ttl(ttl)
        now = self._clock()
        current = self._leases.get(lease.name)
        if current is None or current.holder != lease.holder or current.expires_at <= now:
            raise LeaseLost(f"lease {lease.name!r} is no longer held by {lease.holder!r}")
        renewed = Lease(name=lease.name, holder=lease.holder, expires_at=now + ttl)
        self._leases[lease.name] = renewed
        return renewed

    async def release_lease(self, lease: Lease) -> None:
        """Give the lease back; a no-op if another holder has it now."""
        check_lease(lease)
        current = self._leases.get(lease.name)
        # An expired lease of the same holder is free either way; dropping it is harmless.
        if current is not None and current.holder == lease.holder:
            del self._leases[lease.name]

    async def list_delegated(self, room: str, delegated_to: str) -> list[SecretRecord]:
        """Every record in ``room`` delegated to ``delegated_to``, ordered by (owner, secret_id).

        Scans every (room, owner) bucket: a linear pass, as for a delegate reading its list.
        """
        check_name("room", room)
        check_name("delegated_to", delegated_to)
        found = [
            record
            for (bucket_room, _), bucket in self._buckets.items()
            if bucket_room == room
            for record in bucket.values()
            if record.key.delegated_to == delegated_to
        ]
        return sorted(found, key=delegated_order)

    # Last, because inside the class body ``list`` names this method from here on.
    async def list(self, room: str, owner: str) -> list[SecretRecord]:
        """Every record ``owner`` has in ``room``, ordered by (secret_id, delegated_to).

        ``delegated_to=None`` sorts before any delegate.
        """
        check_name("room", room)
        check_name("owner", owner)
        return sorted(self._buckets.get((room, owner), {}).values(), key=list_order)


if TYPE_CHECKING:
    # mypy proves MemoryStore satisfies the port.
    _conforms: SecretStore = MemoryStore()
