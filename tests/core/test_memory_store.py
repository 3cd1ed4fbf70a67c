"""MemoryStore passes the store contract kit, and the kit fails stores that break it."""

from __future__ import annotations

import asyncio
import doctest
import math
import time
from typing import Any, Callable, Optional

import pytest
from hypothesis import HealthCheck, Phase, settings

from roomsecrets.core import memory_store
from roomsecrets.core.errors import InvalidInput
from roomsecrets.core.inputs import MAX_SECRET_BYTES
from roomsecrets.core.memory_store import MemoryStore
from roomsecrets.core.ports import Clock, Lease, SecretKey, SecretRecord, SecretStore
from roomsecrets.testing import FakeClock, StoreContract, store_state_machine

KEY = SecretKey(room="room", owner="alice", secret_id="mail")


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


class TestMemoryStoreContract(StoreContract):
    async def make_store(self, clock: FakeClock) -> SecretStore:
        return MemoryStore(clock=clock)


# --- MemoryStore specifics ----------------------------------------------------------


def test_repr_shows_counts_not_data() -> None:
    store = MemoryStore()
    run(store.put(KEY, type="oauth_token", name="Mail", data=b"ya29.SECRET-VALUE"))
    run(store.acquire_lease("refresh", holder="h1", ttl=5))
    assert repr(store) == "MemoryStore(records=1, leases=1)"
    record = run(store.get(KEY))
    assert "SECRET" not in repr(record)


def test_docstring_example_runs() -> None:
    assert doctest.testmod(memory_store).failed == 0


def test_default_clock_is_wall_time() -> None:
    before = time.time()
    lease = run(MemoryStore().acquire_lease("refresh", holder="h1", ttl=30))
    assert lease is not None
    assert before + 30 <= lease.expires_at <= time.time() + 30


def test_bytes_subclass_is_stored_as_plain_bytes() -> None:
    class Tagged(bytes):
        pass

    record = run(MemoryStore().put(KEY, type="t", name=None, data=Tagged(b"abc")))
    assert type(record.data) is bytes
    assert record.data == b"abc"


def _bad_key(**changes: Any) -> SecretKey:
    fields: dict[str, Any] = {
        "room": "room",
        "owner": "alice",
        "secret_id": "mail",
        "delegated_to": None,
    }
    fields.update(changes)
    return SecretKey(**fields)


# Typed loosely: these calls break the signatures on purpose.
BAD_CALLS: list[tuple[str, Callable[[Any], Any]]] = [
    ("empty room", lambda s: s.get(_bad_key(room=""))),
    ("empty owner", lambda s: s.get(_bad_key(owner=""))),
    ("empty secret_id", lambda s: s.get(_bad_key(secret_id=""))),
    ("empty delegated_to", lambda s: s.get(_bad_key(delegated_to=""))),
    ("non-string secret_id", lambda s: s.get(_bad_key(secret_id=7))),
    ("key not a SecretKey", lambda s: s.get(("room", "alice", "mail"))),
    ("str data", lambda s: s.put(KEY, type="t", name=None, data="text")),
    ("bytearray data", lambda s: s.put(KEY, type="t", name=None, data=bytearray(b"x"))),
    ("empty type", lambda s: s.put(KEY, type="", name=None, data=b"x")),
    ("non-string name", lambda s: s.put(KEY, type="t", name=3, data=b"x")),
    (
        "negative expected",
        lambda s: s.put(KEY, type="t", name=None, data=b"x", expected_version=-1),
    ),
    ("bool expected", lambda s: s.put(KEY, type="t", name=None, data=b"x", expected_version=True)),
    ("str expected", lambda s: s.delete(KEY, expected_version="1")),
    ("empty list room", lambda s: s.list("", "alice")),
    ("empty list owner", lambda s: s.list("room", "")),
    ("zero ttl", lambda s: s.acquire_lease("l", holder="h", ttl=0)),
    ("negative ttl", lambda s: s.acquire_lease("l", holder="h", ttl=-1)),
    ("nan ttl", lambda s: s.acquire_lease("l", holder="h", ttl=math.nan)),
    ("infinite ttl", lambda s: s.acquire_lease("l", holder="h", ttl=math.inf)),
    ("bool ttl", lambda s: s.acquire_lease("l", holder="h", ttl=True)),
    ("empty lease name", lambda s: s.acquire_lease("", holder="h", ttl=1)),
    ("empty holder", lambda s: s.acquire_lease("l", holder="", ttl=1)),
    ("renew zero ttl", lambda s: s.renew_lease(Lease(name="l", holder="h", expires_at=0), ttl=0)),
    ("renew non-lease", lambda s: s.renew_lease(("l", "h"), ttl=1)),
    ("release non-lease", lambda s: s.release_lease(None)),
    ("release empty holder", lambda s: s.release_lease(Lease(name="l", holder="", expires_at=0))),
]


@pytest.mark.parametrize("call", [call for _, call in BAD_CALLS], ids=[i for i, _ in BAD_CALLS])
def test_invalid_input_is_rejected_and_changes_nothing(
    call: Callable[[MemoryStore], Any],
) -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    before = run(store.put(KEY, type="t", name=None, data=b"kept"))
    lease = run(store.acquire_lease("l", holder="h", ttl=10))

    with pytest.raises(InvalidInput):
        run(call(store))

    assert run(store.get(KEY)) == before
    assert run(store.acquire_lease("l", holder="other", ttl=1)) is None
    assert run(store.renew_lease(lease, ttl=10)).expires_at == clock.now + 10


def test_version_conflict_reports_expected_and_actual() -> None:
    from roomsecrets.core.errors import VersionConflict

    store = MemoryStore()
    run(store.put(KEY, type="t", name=None, data=b"x"))
    with pytest.raises(VersionConflict) as stale:
        run(store.put(KEY, type="t", name=None, data=b"y", expected_version=4))
    assert (stale.value.expected, stale.value.actual) == (4, 1)
    with pytest.raises(VersionConflict) as missing:
        run(store.delete(SecretKey(room="room", owner="bob", secret_id="x"), expected_version=2))
    assert (missing.value.expected, missing.value.actual) == (2, None)


def test_fake_clock_only_moves_forward() -> None:
    clock = FakeClock(start=10.0)
    clock.advance(0.5)
    assert clock() == clock.now == 10.5
    with pytest.raises(ValueError):
        clock.advance(-1)


# --- the kit fails broken stores ------------------------------------------------------


class IgnoresExpectedVersion(MemoryStore):
    async def put(self, key: SecretKey, **kwargs: Any) -> SecretRecord:
        kwargs["expected_version"] = None
        return await super().put(key, **kwargs)


class SharesLeases(MemoryStore):
    async def acquire_lease(self, name: str, *, holder: str, ttl: float) -> Optional[Lease]:
        lease = Lease(name=name, holder=holder, expires_at=self._clock() + ttl)
        self._leases[name] = lease
        return lease


class RestartsVersionsAfterDelete(MemoryStore):
    """Per-key versions 1, 2, 3... that start over after a delete (the ABA bug)."""

    async def put(self, key: SecretKey, **kwargs: Any) -> SecretRecord:
        current = await self.get(key)
        record = await super().put(key, **kwargs)
        record = SecretRecord(
            key=key,
            type=record.type,
            name=record.name,
            data=record.data,
            version=1 if current is None else current.version + 1,
        )
        self._buckets[(key.room, key.owner)][key] = record
        return record


class StaleReleaseFreesLease(MemoryStore):
    async def release_lease(self, lease: Lease) -> None:
        self._leases.pop(lease.name, None)


class ListsNothingAfterARelease(MemoryStore):
    """A lease step breaks the lists (and nothing else): the machine compares lists
    after record steps and at the end of each example, so it must still see this."""

    released = False

    async def release_lease(self, lease: Lease) -> None:
        self.released = True
        await super().release_lease(lease)

    async def list(self, room: str, owner: str) -> list[SecretRecord]:
        return [] if self.released else await super().list(room, owner)


class ExpiresOneTickLate(MemoryStore):
    async def acquire_lease(self, name: str, *, holder: str, ttl: float) -> Optional[Lease]:
        current = self._leases.get(name)
        if current is not None and current.holder != holder and current.expires_at >= self._clock():
            return None
        return await super().acquire_lease(name, holder=holder, ttl=ttl)


class FoldsCase(MemoryStore):
    """Like a file store on a case-insensitive file system."""

    def _fold(self, key: SecretKey) -> SecretKey:
        return SecretKey(
            room=key.room.lower(),
            owner=key.owner.lower(),
            secret_id=key.secret_id.lower(),
            delegated_to=key.delegated_to,
        )

    async def get(self, key: SecretKey) -> Optional[SecretRecord]:
        return await super().get(self._fold(key))

    async def put(self, key: SecretKey, **kwargs: Any) -> SecretRecord:
        return await super().put(self._fold(key), **kwargs)

    async def delete(self, key: SecretKey, **kwargs: Any) -> bool:
        return await super().delete(self._fold(key), **kwargs)

    async def list(self, room: str, owner: str) -> list[SecretRecord]:
        return await super().list(room.lower(), owner.lower())


class ListsUnordered(MemoryStore):
    async def list(self, room: str, owner: str) -> list[SecretRecord]:
        return list(reversed(await super().list(room, owner)))


class LeaksDataInRepr(MemoryStore):
    def __repr__(self) -> str:
        return repr([r.data for bucket in self._buckets.values() for r in bucket.values()])


class KeepsOnly48KiB(MemoryStore):
    """Like a store that holds ~48 KiB, tested with less: the kit's old blind spot."""

    async def put(self, key: SecretKey, **kwargs: Any) -> SecretRecord:
        kwargs["data"] = kwargs["data"][: 48 * 1024]
        return await super().put(key, **kwargs)


class KeepsTextsOf255Bytes(MemoryStore):
    """Like a store whose type and name columns hold 255 bytes: fine for ASCII."""

    async def put(self, key: SecretKey, **kwargs: Any) -> SecretRecord:
        for field in ("type", "name"):
            if kwargs[field] is not None:
                kwargs[field] = kwargs[field].encode()[:255].decode(errors="ignore")
        return await super().put(key, **kwargs)


def contract_for(store_class: type[MemoryStore]) -> StoreContract:
    class Contract(StoreContract):
        async def make_store(self, clock: FakeClock) -> SecretStore:
            return store_class(clock=clock)

        def state_machine_settings(self) -> settings:
            return settings(
                # Generation stops at the first failure; a broken store fails long before.
                max_examples=1000,
                deadline=None,
                database=None,
                derandomize=True,
                phases=(Phase.generate,),
                suppress_health_check=list(HealthCheck),
            )

    return Contract()


BROKEN = [
    (IgnoresExpectedVersion, "test_expected_version_zero_creates_only_new_keys"),
    (IgnoresExpectedVersion, "test_stale_expected_version_conflicts_and_changes_nothing"),
    (IgnoresExpectedVersion, "test_concurrent_cas_writers_lose_no_updates"),
    (SharesLeases, "test_lease_is_exclusive"),
    (SharesLeases, "test_concurrent_acquirers_get_one_lease"),
    (RestartsVersionsAfterDelete, "test_versions_are_never_reused_after_delete"),
    (StaleReleaseFreesLease, "test_release_after_takeover_is_a_no_op"),
    (ExpiresOneTickLate, "test_lease_expires_after_ttl"),
    (FoldsCase, "test_keys_are_opaque_strings"),
    (ListsUnordered, "test_list_returns_owners_records_in_room_in_order"),
    (LeaksDataInRepr, "test_reprs_do_not_show_data"),
    (KeepsOnly48KiB, "test_largest_allowed_secret_round_trips"),
    (KeepsTextsOf255Bytes, "test_largest_allowed_secret_round_trips"),
]


@pytest.mark.parametrize(
    ("store_class", "check"), BROKEN, ids=[f"{c.__name__}-{m}" for c, m in BROKEN]
)
def test_contract_check_fails_on_broken_store(store_class: type[MemoryStore], check: str) -> None:
    contract = contract_for(store_class)
    with pytest.raises(AssertionError):
        getattr(contract, check)()
    # The same check passes on the real store, so it is the breakage that failed it.
    getattr(contract_for(MemoryStore), check)()


@pytest.mark.parametrize(
    "store_class",
    [
        IgnoresExpectedVersion,
        SharesLeases,
        RestartsVersionsAfterDelete,
        StaleReleaseFreesLease,
        ExpiresOneTickLate,
        FoldsCase,
        ListsUnordered,
        ListsNothingAfterARelease,
    ],
)
def test_state_machine_fails_on_broken_store(store_class: type[MemoryStore]) -> None:
    with pytest.raises(AssertionError):
        contract_for(store_class).test_agrees_with_model()


def test_the_machine_compares_every_list_at_the_end_of_an_example() -> None:
    """Lists are compared after record steps only, and once more at the end: a
    lease step that broke them, with no record step after it, still fails."""

    async def make(clock: FakeClock) -> MemoryStore:
        return ListsNothingAfterARelease(clock=clock)

    machine = store_state_machine(make)()
    key = machine.new_key(SecretKey(room="r", owner="x", secret_id="a"))
    machine.put(key, type="text/plain", name=None, data=b"1", how="none", offset=1)
    machine.lists_agree_with_model()
    lease = machine.acquire(name="refresh:a", holder="h1", ttl=1.0)
    machine.release(lease)
    machine.lists_agree_with_model()  # no record step since the last comparison
    with pytest.raises(AssertionError, match=r"^list\('r', 'x'\) keys \[\]"):
        machine.teardown()


def test_the_kit_puts_exactly_the_documented_data_limit() -> None:
    """No store is tested with less data than callers may set, nor with more."""
    sizes: list[int] = []

    class Measured(MemoryStore):
        async def put(self, key: SecretKey, **kwargs: Any) -> SecretRecord:
            sizes.append(len(kwargs["data"]))
            return await super().put(key, **kwargs)

    contract_for(Measured).test_largest_allowed_secret_round_trips()
    assert sizes == [MAX_SECRET_BYTES] == [61 * 1024]


def test_a_contract_that_sets_large_data_size_is_refused() -> None:
    """The old per-store knob let the AWS store be tested at 40 KiB while callers may
    set 64 KiB; setting it now fails at once instead of being silently ignored."""
    with pytest.raises(TypeError, match=r"large_data_size.*62464"):

        class TestSmallStore(StoreContract):
            large_data_size = 40 * 1024


# --- the kit runs stores with loop-bound resources ----------------------------------


class LoopBoundStore(MemoryStore):
    """Fails when used from another event loop than the one it was built in, or after close."""

    def __init__(self, *, clock: Clock = time.time) -> None:
        super().__init__(clock=clock)
        self.loop = asyncio.get_running_loop()
        self.closed = False

    def _check(self) -> None:
        assert not self.closed, "used after close_store"
        assert asyncio.get_running_loop() is self.loop, "used from another event loop"

    async def get(self, key: SecretKey) -> Optional[SecretRecord]:
        self._check()
        return await super().get(key)

    async def put(self, key: SecretKey, **kwargs: Any) -> SecretRecord:
        self._check()
        return await super().put(key, **kwargs)

    async def delete(self, key: SecretKey, **kwargs: Any) -> bool:
        self._check()
        return await super().delete(key, **kwargs)

    async def list(self, room: str, owner: str) -> list[SecretRecord]:
        self._check()
        return await super().list(room, owner)

    async def acquire_lease(self, name: str, *, holder: str, ttl: float) -> Optional[Lease]:
        self._check()
        return await super().acquire_lease(name, holder=holder, ttl=ttl)

    async def renew_lease(self, lease: Lease, *, ttl: float) -> Lease:
        self._check()
        return await super().renew_lease(lease, ttl=ttl)

    async def release_lease(self, lease: Lease) -> None:
        self._check()
        await super().release_lease(lease)


class LoopBoundContract(StoreContract):
    def __init__(self) -> None:
        self.made: list[LoopBoundStore] = []

    async def make_store(self, clock: FakeClock) -> SecretStore:
        store = LoopBoundStore(clock=clock)
        self.made.append(store)
        return store

    async def close_store(self, store: SecretStore) -> None:
        assert isinstance(store, LoopBoundStore)
        store._check()
        store.closed = True

    def state_machine_settings(self) -> settings:
        return settings(max_examples=30, deadline=None, database=None)


def test_state_machine_keeps_one_loop_per_store_and_closes_it() -> None:
    contract = LoopBoundContract()
    contract.test_agrees_with_model()
    assert contract.made, "the state machine built no store"
    assert all(store.closed for store in contract.made), "a store was never closed"
    assert all(store.loop.is_closed() for store in contract.made), "an event loop was left open"


def test_contract_checks_close_every_store_they_make() -> None:
    contract = LoopBoundContract()
    contract.test_concurrent_cas_writers_lose_no_updates()
    contract.test_renew_of_a_lost_lease_raises_lease_lost()
    assert len(contract.made) == 2
    assert all(store.closed for store in contract.made)
