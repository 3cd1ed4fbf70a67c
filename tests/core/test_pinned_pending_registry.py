"""Pinned: request ids and OAuth states of fewer than 128 bits are refused; lookups and
outcomes refuse bad input with one clear message."""

from __future__ import annotations

import itertools
from typing import Any, Callable

import pytest

from roomsecrets.core.errors import ConfigurationError, InvalidInput, UnknownRequest
from roomsecrets.core.pending import PendingState
from roomsecrets.core.pending_registry import Failed, PendingRegistry, PendingRequest, Rejected


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
        build_authorization_url=lambda state: "https://as.example/auth?state=" + state,
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
