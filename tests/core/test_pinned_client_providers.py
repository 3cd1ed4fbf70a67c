"""Pinned: what ``SecretsClient`` checks and chooses for discovery (``issuer=``),
``client_auth_method`` and revocation on delete (issue #12, mutation pass on the code
that added them)."""

from __future__ import annotations

import asyncio
import json

import pytest

from roomsecrets.core import errors
from roomsecrets.core.grants import SecretsGrant
from roomsecrets.core.inputs import MAX_CLIENT_SECRET
from roomsecrets.core.oauth.http import HttpResponse
from tests.core.service_kit import approved, make_service, offline, room, running_provider


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize("call", ["offline", "request"])
def test_a_client_secret_is_checked_up_to_its_limit_and_named_in_the_error(call):
    async def scenario():
        with running_provider() as provider:
            service = make_service()
            agent, _alice = room(service)

            async def use(secret):
                if call == "offline":
                    return await offline(agent, provider, client_secret=secret)
                return await agent.request_oauth_token(
                    client_id="mailbot-app", authorization_endpoint=provider.authorization_endpoint,
                    token_endpoint=provider.token_endpoint, scopes=["mail.read"],
                    from_participant_id="nobody-here", redirect_uri="https://app.example.com/cb",
                    client_secret=secret,
                )

            for bad, message in [
                ("x" * (MAX_CLIENT_SECRET + 1), f"client_secret must be a string of 1-{MAX_CLIENT_SECRET} characters"),
                ("", f"client_secret must be a string of 1-{MAX_CLIENT_SECRET} characters"),
                ("a\nb", "client_secret must be printable ASCII (RFC 6749 Appendix A)"),
            ]:
                with pytest.raises(errors.InvalidInput) as info:
                    await use(bad)
                assert str(info.value) == message
            # At the limit it is accepted: the call gets past every check.
            if call == "offline":
                assert await use("x" * MAX_CLIENT_SECRET) is None
            else:
                with pytest.raises(errors.ParticipantNotConnected):
                    await use("x" * MAX_CLIENT_SECRET)

    run(scenario())


def args_for(call, **kw):
    args = dict(client_id="mailbot-app", scopes=["mail.read"])
    if call == "request":
        args.update(from_participant_id="alice", redirect_uri="https://app.example.com/cb")
    else:
        args.update(delegated_by="alice")
    args.update(kw)
    return args


async def call_as(agent, call, **kw):
    if call == "request":
        return await agent.request_oauth_token(**args_for(call, **kw))
    return await agent.get_offline_oauth_token(**args_for(call, **kw))


REQUIRED = "authorization_endpoint and token_endpoint are required unless issuer is given"


@pytest.mark.parametrize("call", ["offline", "request"])
@pytest.mark.parametrize("left_out", ["authorization_endpoint", "token_endpoint", "both"])
def test_without_an_issuer_both_endpoints_are_required(call, left_out):
    async def scenario():
        service = make_service(transport=NoNetwork())
        agent, _alice = room(service)
        endpoints = {
            "authorization_endpoint": "https://as.example/authorize",
            "token_endpoint": "https://as.example/token",
        }
        if left_out == "both":
            endpoints.clear()
        else:
            del endpoints[left_out]
        with pytest.raises(errors.InvalidInput) as info:
            await call_as(agent, call, **endpoints)
        assert str(info.value) == REQUIRED
        assert service.audit.events == []  # refused before any (audited) decision

    run(scenario())


class NoNetwork:
    """A transport no call may reach."""

    async def send(self, request, *, timeout, max_body):
        raise AssertionError(f"unexpected request to {request.url}")


@pytest.mark.parametrize("call", ["offline", "request"])
@pytest.mark.parametrize("name", ["authorization_endpoint", "token_endpoint"])
def test_with_an_issuer_a_given_endpoint_is_checked_first_and_named(call, name):
    async def scenario():
        service = make_service(transport=NoNetwork())
        agent, _alice = room(service)
        with pytest.raises(errors.InvalidInput) as info:
            await call_as(agent, call, issuer="https://as.example", **{name: "https://as.example/a b"})
        assert str(info.value) == (
            f"{name} must be ASCII without spaces (RFC 3986 §2); percent-encode other characters")
        with pytest.raises(errors.InvalidInput) as info:
            await call_as(agent, call, issuer="https://as.example", **{name: ""})
        assert str(info.value).startswith(f"{name} must be a URL of 1-")

    run(scenario())


@pytest.mark.parametrize("call", ["offline", "request"])
def test_a_grant_without_oauth_rules_is_decided_before_the_issuer_is_asked(call):
    # The issuer stands in for the endpoints not given; an endpoint given is the one judged.
    async def scenario():
        service = make_service(transport=NoNetwork())
        agent = service.connect("agent-1", name="mailbot", grant=SecretsGrant())
        service.connect("alice", name="Alice")
        with pytest.raises(errors.GrantDenied):
            await call_as(agent, call, issuer="https://as.example")
        with pytest.raises(errors.GrantDenied):
            await call_as(agent, call, issuer="https://as.example",
                          token_endpoint="https://as.example/token")
        denied = [e for e in service.audit.events if e.outcome == "denied"]
        action = "oauth.request_token" if call == "request" else "oauth.get_offline_token"
        assert [(e.action, e.actor) for e in denied] == [(action, "agent-1")] * 2
        assert [e.detail("token_endpoint") for e in denied] == [
            "https://as.example", "https://as.example/token"]
        assert {(e.detail("target"), e.detail("client_id"), e.detail("scopes"))
                for e in denied} == {("alice", "mailbot-app", "mail.read")}
        # A given endpoint is checked as an endpoint, not replaced by the issuer.
        for name in ("authorization_endpoint", "token_endpoint"):
            with pytest.raises(errors.InsecureEndpointError):
                await call_as(agent, call, issuer="https://as.example",
                              **{name: "http://as.example/plain"})

    run(scenario())


class MetadataTransport:
    """Answers every request with one metadata document."""

    def __init__(self, document) -> None:
        self.body = json.dumps(document).encode()

    async def send(self, request, *, timeout, max_body):
        return HttpResponse(
            status=200, headers=(("Content-Type", "application/json"),), body=self.body)


@pytest.mark.parametrize("call", ["offline", "request"])
def test_an_endpoint_the_metadata_leaves_out_is_named_with_the_issuer(call):
    async def scenario():
        issuer = "https://as.example"
        transport = MetadataTransport({"issuer": issuer, "token_endpoint": issuer + "/token"})
        service = make_service(transport=transport)
        agent, _alice = room(service)
        with pytest.raises(errors.ProviderMetadataNotFound) as info:
            await call_as(agent, call, issuer=issuer)
        assert str(info.value) == (
            f"authorization_endpoint was not given and the issuer {issuer!r} "
            "names none in its metadata")

    run(scenario())


@pytest.mark.parametrize(
    ("iss", "message"),
    [
        ("https://as.example/a b",
         "iss must be ASCII without spaces (RFC 3986 §2); percent-encode other characters"),
        ("", "iss must be a URL of 1-"),
    ],
)
def test_a_malformed_iss_is_refused_naming_it(iss, message):
    async def scenario():
        service = make_service(transport=NoNetwork())
        _agent, alice = room(service)
        with pytest.raises(errors.InvalidInput) as info:
            await alice.provide_oauth_authorization(request_id="r-1", code="c", iss=iss)
        assert str(info.value).startswith(message)

    run(scenario())


def test_an_offline_refresh_naming_post_authenticates_with_post():
    # The caller's named method is used for the refresh (explicit endpoints, no metadata).
    secret = "post-client-secret-123"
    async def scenario():
        with running_provider(client_secret=secret, auth_method="client_secret_post") as provider:
            service = make_service()
            agent, alice = room(service)
            first = await approved(agent, alice, provider, client_secret=secret,
                                   client_auth_method="client_secret_post")
            service.clock.advance(7200)
            fresh = await offline(agent, provider, client_secret=secret,
                                  client_auth_method="client_secret_post")
            assert fresh is not None and fresh != first
            assert provider.token_requests[-1] == ("refresh_token", "ok")

    run(scenario())


def test_a_token_request_naming_another_method_than_the_stored_one_refreshes_with_the_callers():
    # request_oauth_token, like get_offline_oauth_token: the named method wins the refresh.
    secret = "re-registered-secret-123"
    async def scenario():
        with running_provider(client_secret=secret, auth_method="client_secret_post") as provider:
            service = make_service()
            agent, alice = room(service)
            await approved(agent, alice, provider, client_secret=secret,
                           client_auth_method="client_secret_post")
            provider.register_client(
                "mailbot-app", client_secret=secret, auth_method="client_secret_basic",
                redirect_uris=["https://app.example.com/oauth/callback"],
            )
            service.clock.advance(7200)
            token = await agent.request_oauth_token(
                client_id="mailbot-app", authorization_endpoint=provider.authorization_endpoint,
                token_endpoint=provider.token_endpoint, scopes=["mail.read"],
                from_participant_id="alice", redirect_uri="https://app.example.com/oauth/callback",
                client_secret=secret, client_auth_method="client_secret_basic", timeout=5,
            )
            assert provider.is_active(token)
            assert provider.token_requests[-1] == ("refresh_token", "ok")

    run(scenario())


class NoMetadataTransport:
    """Answers every request with 404: the issuer publishes no metadata."""

    async def send(self, request, *, timeout, max_body):
        return HttpResponse(status=404, headers=(), body=b"")


@pytest.mark.parametrize("call", ["offline", "request"])
@pytest.mark.parametrize("given", ["authorization_endpoint", "token_endpoint"])
def test_with_one_endpoint_given_an_issuer_without_metadata_is_an_error(call, given):
    """Only both endpoints make the metadata optional (it adds revocation and RFC 9207
    then); with one, the other must come from the metadata, so its absence is said."""

    async def scenario():
        issuer = "https://as.example"
        service = make_service(transport=NoMetadataTransport())
        agent, _alice = room(service)
        with pytest.raises(errors.ProviderMetadataNotFound) as info:
            await call_as(agent, call, issuer=issuer, **{given: issuer + "/x"})
        # The error names the well-known URLs that were tried (RFC 8414 §3.1).
        assert str(info.value).startswith(
            f"the issuer {issuer!r} publishes no metadata at {issuer}/.well-known/")

    run(scenario())
