import base64
from urllib.parse import parse_qsl, unquote_plus

import pytest

from roomsecrets.core.errors import ConfigurationError, InsecureEndpointError, InvalidInput
from roomsecrets.core.oauth.token_request import (
    ClientAuthMethod,
    ClientCredentials,
    build_authorization_code_request,
    build_refresh_request,
)

VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
ENDPOINT = "https://oauth2.example.com/token"


def form(request):
    return dict(parse_qsl(request.body.decode()))


def code_request(client, **kw):
    args = dict(
        token_endpoint=ENDPOINT,
        client=client,
        code="the-code",
        redirect_uri="https://app.example/cb",
        code_verifier=VERIFIER,
    )
    args.update(kw)
    return build_authorization_code_request(**args)


def test_public_client_sends_client_id_and_verifier_in_body():
    request = code_request(ClientCredentials(client_id="pub"))
    assert request.method == "POST"
    assert request.url == ENDPOINT
    assert form(request) == {
        "grant_type": "authorization_code",
        "code": "the-code",
        "redirect_uri": "https://app.example/cb",
        "code_verifier": VERIFIER,
        "client_id": "pub",
    }
    assert request.header("Authorization") is None
    assert request.header("accept") == "application/json"
    assert request.header("content-type") == "application/x-www-form-urlencoded"


def test_client_secret_basic_form_urlencodes_before_base64():
    client = ClientCredentials(
        client_id="a b:c", client_secret="s&=%:x", method=ClientAuthMethod.CLIENT_SECRET_BASIC
    )
    request = code_request(client)
    scheme, _, encoded = request.header("Authorization").partition(" ")
    assert scheme == "Basic"
    decoded = base64.b64decode(encoded).decode()
    assert decoded == "a+b%3Ac:s%26%3D%25%3Ax"
    user, _, password = decoded.partition(":")
    assert (unquote_plus(user), unquote_plus(password)) == ("a b:c", "s&=%:x")
    assert "client_secret" not in form(request)
    assert "client_id" not in form(request)


def test_secret_defaults_to_basic():
    client = ClientCredentials(client_id="c", client_secret="s")
    assert client.auth_method is ClientAuthMethod.CLIENT_SECRET_BASIC


def test_client_secret_post_puts_both_in_body():
    client = ClientCredentials(
        client_id="c", client_secret="s", method=ClientAuthMethod.CLIENT_SECRET_POST
    )
    body = form(code_request(client))
    assert body["client_id"] == "c"
    assert body["client_secret"] == "s"


def test_no_pkce_omits_verifier():
    assert "code_verifier" not in form(code_request(ClientCredentials(client_id="c"), code_verifier=None))


def test_refresh_request_with_and_without_scope():
    client = ClientCredentials(client_id="c")
    plain = build_refresh_request(token_endpoint=ENDPOINT, client=client, refresh_token="rt")
    assert form(plain) == {"grant_type": "refresh_token", "refresh_token": "rt", "client_id": "c"}
    narrowed = build_refresh_request(
        token_endpoint=ENDPOINT, client=client, refresh_token="rt", scopes=["a", "b"]
    )
    assert form(narrowed)["scope"] == "a b"


def test_method_needing_secret_without_one_is_a_configuration_error():
    with pytest.raises(ConfigurationError):
        ClientCredentials(client_id="c", method=ClientAuthMethod.CLIENT_SECRET_POST)
    with pytest.raises(ConfigurationError):
        ClientCredentials(client_id="c", client_secret="s", method=ClientAuthMethod.NONE)


def test_repr_hides_client_secret_and_request_body():
    client = ClientCredentials(client_id="c", client_secret="very-secret-value")
    request = code_request(client, code="code-secret-value")
    for text in (repr(client), str(client), repr(request)):
        assert "very-secret-value" not in text
        assert "code-secret-value" not in text
        assert VERIFIER not in text


def test_insecure_token_endpoint_is_refused():
    with pytest.raises(InsecureEndpointError):
        code_request(ClientCredentials(client_id="c"), token_endpoint="http://as.example/token")


@pytest.mark.parametrize("kw", [{"code": ""}, {"code_verifier": "short"}, {"redirect_uri": "/x"}])
def test_bad_inputs_are_refused(kw):
    with pytest.raises(InvalidInput):
        code_request(ClientCredentials(client_id="c"), **kw)


def test_empty_refresh_token_is_refused():
    with pytest.raises(InvalidInput):
        build_refresh_request(
            token_endpoint=ENDPOINT, client=ClientCredentials(client_id="c"), refresh_token=""
        )
