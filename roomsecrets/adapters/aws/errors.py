"""``AwsError``: an error response from Secrets Manager, whichever way the call went.

The store's boto3 calls (in an executor) and its reads on the event loop
(:mod:`roomsecrets.adapters.aws.loop_reader`) raise the same class, so the store
decides on ``error_code`` alone (``ResourceNotFoundException`` is "absent").
"""

from __future__ import annotations

from ...core.errors import StoreError


class AwsError(StoreError):
    """An error response from Secrets Manager; ``error_code`` is AWS's code."""

    def __init__(self, operation: str, error_code: str, status: object) -> None:
        self.error_code = error_code
        detail = f" (HTTP {status})" if isinstance(status, int) else ""
        super().__init__(f"Secrets Manager {operation} failed: {error_code}{detail}")
