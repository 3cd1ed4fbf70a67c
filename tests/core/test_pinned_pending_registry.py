"""Pinned: request ids and OAuth states of fewer than 128 bits are refused; lookups and
outcomes refuse bad input with one clear message; so do the RFC 9207 checks, which leave
the request PENDING."""

from __future__ import annotations

import itertools
import math
from typing import Any, Callable

import pytest

from roomsecrets.core.errors import (
    ConfigurationError,
    InvalidInput,
    IssuerMismatch,
    NotAddressedToYou,
    StateMismatch,
    TooManyPendingRequests,
    UnknownRequest,
)
from roomsecrets.core.pending.machine import PendingState
from roomsecrets.core.pending.registry import Failed, PendingRegistry, PendingRequest, Rejected


class UniqueRandom:
    """token_urlsafe stand-in: values of a fixed length that never repeat."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.calls: list[int] = []
        self._counter = itertools.count()

    def __call__(self, nbytes: int) -> str:
        self.calls.append(nbytes)
        value = f"{next(self._counter):0{self.length}d}"
        assert len(value) == self.length
        return value


def create(registry: PendingRegistry[object], **extra: Any) -> PendingRequest:
    arguments: dict[str, Any] = dict(
        requester="agent", target="alice", client_id="app",
        authorization_endpoint="https://as.example/auth",
        token_endpoint="https://as.example/token", redirect_uri="https://app.example/cb",
        code_verifier=None, timeout=60,
        build_authorization_url=lambda r: "https://as.example/auth?state=" + r.oauth_state,
        waiter=lambda outcome: None,
    )
    arguments.update(extra)
    return registry.create(**arguments)


@pytest.mark.parametrize("length", [1, 16, 21])
def test_short_random_values_are_refused_even_when_they_never_repeat(length: int) -> None:
    random = UniqueRandom(length)
    registry: PendingRegistry[object] = PendingRegistry(clock=lambda: 0.0, token_urlsafe=random)
    for _ in range(3):
        with pytest.raises(ConfigurationError, match="128 bits"):
            create(registry)
    assert len(registry) == 0
    assert registry.open_count("agent") == (0, 0)
    assert registry.next_deadline() is None


def test_random_values_of_22_characters_carry_128_bits_and_are_accepted() -> None:
    random = UniqueRandom(22)
    registry: PendingRegistry[object] = PendingRegistry(clock=lambda: 0.0, token_urlsafe=random)
    request = create(registry)
    assert (request.request_id, request.oauth_state) == ("0" * 22, "0" * 21 + "1")
    assert random.calls == [16, 16]


@pytest.mark.parametrize("value", [None, b"b" * 32, 12345678901234567890123])
def test_a_randomness_source_returning_no_string_is_refused(value: object) -> None:
    random: Callable[[int], Any] = lambda nbytes: value  # noqa: E731
    registry: PendingRegistry[object] = PendingRegistry(clock=lambda: 0.0, token_urlsafe=random)
    with pytest.raises(ConfigurationError):
        create(registry)
    assert len(registry) == 0


def test_a_short_state_is_refused_even_after_a_long_enough_id() -> None:
    values = iter(["i" * 22, "s" * 21])
    registry: PendingRegistry[object] = PendingRegistry(
        clock=lambda: 0.0, token_urlsafe=lambda nbytes: next(values)
    )
    with pytest.raises(ConfigurationError, match="128 bits"):
        create(registry)
    assert len(registry) == 0


def registry_with_one_request() -> tuple[PendingRegistry[object], PendingRequest]:
    registry: PendingRegistry[object] = PendingRegistry(
        clock=lambda: 0.0, token_urlsafe=UniqueRandom(22)
    )
    return registry, create(registry)


def message(error: type[BaseException], call: Callable[[], object]) -> str:
    with pytest.raises(error) as info:
        call()
    return str(info.value)


@pytest.mark.parametrize("state", [["list"], {"a": 1}, None, 5])
def test_looking_up_a_state_that_is_not_a_string_is_an_unknown_request(state: Any) -> None:
    registry, _ = registry_with_one_request()
    text = message(UnknownRequest, lambda: registry.find_by_oauth_state(state))
    assert text == "no open pending request has this state"


@pytest.mark.parametrize("request_id", [["list"], {"a": 1}, None])
def test_looking_up_an_id_that_is_not_a_string_is_an_unknown_request(request_id: Any) -> None:
    registry, _ = registry_with_one_request()
    text = message(UnknownRequest, lambda: registry.get(request_id))
    assert text == "no open pending request has this id"


@pytest.mark.parametrize("error", ["", "\x00", 5, None])
def test_a_reject_without_a_usable_reason_says_what_a_reason_must_be(error: Any) -> None:
    registry, request = registry_with_one_request()
    text = message(
        InvalidInput, lambda: registry.reject(request.request_id, by="alice", error=error)
    )
    assert text == "error must be a short printable ASCII string"
    assert registry.state_of(request.request_id) is PendingState.PENDING


@pytest.mark.parametrize("error", ["", 5, None, b"user_cancelled"])
def test_a_rejected_outcome_needs_a_non_empty_string_reason(error: Any) -> None:
    text = message(InvalidInput, lambda: Rejected(request_id="r", error=error))
    assert text == "Rejected.error must be a non-empty string"


def test_a_failed_outcome_needs_a_typed_error_and_says_so() -> None:
    text = message(InvalidInput, lambda: Failed(request_id="r", error=ValueError("x")))  # type: ignore[arg-type]
    assert text == "Failed.error must be a RoomSecretsError"


# --- PendingRequest validation -------------------------------------------------------------

REQUEST_FIELDS: dict[str, Any] = dict(
    request_id="r" * 22, oauth_state="s" * 22, code_verifier=None, client_secret=None,
    requester="agent", target="alice", client_id="app",
    authorization_endpoint="https://as.example/auth", token_endpoint="https://as.example/token",
    scopes=("a",), redirect_uri="https://app.example/cb",
    url_builder=lambda request: "https://as.example/auth?state=" + request.oauth_state,
    created_at=10.0, deadline=20.0,
)


def request_refusal(**changes: Any) -> str:
    return message(InvalidInput, lambda: PendingRequest(**{**REQUEST_FIELDS, **changes}))


@pytest.mark.parametrize(
    "name",
    ["request_id", "oauth_state", "requester", "target", "client_id", "authorization_endpoint",
     "token_endpoint", "redirect_uri"],
)
def test_each_text_field_of_a_request_must_be_a_non_empty_string(name: str) -> None:
    assert request_refusal(**{name: ""}) == f"{name} must be a non-empty string"


@pytest.mark.parametrize("builder", [None, "https://as.example/auth?state=x"])
def test_a_request_builds_its_url_with_a_callable_and_says_so(builder: Any) -> None:
    assert request_refusal(url_builder=builder) == "url_builder must be callable"
    request = PendingRequest(**REQUEST_FIELDS)
    assert request.authorization_url == "https://as.example/auth?state=" + "s" * 22


@pytest.mark.parametrize("name", ["code_verifier", "client_secret"])
def test_the_verifier_and_client_secret_are_none_or_non_empty_strings(name: str) -> None:
    assert request_refusal(**{name: ""}) == f"{name} must be None or a non-empty string"
    assert request_refusal(**{name: 5}) == f"{name} must be None or a non-empty string"
    assert getattr(PendingRequest(**{**REQUEST_FIELDS, name: "v"}), name) == "v"


@pytest.mark.parametrize("scopes", [["a"], ("a", ""), ("a", 5)])
def test_request_scopes_are_a_tuple_of_non_empty_strings(scopes: Any) -> None:
    assert request_refusal(scopes=scopes) == "scopes must be a tuple of non-empty strings"


@pytest.mark.parametrize(
    "times",
    [
        dict(created_at=10.0, deadline=9.99),
        dict(created_at=-math.inf, deadline=20.0),
        dict(created_at=10.0, deadline=math.inf),
        dict(created_at=math.nan, deadline=20.0),
        dict(created_at="10", deadline=20.0),
        dict(created_at=10.0, deadline="20"),
    ],
)
def test_request_times_must_be_finite_with_the_deadline_not_before_creation(times: Any) -> None:
    assert request_refusal(**times) == (
        "created_at and deadline must be finite, deadline >= created_at"
    )


def test_a_request_may_be_due_the_moment_it_is_created() -> None:
    request = PendingRequest(**{**REQUEST_FIELDS, "created_at": 5, "deadline": 5})
    assert request.deadline == request.created_at == 5


# --- the registry's own messages ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["max_open_per_requester", "max_open_per_target"])
def test_a_bad_bound_is_named_in_the_configuration_error(name: str) -> None:
    text = message(ConfigurationError, lambda: PendingRegistry(**{name: 0}))
    assert text == f"{name} must be an int >= 1"


def test_create_refusals_say_what_is_wrong() -> None:
    registry, _ = registry_with_one_request()
    assert message(InvalidInput, lambda: create(registry, timeout=0)) == (
        "timeout must be a finite number of seconds > 0"
    )
    assert message(InvalidInput, lambda: create(registry, scopes="a b")) == (
        "scopes must be a sequence of strings, not one string"
    )


def test_the_bounds_refuse_with_their_limit_and_say_whose_bound_it_is() -> None:
    registry: PendingRegistry[object] = PendingRegistry(
        clock=lambda: 0.0, token_urlsafe=UniqueRandom(22),
        max_open_per_requester=1, max_open_per_target=2,
    )
    create(registry, requester="a1", target="t")
    with pytest.raises(TooManyPendingRequests) as info:
        create(registry, requester="a1", target="t2")
    assert str(info.value) == "the requester already has the most open pending requests allowed"
    assert info.value.limit == 1
    create(registry, requester="a2", target="t")
    with pytest.raises(TooManyPendingRequests) as info:
        create(registry, requester="a3", target="t")
    assert str(info.value) == "the target already has the most open pending requests allowed"
    assert info.value.limit == 2


def test_a_repeated_request_id_alone_is_refused_and_changes_nothing() -> None:
    values = iter(["i" * 22, "s" * 22, "i" * 22, "t" * 22])
    registry: PendingRegistry[object] = PendingRegistry(
        clock=lambda: 0.0, token_urlsafe=lambda nbytes: next(values)
    )
    first = create(registry)
    text = message(ConfigurationError, lambda: create(registry, requester="other"))
    assert text == "the randomness source repeated a value"
    assert registry.get("i" * 22) is first
    assert len(registry) == 1


def test_a_repeated_state_alone_is_refused() -> None:
    values = iter(["i" * 22, "s" * 22, "j" * 22, "s" * 22])
    registry: PendingRegistry[object] = PendingRegistry(
        clock=lambda: 0.0, token_urlsafe=lambda nbytes: next(values)
    )
    create(registry)
    assert message(ConfigurationError, lambda: create(registry)) == (
        "the randomness source repeated a value"
    )
    assert len(registry) == 1


def test_short_randomness_is_refused_in_exactly_these_words() -> None:
    registry: PendingRegistry[object] = PendingRegistry(
        clock=lambda: 0.0, token_urlsafe=UniqueRandom(21)
    )
    assert message(ConfigurationError, lambda: create(registry)) == (
        "the randomness source returned fewer than 128 bits"
    )


def test_answer_refusals_say_what_is_wrong() -> None:
    registry, request = registry_with_one_request()
    rid = request.request_id
    assert message(InvalidInput, lambda: registry.provide(rid, by="alice", state=5)) == (
        "state must be a string"
    )
    assert message(StateMismatch, lambda: registry.provide(rid, by="alice", state="x")) == (
        "the state does not match the pending request's state"
    )
    assert message(NotAddressedToYou, lambda: registry.provide(rid, by="bob")) == (
        "this request is addressed to another participant"
    )
    assert registry.state_of(rid) is PendingState.PENDING


def test_stale_deadlines_are_dropped_once_they_outnumber_live_ones_by_32() -> None:
    registry: PendingRegistry[object] = PendingRegistry(
        clock=lambda: 0.0, token_urlsafe=UniqueRandom(22), max_open_per_target=64
    )
    create(registry, requester="keeper")  # one live deadline
    heap_sizes = []
    for n in range(36):
        request = create(registry, requester=f"agent{n}")
        assert registry.cancel(request.request_id)
        heap_sizes.append(len(registry._deadlines))
    # 1 live + n stale; rebuilt when the heap holds more than 2 * 1 + 32 entries.
    assert heap_sizes == [*range(2, 35), 1, 2, 3]


# --- RFC 9207: the expected issuer ----------------------------------------------------------

ISSUER = "https://as.example"


@pytest.mark.parametrize("issuer", ["", 7, b"https://as.example"])
def test_create_names_a_bad_issuer(issuer: object) -> None:
    registry, _ = registry_with_one_request()
    text = message(InvalidInput, lambda: create(registry, issuer=issuer))
    assert text == "issuer must be None or a non-empty string"
    assert len(registry) == 1


@pytest.mark.parametrize(
    "extra",
    [
        {"iss_required": True},  # a promise with no issuer to hold it to
        {"issuer": ISSUER, "iss_required": 1},  # truthy, but not a bool
        {"issuer": ISSUER, "iss_required": None},
    ],
)
def test_create_names_a_bad_iss_required(extra: dict[str, Any]) -> None:
    registry, _ = registry_with_one_request()
    text = message(InvalidInput, lambda: create(registry, **extra))
    assert text == "iss_required must be True or False, and True only with an issuer"
    assert len(registry) == 1


def test_a_request_created_without_issuer_arguments_takes_an_answer_without_iss() -> None:
    registry, request = registry_with_one_request()
    assert registry.provide(request.request_id, by="alice", state=request.oauth_state) == request
    assert registry.state_of(request.request_id) is PendingState.EXCHANGING


def refused_answer(error: type[BaseException], iss_required: bool, iss: Any) -> str:
    """The message of ``provide(iss=iss)`` refused; the request must still be PENDING."""
    registry, _ = registry_with_one_request()
    request = create(registry, requester="agent-2", issuer=ISSUER, iss_required=iss_required)
    text = message(
        error,
        lambda: registry.provide(
            request.request_id, by="alice", state=request.oauth_state, iss=iss
        ),
    )
    assert registry.state_of(request.request_id) is PendingState.PENDING
    return text


def test_a_promised_iss_that_is_missing_is_refused_with_its_reason() -> None:
    assert refused_answer(IssuerMismatch, True, None) == (
        "the authorization response has no iss, but the issuer sends one (RFC 9207 §2.4)"
    )


@pytest.mark.parametrize("required", [True, False])
def test_a_wrong_iss_is_refused_with_its_reason(required: bool) -> None:
    assert refused_answer(IssuerMismatch, required, ISSUER + "/") == (
        "the authorization response's iss is not the issuer the request was sent to "
        "(RFC 9207 §2.4)"
    )


@pytest.mark.parametrize("iss", [7, b"https://as.example", ["https://as.example"]])
def test_an_iss_that_is_not_a_string_is_named(iss: object) -> None:
    assert refused_answer(InvalidInput, True, iss) == "iss must be a string"
