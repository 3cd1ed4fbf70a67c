"""Pinned: RFC 7009 revocation requests and answers (issue #12, mutation pass on
``core/revocation.py``): the size cap's exact edge, what a failed revocation's error
carries, and answers whose body is JSON but not an object."""

from __future__ import annotations

import pytest

from roomsecrets.core import errors
from roomsecrets.core.revocation import (
    MAX_REVOCATION_RESPONSE_BYTES,
    check_revocation_response,
)


def check(status: int, body: bytes = b"", headers=(), **kw) -> None:
    check_revocation_response(status=status, headers=headers, body=body, now=1000.0, **kw)


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
