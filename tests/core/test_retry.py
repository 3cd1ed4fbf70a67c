import pytest

from roomsecrets.core import errors
from roomsecrets.core.retry import RetryPolicy


def test_retries_only_retryable_errors_and_only_up_to_attempts():
    policy = RetryPolicy(attempts=3)
    unavailable = errors.ProviderUnavailable("x", status=503)
    assert policy.should_retry(unavailable, 0)
    assert policy.should_retry(unavailable, 1)
    assert not policy.should_retry(unavailable, 2)
    assert policy.should_retry(errors.TransportError("refused"), 0)
    assert policy.should_retry(errors.ServerError(), 0)
    assert policy.should_retry(errors.TemporarilyUnavailable(), 0)
    assert not policy.should_retry(errors.InvalidGrant(), 0)
    assert not policy.should_retry(errors.InvalidClient(), 0)
    assert not policy.should_retry(ValueError("x"), 0)


def test_delay_is_capped_exponential_with_full_jitter():
    policy = RetryPolicy(base_delay=1.0, max_delay=5.0)
    err = errors.TransportError("x")
    bounds = []
    for attempt in range(6):
        policy.delay(err, attempt, uniform=lambda lo, hi: bounds.append((lo, hi)) or hi)
    assert bounds == [(0.0, 1.0), (0.0, 2.0), (0.0, 4.0), (0.0, 5.0), (0.0, 5.0), (0.0, 5.0)]


def test_retry_after_overrides_the_draw_and_is_capped():
    policy = RetryPolicy(max_retry_after=10.0)
    assert policy.delay(errors.ProviderUnavailable("x", retry_after=3.0), 0) == 3.0
    too_long = errors.ProviderUnavailable("x", retry_after=60.0)
    assert not policy.should_retry(too_long, 0)


@pytest.mark.parametrize("kw", [{"attempts": 0}, {"attempts": 1.5}, {"base_delay": -1}])
def test_invalid_policies_are_refused(kw):
    with pytest.raises(errors.InvalidInput):
        RetryPolicy(**kw)


@pytest.mark.parametrize(
    "error",
    [errors.ProviderTimeout("t"), errors.ProviderResponseError("garbage 200"),
     errors.ResponseTooLarge("big")],
)
def test_ambiguous_failures_are_not_retried_because_they_may_hide_a_rotation(error):
    assert not RetryPolicy(attempts=10).should_retry(error, 0)
