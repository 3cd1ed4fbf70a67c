"""Pinned: the authorization URL refuses an empty state, and scopes are exactly RFC 6749 §3.3."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from roomsecrets.core.errors import InsecureEndpointError, InvalidInput
from roomsecrets.core.oauth.authorization import (
    RESERVED_AUTHORIZATION_PARAMS,
    build_authorization_url,
    join_scopes,
)

BASE = dict(
    authorization_endpoint="https://as.example/auth",
    client_id="client-1",
    redirect_uri="https://app.example/cb",
    state="state-123",
)

# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
# RFC 6749 §3.3 scope-token characters, less the comma: providers that split granted
# scopes on commas (GitHub, Slack) would read "a,b" as two (core/oauth/scopes.py).
SCOPE_CHARS = [chr(c) for c in [0x21, *range(0x23, 0x5C), *range(0x5D, 0x7F)] if chr(c) != ","]
NOT_SCOPE_CHARS = [
    *(chr(c) for c in range(0x00, 0x21)),  # controls and space
    '"',
    "\\",
    "\x7f",  # DEL
    "\x80",
    "é",
    "\u00a0",  # no-break space
    "\u2028",
    "日",
    "\U0001f600",
]


def query(url):
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


@pytest.mark.parametrize("state", ["", None, b"state", 5])
def test_authorization_url_refuses_an_empty_or_non_string_state(state):
    with pytest.raises(InvalidInput, match="state"):
        build_authorization_url(**{**BASE, "state": state})


def test_authorization_url_carries_a_one_character_state():
    assert ("state", "s") in query(build_authorization_url(**{**BASE, "state": "s"}))


@pytest.mark.parametrize("client_id", ["", None, 5])
def test_authorization_url_refuses_an_empty_or_non_string_client_id(client_id):
    with pytest.raises(InvalidInput, match="client_id"):
        build_authorization_url(**{**BASE, "client_id": client_id})


def test_every_scope_character_rfc6749_allows_is_accepted():
    assert len(SCOPE_CHARS) == 0x7E - 0x21 + 1 - 3  # all visible ASCII but ", \ and ,
    assert "~" in SCOPE_CHARS and "!" in SCOPE_CHARS and "#" in SCOPE_CHARS
    everything = "".join(SCOPE_CHARS)
    assert join_scopes([everything]) == everything
    url = build_authorization_url(**BASE, scopes=[everything, "openid"])
    assert ("scope", everything + " openid") in query(url)


@pytest.mark.parametrize("char", SCOPE_CHARS)
def test_each_allowed_scope_character_alone_is_a_scope(char):
    assert join_scopes([char]) == char
    assert join_scopes(["a" + char + "b", "c"]) == f"a{char}b c"


@pytest.mark.parametrize("char", NOT_SCOPE_CHARS)
def test_a_scope_with_any_character_outside_rfc6749_is_refused(char):
    with pytest.raises(InvalidInput, match="RFC 6749"):
        join_scopes(["mail" + char + "read"])
    with pytest.raises(InvalidInput):
        join_scopes([char])
    with pytest.raises(InvalidInput):
        build_authorization_url(**BASE, scopes=["openid", "x" + char])


@pytest.mark.parametrize("scopes", ["mail.read", b"mail.read", ["ok", ""], ["ok", None], [b"a"]])
def test_scopes_that_are_one_string_or_hold_an_empty_or_non_string_scope_are_refused(scopes):
    with pytest.raises(InvalidInput):
        join_scopes(scopes)


def test_no_scopes_join_to_none():
    assert join_scopes(None) is None
    assert join_scopes([]) is None
    assert join_scopes(()) is None


def test_scopes_keep_their_order_and_are_joined_by_one_space():
    assert join_scopes(("b", "a", "c")) == "b a c"


def test_the_reserved_parameters_are_exactly_the_ones_we_set():
    url = build_authorization_url(**BASE, scopes=["s"], code_challenge="ch")
    assert {name for name, _ in query(url)} == RESERVED_AUTHORIZATION_PARAMS


@pytest.mark.parametrize("name", sorted(RESERVED_AUTHORIZATION_PARAMS))
def test_the_endpoint_query_may_not_set_a_reserved_parameter(name):
    endpoint = f"https://as.example/auth?{name}=x"
    with pytest.raises(InvalidInput, match=name):
        build_authorization_url(**{**BASE, "authorization_endpoint": endpoint})


@pytest.mark.parametrize("name", sorted(RESERVED_AUTHORIZATION_PARAMS))
def test_an_extra_parameter_may_not_repeat_a_reserved_parameter(name):
    with pytest.raises(InvalidInput, match=name):
        build_authorization_url(**BASE, extra_params={name: "x"})


def test_an_extra_parameter_value_must_be_a_string():
    with pytest.raises(InvalidInput, match="prompt"):
        build_authorization_url(**BASE, extra_params={"prompt": 1})


def test_the_url_is_endpoint_query_then_ours_then_extras_with_no_fragment():
    url = build_authorization_url(
        **{**BASE, "authorization_endpoint": "https://as.example:8443/a/b?t=1&e="},
        scopes=["x"], code_challenge="c h", extra_params={"p": "a b"},
    )
    assert url == (
        "https://as.example:8443/a/b?t=1&e=&response_type=code&client_id=client-1"
        "&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&scope=x&state=state-123"
        "&code_challenge=c%20h&code_challenge_method=S256&p=a%20b"
    )


def test_the_authorization_endpoint_is_checked_with_its_name_and_insecure_flag():
    with pytest.raises(InsecureEndpointError, match="authorization_endpoint"):
        build_authorization_url(**{**BASE, "authorization_endpoint": "http://as.example/a"})
    url = build_authorization_url(
        **{**BASE, "authorization_endpoint": "http://as.example/a"}, allow_insecure_http=True
    )
    assert url.startswith("http://as.example/a?response_type=code&")


def refusal(call) -> str:
    with pytest.raises(InvalidInput) as info:
        call()
    return str(info.value)


def test_authorization_url_refusals_say_what_is_wrong():
    assert refusal(lambda: join_scopes("openid")) == (
        "scopes must be a list of strings, not one string"
    )
    assert refusal(lambda: join_scopes(["a b"])) == (
        "each scope must be a non-empty string of printable ASCII without spaces, "
        "quotes or backslashes (RFC 6749 §3.3)"
    )
    assert refusal(lambda: build_authorization_url(**{**BASE, "client_id": ""})) == (
        "client_id must be a non-empty string"
    )
    assert refusal(lambda: build_authorization_url(**{**BASE, "state": ""})) == (
        "state must be a non-empty string"
    )
    endpoint = "https://as.example/auth?state=1&client_id=2&tenant=t"
    assert refusal(
        lambda: build_authorization_url(**{**BASE, "authorization_endpoint": endpoint})
    ) == "authorization_endpoint query already sets ['client_id', 'state']"
    assert refusal(
        lambda: build_authorization_url(
            **{**BASE, "authorization_endpoint": "https://as.example/a?tenant=t"},
            extra_params={"tenant": "u"},
        )
    ) == "extra parameter 'tenant' would repeat a parameter"
    assert refusal(lambda: build_authorization_url(**BASE, extra_params={"p": None})) == (
        "extra parameter 'p' must be a string"
    )
    assert refusal(
        lambda: build_authorization_url(**{**BASE, "authorization_endpoint": ""})
    ) == "authorization_endpoint must be a non-empty URL string"


@pytest.mark.parametrize("scope", [",", "a,b", "channels:read,admin", "a,"])
def test_a_scope_with_a_comma_is_refused_where_requests_are_built(scope):
    with pytest.raises(InvalidInput, match="must not contain a comma"):
        join_scopes([scope])
    with pytest.raises(InvalidInput, match="must not contain a comma"):
        build_authorization_url(**BASE, scopes=[scope])


def test_the_comma_refusal_quotes_at_most_64_characters_and_says_why():
    scope = "a," + "b" * 100
    with pytest.raises(InvalidInput) as info:
        join_scopes([scope])
    assert str(info.value) == (
        f"a scope must not contain a comma: {scope[:64]!r} is several scopes to providers "
        "that split on commas (GitHub, Slack); give each as its own entry"
    )
