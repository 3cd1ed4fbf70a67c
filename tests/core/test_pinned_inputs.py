"""Pinned: the public-API input limits are inclusive, and refusals say what was wrong."""

from __future__ import annotations

import pytest

from roomsecrets.core.errors import InvalidInput
from roomsecrets.core.inputs import check_bytes, check_flag, check_vschar


def test_vschar_accepts_a_value_of_exactly_the_limit() -> None:
    assert check_vschar("a" * 10, "state", limit=10) == "a" * 10


def test_vschar_refuses_a_value_one_over_the_limit() -> None:
    with pytest.raises(InvalidInput, match=r"^state must be a string of 1-10 characters$"):
        check_vschar("a" * 11, "state", limit=10)


def test_a_flag_that_is_not_a_bool_is_refused_by_name() -> None:
    with pytest.raises(InvalidInput, match=r"^force must be True or False$"):
        check_flag("false", "force")


def test_bytes_of_another_type_are_refused_by_name() -> None:
    with pytest.raises(InvalidInput, match=r"^data must be bytes$"):
        check_bytes("text", "data")


def test_bytes_of_exactly_the_limit_are_accepted_as_bytes() -> None:
    assert check_bytes(bytearray(b"abcd"), "data", limit=4) == b"abcd"


def test_bytes_over_the_limit_are_refused_naming_the_limit() -> None:
    with pytest.raises(InvalidInput, match=r"^data is larger than 4 bytes$"):
        check_bytes(b"abcde", "data", limit=4)
