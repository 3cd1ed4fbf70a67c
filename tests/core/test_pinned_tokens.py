"""Pinned: what ``TokenSet`` refuses on construction, and its refresh arithmetic."""

from __future__ import annotations

import math

import pytest

from roomsecrets.core.errors import InvalidInput
from roomsecrets.core.oauth.tokens import DEFAULT_REFRESH_LEEWAY, TokenSet


def make(**kw):
    args = dict(access_token="at", issued_at=1000.0)
    args.update(kw)
    return TokenSet(**args)


MESSAGES = {
    "access_token": "TokenSet.access_token must be a non-empty string",
    "token_type": "TokenSet.token_type must be a non-empty string",
    "refresh_token": "TokenSet.refresh_token must be a non-empty string or None",
    "issued_at": "TokenSet.issued_at must be a finite number",
    "expires_at": "TokenSet.expires_at must be a finite number or None",
    "scopes": "TokenSet.scopes must be a sequence of strings",
    "extra": "TokenSet.extra must be a mapping",
}


def refused_field(**kw) -> str:
    """Construct with ``kw``; return the field the refusal names (its message is checked)."""
    with pytest.raises(InvalidInput) as info:
        make(**kw)
    (field,) = [name for name, text in MESSAGES.items() if str(info.value) == text]
    return field


@pytest.mark.parametrize(
    "expires_at",
    [math.nan, math.inf, -math.inf, "4600", b"4600", True, False, [4600.0], 10**400],
)
def test_expires_at_that_is_nan_infinite_or_not_a_number_is_refused(expires_at):
    assert refused_field(expires_at=expires_at) == "expires_at"


@pytest.mark.parametrize("expires_at", [None, 0, 4600, 4600.5, -1.0])
def test_expires_at_that_is_a_finite_number_or_none_is_kept(expires_at):
    assert make(expires_at=expires_at).expires_at == expires_at


@pytest.mark.parametrize("refresh_token", ["", b"rt", 5, ["rt"], False])
def test_refresh_token_that_is_empty_or_not_a_string_is_refused(refresh_token):
    assert refused_field(refresh_token=refresh_token) == "refresh_token"


def test_refresh_token_may_be_absent_or_a_non_empty_string():
    assert make().refresh_token is None
    assert make(refresh_token="r").refresh_token == "r"


@pytest.mark.parametrize("access_token", ["", None, b"at", 1])
def test_access_token_that_is_empty_or_not_a_string_is_refused(access_token):
    assert refused_field(access_token=access_token) == "access_token"


@pytest.mark.parametrize("token_type", ["", None, b"Bearer"])
def test_token_type_that_is_empty_or_not_a_string_is_refused(token_type):
    assert refused_field(token_type=token_type) == "token_type"


@pytest.mark.parametrize("issued_at", [math.nan, math.inf, None, "1000", True, 10**400])
def test_issued_at_that_is_not_a_finite_number_is_refused(issued_at):
    assert refused_field(issued_at=issued_at) == "issued_at"


@pytest.mark.parametrize("scopes", ["mail.read", ("a", 1), [None]])
def test_scopes_that_are_one_string_or_hold_a_non_string_are_refused(scopes):
    assert refused_field(scopes=scopes) == "scopes"


def test_scopes_given_as_a_list_are_kept_as_a_tuple():
    assert make(scopes=["a", "b"]).scopes == ("a", "b")


@pytest.mark.parametrize("extra", [None, [("k", "v")], "k=v"])
def test_extra_that_is_not_a_mapping_is_refused(extra):
    assert refused_field(extra=extra) == "extra"


def test_the_default_leeway_is_60_seconds_and_the_default_type_is_bearer():
    assert DEFAULT_REFRESH_LEEWAY == 60.0
    tokens = make(expires_at=1000.0 + 3600)
    assert tokens.token_type == "Bearer"
    assert not tokens.needs_refresh(now=1000.0 + 3600 - 60.001)
    assert tokens.needs_refresh(now=1000.0 + 3600 - 60)


def test_lifetime_is_expiry_minus_receipt_and_never_negative():
    assert make(expires_at=1030.0).lifetime == 30.0
    assert make(expires_at=990.0).lifetime == 0.0
    assert make().lifetime is None


def test_a_negative_leeway_counts_as_none():
    tokens = make(expires_at=2000.0)
    assert not tokens.needs_refresh(now=1999.9, leeway=-50)
    assert tokens.needs_refresh(now=2000.0, leeway=-50)


def test_a_token_received_after_its_expiry_needs_refresh_at_once():
    # A clock that went backwards: expires_at < issued_at gives no leeway at all.
    tokens = make(issued_at=1000.0, expires_at=900.0)
    assert tokens.needs_refresh(now=900.0)
    assert not tokens.needs_refresh(now=899.9)


def test_stored_dict_is_versioned_and_holds_every_field():
    tokens = make(refresh_token="rt", expires_at=2000.0, scopes=("s",), id_token="it",
                  extra={"k": 1})
    assert tokens.to_dict() == {
        "version": 1,
        "access_token": "at",
        "token_type": "Bearer",
        "refresh_token": "rt",
        "issued_at": 1000.0,
        "expires_at": 2000.0,
        "scopes": ["s"],
        "id_token": "it",
        "extra": {"k": 1},
    }


def test_json_is_compact_and_sorted():
    assert make().to_json() == (
        b'{"access_token":"at","expires_at":null,"extra":{},"id_token":null,'
        b'"issued_at":1000.0,"refresh_token":null,"scopes":[],"token_type":"Bearer",'
        b'"version":1}'
    )


@pytest.mark.parametrize("missing", ["access_token", "token_type", "issued_at"])
def test_a_stored_dict_missing_a_required_field_is_refused_naming_the_error_kind(missing):
    data = make().to_dict()
    del data[missing]
    with pytest.raises(InvalidInput, match="KeyError"):
        TokenSet.from_dict(data)


def test_a_stored_dict_with_a_mistyped_scope_list_is_refused():
    data = make().to_dict()
    data["scopes"] = 5
    with pytest.raises(InvalidInput, match="TypeError"):
        TokenSet.from_dict(data)


def test_stored_null_scopes_and_extra_read_as_empty():
    data = make().to_dict()
    data["scopes"] = None
    data["extra"] = None
    tokens = TokenSet.from_dict(data)
    assert tokens.scopes == () and dict(tokens.extra) == {}


def test_json_that_is_not_utf8_is_refused():
    with pytest.raises(InvalidInput, match="not valid JSON"):
        TokenSet.from_json(b"\xff")


def test_repr_names_the_extra_keys_sorted_and_whether_tokens_are_present():
    text = repr(make(extra={"b": 1, "a": 2}))
    assert text == (
        "TokenSet(token_type='Bearer', issued_at=1000.0, expires_at=None, scopes=(), "
        "has_refresh_token=False, has_id_token=False, extra_keys=['a', 'b'])"
    )
    assert "has_id_token=True" in repr(make(id_token="it"))


def refusal(call) -> str:
    with pytest.raises(InvalidInput) as info:
        call()
    return str(info.value)


def test_stored_token_set_errors_say_what_is_wrong_without_values():
    assert refusal(lambda: TokenSet.from_dict(["at"])) == "stored token set must be a JSON object"
    assert refusal(lambda: TokenSet.from_dict({"version": 2})) == (
        "stored token set has an unknown format version"
    )
    assert refusal(lambda: TokenSet.from_dict({"version": 1})) == (
        "stored token set is missing or mistypes a field (KeyError)"
    )
    assert refusal(lambda: TokenSet.from_json(b"{")) == "stored token set is not valid JSON"


def test_a_stored_token_type_other_than_bearer_is_kept():
    tokens = make(token_type="DPoP")
    assert TokenSet.from_dict(tokens.to_dict()).token_type == "DPoP"
    assert TokenSet.from_json(tokens.to_json()).token_type == "DPoP"
