"""Grant holes closed: one meaning for a scope, nothing fetched for a denied request,
the redirect URI checked as documented, every argument checked before any lookup."""

from __future__ import annotations

import asyncio

import pytest

from roomsecrets.core import errors
from roomsecrets.core.grants import (
    OAuthRule,
    SecretsGrant,
    check_oauth_request,
    check_oauth_request_before_discovery,
)
from tests.core.service_kit import make_service, room


def run(coro):
    return asyncio.run(coro)


class CountingNoNetwork:
    """A transport that records every request and answers none (the test then fails)."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    async def send(self, request, *, timeout, max_body):
        self.urls.append(request.url)
        raise AssertionError(f"unexpected request to {request.url}")


SLACKISH = SecretsGrant(oauth=[OAuthRule(scopes=["channels:*"])])


# --- one meaning for a scope ------------------------------------------------------


def test_the_grant_check_splits_a_scope_on_commas_as_providers_do():
    decision = check_oauth_request(
        SLACKISH, target="alice", client_id="c", authorization_endpoint="https://a/auth",
        token_endpoint="https://a/token", scopes=["channels:read,admin"])
    assert not decision.allowed
    assert "scope 'admin' matches none of ['channels:*']" in decision.reason


@pytest.mark.parametrize("call", ["request", "offline"])
@pytest.mark.parametrize("scope", ["channels:read,admin", "channels:read admin", "a,"])
def test_a_scope_holding_a_comma_or_space_is_refused_before_anything(call, scope):
    async def scenario():
        transport = CountingNoNetwork()
        service = make_service(transport=transport)
        agent, _alice = room(service, SLACKISH)
        args = dict(client_id="c", authorization_endpoint="https://a.example/auth",
                    token_endpoint="https://a.example/token", scopes=[scope])
        with pytest.raises(errors.InvalidInput, match="scope"):
            if call == "request":
                await agent.request_oauth_token(**args, from_participant_id="alice",
                                                redirect_uri="https://app.example/cb")
            else:
                await agent.get_offline_oauth_token(**args, delegated_by="alice")
        assert service.audit.events == []
        assert transport.urls == []
        assert len(service.registry) == 0

    run(scenario())


# --- nothing is fetched for a request the grant already denies ---------------------


DENIALS = {
    "client id": SecretsGrant(oauth=[OAuthRule(client_id="other-app")]),
    "participant": SecretsGrant(oauth=[OAuthRule(participants=["bob"])]),
    "issuer": SecretsGrant(oauth=[OAuthRule(issuer="https://accounts.example.com")]),
    "scopes": SecretsGrant(oauth=[OAuthRule(scopes=["mail.*"])]),
    "given endpoint": SecretsGrant(oauth=[OAuthRule(token_endpoint="https://as.example/*")]),
}


@pytest.mark.parametrize("call", ["request", "offline"])
@pytest.mark.parametrize("why", sorted(DENIALS))
def test_a_request_no_rule_can_allow_fetches_nothing(call, why):
    async def scenario():
        transport = CountingNoNetwork()
        service = make_service(transport=transport)
        agent, _alice = room(service, DENIALS[why])
        args = dict(client_id="mailbot-app", issuer="http://127.0.0.1:22",
                    scopes=["files.read"] if why == "scopes" else ["mail.read"])
        if why == "given endpoint":
            args["token_endpoint"] = "http://127.0.0.1:22/token"
        with pytest.raises(errors.GrantDenied):
            if call == "request":
                await agent.request_oauth_token(**args, from_participant_id="alice",
                                                redirect_uri="https://app.example/cb")
            else:
                await agent.get_offline_oauth_token(**args, delegated_by="alice")
        assert transport.urls == []  # no port probe through the issuer
        (event,) = service.audit.events
        assert event.outcome == "denied" and event.detail("issuer") == "http://127.0.0.1:22"

    run(scenario())


def test_an_issuer_rule_allows_that_issuer_only_and_round_trips():
    rule = OAuthRule(issuer="https://accounts.example.com")
    grant = SecretsGrant(oauth=[rule])
    assert SecretsGrant.from_dict(grant.to_dict()) == grant
    assert grant.to_dict()["oauth"][0]["issuer"] == "https://accounts.example.com"
    assert "issuer" not in SecretsGrant.allow_all().to_dict()["oauth"][0]
    common = dict(target="alice", client_id="c", authorization_endpoint="https://a/auth",
                  token_endpoint="https://a/token", scopes=None)
    assert check_oauth_request(grant, **common, issuer="https://accounts.example.com").allowed
    named = check_oauth_request(grant, **common, issuer="https://evil.example")
    assert not named.allowed and "issuer 'https://evil.example'" in named.reason
    unnamed = check_oauth_request(grant, **common)
    assert not unnamed.allowed and "the request names none" in unnamed.reason


# --- the redirect URI is checked as docs/limits.md says -----------------------------


@pytest.mark.parametrize("uri, error", [
    ("http://evil.example/cb", errors.InsecureEndpointError),
    ("https://user:pw@app.example/cb", errors.InvalidInput),
    ("ftp://x/cb", errors.InvalidInput),
    ("com.example.app:/cb", errors.InvalidInput),
])
def test_a_redirect_uri_the_docs_forbid_is_refused_before_a_prompt(uri, error):
    async def scenario():
        transport = CountingNoNetwork()
        service = make_service(transport=transport)
        agent, _alice = room(service)
        with pytest.raises(error):
            await agent.request_oauth_token(
                client_id="c", authorization_endpoint="https://a.example/auth",
                token_endpoint="https://a.example/token", from_participant_id="alice",
                redirect_uri=uri)
        assert len(service.registry) == 0
        assert service.audit.events == []

    run(scenario())


# --- every argument is checked before any lookup (with issuer=) ---------------------


BAD_ARGUMENTS = {
    "client_id": dict(client_id="bad\nid"),
    "participant": dict(owner="x" * 300),
    "issuer": dict(issuer="https://as.example/?query"),
    "authorization_endpoint": dict(authorization_endpoint="https://a.example/#f"),
    "token_endpoint": dict(token_endpoint="http://remote.example/token"),
    "scope": dict(scopes=["a,b"]),
}


@pytest.mark.parametrize("call", ["request", "offline"])
@pytest.mark.parametrize("bad", sorted(BAD_ARGUMENTS))
def test_with_an_issuer_a_bad_argument_is_refused_before_the_metadata_fetch(call, bad):
    async def scenario():
        transport = CountingNoNetwork()
        service = make_service(transport=transport)
        agent, _alice = room(service)
        args = dict(client_id="mailbot-app", issuer="https://as.example", scopes=["mail.read"],
                    owner="alice")
        args.update(BAD_ARGUMENTS[bad])
        owner = args.pop("owner")
        with pytest.raises(errors.InvalidInput):
            if call == "request":
                await agent.request_oauth_token(**args, from_participant_id=owner,
                                                redirect_uri="https://app.example/cb")
            else:
                await agent.get_offline_oauth_token(**args, delegated_by=owner)
        assert transport.urls == []
        assert service.audit.events == []

    run(scenario())


def test_before_discovery_a_rule_naming_the_issuer_asked_for_may_still_match():
    grant = SecretsGrant(oauth=[OAuthRule(issuer="https://accounts.example.com",
                                          token_endpoint="https://oauth2.example.com/*")])
    maybe = check_oauth_request_before_discovery(
        grant, target="alice", client_id="c", issuer="https://accounts.example.com",
        authorization_endpoint=None, token_endpoint=None, scopes=None)
    assert maybe.allowed  # the endpoints are not known yet: the metadata decides
    given = check_oauth_request_before_discovery(
        grant, target="alice", client_id="c", issuer="https://accounts.example.com",
        authorization_endpoint=None, token_endpoint="https://evil.example/token", scopes=None)
    assert not given.allowed and "token_endpoint 'https://evil.example/token'" in given.reason


@pytest.mark.parametrize("name", ["issuer", "authorization_endpoint", "token_endpoint"])
def test_before_discovery_a_value_of_the_wrong_type_is_named(name):
    args = dict(target="alice", client_id="c", issuer="https://as.example",
                authorization_endpoint=None, token_endpoint=None, scopes=None)
    args[name] = 42
    with pytest.raises(errors.InvalidInput, match=f"^{name} must be a string, got int$"):
        check_oauth_request_before_discovery(SecretsGrant.allow_all(), **args)


def test_the_full_check_names_an_issuer_of_the_wrong_type_and_a_missing_issuer():
    common = dict(target="alice", client_id="c", authorization_endpoint="https://a/auth",
                  token_endpoint="https://a/token", scopes=None)
    with pytest.raises(errors.InvalidInput, match=r"^issuer must be a string, got int$"):
        check_oauth_request(SecretsGrant.allow_all(), **common, issuer=42)
    grant = SecretsGrant(oauth=[OAuthRule(issuer="https://accounts.example.com")])
    assert check_oauth_request(grant, **common).reason == (
        "no oauth rule matches: rule 0 issuer: the request names none, and the rule needs "
        "'https://accounts.example.com'")


def test_a_rule_naming_an_issuer_allows_a_call_by_that_issuer_after_discovery():
    # The full grant check (after discovery) must see the issuer asked for: a rule
    # that needs it matches no request that names none.
    from tests.core.discovery_kit import offline_by_issuer
    from tests.core.service_kit import running_provider

    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, _alice = room(service, grant=SecretsGrant(
                oauth=[OAuthRule(issuer=provider.issuer)]))
            assert await offline_by_issuer(agent, provider.issuer) is None
            [event] = service.audit.events
            assert (event.action, event.outcome) == ("oauth.get_offline_token", "allowed")

    run(scenario())
