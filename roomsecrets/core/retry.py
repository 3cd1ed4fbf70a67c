"""When to try a failed token-endpoint call again, and how long to wait.

Capped exponential backoff with full jitter (the AWS Architecture Blog's
"Exponential Backoff And Jitter"): attempt ``n`` waits a uniform random time in
``[0, min(cap, base * 2**n)]``, so a crowd of clients that failed together does
not retry together. A provider's ``Retry-After`` (RFC 9110 §10.2.3) overrides
the draw, up to ``max_retry_after``.
"""

from __future__ import annotations

import random
from typing import Callable, Optional

from .errors import InvalidInput, ProviderUnavailable, RoomSecretsError
from .values import frozen_value

__all__ = ["RetryPolicy"]


@frozen_value
class RetryPolicy:
    """How many times to try, and how long to wait between tries (seconds)."""

    #: Total tries, the first included; 1 means no retry.
    attempts: int = 4
    base_delay: float = 0.25
    max_delay: float = 8.0
    #: Longest ``Retry-After`` we honour; longer ones fail the call instead.
    max_retry_after: float = 30.0

    def __post_init__(self) -> None:
        if type(self.attempts) is not int or self.attempts < 1:
            raise InvalidInput("RetryPolicy.attempts must be an int >= 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.max_retry_after < 0:
            raise InvalidInput("RetryPolicy delays must not be negative")

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        """True when ``error`` on try number ``attempt`` (0-based) deserves another try.

        Only retryable errors (provider failures, ``server_error``,
        ``temporarily_unavailable``) are retried; never ``invalid_grant`` or
        ``invalid_client``.
        """
        if attempt + 1 >= self.attempts:
            return False
        if not isinstance(error, RoomSecretsError) or not error.retryable:
            return False
        retry_after = getattr(error, "retry_after", None)
        return retry_after is None or retry_after <= self.max_retry_after

    def delay(
        self,
        error: BaseException,
        attempt: int,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> float:
        """Seconds to wait before try ``attempt + 1``."""
        retry_after: Optional[float] = (
            error.retry_after if isinstance(error, ProviderUnavailable) else None
        )
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        return uniform(0.0, min(self.max_delay, self.base_delay * (2**attempt)))
