"""Pinned: which endpoint and redirect URLs are accepted, and what the refusals say."""

from __future__ import annotations

import pytest

from roomsecrets.core.errors import InsecureEndpointError, InvalidInput
from roomsecrets.core.oauth.endpoints import check_endpoint, check_redirect_uri, is_loopback_host


@pytest.mark.parametrize(
    "host",
    ["localhost", "LOCALHOST", "localhost.", "LocalHost.", "127.0.0.1", "127.255.255.254", "::1"],
)
def test_loopback_hosts(host):
    assert is_loopback_host(host)


@pytest.mark.parametrize("host", ["localhost.", "app.localhost", "localhost.example", "127.0.0.1"])
def test_the_transport_bypasses_proxies_for_exactly_the_hosts_allowed_plain_http(host):
    # If the two rules disagreed, a plain-http request to a host the endpoint
    # check calls loopback could go through an HTTP proxy in clear text.
    from roomsecrets.core.oauth.urllib_transport import _check_url

    _label, bypasses_proxy = _check_url(f"http://{host}:8080/token")
    assert bypasses_proxy is is_loopback_host(host)


@pytest.mark.parametrize(
    "host",
    ["localhost.example", "localhost..", "mylocalhost", "128.0.0.1", "10.0.0.1", "::2", "",
     "example.com", "0.0.0.0",
     # Resolved through DNS on glibc hosts, whatever RFC 6761 §6.3 asks (see the rule).
     "app.localhost", "app.localhost.", "a.b.LOCALHOST"],
)
def test_hosts_that_are_not_loopback(host):
    assert not is_loopback_host(host)


def refusal(url, what="token_endpoint", error=InvalidInput, **kw):
    with pytest.raises(error) as info:
        check_endpoint(url, what=what, **kw)
    assert type(info.value) is error
    return str(info.value)


def test_an_endpoint_is_returned_split():
    parts = check_endpoint("https://as.example:8443/t?x=1", what="token_endpoint")
    assert (parts.scheme, parts.hostname, parts.port, parts.path, parts.query) == (
        "https", "as.example", 8443, "/t", "x=1"
    )


@pytest.mark.parametrize("url", ["", None, 5, b"https://as.example/"])
def test_an_endpoint_that_is_not_a_non_empty_string_is_refused(url):
    assert refusal(url, what="my_endpoint") == "my_endpoint must be a non-empty URL string"


def test_an_endpoint_with_a_bad_port_is_refused():
    assert refusal("https://as.example:99999/t") == "token_endpoint is not a valid URL"
    assert refusal("https://as.example:x/t") == "token_endpoint is not a valid URL"
    assert refusal("https://[::1/t") == "token_endpoint is not a valid URL"


@pytest.mark.parametrize(
    "url", ["ftp://as.example/t", "as.example/t", "https:///t", "https://:443/t", "//as.example/t"]
)
def test_an_endpoint_that_is_not_absolute_http_with_a_host_is_refused(url):
    assert refusal(url) == "token_endpoint must be an absolute http(s) URL with a host"


@pytest.mark.parametrize("url", ["https://as.example/t#f", "https://as.example/t#"])
def test_an_endpoint_with_a_fragment_even_an_empty_one_is_refused(url):
    assert refusal(url) == "token_endpoint must not contain a fragment (RFC 6749 §3.1)"


@pytest.mark.parametrize(
    "url", ["https://u@as.example/t", "https://:p@as.example/t", "https://u:p@as.example/t"]
)
def test_an_endpoint_with_credentials_is_refused(url):
    assert refusal(url) == "token_endpoint must not contain credentials"


def test_plain_http_to_another_host_is_refused_naming_the_host():
    message = refusal("http://as.example/t", error=InsecureEndpointError)
    assert message == (
        "token_endpoint must use https (RFC 6749 §3.1, §3.2); http is allowed only for "
        "loopback hosts, got host 'as.example'"
    )


def test_plain_http_is_allowed_on_loopback_or_when_asked():
    assert check_endpoint("http://127.0.0.1:9/t", what="e").port == 9
    assert check_endpoint("http://as.example/t", what="e", allow_insecure_http=True).hostname == (
        "as.example"
    )
    assert check_endpoint("https://as.example/t", what="e").scheme == "https"


def redirect_refusal(uri):
    with pytest.raises(InvalidInput) as info:
        check_redirect_uri(uri)
    return str(info.value)


@pytest.mark.parametrize(
    "uri", ["https://app.example/cb", "http://127.0.0.1:9/cb", "http://localhost/cb",
            "http://[::1]:8700/oauth/callback"]
)
def test_an_https_or_loopback_redirect_uri_is_returned_unchanged(uri):
    assert check_redirect_uri(uri) is uri


def test_redirect_uri_refusals_say_why():
    # The rules of an endpoint: the code travels to it (docs/limits.md).
    assert redirect_refusal("") == "redirect_uri must be a non-empty URL string"
    assert redirect_refusal(None) == "redirect_uri must be a non-empty URL string"
    assert redirect_refusal("http://[::1/cb") == "redirect_uri is not a valid URL"
    not_http = "redirect_uri must be an absolute http(s) URL with a host"
    for uri in ("/cb", "ftp://x/cb", "com.example.app:/cb", "myapp:cb", "https:///cb", "http:cb"):
        assert redirect_refusal(uri) == not_http, uri
    assert redirect_refusal("https://app.example/cb#") == (
        "redirect_uri must not contain a fragment (RFC 6749 §3.1)"
    )
    assert redirect_refusal("https://user:pw@app.example/cb") == (
        "redirect_uri must not contain credentials"
    )


def test_a_plain_http_redirect_uri_off_loopback_is_insecure_unless_allowed():
    with pytest.raises(InsecureEndpointError, match="http is allowed only for loopback"):
        check_redirect_uri("http://evil.example/cb")
    uri = "http://app.internal/cb"
    assert check_redirect_uri(uri, allow_insecure_http=True) is uri


def test_plain_http_to_a_subdomain_of_localhost_is_refused():
    # glibc asks DNS for app.localhost; plain http there could go to whoever answers.
    with pytest.raises(InsecureEndpointError):
        check_endpoint("http://app.localhost:8080/token", what="token_endpoint")
    assert check_endpoint(
        "http://app.localhost:8080/token", what="token_endpoint", allow_insecure_http=True
    ).hostname == "app.localhost"
