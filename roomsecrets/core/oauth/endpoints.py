"""Checks on the URLs we send people and secrets to.

RFC 6749 §3.1 and §3.2 require TLS for the authorization and token endpoints.
Plain http is allowed only for loopback hosts (local development and tests,
as RFC 8252 §7.3 does for redirect URIs), or when the caller says so.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import SplitResult, urlsplit

from ..errors import InsecureEndpointError, InvalidInput

__all__ = ["check_endpoint", "check_redirect_uri", "is_loopback_host"]


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1``.

    The one loopback rule: the endpoint checks (plain http allowed) and the
    transport (no proxy) must agree, or a plain-http request could go through a
    proxy in clear text.

    Subdomains of ``localhost`` are not loopback here. RFC 6761 §6.3 asks resolvers to
    answer them with a loopback address, but glibc (and so Python's ``getaddrinfo`` on
    most Linux hosts) asks DNS for them, and whoever answers that DNS query would get
    the code or client secret in clear text. ``localhost`` itself comes from the hosts
    file. RFC 8252 §8.3 recommends the loopback IP literals over any name.
    """
    name = host.lower()
    name = name[:-1] if name.endswith(".") else name  # one trailing dot: the FQDN form
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint(url: object, *, what: str, allow_insecure_http: bool = False) -> SplitResult:
    """Validate an OAuth endpoint URL and return it split.

    Raises :class:`InvalidInput` for a malformed URL or one with a fragment
    (RFC 6749 §3.1: "The endpoint URI MUST NOT include a fragment component"),
    and :class:`InsecureEndpointError` for ``http`` on a non-loopback host
    unless ``allow_insecure_http``.
    """
    if not isinstance(url, str) or not url:
        raise InvalidInput(f"{what} must be a non-empty URL string")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a malformed port
    except ValueError:
        raise InvalidInput(f"{what} is not a valid URL") from None
    del port
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidInput(f"{what} must be an absolute http(s) URL with a host")
    if parts.fragment or url.endswith("#"):
        raise InvalidInput(f"{what} must not contain a fragment (RFC 6749 §3.1)")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput(f"{what} must not contain credentials")
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback_host(parts.hostname):
        raise InsecureEndpointError(
            f"{what} must use https (RFC 6749 §3.1, §3.2); http is allowed only for "
            f"loopback hosts, got host {parts.hostname!r}"
        )
    return parts


def check_redirect_uri(uri: object, *, allow_insecure_http: bool = False) -> str:
    """Validate a redirect URI: an absolute https URL, or http on a loopback host.

    The code travels to it in the person's browser, so the rules of
    :func:`check_endpoint` apply: https (RFC 6749 §3.1.2.1 asks for TLS), plain
    http only on loopback (RFC 8252 §7.3) or with ``allow_insecure_http``, a
    host, no credentials and no fragment (RFC 6749 §3.1.2). Custom schemes are
    refused: the room server is the client here, never a native app.
    Raises :class:`InvalidInput` (:class:`InsecureEndpointError` for plain http).

    >>> check_redirect_uri("http://127.0.0.1:8700/oauth/callback")
    'http://127.0.0.1:8700/oauth/callback'
    >>> check_redirect_uri("ftp://x/cb")
    Traceback (most recent call last):
    ...
    roomsecrets.core.errors.InvalidInput: redirect_uri must be an absolute http(s) URL with a host
    """
    check_endpoint(uri, what="redirect_uri", allow_insecure_http=allow_insecure_http)
    assert isinstance(uri, str)  # check_endpoint refused anything else
    return uri
