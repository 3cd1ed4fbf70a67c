"""Pinned: what an audit event refuses, in exactly which words."""

from __future__ import annotations

import pytest

from roomsecrets.core.audit import AuditEvent
from roomsecrets.core.errors import InvalidInput

FIELDS = dict(action="a.b", room="r", actor="x", outcome="ok", reason="why", at=1.5)


def refusal(**overrides: object) -> str:
    with pytest.raises(InvalidInput) as info:
        AuditEvent(**{**FIELDS, **overrides})  # type: ignore[arg-type]
    return str(info.value)


@pytest.mark.parametrize("field", ["action", "room", "actor", "outcome", "reason"])
def test_each_text_field_must_be_a_string(field: str) -> None:
    assert refusal(**{field: b"x"}) == f"AuditEvent.{field} must be a string"


def test_text_fields_may_be_empty() -> None:
    event = AuditEvent(**{**FIELDS, "reason": "", "outcome": ""})  # type: ignore[arg-type]
    assert (event.reason, event.outcome) == ("", "")


@pytest.mark.parametrize("at", [False, "1", None, [1.0]])
def test_the_time_must_be_a_number_and_not_a_bool(at: object) -> None:
    assert refusal(at=at) == "AuditEvent.at must be a number of seconds"


@pytest.mark.parametrize(
    "details", [b"ab", "ab", [("a", "b"), ("c",)], [["a", b"b"]], [("a", "b", "c")], [None]]
)
def test_details_must_be_string_pairs(details: object) -> None:
    assert refusal(details=details) == "AuditEvent.details must be (name, value) string pairs"


def test_details_keep_their_order_and_repeats() -> None:
    event = AuditEvent(**FIELDS, details=iter([["k", "1"], ("k", "2"), ("j", "3")]))  # type: ignore[arg-type]
    assert event.details == (("k", "1"), ("k", "2"), ("j", "3"))
    assert event.detail("j") == "3"


@pytest.mark.parametrize(
    "details",
    [(("a", "b"), ("c",)), (("a", "b", "c"),), ((1, "b"),), (("a", 2),), ((b"a", "b"),),
     (None,), (("a", "b"), ["c", None])],
)
def test_a_tuple_of_pairs_the_service_s_shape_is_checked_the_same(details: object) -> None:
    assert refusal(details=details) == "AuditEvent.details must be (name, value) string pairs"


def test_a_tuple_of_string_pairs_is_kept_as_it_is_and_other_pairs_become_tuples() -> None:
    given = (("k", "1"), ("j", "2"))
    assert AuditEvent(**FIELDS, details=given).details is given  # type: ignore[arg-type]
    mixed = AuditEvent(**FIELDS, details=(("k", "1"), ["j", "2"]))  # type: ignore[arg-type]
    assert mixed.details == (("k", "1"), ("j", "2"))
    assert all(type(pair) is tuple for pair in mixed.details)
