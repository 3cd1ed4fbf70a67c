import pytest

from roomsecrets.core import errors
from roomsecrets.core.oauth.retry import RetryPolicy


def unavailable(status, retry_after=None):
    return errors.ProviderUnavailable("x", status=status, retry_after=retry_after)


@pytest.mark.parametrize(
    "error",
    [errors.ConnectError("refused"), unavailable(429), unavailable(503),
     errors.TemporarilyUnavailable()],
)
def test_failures_the_provider_did_not_act_on_are_retried_up_to_attempts(error):
    policy = RetryPolicy(attempts=3)
    assert policy.should_retry(error, 0)
    assert policy.should_retry(error, 1)
    assert not policy.should_retry(error, 2)


@pytest.mark.parametrize(
    "error",
    [errors.ProviderTimeout("t"), errors.TransportError("connection reset"),
     unavailable(500), unavailable(502), unavailable(504), errors.ServerError(),
     errors.ProviderResponseError("garbage 200"), errors.ResponseTooLarge("big"),
     errors.InvalidGrant(), errors.InvalidClient(), ValueError("x")],
)
def test_ambiguous_or_final_failures_are_not_retried_because_they_may_hide_a_rotation(error):
    assert not RetryPolicy(attempts=10).should_retry(error, 0)


def test_delay_is_capped_exponential_with_full_jitter():
    policy = RetryPolicy(base_delay=1.0, max_delay=5.0)
    err = errors.ConnectError("x")
    bounds = []
    for attempt in range(6):
        policy.delay(err, attempt, uniform=lambda lo, hi: bounds.append((lo, hi)) or hi)
    assert bounds == [(0.0, 1.0), (0.0, 2.0), (0.0, 4.0), (0.0, 5.0), (0.0, 5.0), (0.0, 5.0)]


def test_retry_after_overrides_the_draw_and_is_capped():
    policy = RetryPolicy(max_retry_after=10.0)
    assert policy.delay(unavailable(503, retry_after=3.0), 0) == 3.0
    assert not policy.should_retry(unavailable(503, retry_after=60.0), 0)


@pytest.mark.parametrize(
    "kw", [{"attempts": 0}, {"attempts": 1.5}, {"base_delay": -1}, {"max_delay": float("nan")}]
)
def test_invalid_policies_are_refused(kw):
    with pytest.raises(errors.InvalidInput):
        RetryPolicy(**kw)
