"""The CLI's provider flags: ``oauth2 request|get --issuer`` learns the endpoints from
the provider's metadata (RFC 8414), ``oauth2 provide --iss`` passes the redirect's
``iss`` on (RFC 9207), ``--client-auth-method`` sends the secret as the client is
registered, and random values that start with '-' are values, not options."""

from __future__ import annotations

import json
import urllib.parse

import pytest

from tests.adapters.test_cli import (
    CLIENT_ID,
    ROOM,
    Cli,
    FakeProvider,
    Prompts,
    finish,
    one_error_line,
    provider_accepts,
    start_request,
)
from tests.support import leak_watch
from tests.support.headless_person import authorization_redirect

from . import test_cli as _cli

# The CLI tests' fixtures: a server subprocess, the dev provider, the CLI runner.
server, provider, cli = _cli.server, _cli.provider, _cli.cli


def test_request_and_get_by_issuer_and_provide_checks_iss(
    cli: Cli, provider: FakeProvider
) -> None:
    agent = cli.mint("agent-iss", "--grant", "allow-all")
    fay = cli.mint("fay")
    by_issuer = ["--client-id", CLIENT_ID, "--issuer", provider.issuer]
    prompts = Prompts(cli, fay, "--json")
    try:
        provider.register_client(
            CLIENT_ID, redirect_uris=[cli.server.callback, "https://app.example/cb"]
        )
        asking = start_request(cli, agent, "--from-participant-id", "fay", *by_issuer,
                               "--redirect-uri", "https://app.example/cb")
        prompt = json.loads(prompts.next_line())
        # The endpoints came from the metadata: the prompt points at the provider.
        assert prompt["authorization_url"].startswith(provider.authorization_endpoint + "?")
        location = authorization_redirect(prompt["authorization_url"])
        answer = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
        assert answer["iss"] == provider.issuer
        provide = ["oauth2", "provide", "--room", ROOM, f"--request-id={prompt['request_id']}",
                   f"--code={answer['code']}", f"--state={answer['state']}"]
        # The provider promises iss (its metadata says so): without it, or with another
        # issuer's, the answer is refused and the request stays open.
        missing = cli.run(*provide, token=fay, check=False)
        assert missing.returncode != 0 and "iss" in one_error_line(missing)
        wrong = cli.run(*provide, "--iss=https://other.example", token=fay, check=False)
        assert wrong.returncode != 0 and "iss" in one_error_line(wrong)
        cli.run(*provide, f"--iss={answer['iss']}", token=fay)
        status, token, stderr = finish(cli, asking, prints_secret=True)
    finally:
        prompts.stop()
    assert status == 0, stderr
    assert provider_accepts(provider, token.strip())
    got = cli.run("oauth2", "get", "--room", ROOM, "--delegated-by", "fay", *by_issuer,
                  token=agent, prints_secret=True)
    assert got.stdout.strip() == token.strip()
    cli.assert_no_secrets(provider.seen | {agent, fay})  # type: ignore[attr-defined]


def test_without_issuer_both_endpoints_are_needed(cli: Cli, provider: FakeProvider) -> None:
    agent = cli.mint("agent-noiss", "--grant", "allow-all")
    done = cli.run("oauth2", "get", "--room", ROOM, "--delegated-by", "fay",
                   "--client-id", CLIENT_ID, "--token-endpoint", provider.token_endpoint,
                   token=agent, check=False)
    assert done.returncode != 0
    assert "issuer" in one_error_line(done)


def _get(url: str) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as page:
            return int(page.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_the_callback_passes_the_redirects_iss_on(cli: Cli, provider: FakeProvider) -> None:
    agent = cli.mint("agent-cb", "--grant", "allow-all")
    gus = cli.mint("gus")
    prompts = Prompts(cli, gus, "--json")
    try:
        asking = start_request(cli, agent, "--from-participant-id", "gus",
                               "--client-id", CLIENT_ID, "--issuer", provider.issuer)
        prompt = json.loads(prompts.next_line())
        location = authorization_redirect(prompt["authorization_url"])
        assert location.startswith(cli.server.callback + "?")
        parts = urllib.parse.urlsplit(location)
        query = urllib.parse.parse_qsl(parts.query)
        assert ("iss", provider.issuer) in query
        # Stripped of its iss (or with another issuer's), the callback is refused and
        # the request stays open for the real redirect.
        for forged in ([(k, v) for k, v in query if k != "iss"],
                       [(k, "https://other.example" if k == "iss" else v) for k, v in query]):
            forged_url = parts._replace(query=urllib.parse.urlencode(forged)).geturl()
            assert _get(forged_url) == 400
        assert _get(location) == 200
        status, token, stderr = finish(cli, asking, prints_secret=True)
    finally:
        prompts.stop()
    assert status == 0, stderr
    assert provider_accepts(provider, token.strip())


def test_client_auth_method_sends_the_secret_as_the_client_is_registered(
    cli: Cli, provider: FakeProvider
) -> None:
    secret = "p+o/s=t&:%" + "x" * 12
    leak_watch.remember_secret(secret)
    provider.register_client("post-client", client_secret=secret,
                             auth_method="client_secret_post", redirect_uris=[cli.server.callback])
    agent = cli.mint("agent-post", "--grant", "allow-all")
    hal = cli.mint("hal")
    flags = ["--client-id", "post-client", "--authorization-endpoint",
             provider.authorization_endpoint, "--token-endpoint", provider.token_endpoint,
             f"--client-secret={secret}"]
    prompts = Prompts(cli, hal, "--json")
    try:
        # Sent the default way (client_secret_basic), the provider refuses the client.
        basic = start_request(cli, agent, "--from-participant-id", "hal", *flags)
        prompt = json.loads(prompts.next_line())
        # The provider refused the exchange: the callback page says so with a 502.
        assert _get(authorization_redirect(prompt["authorization_url"])) == 502
        status, _, stderr = finish(cli, basic, prints_secret=False)
        assert status != 0 and "invalid_client" in stderr
        asking = start_request(cli, agent, "--from-participant-id", "hal", *flags,
                               "--client-auth-method", "client_secret_post")
        prompt = json.loads(prompts.next_line())
        assert _get(authorization_redirect(prompt["authorization_url"])) == 200
        status, token, stderr = finish(cli, asking, prints_secret=True)
    finally:
        prompts.stop()
    assert status == 0, stderr
    assert provider_accepts(provider, token.strip())
    # The stored credential remembers the method: a later get needs no flag.
    got = cli.run("oauth2", "get", "--room", ROOM, "--delegated-by", "hal", *flags,
                  token=agent, prints_secret=True)
    assert got.stdout.strip() == token.strip()
    cli.assert_no_secrets(provider.seen | {agent, hal, secret})  # type: ignore[attr-defined]


@pytest.mark.parametrize("flag", ["--request-id", "--code", "--state", "--iss"])
def test_random_values_starting_with_a_dash_are_values_not_options(flag: str) -> None:
    from roomsecrets.cli import _join_random_values

    value = "-" + "x" * 21  # token_urlsafe draws '-' as the first character 1 time in 64
    joined = _join_random_values(["oauth2", "provide", flag, value, "--room", "r"])
    assert joined == ["oauth2", "provide", f"{flag}={value}", "--room", "r"]
    # A flag given with '=' already, and anything after '--', are left as they are.
    assert _join_random_values([f"{flag}={value}"]) == [f"{flag}={value}"]
    assert _join_random_values(["--", flag, value]) == ["--", flag, value]


def test_provide_takes_a_code_and_state_that_start_with_a_dash(cli: Cli) -> None:
    ivy = cli.mint("ivy")
    done = cli.run("oauth2", "provide", "--room", ROOM, "--request-id", "-no-such-request-id-00",
                   "--code", "-code", "--state", "-state", token=ivy, check=False)
    # Parsed (no usage error, exit status 2): the server says the request is unknown.
    assert done.returncode == 1, done.stderr
    assert "unknown_request" in one_error_line(done)
