"""Pinned: the shared store argument checks name the argument they refuse."""

from __future__ import annotations

import pytest

from roomsecrets.core.errors import InvalidInput, VersionConflict
from roomsecrets.core.ports import Lease, SecretKey, SecretRecord
from roomsecrets.core.store_arguments import (
    check_expected_version,
    check_key,
    check_lease,
    check_ttl,
    compare_version,
    list_order,
)


def test_a_bad_ttl_is_refused_with_a_message_naming_ttl() -> None:
    with pytest.raises(InvalidInput, match=r"^ttl must be a finite number of seconds > 0$"):
        check_ttl(0)


def test_a_bad_ttl_message_names_the_argument_given() -> None:
    with pytest.raises(InvalidInput, match=r"^lease ttl must be a finite number"):
        check_ttl(float("nan"), "lease ttl")


def test_a_lease_of_another_type_is_refused_naming_the_type() -> None:
    with pytest.raises(InvalidInput, match=r"^lease must be a Lease, not tuple$"):
        check_lease(("name", "holder", 1.0))


def test_a_lease_without_a_name_is_refused_naming_the_lease_name() -> None:
    with pytest.raises(InvalidInput, match=r"^lease name must be a non-empty string$"):
        check_lease(Lease(name="", holder="worker-1", expires_at=10.0))


def test_a_lease_without_a_holder_is_refused_naming_the_holder() -> None:
    with pytest.raises(InvalidInput, match=r"^holder must be a non-empty string$"):
        check_lease(Lease(name="refresh", holder="", expires_at=10.0))


def test_a_complete_lease_passes() -> None:
    assert check_lease(Lease(name="refresh", holder="worker-1", expires_at=10.0)) is None


def test_the_list_sort_key_of_an_undelegated_record_is_id_false_empty() -> None:
    key = SecretKey(room="room", owner="alice", secret_id="mail", delegated_to=None)
    record = SecretRecord(key=key, type="text/plain", name=None, data=b"x", version=1)
    assert list_order(record) == ("mail", False, "")
    delegated = SecretRecord(
        key=SecretKey(room="room", owner="alice", secret_id="mail", delegated_to="bob"),
        type="text/plain", name=None, data=b"x", version=2,
    )
    assert list_order(delegated) == ("mail", True, "bob")


def test_a_negative_expected_version_is_refused_saying_what_is_allowed() -> None:
    with pytest.raises(
        InvalidInput, match=r"^expected_version must be None or an integer >= 0$"
    ):
        check_expected_version(-1)


def test_a_version_conflict_over_a_missing_record_says_no_record() -> None:
    with pytest.raises(VersionConflict, match=r"^expected version 2, found no record$") as caught:
        compare_version(2, None)
    assert (caught.value.expected, caught.value.actual) == (2, None)


def test_a_version_conflict_over_a_record_names_its_version() -> None:
    key = SecretKey(room="room", owner="alice", secret_id="mail", delegated_to=None)
    record = SecretRecord(key=key, type="text/plain", name=None, data=b"x", version=3)
    with pytest.raises(VersionConflict, match=r"^expected version 0, found version 3$") as caught:
        compare_version(0, record)
    assert (caught.value.expected, caught.value.actual) == (0, 3)


@pytest.mark.parametrize("field", ["room", "owner", "secret_id", "delegated_to"])
def test_a_key_with_an_empty_field_is_refused_naming_the_field(field: str) -> None:
    fields: dict[str, object] = dict(room="room", owner="alice", secret_id="mail",
                                     delegated_to="bob")
    fields[field] = ""
    with pytest.raises(InvalidInput, match=rf"^{field} must be a non-empty string$"):
        check_key(SecretKey(**fields))  # type: ignore[arg-type]


def test_a_key_of_another_type_is_refused_naming_the_type() -> None:
    with pytest.raises(InvalidInput, match=r"^key must be a SecretKey, not dict$"):
        check_key({"room": "room"})
