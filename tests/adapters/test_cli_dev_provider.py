"""``roomsecrets dev-provider``: the strict development provider
(``roomsecrets.testing.OAuthProvider``) as a command. It serves until SIGINT or SIGTERM
(exit 0), says on stderr that it is serving and where each endpoint is (what its RFC
8414 metadata says too), registers several clients with each option going to the
``--client-id`` before it, approves as ``--user`` and issues tokens for
``--access-token-ttl`` seconds; a bad command line is a usage error."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest

from roomsecrets.cli import DEFAULT_PROVIDER_PORT, _build_parser
from roomsecrets.dev_provider import ApprovalError, approve, authorization_redirect
from tests.support import leak_watch

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 60
SERVING = re.compile(
    r"roomsecrets: dev-provider serving on (http://127\.0\.0\.1:(\d+)); it approves every "
    r"authorization as (.+); Ctrl-C stops"
)
ENDPOINTS = ("issuer", "metadata", "authorization_endpoint", "token_endpoint",
             "revocation_endpoint", "userinfo_endpoint")


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSECRETS_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def argv(*flags: str) -> list[str]:
    return [sys.executable, "-m", "roomsecrets", "dev-provider", *flags]


class Provider:
    """``dev-provider --port 0`` running, with the lines it printed at start."""

    def __init__(self, *flags: str, clients: int) -> None:
        self.process = subprocess.Popen(argv("--port", "0", *flags), env=cli_env(),
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.process.stderr is not None
        first = self.process.stderr.readline()
        serving = SERVING.fullmatch(first.rstrip("\n"))
        assert serving, first + self.process.stderr.read()
        self.base_url, self.user = serving.group(1), serving.group(3)
        self.lines = [first] + [self.process.stderr.readline() for _ in range(6 + clients)]
        self.endpoints = dict(line.split() for line in self.lines[1:7])
        self.clients = [line.strip() for line in self.lines[7:]]

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, str]:
        self.process.send_signal(signum)
        _, rest = self.process.communicate(timeout=TIMEOUT)
        return self.process.returncode, rest


@pytest.fixture
def one_client() -> Iterator[Provider]:
    running = Provider("--client-id", "app", "--redirect-uri", "http://127.0.0.1:1/cb", clients=1)
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.stop()


def get_json(url: str, headers: Optional[dict[str, str]] = None) -> tuple[int, Any]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=10) as got:
            return got.status, json.loads(got.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def post_form(url: str, fields: dict[str, str]) -> tuple[int, Any]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, data=urllib.parse.urlencode(fields).encode())
    try:
        with opener.open(request, timeout=10) as got:
            return got.status, json.loads(got.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def authorization_url(base: str, client_id: str, redirect_uri: str, challenge: str) -> str:
    return base + "/authorize?" + urllib.parse.urlencode({
        "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
        "state": secrets.token_urlsafe(16), "code_challenge": challenge,
        "code_challenge_method": "S256", "scope": "mail.read",
    })


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


# --- serving ----------------------------------------------------------------------------


def test_it_says_it_serves_then_its_issuer_and_endpoints_which_its_metadata_confirms(
    one_client: Provider,
) -> None:
    base = one_client.base_url
    assert int(base.rsplit(":", 1)[1]) != 0  # --port 0: the port it got
    assert list(one_client.endpoints) == list(ENDPOINTS)
    assert one_client.endpoints["issuer"] == base  # the issuer is the base URL
    assert one_client.endpoints["metadata"] == base + "/.well-known/oauth-authorization-server"
    status, metadata = get_json(one_client.endpoints["metadata"])
    assert status == 200
    for name in ENDPOINTS:
        if name != "metadata":
            assert metadata[name] == one_client.endpoints[name]
    assert one_client.clients == [
        "client app: public, PKCE S256 required; redirect URI http://127.0.0.1:1/cb"]
    assert one_client.user == "person@example.test"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_stop_it_cleanly(one_client: Provider, signum: int) -> None:
    port = int(one_client.base_url.rsplit(":", 1)[1])
    code, rest = one_client.stop(signum)
    assert (code, rest) == (0, "")
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_each_client_takes_the_options_after_its_client_id() -> None:
    secret = "client-secret-" + secrets.token_hex(8)
    leak_watch.remember_secret(secret)
    a, b1, b2 = (f"http://127.0.0.1:1/{name}" for name in ("a", "b1", "b2"))
    running = Provider(
        # Before the first --client-id: the first client's.
        "--redirect-uri", a, "--client-id", "first",
        "--client-id", "second", "--redirect-uri", b1, "--client-secret", secret,
        "--client-auth-method", "client_secret_post", "--redirect-uri", b2,
        "--user", "alice@example.test", "--access-token-ttl", "120",
        clients=2,
    )
    try:
        assert running.clients == [
            f"client first: public, PKCE S256 required; redirect URI {a}",
            "client second: confidential, client_secret_post, PKCE S256 required; "
            f"redirect URIs {b1} {b2}",
        ]
        base = running.base_url
        verifier = secrets.token_urlsafe(48)
        challenge = s256(verifier)
        # Each redirect URI is its own client's, and only its own.
        assert authorization_redirect(authorization_url(base, "first", a, challenge)).startswith(
            a + "?code=")
        for client_id, uri in (("first", b1), ("second", a)):
            with pytest.raises(ApprovalError) as refused:
                authorization_redirect(authorization_url(base, client_id, uri, challenge))
            assert refused.value.status == 400
        code, _ = approve(authorization_url(base, "second", b2, challenge))
        exchange = {"grant_type": "authorization_code", "code": code, "redirect_uri": b2,
                    "code_verifier": verifier, "client_id": "second"}
        # Registered with client_secret_post: the secret in the body, not a header.
        status, tokens = post_form(base + "/token", {**exchange, "client_secret": secret})
        assert status == 200, tokens
        assert tokens["expires_in"] == 120  # --access-token-ttl
        status, who = get_json(base + "/userinfo",
                               {"Authorization": f"Bearer {tokens['access_token']}"})
        assert (status, who["sub"], who["client_id"]) == (200, "alice@example.test", "second")
    finally:
        _, rest = running.stop()
    assert secret not in "".join(running.lines) + rest


def test_a_confidential_client_without_a_method_uses_client_secret_basic() -> None:
    running = Provider("--client-id", "c", "--client-secret", "s3cret-value-1",
                       "--redirect-uri", "http://127.0.0.1:1/cb", clients=1)
    try:
        assert running.clients == ["client c: confidential, client_secret_basic, "
                                   "PKCE S256 required; redirect URI http://127.0.0.1:1/cb"]
    finally:
        running.stop()


def test_the_default_port_is_8710_and_another_can_be_chosen() -> None:
    parse = _build_parser().parse_args
    base = ["dev-provider", "--client-id", "a", "--redirect-uri", "http://x/cb"]
    assert DEFAULT_PROVIDER_PORT == 8710
    assert parse(base).port == 8710
    assert parse([*base, "--port", "9100"]).port == 9100
    assert parse([*base, "--port", "0"]).port == 0


def test_a_port_in_use_is_one_line_naming_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            argv("--port", str(port), "--client-id", "a", "--redirect-uri", "http://x/cb"),
            env=cli_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 1
    assert done.stderr == (f"roomsecrets: error: cannot listen on 127.0.0.1:{port}: Address "
                           "already in use (listen_failed)\n")


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--client-id", "a"], "dev-provider: the following arguments are required: "
         "--redirect-uri"),
        (["--redirect-uri", "http://x/cb"], "dev-provider: the following arguments are "
         "required: --client-id"),
        (["--client-id", "a", "--redirect-uri", "http://x/cb", "--client-id", "b"],
         "dev-provider: client b has no --redirect-uri (give its --redirect-uri after its "
         "--client-id)"),
        (["--client-id", "a", "--redirect-uri", "http://x/cb", "--client-id", "a",
          "--redirect-uri", "http://y/cb"], "dev-provider: --client-id a is given twice"),
        (["--client-id", "a", "--client-secret", "s", "--client-secret", "t",
          "--redirect-uri", "http://x/cb"],
         "dev-provider: --client-secret is given twice for client a"),
        (["--client-id", "a", "--client-auth-method", "client_secret_post",
          "--redirect-uri", "http://x/cb"],
         "dev-provider: --client-auth-method without --client-secret for client a"),
        (["--client-id", "a", "--redirect-uri", "/cb"],
         "dev-provider: client a (--redirect-uri /cb): redirect URIs are absolute and have no "
         "fragment (RFC 6749 §3.1.2)"),
        (["--client-id", "a", "--redirect-uri", "http://x/cb", "--client-auth-method", "none"],
         None),
        (["--client-id", "a", "--redirect-uri", "http://x/cb", "--port", "65536"],
         "dev-provider: argument --port: '65536' is not a port: use 0 to 65535 (0: a free "
         "one)"),
        (["--client-id", "a", "--redirect-uri", "http://x/cb", "--access-token-ttl", "0"],
         "dev-provider: argument --access-token-ttl: '0' must be more than 0 seconds"),
    ],
)
def test_a_bad_command_line_is_a_usage_error(flags: list[str], said: Optional[str]) -> None:
    done = subprocess.run(argv("--port", "0", *flags), env=cli_env(), capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].endswith(" (usage_error)"), done.stderr
    if said is not None:
        assert lines[0] == f"roomsecrets: error: {said} (usage_error)"
