"""Pinned: a PKCE verifier never carries fewer bits than its length promises."""

from __future__ import annotations

import base64
import hashlib
import itertools

import pytest

from roomsecrets.core.errors import ConfigurationError, InvalidInput
from roomsecrets.core.oauth.pkce import (
    MAX_VERIFIER_LENGTH,
    MIN_VERIFIER_LENGTH,
    generate_pkce_pair,
    generate_verifier,
    s256_challenge,
    validate_verifier,
)


def short_but_unique(shortfall: int):
    """token_bytes stand-in: ``shortfall`` bytes fewer than asked, never the same twice."""
    counter = itertools.count(1)

    def token_bytes(n: int) -> bytes:
        return next(counter).to_bytes(n - shortfall, "big")

    return token_bytes


# One byte short still fills 43 characters (32 octets, as RFC 7636 Appendix B
# does); two bytes short does not.
@pytest.mark.parametrize("shortfall", [2, 16, 32])
def test_a_verifier_from_short_injected_randomness_is_refused(shortfall: int) -> None:
    with pytest.raises(ConfigurationError):
        generate_verifier(43, token_bytes=short_but_unique(shortfall))


def test_the_verifier_length_bounds_are_rfc7636s_43_and_128() -> None:
    assert (MIN_VERIFIER_LENGTH, MAX_VERIFIER_LENGTH) == (43, 128)
    assert len(generate_verifier(43)) == 43
    assert len(generate_verifier(128)) == 128
    for length in (42, 129):
        with pytest.raises(InvalidInput, match="43 to 128"):
            generate_verifier(length)


def test_a_verifier_asks_for_exactly_the_bytes_it_encodes() -> None:
    asked = []

    def token_bytes(n: int) -> bytes:
        asked.append(n)
        return bytes(range(n))

    for length in (43, 44, 45, 46, 64, 128):
        verifier = generate_verifier(length, token_bytes=token_bytes)
        assert len(verifier) == length
    # ceil(length * 6 / 8): every character carries 6 fresh bits.
    assert asked == [33, 33, 34, 35, 48, 96]


def test_the_default_verifier_is_64_characters_from_the_system_randomness() -> None:
    verifiers = {generate_verifier() for _ in range(20)}
    assert len(verifiers) == 20
    assert {len(v) for v in verifiers} == {64}
    verifier, challenge = generate_pkce_pair()
    assert len(verifier) == 64
    assert s256_challenge(verifier) == challenge


def test_a_pair_uses_the_injected_randomness_and_length() -> None:
    # fb ef be is "++++" in base64 and "----" in base64url; ff is "/" and "_".
    verifier, challenge = generate_pkce_pair(43, token_bytes=lambda n: (b"\xfb\xef\xbe" * n)[:n])
    assert verifier == "-" * 43
    assert challenge == s256_challenge(verifier)
    assert generate_verifier(44, token_bytes=lambda n: b"\xff" * n) == "_" * 44


def test_the_challenge_is_base64url_without_padding_in_ascii() -> None:
    digest = hashlib.sha256(b"a" * 43).digest()
    expected = base64.b64encode(digest).decode().replace("+", "-").replace("/", "_")
    assert expected.endswith("=")
    assert s256_challenge("a" * 43) == expected.rstrip("=")


@pytest.mark.parametrize("verifier", ["a" * 43, "A-._~" * 9 + "z" * 83])
def test_a_valid_verifier_is_returned_unchanged(verifier: str) -> None:
    assert validate_verifier(verifier) is verifier


@pytest.mark.parametrize("verifier", ["a" * 42 + "\n", "\n" + "a" * 43, "a" * 43 + "\n"])
def test_a_verifier_with_a_line_break_anywhere_is_refused(verifier: str) -> None:
    with pytest.raises(InvalidInput, match="RFC 7636"):
        validate_verifier(verifier)


def test_an_invalid_verifier_error_states_the_rule_and_not_the_value() -> None:
    with pytest.raises(InvalidInput) as info:
        validate_verifier("bad verifier")
    assert str(info.value) == (
        "PKCE code verifier must be 43-128 characters of [A-Za-z0-9-._~] (RFC 7636 §4.1)"
    )


def test_a_bad_verifier_length_error_states_the_bounds() -> None:
    with pytest.raises(InvalidInput) as info:
        generate_verifier(42)
    assert str(info.value) == "PKCE verifier length must be an int from 43 to 128"


def test_a_randomness_source_returning_text_is_refused_saying_it_must_return_bytes() -> None:
    with pytest.raises(ConfigurationError, match=r"^the randomness source must return bytes$"):
        generate_verifier(43, token_bytes=lambda n: "a" * n)  # type: ignore[arg-type,return-value]


def test_short_randomness_is_refused_saying_too_few_bytes() -> None:
    with pytest.raises(
        ConfigurationError,
        match=r"^the randomness source returned too few bytes for the verifier$",
    ):
        generate_verifier(43, token_bytes=short_but_unique(16))
