"""PendingRegistry: unit tests for each behaviour, then a Hypothesis model check."""

from __future__ import annotations

import dataclasses
import hmac
import itertools
import math
import os
from typing import Any

import pytest

from roomsecrets.core.errors import (
    ConfigurationError,
    GrantDenied,
    IllegalTransition,
    InvalidInput,
    NotAddressedToYou,
    ProviderError,
    StateMismatch,
    TooManyPendingRequests,
    UnknownRequest,
)
from roomsecrets.core.pending import registry as pending_registry
from roomsecrets.core.pending.machine import TERMINAL_STATES, PendingState
from roomsecrets.core.pending.registry import (
    Cancelled,
    Completed,
    Expired,
    Failed,
    PendingRegistry,
    PendingRequest,
    Rejected,
)

VERIFIER = "V" * 43 + "verifier-secret"
CLIENT_SECRET = "client-secret-value"


class FakeRandom:
    """Deterministic token_urlsafe: unique 22+ character values, calls recorded."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self._counter = itertools.count()

    def __call__(self, nbytes: int) -> str:
        self.calls.append(nbytes)
        return f"rnd{next(self._counter):019d}"


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Harness:
    """A registry with a controllable clock and randomness and recorded outcomes."""

    def __init__(self, **bounds: int) -> None:
        self.clock = Clock()
        self.random = FakeRandom()
        self.registry: PendingRegistry[object] = PendingRegistry(
            clock=self.clock, token_urlsafe=self.random, **bounds
        )
        self.outcomes: dict[str, list[Any]] = {}
        self.built_for: list[str] = []

    def build_url(self, request: PendingRequest) -> str:
        self.built_for.append(request.oauth_state)
        return f"https://as.example/auth?state={request.oauth_state}"

    def create(
        self, requester: str = "agent", target: str = "alice", timeout: float = 60, **extra: Any
    ) -> PendingRequest:
        arguments: dict[str, Any] = dict(
            requester=requester,
            target=target,
            client_id="app",
            authorization_endpoint="https://as.example/auth",
            token_endpoint="https://as.example/token",
            redirect_uri="https://app.example/cb",
            scopes=("mail.read",),
            code_verifier=VERIFIER,
            client_secret=CLIENT_SECRET,
            timeout=timeout,
            build_authorization_url=self.build_url,
            waiter=self.record,
        )
        arguments.update(extra)
        request = self.registry.create(**arguments)
        self.outcomes.setdefault(request.request_id, [])
        return request

    def record(self, outcome: Any) -> None:
        self.outcomes.setdefault(outcome.request_id, []).append(outcome)


@pytest.fixture
def h() -> Harness:
    return Harness()


# --- create -------------------------------------------------------------------------


def test_create_opens_a_pending_request_with_everything_the_exchange_needs(h):
    h.clock.now = 500.0
    request = h.create(timeout=30)
    assert h.registry.state_of(request.request_id) is PendingState.PENDING
    assert h.registry.get(request.request_id) is request
    assert request.requester == "agent"
    assert request.target == "alice"
    assert request.code_verifier == VERIFIER
    assert request.client_secret == CLIENT_SECRET
    assert request.scopes == ("mail.read",)
    assert (request.created_at, request.deadline) == (500.0, 530.0)
    assert h.built_for == [request.oauth_state]  # built once, to check it builds
    assert request.authorization_url == f"https://as.example/auth?state={request.oauth_state}"
    assert h.built_for == [request.oauth_state] * 2  # and again when read: never stored
    assert len(h.registry) == 1
    assert h.outcomes[request.request_id] == []


def test_request_id_and_state_are_two_separate_draws_of_at_least_128_bits(h):
    request = h.create()
    assert h.random.calls == [16, 16]
    assert request.request_id != request.oauth_state


def test_default_randomness_gives_distinct_ids_and_states_of_128_bits():
    registry: PendingRegistry[object] = PendingRegistry()
    values = set()
    for i in range(50):
        request = registry.create(
            requester=f"agent{i}", target=f"person{i}", client_id="app",
            authorization_endpoint="https://as.example/auth",
            token_endpoint="https://as.example/token", redirect_uri="https://app.example/cb",
            code_verifier=None, timeout=60,
            build_authorization_url=lambda r: "https://u?" + r.oauth_state,
            waiter=lambda outcome: None,
        )
        values |= {request.request_id, request.oauth_state}
        assert len(request.request_id) >= 22 and len(request.oauth_state) >= 22
    assert len(values) == 100


@pytest.mark.parametrize("timeout", [0, -1, math.inf, math.nan, True, "60"])
def test_create_refuses_a_bad_timeout_and_creates_nothing(h, timeout):
    with pytest.raises(InvalidInput):
        h.create(timeout=timeout)
    assert len(h.registry) == 0
    assert h.random.calls == []


@pytest.mark.parametrize(
    "extra",
    [{"scopes": "mail.read"}, {"scopes": ("",)}, {"client_id": ""}, {"code_verifier": 5},
     {"requester": None}],
)
def test_create_refuses_bad_fields_and_creates_nothing(h, extra):
    with pytest.raises(InvalidInput):
        h.create(**extra)
    assert len(h.registry) == 0
    assert h.registry.open_count("agent") == (0, 0)


def test_create_accepts_no_pkce_and_no_client_secret(h):
    request = h.create(code_verifier=None, client_secret=None)
    assert request.code_verifier is None and request.client_secret is None


def test_weak_or_repeating_randomness_is_refused_and_creates_nothing():
    short: PendingRegistry[object] = PendingRegistry(token_urlsafe=lambda n: "short")
    harness = Harness()
    harness.registry = short
    with pytest.raises(ConfigurationError):
        harness.create()
    assert len(short) == 0

    repeating: PendingRegistry[object] = PendingRegistry(token_urlsafe=lambda n: "r" * 22)
    harness.registry = repeating
    with pytest.raises(ConfigurationError):
        harness.create()  # the id and the state are the same value
    assert len(repeating) == 0


def test_a_failing_url_builder_creates_nothing(h):
    def broken(request: PendingRequest) -> str:
        raise InvalidInput("bad endpoint")

    with pytest.raises(InvalidInput):
        h.create(build_authorization_url=broken)
    assert len(h.registry) == 0
    assert h.registry.pending_for_target("alice") == []


@pytest.mark.parametrize("built", ["", None, b"https://as.example/auth"])
def test_a_url_builder_that_builds_no_url_creates_nothing(h, built):
    with pytest.raises(InvalidInput, match=r"^build_authorization_url must return a non-empty"):
        h.create(build_authorization_url=lambda request: built)
    assert len(h.registry) == 0
    assert h.registry.pending_for_target("alice") == []


def test_bad_bounds_are_a_configuration_error():
    for bounds in ({"max_open_per_requester": 0}, {"max_open_per_target": 1.5}):
        with pytest.raises(ConfigurationError):
            PendingRegistry(**bounds)


# --- secrets stay out of reprs and messages ------------------------------------------


def test_pending_request_repr_shows_no_verifier_state_client_secret_or_url(h):
    request = h.create()
    text = repr(request)
    for secret in (VERIFIER, request.oauth_state, CLIENT_SECRET, request.authorization_url):
        assert secret not in text
    assert request.request_id in text
    assert "pkce=True" in text


def test_pending_request_has_no_instance_dict():
    assert not hasattr(Harness().create(), "__dict__")


def test_completed_repr_shows_the_result_type_only():
    outcome = Completed(request_id="r", result="access-token-value")
    assert "access-token-value" not in repr(outcome)
    assert "<str>" in repr(outcome)


def test_state_lookup_error_does_not_echo_the_state(h):
    guess = "guessed-state-value-0000"
    with pytest.raises(UnknownRequest) as info:
        h.registry.find_by_oauth_state(guess)
    assert guess not in str(info.value)


def test_state_mismatch_message_shows_neither_state(h):
    request = h.create()
    with pytest.raises(StateMismatch) as info:
        h.registry.provide(request.request_id, by="alice", state="wrong-state-value")
    assert "wrong-state-value" not in str(info.value)
    assert request.oauth_state not in str(info.value)


# --- lookups ------------------------------------------------------------------------


def test_lookup_by_id_and_by_oauth_state(h):
    first, second = h.create(), h.create()
    assert h.registry.get(second.request_id) is second
    assert h.registry.find_by_oauth_state(first.oauth_state) is first
    assert first.request_id in h.registry
    assert "nope" not in h.registry


@pytest.mark.parametrize("bad", ["unknown", "", None, 42])
def test_unknown_ids_raise_unknown_request(h, bad):
    h.create()
    for lookup in (h.registry.get, h.registry.state_of, h.registry.find_by_oauth_state):
        with pytest.raises(UnknownRequest) as info:
            lookup(bad)
        assert info.value.code == "unknown_request"
        assert isinstance(info.value, LookupError)


def test_an_id_is_not_an_oauth_state_and_vice_versa(h):
    request = h.create()
    with pytest.raises(UnknownRequest):
        h.registry.find_by_oauth_state(request.request_id)
    with pytest.raises(UnknownRequest):
        h.registry.get(request.oauth_state)


def test_pending_for_target_lists_only_waiting_requests_addressed_to_it_oldest_first(h):
    first = h.create(target="alice")
    h.create(target="bob")
    second = h.create(target="alice")
    answered = h.create(target="alice")
    h.registry.provide(answered.request_id, by="alice")
    assert h.registry.pending_for_target("alice") == [first, second]
    assert h.registry.pending_for_target("nobody") == []
    assert h.registry.open_count("alice") == (0, 3)
    assert h.registry.open_count("agent") == (4, 0)


# --- provide ------------------------------------------------------------------------


def test_provide_by_the_target_moves_to_exchanging_and_returns_the_request(h):
    request = h.create()
    assert h.registry.provide(request.request_id, by="alice", state=request.oauth_state) is request
    assert h.registry.state_of(request.request_id) is PendingState.EXCHANGING
    assert h.outcomes[request.request_id] == []


def test_provide_without_state_is_accepted(h):
    request = h.create()
    h.registry.provide(request.request_id, by="alice")
    assert h.registry.state_of(request.request_id) is PendingState.EXCHANGING


@pytest.mark.parametrize("by", ["agent", "mallory", "ALICE"])
def test_only_the_target_may_provide_and_nothing_changes_otherwise(h, by):
    request = h.create()
    with pytest.raises(NotAddressedToYou) as info:
        h.registry.provide(request.request_id, by=by, state=request.oauth_state)
    assert isinstance(info.value, PermissionError)
    assert isinstance(info.value, GrantDenied)
    assert h.registry.state_of(request.request_id) is PendingState.PENDING


def test_a_request_is_provided_at_most_once(h):
    request = h.create()
    h.registry.provide(request.request_id, by="alice")
    with pytest.raises(IllegalTransition):
        h.registry.provide(request.request_id, by="alice", state=request.oauth_state)
    with pytest.raises(IllegalTransition):
        h.registry.reject(request.request_id, by="alice", error="user_cancelled")
    assert h.registry.state_of(request.request_id) is PendingState.EXCHANGING


@pytest.mark.parametrize("wrong", ["wrong", "", "é-non-ascii", "rnd0000000000000000001x"])
def test_a_wrong_state_raises_and_the_request_stays_pending_for_the_right_answer(h, wrong):
    request = h.create()
    with pytest.raises(StateMismatch) as info:
        h.registry.provide(request.request_id, by="alice", state=wrong)
    assert isinstance(info.value, InvalidInput)
    assert h.registry.state_of(request.request_id) is PendingState.PENDING
    h.registry.provide(request.request_id, by="alice", state=request.oauth_state)
    assert h.registry.state_of(request.request_id) is PendingState.EXCHANGING


def test_a_non_string_state_is_invalid_input_and_changes_nothing(h):
    request = h.create()
    with pytest.raises(InvalidInput):
        h.registry.provide(request.request_id, by="alice", state=123)  # type: ignore[arg-type]
    assert h.registry.state_of(request.request_id) is PendingState.PENDING


def test_the_state_is_compared_in_constant_time(h, monkeypatch):
    seen = []
    real = hmac.compare_digest

    def spy(a, b):
        seen.append((a, b))
        return real(a, b)

    request = h.create()
    monkeypatch.setattr(pending_registry.hmac, "compare_digest", spy)
    h.registry.provide(request.request_id, by="alice", state=request.oauth_state)
    assert seen == [(request.oauth_state.encode(), request.oauth_state.encode())]


def test_the_wrong_participant_is_told_before_the_state_is_checked(h):
    request = h.create()
    with pytest.raises(NotAddressedToYou):
        h.registry.provide(request.request_id, by="mallory", state="wrong")


# --- reject --------------------------------------------------------------------------


def test_reject_by_the_target_ends_the_request_with_rejected(h):
    request = h.create()
    h.registry.reject(request.request_id, by="alice", error="user_cancelled")
    assert h.outcomes[request.request_id] == [
        Rejected(request_id=request.request_id, error="user_cancelled")
    ]
    assert request.request_id not in h.registry
    with pytest.raises(UnknownRequest):
        h.registry.reject(request.request_id, by="alice", error="user_cancelled")


def test_reject_by_anyone_else_changes_nothing(h):
    request = h.create()
    with pytest.raises(NotAddressedToYou):
        h.registry.reject(request.request_id, by="agent", error="user_cancelled")
    assert h.registry.state_of(request.request_id) is PendingState.PENDING


def test_reject_error_is_reduced_to_safe_characters(h):
    request = h.create()
    h.registry.reject(request.request_id, by="alice", error="bad\n\x1b[31mthing" + "x" * 100)
    (outcome,) = h.outcomes[request.request_id]
    assert outcome.error.startswith("bad[31mthing")
    assert len(outcome.error) <= 64


@pytest.mark.parametrize("error", ["", "\n\n", None, 7])
def test_reject_without_a_usable_error_is_invalid_and_changes_nothing(h, error):
    request = h.create()
    with pytest.raises(InvalidInput):
        h.registry.reject(request.request_id, by="alice", error=error)
    assert h.registry.state_of(request.request_id) is PendingState.PENDING


# --- the exchange --------------------------------------------------------------------


def test_exchange_succeeded_ends_with_completed_and_the_request_leaves(h):
    request = h.create()
    h.registry.provide(request.request_id, by="alice")
    result = object()
    h.registry.exchange_succeeded(request.request_id, result)
    (outcome,) = h.outcomes[request.request_id]
    assert isinstance(outcome, Completed) and outcome.result is result
    assert len(h.registry) == 0
    assert h.registry.pending_for_target("alice") == []
    assert h.registry.open_count("agent") == (0, 0)
    with pytest.raises(UnknownRequest):
        h.registry.exchange_succeeded(request.request_id, result)
    with pytest.raises(UnknownRequest):
        h.registry.find_by_oauth_state(request.oauth_state)


def test_exchange_failed_ends_with_failed(h):
    request = h.create()
    h.registry.provide(request.request_id, by="alice")
    error = ProviderError("token endpoint unreachable")
    h.registry.exchange_failed(request.request_id, error)
    assert h.outcomes[request.request_id] == [Failed(request_id=request.request_id, error=error)]


def test_no_exchange_result_before_a_code_was_provided(h):
    request = h.create()
    with pytest.raises(IllegalTransition):
        h.registry.exchange_succeeded(request.request_id, "tokens")
    with pytest.raises(IllegalTransition):
        h.registry.exchange_failed(request.request_id, ProviderError("x"))
    assert h.registry.state_of(request.request_id) is PendingState.PENDING


def test_failed_needs_a_typed_error():
    with pytest.raises(InvalidInput):
        Failed(request_id="r", error=ValueError("x"))  # type: ignore[arg-type]


# --- expiry ----------------------------------------------------------------------------


def test_expire_due_expires_exactly_the_requests_whose_deadline_passed(h):
    early, late = h.create(timeout=10), h.create(timeout=20)
    assert h.registry.next_deadline() == early.deadline
    assert h.registry.expire_due(now=early.deadline - 0.001) == []
    assert h.registry.expire_due(now=early.deadline) == [early]
    assert h.outcomes[early.request_id] == [Expired(request_id=early.request_id)]
    assert h.outcomes[late.request_id] == []
    assert h.registry.next_deadline() == late.deadline
    h.clock.now = late.deadline + 5
    assert h.registry.expire_due() == [late]
    assert h.registry.next_deadline() is None
    assert len(h.registry) == 0


def test_an_exchanging_request_is_decided_by_its_exchange_not_its_deadline(h):
    request = h.create(timeout=10)
    h.registry.provide(request.request_id, by="alice")
    h.clock.now += 100
    assert h.registry.expire_due() == []
    assert h.registry.state_of(request.request_id) is PendingState.EXCHANGING
    h.registry.exchange_succeeded(request.request_id, "tokens")
    assert [type(o) for o in h.outcomes[request.request_id]] == [Completed]


def test_a_request_past_its_deadline_is_not_answerable_even_before_a_sweep(h):
    request = h.create(timeout=10)
    h.clock.now += 10
    with pytest.raises(UnknownRequest):
        h.registry.provide(request.request_id, by="alice", state=request.oauth_state)
    assert h.outcomes[request.request_id] == [Expired(request_id=request.request_id)]


def test_overdue_requests_do_not_count_against_the_bounds():
    h = Harness(max_open_per_requester=1)
    first = h.create(timeout=5)
    h.clock.now += 5
    second = h.create()
    assert [type(o) for o in h.outcomes[first.request_id]] == [Expired]
    assert h.registry.state_of(second.request_id) is PendingState.PENDING


def test_expire_due_pops_a_heap_and_does_not_scan_the_open_requests(monkeypatch):
    h = Harness(max_open_per_requester=10_000, max_open_per_target=10_000)
    for _ in range(4_000):
        h.create(timeout=1_000)
    due = h.create(timeout=1)
    comparisons = 0
    original = pending_registry._Entry.__lt__

    def counting(self, other):
        nonlocal comparisons
        comparisons += 1
        return original(self, other)

    monkeypatch.setattr(pending_registry._Entry, "__lt__", counting)
    h.clock.now += 1
    assert h.registry.expire_due() == [due]
    assert comparisons <= 4 * math.ceil(math.log2(4_001))


def test_the_deadline_heap_stays_proportional_to_the_open_requests(h):
    keep = [h.create(timeout=1_000) for _ in range(3)]
    for _ in range(1_000):
        request = h.create(timeout=1_000)
        h.registry.provide(request.request_id, by="alice")
        h.registry.exchange_succeeded(request.request_id, "t")
    assert len(h.registry) == len(keep)
    assert len(h.registry._deadlines) <= 2 * len(keep) + 33
    h.clock.now += 1_000
    assert sorted(r.request_id for r in h.registry.expire_due()) == sorted(
        r.request_id for r in keep
    )


# --- cancellation and participants leaving -------------------------------------------------


def test_participant_left_cancels_what_it_asked_for_and_what_it_was_asked(h):
    asked_by = h.create(requester="alice", target="bob")
    asked_of = h.create(requester="agent", target="alice")
    other = h.create(requester="agent", target="bob")
    assert sorted(r.request_id for r in h.registry.participant_left("alice")) == sorted(
        [asked_by.request_id, asked_of.request_id]
    )
    assert h.outcomes[asked_by.request_id] == [
        Cancelled(request_id=asked_by.request_id, reason="requester_left")
    ]
    assert h.outcomes[asked_of.request_id] == [
        Cancelled(request_id=asked_of.request_id, reason="target_left")
    ]
    assert h.registry.state_of(other.request_id) is PendingState.PENDING
    assert h.registry.open_count("alice") == (0, 0)


def test_a_request_to_oneself_is_cancelled_once_when_one_leaves(h):
    request = h.create(requester="alice", target="alice")
    assert h.registry.participant_left("alice") == [request]
    assert len(h.outcomes[request.request_id]) == 1


def test_an_exchange_in_flight_outlives_a_participant_leaving(h):
    request = h.create()
    h.registry.provide(request.request_id, by="alice")
    assert h.registry.participant_left("alice") == []
    assert h.registry.participant_left("agent") == []
    h.registry.exchange_failed(request.request_id, ProviderError("x"))
    assert [type(o) for o in h.outcomes[request.request_id]] == [Failed]


def test_cancel_ends_a_waiting_request_but_not_an_exchanging_one(h):
    waiting, exchanging = h.create(), h.create()
    h.registry.provide(exchanging.request_id, by="alice")
    assert h.registry.cancel(waiting.request_id) is True
    assert h.outcomes[waiting.request_id] == [
        Cancelled(request_id=waiting.request_id, reason="requester_cancelled")
    ]
    assert h.registry.cancel(exchanging.request_id) is False
    assert h.registry.state_of(exchanging.request_id) is PendingState.EXCHANGING


# --- bounds --------------------------------------------------------------------------


def test_the_requester_bound_refuses_creation_and_creates_nothing():
    h = Harness(max_open_per_requester=2)
    first, _ = h.create(target="a"), h.create(target="b")
    draws = len(h.random.calls)
    with pytest.raises(TooManyPendingRequests) as info:
        h.create(target="c")
    assert info.value.limit == 2 and info.value.retryable
    assert len(h.registry) == 2 and len(h.random.calls) == draws and len(h.built_for) == 2
    h.registry.reject(first.request_id, by="a", error="no")
    h.create(target="c")  # room again once one ended


def test_the_target_bound_refuses_creation_and_creates_nothing():
    h = Harness(max_open_per_target=2)
    h.create(requester="x")
    h.create(requester="y")
    with pytest.raises(TooManyPendingRequests) as info:
        h.create(requester="z")
    assert info.value.code == "too_many_pending_requests"
    assert h.registry.open_count("alice") == (0, 2)


def test_default_bounds_are_16_per_requester_and_32_per_target():
    h = Harness()
    for i in range(16):
        h.create(target=f"t{i}")
    with pytest.raises(TooManyPendingRequests):
        h.create(target="t-extra")
    for i in range(32):
        h.create(requester=f"r{i}", target="popular")
    with pytest.raises(TooManyPendingRequests):
        h.create(requester="r-extra", target="popular")


# --- waiters -------------------------------------------------------------------------


def test_a_raising_waiter_does_not_break_the_registry_or_the_other_waiters(h):
    def explode(outcome: Any) -> None:
        raise RuntimeError("waiter bug")

    bad = h.create(timeout=5, waiter=explode)
    good = h.create(timeout=5)
    h.clock.now += 5
    with pytest.raises(RuntimeError):
        h.registry.expire_due()
    assert bad.request_id not in h.registry
    assert h.outcomes[good.request_id] == [Expired(request_id=good.request_id)]


def test_a_waiter_may_call_back_into_the_registry(h):
    follow_ups: list[PendingRequest] = []

    def retry(outcome: Any) -> None:
        follow_ups.append(h.create(timeout=60))

    first = h.create(waiter=retry)
    h.registry.reject(first.request_id, by="alice", error="try_again")
    assert [h.registry.state_of(r.request_id) for r in follow_ups] == [PendingState.PENDING]


def test_every_outcome_class_names_its_terminal_state():
    classes = [Completed, Failed, Rejected, Expired, Cancelled]
    assert {cls.state for cls in classes} == set(TERMINAL_STATES)
    assert all(dataclasses.is_dataclass(cls) for cls in classes)
    with pytest.raises(dataclasses.FrozenInstanceError):
        Expired(request_id="r").request_id = "x"  # type: ignore[misc]


# --- the model check: the kit's machine (roomsecrets.pending_kit), one for everyone -----

#: Small bounds, so that the machine's steps reach them.
MAX_PER_REQUESTER = 3
MAX_PER_TARGET = 4

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # tests/core must run with only the stdlib and pytest
    HAVE_HYPOTHESIS = False
else:
    HAVE_HYPOTHESIS = True


if HAVE_HYPOTHESIS:
    from roomsecrets.testing import pending_state_machine

    # The shipped registry, built by the kit from its fake clock, checked against a model
    # the kit derives from TRANSITIONS (tests/test_pending_kit.py shows it failing on
    # broken registries).
    RegistryMachine = pending_state_machine(
        max_open_per_requester=MAX_PER_REQUESTER, max_open_per_target=MAX_PER_TARGET
    )
    RegistryMachine.TestCase.settings = settings(
        max_examples=1000 if os.environ.get("CI") else 200,
        stateful_step_count=50,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    test_registry_agrees_with_the_model = RegistryMachine.TestCase


    def test_the_model_check_covers_every_outcome_kind():
        """A smoke run of one scripted path, so a broken harness cannot pass vacuously."""
        machine: Any = RegistryMachine()
        first = machine.create("bob", "alice", 5)
        second = machine.create("bob", "alice", 50)
        third = machine.create("carol", "alice", 50)
        fourth = machine.create("carol", "bob", 50)
        fifth = machine.create("carol", "bob", 50)
        machine.provide(second, True, "alice", "right")
        machine.exchange_succeeded(second)
        machine.provide(third, True, "alice", "none")
        machine.exchange_failed(third)
        machine.reject(fourth, True, "bob", "user_cancelled")
        machine.participant_left("carol")
        machine.advance_clock(10)
        machine.expire_due(None)
        kinds = {type(got[0]) for got in machine.outcomes.values()}
        assert kinds == {Completed, Failed, Rejected, Expired, Cancelled}
        assert {first, fifth} <= set(machine.model.requests)
        assert [machine.model.state(r) for r in (first, second, third, fourth, fifth)] == [
            PendingState.EXPIRED, PendingState.COMPLETED, PendingState.FAILED,
            PendingState.REJECTED, PendingState.CANCELLED,
        ]
        machine.every_request_ends_exactly_once()
        machine.registry_agrees_with_the_model()
        machine.no_answer_lands_twice()
        machine.nothing_past_its_deadline_is_still_answerable()
        machine.the_bounds_hold()

else:  # pragma: no cover

    @pytest.mark.skip(reason="hypothesis is not installed")
    def test_registry_agrees_with_the_model() -> None:
        raise AssertionError("skipped")
