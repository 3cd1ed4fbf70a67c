"""Pinned: token-endpoint requests refuse insecure endpoints and bad client credentials."""

from __future__ import annotations

import base64
from urllib.parse import parse_qsl

import pytest

from roomsecrets.core.errors import ConfigurationError, InsecureEndpointError, InvalidInput
from roomsecrets.core.oauth.token_request import (
    ClientAuthMethod,
    ClientCredentials,
    build_authorization_code_request,
    build_refresh_request,
)

VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
PUBLIC = ClientCredentials(client_id="c")


def refresh(token_endpoint="https://as.example/token", **kw):
    args = dict(token_endpoint=token_endpoint, client=PUBLIC, refresh_token="rt")
    args.update(kw)
    return build_refresh_request(**args)


def form(request):
    return parse_qsl(request.body.decode("ascii"))


# --- plain http in build_refresh_request --------------------------------------------


@pytest.mark.parametrize(
    "endpoint",
    ["http://as.example/token", "http://10.0.0.1/token", "http://[fe80::1]/token",
     "http://localhost.example/token"],
)
def test_refresh_request_refuses_plain_http_to_a_non_loopback_host(endpoint):
    with pytest.raises(InsecureEndpointError):
        refresh(endpoint)


@pytest.mark.parametrize(
    "endpoint",
    ["http://127.0.0.1:8080/token", "http://localhost/token", "http://[::1]:9/token",
     "http://127.5.5.5/token"],
)
def test_refresh_request_allows_plain_http_on_loopback(endpoint):
    assert refresh(endpoint).url == endpoint


def test_refresh_request_allows_plain_http_anywhere_when_explicitly_asked():
    request = refresh("http://as.internal/token", allow_insecure_http=True)
    assert request.url == "http://as.internal/token"


def code_request(token_endpoint):
    return build_authorization_code_request(
        token_endpoint=token_endpoint, client=PUBLIC, code="x",
        redirect_uri="https://app.example/cb", code_verifier=VERIFIER,
    )


@pytest.mark.parametrize(
    ("endpoint", "allowed"),
    [("http://as.example/token", False), ("http://127.0.0.1/token", True),
     ("https://as.example/token", True)],
)
@pytest.mark.parametrize("build", [refresh, code_request], ids=["refresh", "code"])
def test_refresh_and_code_requests_agree_on_plain_http(build, endpoint, allowed):
    if allowed:
        assert build(endpoint).url == endpoint
    else:
        with pytest.raises(InsecureEndpointError, match="token_endpoint"):
            build(endpoint)


@pytest.mark.parametrize("endpoint", ["", "as.example/token", "https://as.example/t#f", None])
def test_refresh_request_refuses_a_malformed_token_endpoint(endpoint):
    with pytest.raises(InvalidInput):
        refresh(endpoint)


@pytest.mark.parametrize("refresh_token", ["", None, b"rt", 5])
def test_refresh_request_refuses_an_empty_or_non_string_refresh_token(refresh_token):
    with pytest.raises(InvalidInput) as info:
        refresh(refresh_token=refresh_token)
    assert str(info.value) == "refresh token must be a non-empty string"


def test_refresh_request_refuses_bad_scopes():
    with pytest.raises(InvalidInput):
        refresh(scopes=["has space"])


def test_refresh_request_with_no_scopes_sends_no_scope():
    assert ("scope", "") not in form(refresh(scopes=[]))
    assert [name for name, _ in form(refresh(scopes=[]))] == [
        "grant_type", "refresh_token", "client_id"
    ]


# --- ClientCredentials validation -----------------------------------------------------


@pytest.mark.parametrize("client_id", ["", None, b"c", 5])
def test_client_credentials_refuse_an_empty_or_non_string_client_id(client_id):
    with pytest.raises(InvalidInput) as info:
        ClientCredentials(client_id=client_id)
    assert str(info.value) == "client_id must be a non-empty string"


@pytest.mark.parametrize("method", [None, *ClientAuthMethod])
def test_client_credentials_refuse_an_empty_client_secret(method):
    with pytest.raises(InvalidInput) as info:
        ClientCredentials(client_id="c", client_secret="", method=method)
    assert str(info.value) == "client_secret must be a non-empty string or None"


@pytest.mark.parametrize("secret", [b"s", 5])
def test_client_credentials_refuse_a_non_string_client_secret(secret):
    with pytest.raises(InvalidInput, match="client_secret"):
        ClientCredentials(client_id="c", client_secret=secret)


def test_client_credentials_without_a_secret_default_to_no_client_auth():
    assert ClientCredentials(client_id="c").auth_method is ClientAuthMethod.NONE
    assert ClientCredentials(client_id="c").method is ClientAuthMethod.NONE


def test_client_credentials_refuse_a_secret_with_no_client_auth():
    with pytest.raises(ConfigurationError) as info:
        ClientCredentials(client_id="c", client_secret="s", method=ClientAuthMethod.NONE)
    assert str(info.value) == "client auth method none cannot carry a client_secret"


def test_client_credentials_name_the_method_that_needs_a_secret():
    for method in (ClientAuthMethod.CLIENT_SECRET_BASIC, ClientAuthMethod.CLIENT_SECRET_POST):
        with pytest.raises(ConfigurationError) as info:
            ClientCredentials(client_id="c", method=method)
        assert str(info.value) == f"client auth method {method.value} needs a client_secret"


def test_client_credentials_repr_names_the_id_and_method_and_hides_the_secret():
    assert repr(ClientCredentials(client_id="c", client_secret="s3")) == (
        "ClientCredentials(client_id='c', client_secret=<hidden>, "
        "method='client_secret_basic')"
    )
    assert repr(ClientCredentials(client_id="c")) == (
        "ClientCredentials(client_id='c', client_secret=None, method='none')"
    )


# --- the request itself -----------------------------------------------------------------


def test_a_token_request_is_an_ascii_form_post_asking_for_json():
    request = refresh()
    assert request.method == "POST"
    assert request.headers == (
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Accept", "application/json"),
    )
    assert request.body == b"grant_type=refresh_token&refresh_token=rt&client_id=c"


def test_client_secret_basic_adds_one_authorization_header_and_no_client_id():
    client = ClientCredentials(client_id="c", client_secret="s")
    request = refresh(client=client)
    expected = "Basic " + base64.b64encode(b"c:s").decode()
    assert request.headers[-1] == ("Authorization", expected)
    assert len(request.headers) == 3
    assert dict(form(request)) == {"grant_type": "refresh_token", "refresh_token": "rt"}


def test_client_secret_post_sends_id_then_secret_in_the_body():
    client = ClientCredentials(
        client_id="c", client_secret="s", method=ClientAuthMethod.CLIENT_SECRET_POST
    )
    request = refresh(client=client, scopes=["a"])
    assert form(request) == [
        ("grant_type", "refresh_token"), ("refresh_token", "rt"), ("scope", "a"),
        ("client_id", "c"), ("client_secret", "s"),
    ]
    assert request.header("Authorization") is None


def test_code_request_form_is_in_rfc_order_with_the_verifier_last_before_client_auth():
    request = build_authorization_code_request(
        token_endpoint="https://as.example/token", client=PUBLIC, code="the code",
        redirect_uri="https://app.example/cb", code_verifier=VERIFIER,
    )
    assert form(request) == [
        ("grant_type", "authorization_code"), ("code", "the code"),
        ("redirect_uri", "https://app.example/cb"), ("code_verifier", VERIFIER),
        ("client_id", "c"),
    ]


@pytest.mark.parametrize("code", ["", None, 5])
def test_code_request_refuses_an_empty_or_non_string_code(code):
    with pytest.raises(InvalidInput) as info:
        build_authorization_code_request(
            token_endpoint="https://as.example/token", client=PUBLIC, code=code,
            redirect_uri="https://app.example/cb",
        )
    assert str(info.value) == "authorization code must be a non-empty string"


def test_code_request_honours_allow_insecure_http():
    request = build_authorization_code_request(
        token_endpoint="http://as.internal/token", client=PUBLIC, code="x",
        redirect_uri="https://app.example/cb", allow_insecure_http=True,
    )
    assert request.url == "http://as.internal/token"


def test_token_endpoint_errors_name_the_token_endpoint():
    for build in (refresh, code_request):
        with pytest.raises(InvalidInput) as info:
            build("")
        assert str(info.value) == "token_endpoint must be a non-empty URL string"
