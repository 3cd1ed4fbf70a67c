"""Pinned: request ids and OAuth states of fewer than 128 bits are refused."""

from __future__ import annotations

import itertools
from typing import Any, Callable

import pytest

from roomsecrets.core.errors import ConfigurationError
from roomsecrets.core.pending_registry import PendingRegistry, PendingRequest


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
