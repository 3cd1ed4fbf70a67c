import json

import pytest

from roomsecrets.core.errors import InvalidInput
from roomsecrets.core.oauth.tokens import TokenSet


def make(**kw):
    args = dict(access_token="AT-secret", refresh_token="RT-secret", issued_at=1000.0,
                expires_at=4600.0, scopes=("a", "b"), id_token="IDT-secret", extra={"k": "v"})
    args.update(kw)
    return TokenSet(**args)


def test_needs_refresh_within_default_leeway():
    tokens = make()
    assert not tokens.needs_refresh(1000.0)
    assert not tokens.needs_refresh(4539.9)
    assert tokens.needs_refresh(4540.0)
    assert tokens.needs_refresh(9999.0)


@pytest.mark.parametrize("lifetime", [30.0, 3.0, 1.0])
def test_short_lived_fresh_token_is_not_treated_as_expiring(lifetime):
    tokens = make(issued_at=0.0, expires_at=lifetime)
    assert not tokens.needs_refresh(0.0)
    assert not tokens.needs_refresh(lifetime * 0.49)
    assert tokens.needs_refresh(lifetime * 0.5)
    assert tokens.needs_refresh(lifetime)


def test_custom_leeway_and_no_expiry():
    assert make().needs_refresh(4500.0, leeway=120)
    assert not make().needs_refresh(4500.0, leeway=10)
    assert not make(expires_at=None).needs_refresh(1e12)


def test_zero_lifetime_token_is_expired_at_once():
    assert make(issued_at=5.0, expires_at=5.0).needs_refresh(5.0)


def test_repr_and_str_show_no_token_values():
    tokens = make()
    for text in (repr(tokens), str(tokens), f"{tokens}"):
        assert "secret" not in text
        assert "has_refresh_token=True" in text


def test_dict_and_json_round_trip():
    tokens = make()
    assert TokenSet.from_dict(json.loads(json.dumps(tokens.to_dict()))) == tokens
    assert TokenSet.from_json(tokens.to_json()) == tokens


@pytest.mark.parametrize(
    "data",
    [{}, {"version": 1}, {"version": 2, "access_token": "a", "token_type": "B", "issued_at": 0},
     {"version": 1, "access_token": "", "token_type": "B", "issued_at": 0},
     {"version": 1, "access_token": "a", "token_type": "B", "issued_at": "x"}, []],
)
def test_malformed_stored_data_is_refused(data):
    with pytest.raises(InvalidInput):
        TokenSet.from_dict(data)


def test_from_json_garbage_is_refused():
    with pytest.raises(InvalidInput):
        TokenSet.from_json(b"\x00nope")


def test_covers():
    tokens = make()
    assert tokens.covers(None) and tokens.covers([]) and tokens.covers(["a"])
    assert tokens.covers(["b", "a"])
    assert not tokens.covers(["a", "c"])


def test_is_frozen():
    with pytest.raises(AttributeError):
        make().access_token = "x"
