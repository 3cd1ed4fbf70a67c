"""Calling a token endpoint through the transport, with retries.

The request building and response parsing are pure (``token_request``,
``token_response``); this module adds the I/O through an injected
:class:`~.ports.HttpTransport`, the injected clock, and the retry policy.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Sequence
from typing import Callable, Optional

from ..ports import Clock, HttpTransport
from .http import HttpRequest
from .retry import RetryPolicy
from .token_request import (
    ClientCredentials,
    build_authorization_code_request,
    build_refresh_request,
)
from .token_response import MAX_TOKEN_RESPONSE_BYTES, parse_token_response
from .tokens import TokenSet

__all__ = ["TokenEndpointClient"]


class TokenEndpointClient:
    """Redeems codes and refresh tokens; returns :class:`TokenSet` or raises typed errors.

    """

    def __init__(
        self,
        *,
        transport: HttpTransport,
        clock: Clock,
        retry: RetryPolicy,
        timeout: float = 30.0,
        default_lifetime: Optional[float] = 3600.0,
        allow_insecure_http: bool = False,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self._transport = transport
        self._clock = clock
        self._retry = retry
        self._timeout = timeout
        self._default_lifetime = default_lifetime
        self._allow_insecure_http = allow_insecure_http
        self._sleep = sleep
        self._uniform = uniform

    async def redeem_code(
        self,
        *,
        token_endpoint: str,
        client: ClientCredentials,
        code: str,
        redirect_uri: str,
        code_verifier: Optional[str],
        requested_scopes: Sequence[str],
        resource: Optional[str] = None,
    ) -> TokenSet:
        """Exchange an authorization code (RFC 6749 §4.1.3; ``resource``: RFC 8707)."""
        request = build_authorization_code_request(
            token_endpoint=token_endpoint,
            client=client,
            code=code,
            redirect_uri=redirect_uri,
            code_verifier=code_verifier,
            allow_insecure_http=self._allow_insecure_http,
            resource=resource,
        )
        return await self._send(
            request,
            requested_scopes=requested_scopes,
            redact=(code, code_verifier or "", client.client_secret or ""),
        )

    async def refresh(
        self,
        *,
        token_endpoint: str,
        client: ClientCredentials,
        tokens: TokenSet,
        resource: Optional[str] = None,
    ) -> TokenSet:
        """Use ``tokens.refresh_token`` for new tokens (RFC 6749 §6); keeps the
        old refresh token when the provider sends none. ``resource``: RFC 8707."""
        assert tokens.refresh_token is not None
        request = build_refresh_request(
            token_endpoint=token_endpoint,
            client=client,
            refresh_token=tokens.refresh_token,
            allow_insecure_http=self._allow_insecure_http,
            resource=resource,
        )
        return await self._send(
            request,
            requested_scopes=tokens.scopes,
            previous_refresh_token=tokens.refresh_token,
            redact=(tokens.refresh_token, client.client_secret or ""),
        )

    async def _send(
        self,
        request: HttpRequest,
        *,
        requested_scopes: Sequence[str],
        redact: Sequence[str],
        previous_refresh_token: Optional[str] = None,
    ) -> TokenSet:
        attempt = 0
        while True:
            try:
                response = await self._transport.send(
                    request, timeout=self._timeout, max_body=MAX_TOKEN_RESPONSE_BYTES
                )
                return parse_token_response(
                    status=response.status,
                    headers=response.headers,
                    body=response.body,
                    now=self._clock(),
                    requested_scopes=requested_scopes,
                    previous_refresh_token=previous_refresh_token,
                    default_lifetime=self._default_lifetime,
                    redact=redact,
                )
            except Exception as exc:
                if not self._retry.should_retry(exc, attempt):
                    raise
                await self._sleep(self._retry.delay(exc, attempt, self._uniform))
                attempt += 1
