"""The SDK's participant tokens, read and mapped onto our grant exactly as the SDK's
``SecretsGrant.can_request_oauth_token`` decides (tokens built here with the same claims
``ParticipantToken.to_jwt`` writes; the SDK itself is exercised in test_sdk_client)."""

from __future__ import annotations

import time
from typing import Any, Optional

import pytest

pytest.importorskip("jwt")

import jwt

from roomsecrets.adapters.meshagent.tokens import (
    NO_API_GRANT,
    InvalidMeshAgentToken,
    grant_from_api_scope,
    read_token,
)
from roomsecrets.core.grants import check_oauth_request

KEY = "k" * 64


def sdk_token(api: Optional[dict[str, Any]] = None, room: str = "myroom", **extra: Any) -> str:
    grants: list[dict[str, Any]] = [
        {"name": "room", "scope": room},
        {"name": "role", "scope": "agent"},
    ]
    if api is not None:
        grants.append({"name": "api", "scope": api})
    return jwt.encode({"name": "mailbot", "grants": grants, "version": "0.44.13", **extra}, KEY)


def sdk_allows(entries: Optional[list[dict[str, str]]], endpoint: str, client_id: str) -> bool:
    """The SDK's rule, as written in participant_token.py 0.44.13."""
    if entries is None:
        return True
    for t in entries:
        if (
            t["endpoint"] == endpoint
            or (
                t["endpoint"].endswith("*")
                and endpoint.startswith(t["endpoint"].removesuffix("*"))
            )
        ) and t["client_id"] == client_id:
            return True
    return False


def we_allow(entries: Optional[list[dict[str, str]]], endpoint: str, client_id: str) -> bool:
    scope = {} if entries is None else {"request_oauth_token": entries}
    grant = grant_from_api_scope({"secrets": scope})
    return check_oauth_request(
        grant, target="alice", client_id=client_id, authorization_endpoint=endpoint,
        token_endpoint="https://oauth.example/token", scopes=("mail.read",),
    ).allowed


ENTRIES = [
    None,
    [],
    [{"endpoint": "https://accounts.example/auth", "client_id": "app"}],
    [{"endpoint": "https://accounts.example/*", "client_id": "app"}],
    [{"endpoint": "*", "client_id": "app"}],
    [{"endpoint": "https://accounts.example/a?b*", "client_id": "app"}],  # left out: '?'
    [{"endpoint": "https://accounts.example/*", "client_id": "a*"}],  # left out: '*'
]
REQUESTS = [
    ("https://accounts.example/auth", "app"),
    ("https://accounts.example/auth/v2", "app"),
    ("https://accounts.example/auth", "other"),
    ("https://accounts.example.evil/auth", "app"),
    ("https://accounts.example/aXb", "app"),
    ("https://elsewhere.example/auth", "app"),
    ("https://accounts.example/auth", "a*"),
]


@pytest.mark.parametrize("entries", ENTRIES)
@pytest.mark.parametrize(("endpoint", "client_id"), REQUESTS)
def test_our_grant_never_allows_what_the_sdk_refuses(entries, endpoint, client_id) -> None:
    sdk, ours = sdk_allows(entries, endpoint, client_id), we_allow(entries, endpoint, client_id)
    if sdk:
        # Equal, except entries our patterns cannot say, which we leave out.
        assert ours or any("?" in e["endpoint"] or "*" in e["client_id"] for e in entries or [])
    else:
        assert not ours


def test_a_token_reads_as_its_name_room_role_and_grant() -> None:
    who = read_token(sdk_token({"secrets": {}}), key=KEY, room="myroom")
    assert (who.name, who.room, who.role, who.expires_at) == ("mailbot", "myroom", "agent", None)
    assert who.grant.oauth[0].authorization_endpoint == "*"


def test_without_an_api_grant_the_participant_may_do_nothing() -> None:
    assert read_token(sdk_token(None), key=KEY, room="myroom").grant == NO_API_GRANT
    assert read_token(sdk_token({"storage": {}}), key=KEY, room="myroom").grant == NO_API_GRANT


@pytest.mark.parametrize(
    ("token", "why"),
    [
        (sdk_token({"secrets": {}}, room="other"), "no room grant for this room"),
        (jwt.encode({"name": "x", "grants": []}, "wrong-key" * 5), "signed with this server's key"),
        (jwt.encode({"name": "x", "grants": []}, KEY, algorithm="HS512"), "HS256"),
        (jwt.encode({"grants": []}, KEY), "HS256"),  # no name: required claim
        (jwt.encode({"name": "", "grants": []}, KEY), "'name'"),
        (jwt.encode({"name": "x", "grants": "room"}, KEY), "'grants'"),
        (sdk_token({"secrets": {}}, exp=int(time.time()) - 120), "expired"),
        ("not.a.token", "HS256"),
    ],
)
def test_a_bad_token_is_refused_without_quoting_it(token: str, why: str) -> None:
    with pytest.raises(InvalidMeshAgentToken, match=why) as refused:
        read_token(token, key=KEY, room="myroom")
    assert token not in str(refused.value)
