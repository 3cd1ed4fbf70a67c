"""Pinned: the retry policy's defaults, bounds and Retry-After handling."""

from __future__ import annotations

import math

import pytest

from roomsecrets.core import errors
from roomsecrets.core.oauth.retry import RetryPolicy


def unavailable(status, retry_after=None):
    return errors.ProviderUnavailable("x", status=status, retry_after=retry_after)


def test_the_default_policy_is_four_tries_from_a_quarter_second_up_to_eight():
    policy = RetryPolicy()
    assert (policy.attempts, policy.base_delay, policy.max_delay, policy.max_retry_after) == (
        4, 0.25, 8.0, 30.0
    )
    error = errors.ConnectError("x")
    assert [policy.should_retry(error, n) for n in range(5)] == [True, True, True, False, False]
    highs = []
    for attempt in range(7):
        policy.delay(error, attempt, uniform=lambda lo, hi: highs.append(hi) or lo)
    assert highs == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


def test_one_attempt_means_no_retry():
    assert not RetryPolicy(attempts=1).should_retry(errors.ConnectError("x"), 0)


def test_two_attempts_mean_one_retry():
    policy = RetryPolicy(attempts=2)
    assert policy.should_retry(errors.ConnectError("x"), 0)
    assert not policy.should_retry(errors.ConnectError("x"), 1)


@pytest.mark.parametrize("status", [None, 400, 428, 430, 500, 502, 504])
def test_provider_unavailable_is_retried_only_for_429_and_503(status):
    assert not RetryPolicy().should_retry(unavailable(status), 0)


def test_a_retry_after_up_to_the_limit_is_honoured_and_beyond_it_fails_the_call():
    policy = RetryPolicy(max_retry_after=10.0)
    assert policy.should_retry(unavailable(429, retry_after=10.0), 0)
    assert not policy.should_retry(unavailable(429, retry_after=10.5), 0)
    assert policy.should_retry(unavailable(429, retry_after=0.0), 0)
    assert policy.delay(unavailable(429, retry_after=10.0), 0) == 10.0
    assert policy.delay(unavailable(429, retry_after=25.0), 0) == 10.0
    assert policy.delay(unavailable(429, retry_after=0.0), 3) == 0.0


def test_a_retry_after_on_another_error_is_checked_but_not_used_as_the_delay():
    error = errors.TemporarilyUnavailable()
    error.retry_after = 99.0  # type: ignore[attr-defined]
    policy = RetryPolicy(max_retry_after=10.0)
    assert not policy.should_retry(error, 0)
    assert policy.delay(error, 0, uniform=lambda lo, hi: hi) == 0.25


def test_the_default_draw_is_uniform_within_the_cap():
    policy = RetryPolicy(base_delay=1.0, max_delay=3.0)
    draws = {policy.delay(errors.ConnectError("x"), 5) for _ in range(50)}
    assert all(0.0 <= d <= 3.0 for d in draws)
    assert len(draws) > 1


def test_zero_delays_are_allowed():
    policy = RetryPolicy(base_delay=0, max_delay=0, max_retry_after=0)
    assert policy.delay(errors.ConnectError("x"), 2) == 0.0


@pytest.mark.parametrize("attempts", [0, -1, True, 2.0, "3", None])
def test_attempts_must_be_an_int_of_at_least_one(attempts):
    with pytest.raises(errors.InvalidInput) as info:
        RetryPolicy(attempts=attempts)
    assert str(info.value) == "RetryPolicy.attempts must be an int >= 1"


@pytest.mark.parametrize("field", ["base_delay", "max_delay", "max_retry_after"])
@pytest.mark.parametrize("value", [-0.001, math.nan, math.inf, "1", None])
def test_every_delay_must_be_a_finite_number_of_at_least_zero(field, value):
    with pytest.raises(errors.InvalidInput) as info:
        RetryPolicy(**{field: value})
    assert str(info.value) == "RetryPolicy delays must be finite numbers >= 0"
