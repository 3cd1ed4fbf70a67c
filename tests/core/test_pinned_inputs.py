"""Pinned: the public-API input limits are inclusive, and refusals say what was wrong."""

from __future__ import annotations

import pytest

from roomsecrets.core.errors import InvalidInput
from roomsecrets.core.inputs import (
    MAX_ID,
    MAX_NAME,
    MAX_SCOPE_LENGTH,
    MAX_SCOPES,
    MAX_TIMEOUT,
    MAX_URL,
    check_bytes,
    check_flag,
    check_id,
    check_name,
    check_scopes,
    check_timeout,
    check_url,
    check_vschar,
)


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


def test_a_timeout_that_is_not_a_number_is_refused_saying_so() -> None:
    with pytest.raises(InvalidInput, match=r"^timeout must be a number of seconds$"):
        check_timeout("30")


def test_a_timeout_of_zero_is_refused() -> None:
    with pytest.raises(InvalidInput, match=r"^timeout must be more than 0 and at most 86400 seconds$"):
        check_timeout(0)


def test_a_timeout_of_exactly_the_maximum_is_accepted_as_float() -> None:
    assert check_timeout(int(MAX_TIMEOUT)) == MAX_TIMEOUT
    assert type(check_timeout(int(MAX_TIMEOUT))) is float


def test_a_one_character_url_and_a_url_of_exactly_the_maximum_pass_the_character_check() -> None:
    assert check_url("a", "token_endpoint") == "a"
    longest = "https://e.com/" + "p" * (MAX_URL - 14)
    assert check_url(longest, "token_endpoint") == longest


def test_a_url_over_the_maximum_is_refused_naming_the_limit() -> None:
    with pytest.raises(InvalidInput, match=r"^token_endpoint must be a URL of 1-2048 characters$"):
        check_url("h" * (MAX_URL + 1), "token_endpoint")


def test_a_url_with_a_space_is_refused_with_the_percent_encoding_hint() -> None:
    with pytest.raises(InvalidInput, match=r"^token_endpoint must be ASCII without spaces .*percent-encode"):
        check_url("https://e.com/a b", "token_endpoint")


def test_scopes_that_are_not_a_list_are_refused_saying_what_is_expected() -> None:
    with pytest.raises(InvalidInput, match=r"^scopes must be a list of strings or None$"):
        check_scopes("mail.read")


def test_a_display_name_may_be_empty() -> None:
    assert check_name("", "name") == ""


def test_a_display_name_over_the_limit_is_refused_saying_0_to_limit() -> None:
    with pytest.raises(InvalidInput, match=rf"^name must be 0-{MAX_NAME} characters long$"):
        check_name("n" * (MAX_NAME + 1), "name")


def test_an_empty_id_is_refused_saying_1_to_limit() -> None:
    with pytest.raises(InvalidInput, match=rf"^secret_id must be 1-{MAX_ID} characters long$"):
        check_id("", "secret_id")


def test_exactly_the_most_scopes_of_the_longest_length_are_accepted() -> None:
    scopes = ["s" * MAX_SCOPE_LENGTH] * MAX_SCOPES
    assert check_scopes(scopes) == tuple(scopes)


def test_one_scope_too_many_is_refused_naming_the_limit() -> None:
    with pytest.raises(InvalidInput, match=rf"^at most {MAX_SCOPES} scopes may be requested$"):
        check_scopes(["s"] * (MAX_SCOPES + 1))


def test_a_scope_one_character_too_long_is_refused_naming_the_limit() -> None:
    with pytest.raises(
        InvalidInput, match=rf"^each scope must be a string of at most {MAX_SCOPE_LENGTH} chars$"
    ):
        check_scopes(["s" * (MAX_SCOPE_LENGTH + 1)])


def test_text_with_a_control_character_is_refused_saying_so() -> None:
    with pytest.raises(InvalidInput, match=r"^name must not contain control characters$"):
        check_name("a\x85b", "name")


@pytest.mark.parametrize("bad", ["\x00", "\t", "\n", "\x1f", "\x7f", "\x85", "\x9f"])
@pytest.mark.parametrize("where", ["a{}b", "{}", "{}ab", "ab{}"])
def test_every_control_character_is_refused_ascii_or_not(bad: str, where: str) -> None:
    with pytest.raises(InvalidInput, match=r"^participant_id must not contain control characters$"):
        check_id(where.format(bad), "participant_id")


@pytest.mark.parametrize("good", [" ", "~", "agent-1", "a b~!", "Zoë", "\u00a0x", "\U0001f600"])
def test_printable_text_ascii_or_not_is_accepted_as_it_is(good: str) -> None:
    assert check_id(good, "participant_id") is good


def test_a_lone_surrogate_is_refused_after_the_ascii_fast_path() -> None:
    with pytest.raises(InvalidInput, match=r"no lone surrogates"):
        check_id("ab\ud800", "participant_id")


def test_no_printable_code_point_is_a_control_character_or_a_surrogate() -> None:
    # What check_text's fast path relies on, for this Python's Unicode database.
    import unicodedata

    assert not [
        c for c in map(chr, range(0x110000))
        if c.isprintable() and unicodedata.category(c) in ("Cc", "Cs")
    ]
