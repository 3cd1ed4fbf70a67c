"""When to try a failed token-endpoint call again, and how long to wait.

Capped exponential backoff with full jitter (the AWS Architecture Blog's
"Exponential Backoff And Jitter"): attempt ``n`` waits a uniform random time in
``[0, min(cap, base * 2**n)]``, so a crowd of clients that failed together does
not retry together. A provider's ``Retry-After`` (RFC 9110 §10.2.3) overrides
the draw, up to ``max_retry_after``.

Token-endpoint calls are not idempotent: an authorization code is single-use
(RFC 6749 §4.1.2) and a rotating provider revokes the whole grant when a used
refresh token comes back (RFC 6749 §10.4, OAuth 2.0 Security BCP §4.14.2). So
we retry only failures that show the provider did not act on the request:

* a connection that failed before the request was sent (:class:`ConnectError`);
* HTTP 429 (RFC 6585 §4) and 503 (RFC 9110 §15.6.4), which say the server
  refused the request, and the authorization server's own
  ``temporarily_unavailable``.

Everything else fails the call: a timeout, a reset connection, a 500, 502 or
504 (a gateway may have passed the request on before failing), an unparsable
200. Each may hide a refresh the provider already performed; replaying the old
refresh token would then make it revoke the whole grant.
"""

from __future__ import annotations

import math
import random
from typing import Callable, Optional

from ..errors import ConnectError, InvalidInput, ProviderUnavailable, TemporarilyUnavailable
from ..values import frozen_value

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
        for delay in (self.base_delay, self.max_delay, self.max_retry_after):
            if not isinstance(delay, (int, float)) or not math.isfinite(delay) or delay < 0:
                raise InvalidInput("RetryPolicy delays must be finite numbers >= 0")

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        """True when ``error`` on try number ``attempt`` (0-based) deserves another try.

        Only failures the provider did not act on are retried (see the module
        docstring); never ``invalid_grant``, ``invalid_client``, a timeout or
        an unparsable response.
        """
        if attempt + 1 >= self.attempts:
            return False
        not_acted_on = isinstance(error, (ConnectError, TemporarilyUnavailable)) or (
            isinstance(error, ProviderUnavailable) and error.status in (429, 503)
        )
        if not not_acted_on:
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
