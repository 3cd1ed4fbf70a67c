"""Hostile input, generated: every public method and whole provider responses.

Callers may pass anything (huge numbers, lone surrogates, the wrong types);
providers may answer anything (odd statuses and headers, deeply nested JSON).
Each must give a typed error (a ``RoomSecretsError``) or a correct result, and a
refused call must change nothing.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from roomsecrets.core import errors
from roomsecrets.core.grants import SecretsGrant
from roomsecrets.core.oauth.retry import RetryPolicy
from roomsecrets.core.oauth.token_response import parse_token_response
from roomsecrets.core.oauth.tokens import TokenSet
from tests.core.service_kit import make_service

EXAMPLES = 60 if os.environ.get("CI") else 25

HOSTILE = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(exclude_categories=()), max_size=20),  # lone surrogates too
    st.sampled_from(["\ud800", "x" * 100_000, "\x00", "a\nb", "", " ", "é", "http://",
                     "https://evil.test/#f", "https://[::1", "text/plain"]),
    st.integers(),
    st.just(10**400),
    st.floats(),
    st.none(),
    st.booleans(),
    st.binary(max_size=20),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)

ENDPOINTS = {
    "client_id": "app",
    "authorization_endpoint": "https://accounts.example.com/auth",
    "token_endpoint": "https://oauth2.example.com/token",
}

# A valid call of each public method, as (method name, keyword arguments).
VALID_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("request_oauth_token", {**ENDPOINTS, "from_participant_id": "alice",
                             "redirect_uri": "https://app.example.com/cb", "scopes": ["s"],
                             "client_secret": None, "timeout": 300, "no_pkce": False,
                             "issuer": None, "client_auth_method": None}),
    ("get_offline_oauth_token", {**ENDPOINTS, "delegated_by": "alice", "scopes": ["s"],
                                 "client_secret": None, "timeout": 300, "issuer": None,
                                 "client_auth_method": None, "participant_name": None}),
    ("provide_oauth_authorization", {"request_id": "r" * 22, "code": "c", "state": "s",
                                     "iss": None}),
    ("reject_oauth_authorization", {"request_id": "r" * 22, "error": "user_cancelled"}),
    ("delete_user_secret", {"id": "s", "delegated_to": None}),
    ("delete_secret", {"id": "s", "delegated_to": None, "type": None}),
    ("set_secret", {"secret_id": "s", "data": b"x", "type": "text/plain", "name": None,
                    "delegated_to": None}),
    ("get_secret", {"secret_id": "s", "delegated_to": None}),
]


async def snapshot(service) -> tuple[object, ...]:
    listed = [await service.store.list("myroom", owner) for owner in ("alice", "agent-1")]
    return (len(service.registry), listed, tuple(service.registry.pending_for_target("alice")),
            tuple(p.id for p in service.connected_participants()))


class NoNetwork:
    """A transport no hostile call may reach: arguments are checked before any lookup."""

    async def send(self, request, *, timeout, max_body):
        raise AssertionError(f"a hostile call reached the network: {request.url[:80]!r}")


CASES = [(name, field) for name, valid in VALID_CALLS for field in sorted(valid)]


@pytest.mark.parametrize(("name", "field"), CASES, ids=[f"{n}-{f}" for n, f in CASES])
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(value=HOSTILE, others=st.lists(HOSTILE, max_size=2))
@example(value="\ud800", others=[])
@example(value=10**400, others=[])
@example(value="x" * 100_000, others=[])
@example(value=float("nan"), others=[])
def test_any_argument_to_any_public_method_gives_a_typed_error_and_changes_nothing(
    name, field, value, others
):
    # One hostile argument, sometimes with more hostile ones beside it.
    kwargs = dict(dict(VALID_CALLS)[name])
    kwargs[field] = value
    for extra, other in zip(sorted(set(kwargs) - {field}), others):
        kwargs[extra] = other

    async def scenario():
        service = make_service(transport=NoNetwork())
        agent = service.connect("agent-1", grant=SecretsGrant.allow_all())
        alice = service.connect("alice")
        # Something to lose: a secret of each participant and an open request.
        await agent.set_secret(secret_id="keep", data=b"kept")
        await alice.set_secret(secret_id="keep", data=b"kept")
        before = await snapshot(service)
        audited = len(service.audit.events)
        caller = alice if name in ("provide_oauth_authorization",
                                   "reject_oauth_authorization") else agent
        try:
            # A call that passes every check may wait for a prompt; that is fine.
            await asyncio.wait_for(getattr(caller, name)(**kwargs), 0.05)
        except asyncio.TimeoutError:
            pass
        except errors.RoomSecretsError as exc:
            assert await snapshot(service) == before, f"{name} refused but changed state"
            if isinstance(exc, errors.InvalidInput):
                # docs/limits.md: bad input is refused before any decision is audited.
                assert len(service.audit.events) == audited, f"{name} audited bad input"
        assert len(service.registry) == 0  # a cancelled or refused request leaves nothing

    asyncio.run(scenario())


@pytest.mark.parametrize("field", ["participant_id", "name", "grant"])
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(value=HOSTILE)
@example(value="\ud800")
@example(value="x" * 100_000)
def test_connect_with_any_hostile_argument_gives_a_typed_error_and_changes_nothing(
    field, value
):
    service = make_service(transport=NoNetwork())
    service.connect("alice")
    arguments = {"participant_id": "bob", "name": "Bob", "grant": None, field: value}
    participant_id = arguments.pop("participant_id")
    try:
        service.connect(participant_id, **arguments)
    except errors.InvalidInput:
        assert [p.id for p in service.connected_participants()] == ["alice"]
        assert service.audit.events == []
    else:  # accepted: only a value of the right kind (None: the default name or grant)
        assert isinstance(value, str) if field == "participant_id" else (
            value is None or (field == "name" and isinstance(value, str)))


# --- whole provider responses through the parser and the retry policy ---------------

NESTED = st.integers(min_value=1, max_value=200_000).map(lambda n: b"[" * n + b"]" * n)
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
              st.text(max_size=10)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=10,
)
TOKEN_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "access_token": st.one_of(st.text(max_size=10), st.integers(), st.none()),
        "refresh_token": st.one_of(st.text(max_size=10), st.integers()),
        "expires_in": st.one_of(st.integers(), st.floats(), st.text(max_size=6),
                                st.just("1e999")),
        "scope": st.one_of(st.text(max_size=10), st.lists(st.text(max_size=4))),
        "token_type": st.one_of(st.text(max_size=6), st.integers()),
        "error": st.one_of(st.sampled_from(["invalid_grant", "temporarily_unavailable",
                                            "slow_down", ""]), st.integers()),
        "error_description": st.text(max_size=30),
    },
)
BODIES = st.one_of(
    st.binary(max_size=64),
    NESTED,
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    TOKEN_FIELDS.map(lambda fields: json.dumps(fields).encode()),
    st.text(max_size=30).map(str.encode),
)
HEADER_VALUES = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["120", "²", "١٢", "Mon, 01 Jan 2024 00:00:00 +99999999999999999999",
                     "Mon, 01 Jan 99999999999999 00:00:00 GMT",
                     "Wed, 21 Oct 2015 07:28:00 GMT", "9" * 400, "-1", "application/json",
                     "application/x-www-form-urlencoded", "text/html"]),
)
HEADERS = st.lists(
    st.tuples(st.sampled_from(["Content-Type", "Retry-After", "content-type", "X-Other"]),
              HEADER_VALUES),
    max_size=3,
)


@settings(max_examples=EXAMPLES * 20, deadline=None, suppress_health_check=list(HealthCheck))
@given(status=st.integers(min_value=100, max_value=599), headers=HEADERS, body=BODIES,
       attempt=st.integers(min_value=0, max_value=5))
def test_any_http_response_gives_a_token_set_or_a_typed_error_and_a_sane_retry(
    status, headers, body, attempt
):
    policy = RetryPolicy()
    try:
        tokens = parse_token_response(status=status, headers=headers, body=body,
                                      now=1_700_000_000.0, redact=("secret-code-value",))
    except errors.RoomSecretsError as exc:
        assert "secret-code-value" not in str(exc)
        retry = policy.should_retry(exc, attempt)
        assert isinstance(retry, bool)
        delay = policy.delay(exc, attempt, lambda low, high: high)
        assert math.isfinite(delay) and 0 <= delay <= max(policy.max_delay,
                                                          policy.max_retry_after)
    else:
        assert isinstance(tokens, TokenSet)
        assert 200 <= status < 300
