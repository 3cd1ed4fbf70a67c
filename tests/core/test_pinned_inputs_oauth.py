"""Pinned: the argument checks for OAuth client authentication and issuers (issue #12,
mutation pass on ``core/inputs.py``): ``client_auth_method`` names one of RFC 6749
§2.3.1's two ways to send a secret and needs the secret; an ``issuer`` or ``iss``
is a URL of at most :data:`MAX_URL` ASCII characters."""

from __future__ import annotations

import pytest

from roomsecrets.core.errors import InvalidInput
from roomsecrets.core.inputs import (
    CLIENT_AUTH_METHODS,
    MAX_URL,
    check_client_auth_method,
    check_url,
)
from roomsecrets.core.oauth.discovery import check_issuer

BAD_METHOD = "client_auth_method must be 'client_secret_basic' or 'client_secret_post'"


class Text(str):
    """A str subclass: its methods may be overridden, so only a plain str is accepted."""


def test_the_two_methods_are_rfc6749s_ways_to_send_a_secret():
    assert CLIENT_AUTH_METHODS == ("client_secret_basic", "client_secret_post")


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_a_method_with_a_secret_is_returned_as_given(method):
    assert check_client_auth_method(method, client_secret="s") == method


@pytest.mark.parametrize("secret", [None, "s"])
def test_no_method_is_none_with_or_without_a_secret(secret):
    assert check_client_auth_method(None, client_secret=secret) is None


@pytest.mark.parametrize(
    "value",
    ["none", "private_key_jwt", "CLIENT_SECRET_POST", "", 5, b"client_secret_post",
     ["client_secret_post"], ("client_secret_basic",), Text("client_secret_post")],
)
def test_anything_else_is_refused_with_the_two_names(value):
    with pytest.raises(InvalidInput) as info:
        check_client_auth_method(value, client_secret="s")
    assert str(info.value) == BAD_METHOD


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_a_method_without_a_secret_is_a_mistake_and_says_which(method):
    with pytest.raises(InvalidInput) as info:
        check_client_auth_method(method, client_secret=None)
    assert str(info.value) == f"client_auth_method {method} needs a client_secret"


def test_an_unknown_method_without_a_secret_is_refused_as_unknown():
    with pytest.raises(InvalidInput) as info:
        check_client_auth_method("private_key_jwt", client_secret=None)
    assert str(info.value) == BAD_METHOD


# --- issuer and iss: URLs of at most MAX_URL characters -------------------------------------


def test_an_issuer_of_max_url_characters_passes_and_one_more_is_refused():
    issuer = "https://as.example/" + "a" * (MAX_URL - len("https://as.example/"))
    assert len(issuer) == MAX_URL
    assert check_issuer(issuer) == issuer
    with pytest.raises(InvalidInput) as info:
        check_issuer(issuer + "a")
    assert str(info.value) == f"issuer must be a URL of 1-{MAX_URL} characters"


@pytest.mark.parametrize("value", ["", None, 5, b"https://as.example", Text("https://as.example")])
def test_an_iss_that_is_not_a_non_empty_string_is_refused_by_name(value):
    with pytest.raises(InvalidInput) as info:
        check_url(value, "iss")
    assert str(info.value) == f"iss must be a URL of 1-{MAX_URL} characters"


@pytest.mark.parametrize(
    "value", ["https://as.example/a b", "https://as.example/\u00e9", "https://as.example/\x7f",
              "https://as.example/\t"]
)
def test_an_iss_with_a_space_control_or_non_ascii_character_is_refused(value):
    with pytest.raises(InvalidInput) as info:
        check_url(value, "iss")
    assert str(info.value) == (
        "iss must be ASCII without spaces (RFC 3986 §2); percent-encode other characters"
    )


@pytest.mark.parametrize("value", ["x", "https://as.example/~!$&'()*+,;=:@%20"])
def test_one_character_and_every_visible_ascii_character_pass(value):
    assert check_url(value, "iss") == value
