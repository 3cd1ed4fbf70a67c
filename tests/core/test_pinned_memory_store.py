"""Pinned: ``MemoryStore.put`` validates its key just as ``get`` does."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from roomsecrets.core.errors import InvalidInput
from roomsecrets.core.memory_store import MemoryStore
from roomsecrets.core.ports import Lease, SecretKey

GOOD = dict(room="room", owner="alice", secret_id="mail", delegated_to=None)

BAD_KEYS = {
    "empty room": dict(GOOD, room=""),
    "empty owner": dict(GOOD, owner=""),
    "empty secret_id": dict(GOOD, secret_id=""),
    "empty delegated_to": dict(GOOD, delegated_to=""),
    "non-string room": dict(GOOD, room=7),
    "non-string owner": dict(GOOD, owner=None),
    # Truthy values of another type: check_key's one-expression fast path must not
    # take them for strings.
    "int room": dict(GOOD, room=7),
    "bytes owner": dict(GOOD, owner=b"alice"),
    "list secret_id": dict(GOOD, secret_id=["mail"]),
    "int delegated_to": dict(GOOD, delegated_to=5),
}


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


@pytest.mark.parametrize("fields", BAD_KEYS.values(), ids=list(BAD_KEYS))
def test_put_refuses_a_key_get_refuses_and_stores_nothing(fields: dict[str, Any]) -> None:
    store = MemoryStore(clock=lambda: 0.0)
    key = SecretKey(**fields)
    with pytest.raises(InvalidInput):
        run(store.get(key))
    with pytest.raises(InvalidInput):
        run(store.put(key, type="text/plain", name=None, data=b"x"))
    assert run(store.list(GOOD["room"], GOOD["owner"])) == []
    assert repr(store) == "MemoryStore(records=0, leases=0)"


@pytest.mark.parametrize("which", ["room", "owner"])
def test_put_names_the_empty_part_of_the_key(which: str) -> None:
    store = MemoryStore(clock=lambda: 0.0)
    with pytest.raises(InvalidInput, match=which):
        run(store.put(SecretKey(**dict(GOOD, **{which: ""})), type="t", name=None, data=b"x"))


def test_put_refuses_a_key_that_is_not_a_secret_key() -> None:
    store = MemoryStore(clock=lambda: 0.0)
    with pytest.raises(InvalidInput, match="SecretKey"):
        run(store.put(("room", "alice", "mail"), type="t", name=None, data=b"x"))  # type: ignore[arg-type]
    assert repr(store) == "MemoryStore(records=0, leases=0)"


def test_renewing_a_lease_held_by_another_holder_names_lease_and_holder() -> None:
    from roomsecrets.core.errors import LeaseLost

    async def scenario() -> None:
        store = MemoryStore(clock=lambda: 100.0)
        await store.acquire_lease("refresh:mail", holder="worker-1", ttl=30)
        stranger = Lease(name="refresh:mail", holder="worker-2", expires_at=130.0)
        with pytest.raises(LeaseLost, match=r"^lease 'refresh:mail' is no longer held by 'worker-2'$"):
            await store.renew_lease(stranger, ttl=30)

    run(scenario())


def test_acquiring_a_lease_without_a_name_is_refused_naming_the_lease_name() -> None:
    with pytest.raises(InvalidInput, match=r"^lease name must be a non-empty string$"):
        run(MemoryStore().acquire_lease("", holder="worker-1", ttl=30))


def test_acquiring_a_lease_without_a_holder_is_refused_naming_the_holder() -> None:
    with pytest.raises(InvalidInput, match=r"^holder must be a non-empty string$"):
        run(MemoryStore().acquire_lease("refresh:mail", holder="", ttl=30))


@pytest.mark.parametrize("room, owner, named", [("", "alice", "room"), ("room", "", "owner")])
def test_listing_with_an_empty_room_or_owner_is_refused_naming_it(
    room: str, owner: str, named: str
) -> None:
    with pytest.raises(InvalidInput, match=rf"^{named} must be a non-empty string$"):
        run(MemoryStore().list(room, owner))


@pytest.mark.parametrize(
    "room, delegate, named", [("", "bot", "room"), ("room", "", "delegated_to")]
)
def test_listing_delegated_with_an_empty_room_or_delegate_is_refused_naming_it(
    room: str, delegate: str, named: str
) -> None:
    with pytest.raises(InvalidInput, match=rf"^{named} must be a non-empty string$"):
        run(MemoryStore().list_delegated(room, delegate))


def test_putting_without_a_type_is_refused_naming_the_type() -> None:
    with pytest.raises(InvalidInput, match=r"^type must be a non-empty string$"):
        run(MemoryStore().put(SecretKey(**GOOD), type="", name=None, data=b"x"))


def test_putting_a_non_string_name_is_refused_saying_so() -> None:
    with pytest.raises(InvalidInput, match=r"^name must be a string or None$"):
        run(MemoryStore().put(SecretKey(**GOOD), type="text/plain", name=7, data=b"x"))


def test_putting_data_that_is_not_bytes_is_refused_naming_its_type() -> None:
    with pytest.raises(InvalidInput, match=r"^data must be bytes, not str$"):
        run(MemoryStore().put(SecretKey(**GOOD), type="text/plain", name=None, data="x"))


class _Text(str):
    """A str subclass: a key made of these is valid, through check_key's slower path."""


def test_a_key_of_str_subclasses_is_accepted_like_one_of_str() -> None:
    store = MemoryStore(clock=lambda: 0.0)
    key = SecretKey(room=_Text("room"), owner=_Text("alice"), secret_id=_Text("mail"),
                    delegated_to=_Text("bob"))
    assert run(store.get(key)) is None
    run(store.put(key, type="text/plain", name=None, data=b"x"))
    assert run(store.get(SecretKey(room="room", owner="alice", secret_id="mail",
                                   delegated_to="bob"))).data == b"x"
