"""Reading participant tokens: only HS256 under the server's key counts, whatever the
header says (``alg``, ``kid``, ``jku``); and VerifiedTokens: a remembered participant
token is still refused once it expires, for another room, and a token that fails
verification is never remembered."""

from __future__ import annotations

import socket
import time
import urllib.request
from typing import Any, Optional

import pytest

pytest.importorskip("jwt")

import jwt

from roomsecrets.adapters.server.http_api import InvalidParticipantToken
from roomsecrets.adapters.server.participant_tokens import (
    VerifiedTokens,
    mint_participant_token,
    read_participant_token,
)
from roomsecrets.core.grants import SecretsGrant
from tests.support.forged_jwt import UNREACHABLE_JKU, hand_signed

KEY = b"k" * 32
OTHER_KEY = b"x" * 32


def claims() -> dict[str, Any]:
    return {
        "room": "r",
        "sub": "mallory",
        "name": None,
        "grant": SecretsGrant.allow_all().to_dict(),
        "exp": int(time.time()) + 600,
    }


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every attempt to open a connection or a URL, refused and recorded."""
    attempts: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args)
        raise OSError("the test allows no network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    return attempts


@pytest.mark.parametrize(
    ("header", "key", "digest"),
    [
        # Every one is signed with the server's own key (or not at all): only the
        # algorithm is wrong, so nothing but the algorithm check can refuse it.
        pytest.param({"alg": "HS512"}, KEY, "sha512", id="HS512"),
        pytest.param({"alg": "HS384"}, KEY, "sha384", id="HS384"),
        pytest.param({"alg": "none"}, None, "sha256", id="none-unsigned"),
        pytest.param({"alg": "none"}, KEY, "sha256", id="none-signed"),
        pytest.param({"alg": "None"}, None, "sha256", id="None-unsigned"),
        # RS256/HS256 confusion: an HMAC under the key a naive verifier would load
        # as the RSA public key.
        pytest.param({"alg": "RS256"}, KEY, "sha256", id="RS256-confusion"),
        pytest.param({"alg": "ES256"}, KEY, "sha256", id="ES256-confusion"),
        pytest.param({"alg": "PS256"}, KEY, "sha256", id="PS256-confusion"),
    ],
)
def test_a_token_with_another_algorithm_is_refused_even_under_the_right_key(
    header: dict[str, Any], key: Optional[bytes], digest: str
) -> None:
    token = hand_signed({**header, "typ": "JWT"}, claims(), key, digest)
    with pytest.raises(InvalidParticipantToken) as caught:
        read_participant_token(token, KEY, room="r")
    assert str(caught.value) == "the participant token is not HS256"


@pytest.mark.filterwarnings("ignore:The HMAC key is")  # PyJWT: 32 bytes is short for HS512
def test_the_hand_signed_tokens_are_real_jwts_of_their_algorithm() -> None:
    # The refusals above prove something only if PyJWT would accept these tokens
    # when told to allow their algorithm.
    for alg, digest in (("HS256", "sha256"), ("HS384", "sha384"), ("HS512", "sha512")):
        token = hand_signed({"alg": alg, "typ": "JWT"}, claims(), KEY, digest)
        assert jwt.decode(token, KEY, algorithms=[alg])["sub"] == "mallory"
    assert read_participant_token(
        hand_signed({"alg": "HS256", "typ": "JWT"}, claims(), KEY), KEY, room="r"
    ).participant_id == "mallory"


@pytest.mark.parametrize(
    "header",
    [
        pytest.param({"kid": "k1"}, id="kid"),
        pytest.param({"jku": UNREACHABLE_JKU}, id="jku"),
        pytest.param({"jku": UNREACHABLE_JKU, "kid": "k1"}, id="jku+kid"),
        # OTHER_KEY as a JWK (RFC 7517 §6.4): a verifier that took it would accept forgeries.
        pytest.param({"jwk": {"kty": "oct", "k": "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHg"}},
                     id="jwk"),
    ],
)
def test_kid_jku_and_jwk_headers_are_ignored_the_server_key_decides(
    header: dict[str, Any], no_network: list[Any]
) -> None:
    good = jwt.encode(claims(), KEY, algorithm="HS256", headers=header)
    assert read_participant_token(good, KEY, room="r").participant_id == "mallory"
    forged = jwt.encode(claims(), OTHER_KEY, algorithm="HS256", headers=header)
    with pytest.raises(InvalidParticipantToken, match="signature is wrong"):
        read_participant_token(forged, KEY, room="r")
    assert no_network == []


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


def test_a_token_not_valid_before_a_time_is_checked_again_when_the_clock_steps_back(
    monkeypatch: pytest.MonkeyPatch,
):
    """RFC 7519 §4.1.5: valid now, it is not valid yet once the clock is set back
    before its nbf, remembered or not."""
    now = time.time()
    token = jwt.encode({**claims(), "nbf": int(now) - 60}, KEY, algorithm="HS256")
    tokens = VerifiedTokens(KEY)
    assert tokens.read(token, room="r").participant_id == "mallory"
    assert tokens.read(token, room="r").participant_id == "mallory"

    class SteppedBack(jwt.api_jwt.datetime):  # type: ignore[name-defined, misc]
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return jwt.api_jwt.datetime.fromtimestamp(now - 3600, tz)

    monkeypatch.setattr(jwt.api_jwt, "datetime", SteppedBack)
    with pytest.raises(InvalidParticipantToken, match="not valid yet"):
        tokens.read(token, room="r")


@pytest.mark.parametrize("room", ["bad\x01room", "x" * 300, "\ud800"])
def test_a_signed_token_for_an_invalid_room_name_is_refused_every_time(room: str) -> None:
    # Only a holder of the key could sign one (minting checks the room); the room
    # is checked where verified tokens are remembered, so it is never remembered.
    token = jwt.encode({**claims(), "room": room}, KEY, algorithm="HS256")
    tokens = VerifiedTokens(KEY)
    for _ in range(2):
        with pytest.raises(InvalidParticipantToken, match=r"^the room name is invalid$"):
            tokens.read(token, room=room)
    with pytest.raises(InvalidParticipantToken, match=r"^the room name is invalid$"):
        read_participant_token(token, KEY, room=room)
