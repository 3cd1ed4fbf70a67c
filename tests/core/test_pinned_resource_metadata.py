"""RFC 9728 resource metadata, pinned to the letter: the request sent, every status
boundary, the attributes each error carries, the size cap's exact edge, and the
messages that say which rule refused a document (mutation testing found these open)."""

from __future__ import annotations

import json

import pytest

from roomsecrets.core import errors
from roomsecrets.core.oauth.resource_metadata import (
    build_resource_metadata_request,
    parse_resource_metadata_response,
)

RESOURCE = "https://mcp.example.com/mcp"
AS = "https://auth.example.com"
GOOD = json.dumps({"resource": RESOURCE, "authorization_servers": [AS]}).encode()


def parse(body: bytes = GOOD, status: int = 200, headers=(), max_body: int = 64 * 1024):
    return parse_resource_metadata_response(resource=RESOURCE, status=status, headers=headers,
                                            body=body, now=1000.0, max_body=max_body)


def test_the_request_is_a_get_asking_for_json():
    request = build_resource_metadata_request(RESOURCE)
    assert (request.method, request.url, request.headers) == (
        "GET", RESOURCE, (("Accept", "application/json"),))
    assert request.body == b""


@pytest.mark.parametrize("status", [300, 301, 404, 499])
def test_every_3xx_and_4xx_is_not_found_here_and_carries_its_status(status):
    with pytest.raises(errors.ResourceMetadataNotFound) as found:
        parse(status=status)
    assert found.value.status == status
    assert str(found.value) == f"no resource metadata at this URL (HTTP {status})"


@pytest.mark.parametrize("status", [429, 500, 503])
def test_429_and_5xx_are_unavailable_with_status_and_retry_after(status):
    with pytest.raises(errors.ProviderUnavailable) as down:
        parse(status=status, headers=(("Retry-After", "7"),))
    assert down.value.status == status and down.value.retry_after == 7.0  # seconds
    assert str(down.value) == f"the resource's metadata is unavailable (HTTP {status})"


@pytest.mark.parametrize("status", [201, 204, 299])
def test_another_2xx_is_refused_with_its_status(status):
    with pytest.raises(errors.InvalidResourceMetadata) as refused:
        parse(status=status)
    assert refused.value.status == status
    assert str(refused.value) == (
        f"the resource metadata answer is HTTP {status}, not 200 (RFC 9728 §3.2)")


def test_the_size_cap_is_inclusive_and_its_error_says_both_sizes():
    assert parse(max_body=len(GOOD)).resource == RESOURCE
    with pytest.raises(errors.ResponseTooLarge) as large:
        parse(max_body=len(GOOD) - 1)
    assert large.value.status == 200
    assert str(large.value) == (
        f"resource metadata of {len(GOOD)} bytes exceeds the {len(GOOD) - 1}-byte cap")


def test_what_is_refused_is_named_with_the_status():
    with pytest.raises(errors.InvalidResourceMetadata) as other:
        parse(json.dumps({"resource": "https://x.example/", "authorization_servers": [AS]}
                         ).encode())
    assert other.value.status == 200
    assert str(other.value) == (
        "the resource metadata names resource 'https://x.example/', not "
        f"'{RESOURCE}'; its data must not be used (RFC 9728 §3.3)")
    with pytest.raises(errors.InvalidResourceMetadata) as typed:
        parse(json.dumps({"resource": 5, "authorization_servers": [AS]}).encode())
    assert "names resource 'int'" in str(typed.value)
    with pytest.raises(errors.InvalidResourceMetadata) as none:
        parse(json.dumps({"resource": RESOURCE, "authorization_servers": []}).encode())
    assert none.value.status == 200
    assert str(none.value) == (
        "the resource metadata names no authorization_servers (RFC 9728 §2): "
        "nobody to ask for a token")
    with pytest.raises(errors.InvalidResourceMetadata) as bad:
        parse(json.dumps({"resource": RESOURCE, "authorization_servers": ["ftp://x"]}).encode())
    assert bad.value.status == 200
    assert str(bad.value).startswith(
        "the resource metadata's authorization server is unusable: ")
    with pytest.raises(errors.InvalidResourceMetadata) as garbage:
        parse(b"{not json")
    assert garbage.value.status == 200
    assert str(garbage.value) == (
        "the resource metadata is not a JSON object (RFC 9728 §3.2; 9 bytes)")


def test_sixteen_authorization_servers_are_read_and_no_more():
    servers = [f"https://as{i}.example.com" for i in range(20)]
    found = parse(json.dumps({"resource": RESOURCE, "authorization_servers": servers}).encode())
    assert found.authorization_servers == tuple(servers[:16])


def test_scopes_are_kept_only_as_a_list_of_strings_and_an_empty_name_is_none():
    found = parse(json.dumps({"resource": RESOURCE, "authorization_servers": [AS],
                              "scopes_supported": ["a", 1], "resource_name": ""}).encode())
    assert found.scopes_supported is None and found.resource_name is None
    found = parse(json.dumps({"resource": RESOURCE, "authorization_servers": [AS],
                              "scopes_supported": "a b", "resource_name": 7}).encode())
    assert found.scopes_supported is None and found.resource_name is None
