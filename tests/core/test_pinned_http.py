"""Pinned: HTTP request and response values, their header lookup and their reprs."""

from __future__ import annotations

import pytest

from roomsecrets.core.errors import InvalidInput
from roomsecrets.core.oauth.http import HttpRequest, HttpResponse, header_value

HEADERS = (("Content-Type", "a/b"), ("X-Twice", "first"), ("x-twice", "second"))


def test_header_lookup_ignores_case_and_returns_the_first_value():
    assert header_value(HEADERS, "content-type") == "a/b"
    assert header_value(HEADERS, "CONTENT-TYPE") == "a/b"
    assert header_value(HEADERS, "X-TWICE") == "first"
    assert header_value(HEADERS, "Accept") is None
    assert header_value((), "Accept") is None


def test_requests_and_responses_look_headers_up_the_same_way():
    request = HttpRequest(method="POST", url="https://h/", headers=HEADERS)
    response = HttpResponse(status=200, headers=HEADERS)
    for value in (request, response):
        assert value.header("x-TWICE") == "first"
        assert value.header("missing") is None


def test_a_request_defaults_to_no_headers_and_an_empty_body():
    request = HttpRequest(method="GET", url="https://h/")
    assert request.headers == ()
    assert request.body == b""
    response = HttpResponse(status=204)
    assert response.headers == ()
    assert response.body == b""


@pytest.mark.parametrize("method", ["get", "Post", "G1T", "G-T", "", "GET "])
def test_a_method_that_is_not_upper_case_letters_is_refused(method):
    with pytest.raises(InvalidInput) as info:
        HttpRequest(method=method, url="https://h/")
    assert str(info.value) == f"unsupported HTTP method {method!r}"


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE", "PATCH"])
def test_an_upper_case_method_is_accepted(method):
    assert HttpRequest(method=method, url="https://h/").method == method


@pytest.mark.parametrize("body", ["text", bytearray(b"x"), None, memoryview(b"x")])
def test_a_body_that_is_not_bytes_is_refused(body):
    with pytest.raises(InvalidInput) as info:
        HttpRequest(method="POST", url="https://h/", body=body)
    assert str(info.value) == "HttpRequest.body must be bytes"


def test_reprs_name_header_keys_and_body_sizes_only():
    request = HttpRequest(
        method="POST", url="https://h/t", headers=(("Authorization", "Basic c2VjcmV0"),),
        body=b"code=secret",
    )
    assert repr(request) == (
        "HttpRequest(method='POST', url='https://h/t', headers=['Authorization'], "
        "body=<11 bytes>)"
    )
    response = HttpResponse(status=200, headers=(("Set-Cookie", "s=secret"),), body=b"{}")
    assert repr(response) == "HttpResponse(status=200, headers=['Set-Cookie'], body=<2 bytes>)"
