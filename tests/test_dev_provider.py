"""The public development provider: ``roomsecrets.testing.OAuthProvider`` loads
lazily, stays standard-library only, and reports every secret it sees."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import urllib.parse
import urllib.request

import pytest

import roomsecrets.testing as testing
from roomsecrets import dev_provider


def test_importing_roomsecrets_testing_does_not_load_the_provider() -> None:
    code = (
        "import sys, roomsecrets.testing;"
        "print('roomsecrets.dev_provider' in sys.modules, 'http.server' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_the_public_names_are_the_dev_provider_ones() -> None:
    assert testing.OAuthProvider is dev_provider.OAuthProvider
    assert testing.approve is dev_provider.approve
    assert testing.CannedResponse is dev_provider.CannedResponse
    assert testing.TokenQuirk is dev_provider.TokenQuirk


def test_the_provider_imports_nothing_outside_the_standard_library() -> None:
    code = (
        "import sys; before = set(sys.modules); import roomsecrets.dev_provider;"
        "new = {m.split('.')[0] for m in set(sys.modules) - before};"
        "print(sorted(new & {'aiohttp', 'boto3', 'jwt', 'tests', 'pytest'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_on_secret_sees_the_code_the_state_the_verifier_and_the_tokens() -> None:
    seen: list[str] = []
    redirect = "https://app.example/cb"
    verifier = "v" * 50
    challenge = dev_provider._s256(verifier)
    with testing.OAuthProvider(on_secret=seen.append) as provider:
        provider.register_client("app", redirect_uris=[redirect])
        query = urllib.parse.urlencode(
            {
                "response_type": "code",
                "client_id": "app",
                "redirect_uri": redirect,
                "state": "state-" + "s" * 30,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        code, state = testing.approve(f"{provider.authorization_endpoint}?{query}")
        body = urllib.parse.urlencode(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect,
                "client_id": "app",
                "code_verifier": verifier,
            }
        ).encode()
        request = urllib.request.Request(provider.token_endpoint, data=body, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = response.read().decode()
    assert state in seen and code in seen and verifier in seen
    issued = [value for value in seen if value in answer]
    assert len(issued) == 2  # the access token and the refresh token
    assert repr(provider) == "OAuthProvider(stopped)"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_it_listens_on_the_port_it_is_given_and_its_issuer_names_it() -> None:
    port = _free_port()
    with testing.OAuthProvider(port=port) as provider:
        assert provider.issuer == provider.base_url == f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(
            provider.issuer + "/.well-known/oauth-authorization-server", timeout=10
        ) as answer:
            assert b'"issuer": "http://127.0.0.1:%d"' % port in answer.read()


def test_an_ipv6_host_is_written_in_brackets() -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with testing.OAuthProvider(host="::1") as provider:
        assert re.fullmatch(r"http://\[::1\]:\d+", provider.issuer)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(provider.issuer + "/.well-known/oauth-authorization-server",
                         timeout=10) as answer:
            assert answer.status == 200


def test_a_port_out_of_range_is_refused_before_anything_listens() -> None:
    for port in (-1, 65536, True):
        with pytest.raises(ValueError, match="port must be"):
            testing.OAuthProvider(port=port)
