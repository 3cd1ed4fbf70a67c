"""VerifiedTokens: a remembered participant token is still refused once it expires,
for another room, and a token that fails verification is never remembered."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("jwt")

from roomsecrets.adapters.server.http_api import InvalidParticipantToken
from roomsecrets.adapters.server.participant_tokens import VerifiedTokens, mint_participant_token

KEY = b"k" * 32


def test_a_remembered_token_is_refused_once_it_expires():
    tokens = VerifiedTokens(KEY)
    token = mint_participant_token(KEY, room="r", participant_id="alice", ttl=2)
    assert tokens.read(token, room="r").participant_id == "alice"
    assert tokens.read(token, room="r").participant_id == "alice"  # remembered
    time.sleep(2.1)
    with pytest.raises(InvalidParticipantToken, match="expired"):
        tokens.read(token, room="r")


def test_a_remembered_token_is_still_refused_for_another_room():
    tokens = VerifiedTokens(KEY)
    token = mint_participant_token(KEY, room="r", participant_id="alice")
    tokens.read(token, room="r")
    with pytest.raises(InvalidParticipantToken, match="another room"):
        tokens.read(token, room="other")


def test_a_token_that_fails_verification_is_never_remembered():
    tokens = VerifiedTokens(KEY)
    forged = mint_participant_token(b"x" * 32, room="r", participant_id="mallory")
    for _ in range(2):
        with pytest.raises(InvalidParticipantToken, match="signature"):
            tokens.read(forged, room="r")


def test_the_memory_is_bounded():
    tokens = VerifiedTokens(KEY, size=3)
    minted = [mint_participant_token(KEY, room="r", participant_id=f"p{i}") for i in range(10)]
    for token in minted:
        tokens.read(token, room="r")
    assert len(tokens._verified) <= 3
