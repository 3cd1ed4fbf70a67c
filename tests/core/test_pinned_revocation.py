"""Pinned: RFC 7009 revocation requests and answers (issue #12, mutation pass on
``core/revocation.py``): what a bad request argument's error says, plain http only
when allowed, the size cap's exact edge, what a failed revocation's error carries,
and answers whose body is JSON but not an object."""

from __future__ import annotations

import urllib.parse

import pytest

from roomsecrets.core import errors
from roomsecrets.core.credentials import StoredCredential
from roomsecrets.core.oauth.revocation import (
    MAX_REVOCATION_RESPONSE_BYTES,
    build_revocation_request,
    check_revocation_response,
    revocation_request_for,
)
from roomsecrets.core.oauth.token_request import (
    ClientAuthMethod,
    ClientCredentials,
    build_client_authenticated_request,
)
from roomsecrets.core.oauth.tokens import TokenSet

ENDPOINT = "https://as.example/revoke"
PUBLIC = ClientCredentials(client_id="app")


def form(request) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(request.body.decode()))


def check(status: int, body: bytes = b"", headers=(), **kw) -> None:
    check_revocation_response(status=status, headers=headers, body=body, now=1000.0, **kw)


# --- the request (RFC 7009 §2.1) --------------------------------------------------------


def test_a_bad_endpoint_is_refused_by_name_before_the_token_is_looked_at():
    with pytest.raises(errors.InvalidInput) as info:
        build_revocation_request(revocation_endpoint=ENDPOINT + "#x", client=PUBLIC, token="")
    assert str(info.value) == "revocation_endpoint must not contain a fragment (RFC 6749 §3.1)"


def test_plain_http_to_any_host_passes_only_when_insecure_http_is_allowed():
    endpoint = "http://as.example/revoke"
    with pytest.raises(errors.InsecureEndpointError) as info:
        build_revocation_request(revocation_endpoint=endpoint, client=PUBLIC, token="t")
    assert str(info.value).startswith("revocation_endpoint must use https")
    request = build_revocation_request(
        revocation_endpoint=endpoint, client=PUBLIC, token="t", allow_insecure_http=True
    )
    assert request.url == endpoint
    assert form(request) == {"token": "t", "client_id": "app"}


@pytest.mark.parametrize("token", ["", None, 5, b"t"])
def test_a_token_that_is_not_a_non_empty_string_is_refused_without_echoing_it(token):
    with pytest.raises(errors.InvalidInput) as info:
        build_revocation_request(revocation_endpoint=ENDPOINT, client=PUBLIC, token=token)
    assert str(info.value) == "the token to revoke must be a non-empty string"


@pytest.mark.parametrize("hint", ["id_token", "", "ACCESS_TOKEN", 5])
def test_a_hint_other_than_rfc7009s_two_is_refused(hint):
    with pytest.raises(errors.InvalidInput) as info:
        build_revocation_request(
            revocation_endpoint=ENDPOINT, client=PUBLIC, token="t", token_type_hint=hint
        )
    assert str(info.value) == "token_type_hint must be 'access_token' or 'refresh_token'"


@pytest.mark.parametrize("hint", ["access_token", "refresh_token"])
def test_each_hint_is_sent_after_the_token(hint):
    request = build_revocation_request(
        revocation_endpoint=ENDPOINT, client=PUBLIC, token="t", token_type_hint=hint
    )
    assert urllib.parse.parse_qsl(request.body.decode()) == [
        ("token", "t"), ("token_type_hint", hint), ("client_id", "app")
    ]


def stored(endpoint: str) -> StoredCredential:
    return StoredCredential(
        tokens=TokenSet(access_token="at-1", refresh_token="rt-1", issued_at=0.0),
        client_id="app", authorization_endpoint="https://as.example/authorize",
        token_endpoint="https://as.example/token", revocation_endpoint=endpoint,
    )


def test_a_stored_plain_http_revocation_endpoint_is_used_only_when_allowed():
    credential = stored("http://as.example/revoke")
    with pytest.raises(errors.InsecureEndpointError):
        revocation_request_for(credential)
    built = revocation_request_for(credential, allow_insecure_http=True)
    assert built is not None
    request, hint, sent = built
    assert (request.url, hint, sent) == ("http://as.example/revoke", "refresh_token", ("rt-1",))
    # Loopback needs no permission (RFC 8252 §8.3).
    built = revocation_request_for(stored("http://127.0.0.1:9/revoke"))
    assert built is not None and built[0].url == "http://127.0.0.1:9/revoke"


# --- the size cap -----------------------------------------------------------------------


def test_an_error_body_of_exactly_the_cap_is_read():
    body = b'{"error":"invalid_client"}'
    padded = body[:-1] + b" " * (MAX_REVOCATION_RESPONSE_BYTES - len(body)) + b"}"
    assert len(padded) == MAX_REVOCATION_RESPONSE_BYTES
    with pytest.raises(errors.InvalidClient):
        check(401, padded)


def test_a_body_one_byte_over_a_given_cap_is_refused_unparsed_with_its_size_and_status():
    with pytest.raises(errors.ResponseTooLarge) as info:
        check(400, b'{"error":"invalid_client"}', max_body=25)
    assert info.value.status == 400
    assert str(info.value) == "revocation answer of 26 bytes exceeds the 25-byte cap"
    check(200, b"x" * 100, max_body=25)  # 200 is revoked; its body is never looked at


def test_a_body_at_a_given_cap_is_read():
    with pytest.raises(errors.InvalidClient):
        check(401, b'{"error":"invalid_client"}', max_body=26)


# --- bodies that are JSON but not an object ---------------------------------------------


@pytest.mark.parametrize(
    "body", [b'["error"]', b'"error"', b'"invalid_client error"', b"[]", b"7", b"null"]
)
def test_json_that_is_not_an_object_is_not_an_oauth_error(body):
    # RFC 6749 §5.2: the error response is a JSON object; "error" inside a list or
    # a string is no error code.
    with pytest.raises(errors.ProviderResponseError) as info:
        check(400, body)
    assert type(info.value) is errors.ProviderResponseError
    assert info.value.status == 400
    assert str(info.value) == "revocation endpoint answered HTTP 400 without an OAuth error body"


# --- "try again later" (RFC 7009 §2.2.1) -------------------------------------------------


def test_429_is_retryable_like_a_5xx_and_names_its_status():
    with pytest.raises(errors.ProviderUnavailable) as info:
        check(429, b"slow down")
    assert info.value.status == 429 and info.value.retryable
    assert info.value.retry_after is None
    assert str(info.value) == "revocation endpoint unavailable (HTTP 429)"
    with pytest.raises(errors.ProviderResponseError) as info:
        check(430, b"")
    assert not isinstance(info.value, errors.ProviderUnavailable)


def test_a_retry_after_date_counts_from_the_receipt_time():
    # RFC 9110 §10.2.3: an HTTP-date; 00:17:10 GMT on 1 Jan 1970 is 1030 s after the epoch.
    headers = (("Retry-After", "Thu, 01 Jan 1970 00:17:10 GMT"),)
    with pytest.raises(errors.ProviderUnavailable) as info:
        check(503, b"", headers)
    assert info.value.retry_after == 30.0


# --- an OAuth error body (RFC 6749 §5.2, RFC 7009 §2.2.1) ---------------------------------


def test_an_error_body_gives_its_code_description_uri_and_status():
    body = (
        b'{"error":"invalid_client","error_description":"unknown client",'
        b'"error_uri":"https://as.example/errors/1"}'
    )
    with pytest.raises(errors.InvalidClient) as info:
        check(401, body)
    assert info.value.error == "invalid_client"
    assert info.value.description == "unknown client"
    assert info.value.uri == "https://as.example/errors/1"
    assert info.value.status == 401
    assert str(info.value) == "invalid_client (HTTP 401): unknown client"


def test_an_unknown_error_code_is_still_an_oauth_error():
    with pytest.raises(errors.OAuthError) as info:
        check(400, b'{"error":"slow_down","error_description":"later"}')
    assert type(info.value) is errors.OAuthError
    assert (info.value.error, info.value.description) == ("slow_down", "later")


# --- the shared client authentication (RFC 6749 §2.3.1) ------------------------------------


def test_the_shared_request_builder_refuses_plain_http_by_default_and_names_the_endpoint():
    with pytest.raises(errors.InsecureEndpointError) as info:
        build_client_authenticated_request("http://as.example/token", PUBLIC, [("a", "b")])
    assert str(info.value).startswith("token_endpoint must use https")
    with pytest.raises(errors.InvalidInput) as info:
        build_client_authenticated_request(ENDPOINT + "#x", PUBLIC, [], what="revocation_endpoint")
    assert str(info.value) == "revocation_endpoint must not contain a fragment (RFC 6749 §3.1)"
    request = build_client_authenticated_request(
        "http://as.example/token", PUBLIC, [("a", "b")], True
    )
    assert (request.method, request.url) == ("POST", "http://as.example/token")
    assert urllib.parse.parse_qsl(request.body.decode()) == [("a", "b"), ("client_id", "app")]


def test_the_shared_request_builder_extends_the_form_it_is_given():
    form_fields = [("token", "t")]
    secret = ClientCredentials(client_id="app", client_secret="s",
                               method=ClientAuthMethod.CLIENT_SECRET_POST)
    request = build_client_authenticated_request(ENDPOINT, secret, form_fields)
    assert form_fields == [("token", "t"), ("client_id", "app"), ("client_secret", "s")]
    assert request.body == b"token=t&client_id=app&client_secret=s"
    assert request.headers == (
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Accept", "application/json"),
    )
