import base64
import hashlib
import re

import pytest

from roomsecrets.core.errors import InvalidInput
from roomsecrets.core.oauth.pkce import (
    generate_pkce_pair,
    generate_verifier,
    s256_challenge,
    validate_verifier,
)

# RFC 7636 Appendix B.
RFC_OCTETS = bytes(
    [116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186,
     22, 212, 37, 77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121]
)
RFC_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
RFC_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_rfc7636_appendix_b_challenge():
    assert s256_challenge(RFC_VERIFIER) == RFC_CHALLENGE


def test_rfc7636_appendix_b_verifier_from_its_octets():
    assert generate_verifier(43, token_bytes=lambda n: RFC_OCTETS[:n]) == RFC_VERIFIER


@pytest.mark.parametrize("length", [43, 44, 64, 100, 127, 128])
def test_verifier_has_requested_length_and_alphabet(length):
    verifier = generate_verifier(length)
    assert len(verifier) == length
    assert re.fullmatch(r"[A-Za-z0-9\-._~]+", verifier)
    assert validate_verifier(verifier) == verifier


def test_verifier_draws_at_least_256_bits_even_at_minimum_length():
    asked = []

    def token_bytes(n):
        asked.append(n)
        return bytes(n)

    generate_verifier(43, token_bytes=token_bytes)
    assert asked[0] * 8 >= 256


def test_verifiers_differ():
    assert len({generate_verifier() for _ in range(200)}) == 200


@pytest.mark.parametrize("length", [42, 129, 0, -1, 64.0, "64", True])
def test_verifier_length_out_of_range_is_refused(length):
    with pytest.raises(InvalidInput):
        generate_verifier(length)


@pytest.mark.parametrize(
    "bad", ["a" * 42, "a" * 129, "a" * 42 + "!", "a" * 42 + " ", "é" * 43, None, b"a" * 43]
)
def test_invalid_verifiers_are_refused_without_echoing_them(bad):
    with pytest.raises(InvalidInput) as info:
        s256_challenge(bad)
    if isinstance(bad, str):
        assert bad not in str(info.value)


def test_pair_challenge_matches_independent_computation():
    verifier, challenge = generate_pkce_pair()
    expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    assert challenge == expected.rstrip(b"=").decode()
    assert "=" not in challenge
