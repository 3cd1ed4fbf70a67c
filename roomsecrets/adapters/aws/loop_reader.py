"""``LoopReader``: ``GetSecretValue`` as async HTTP on the event loop, signed by the boto3 client.

Why: boto3 blocks, so the store runs its calls in a thread executor. A read then
crosses threads twice (to the worker, and back to the loop), and each crossing is
a thread the scheduler has to wake. On a quiet machine that cost 4-8% of a read
against a local endpoint; with one busy process sharing the CPU it cost 14-18%
(``benchmarks/bench_aws_store.py``). Reads are the hot path (every uncached token
lookup), so they are sent from the loop itself through the aiohttp transport;
writes, leases and listings stay on boto3 in the executor (rare, multi-step, and
where botocore's own request machinery matters most).

What is still the client's
    The request is built for the ``json`` protocol Secrets Manager speaks (``POST
    /``, ``X-Amz-Target: secretsmanager.GetSecretValue``) and signed by the
    client's own signer: the store emits the client's ``request-created`` event
    (public botocore events), where botocore signs every request with the client's
    credentials, region and signature version. The client's ``before-parameter-build``
    and ``before-call`` events run as well (a ``botocore.stub.Stubber`` answers
    there) and so does ``before-send`` (moto's in-process mock answers there). The
    endpoint, timeouts and retry budget are the client's: ``meta.endpoint_url``
    (FIPS and the partition already applied), ``connect_timeout``,
    ``read_timeout`` and ``retries``. Credentials that are due for a refresh are
    refreshed in the executor first, so signing never waits on STS or IMDS on the
    loop.

When the executor is used instead
    :meth:`LoopReader.for_client` returns None, and the store keeps reading through
    boto3, for a client this module cannot follow faithfully: not a botocore
    client, a protocol other than ``json``, proxies or a client certificate in its
    config (botocore applies those itself), ``adaptive`` retries (a client-side
    rate limiter that sleeps in ``before-send``), or a TLS setting it cannot read.
    The store also uses boto3 for a read made on a second event loop while the
    first is still open (a connection pool belongs to one loop).

Retries (botocore's ``standard`` mode, as boto3's "Retries" guide lists it)
    A read is idempotent, so it is sent again after any network failure, an HTTP
    500/502/503/504, or a throttling or transient error code, up to the client's
    total attempts (``retries["total_max_attempts"]``; 3 when unset), sleeping
    ``random() * min(20, 2 ** (attempt - 1))`` seconds between attempts
    (exponential backoff with full jitter). botocore's retry quota (a token bucket
    shared by a client's calls) is not applied to these reads.

Responses
    At most 256 KiB is read (a value is at most 64 KiB, 88 KiB as base64). An
    error's code comes from the body's ``__type`` (after any ``#``) or the
    ``x-amzn-ErrorType`` header, and is kept only if it looks like a code: it ends
    up in an exception message. A body that is not the JSON object AWS sends is a
    :class:`~roomsecrets.core.errors.StoreError`, never retried.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import random
import re
import ssl
from typing import TYPE_CHECKING, Any, Callable, Optional

from ...core.errors import (
    ConfigurationError,
    ResponseTooLarge,
    StoreError,
    TransportError,
)
from ...core.oauth.http import HttpRequest
from .errors import AwsError

if TYPE_CHECKING:
    from ..aiohttp_transport import AiohttpTransport

__all__ = ["LoopReader"]

_OPERATION = "GetSecretValue"
_METHOD = "get_secret_value"  # the boto3 name, as in the store's other messages
_MAX_BODY = 256 * 1024
#: AWS closes idle connections after about a minute; a read that meets a closed
#: one fails before or as it is sent and is simply sent again (it is idempotent).
_IDLE_REUSE = 20.0
_RETRY_STATUSES = frozenset({500, 502, 503, 504})
# botocore/retries/standard.py: the transient and throttling error codes.
_RETRY_CODES = frozenset(
    {
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "EC2ThrottledException",
    }
)
_CODE = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,127}\Z")
_STANDARD_ATTEMPTS = 3
_MAX_BACKOFF = 20.0

Sleep = Callable[[float], Any]


class LoopReader:
    """Reads one secret's value with async HTTP on the running loop (module docstring)."""

    def __init__(
        self,
        client: Any,
        *,
        ssl_context: Optional[ssl.SSLContext],
        attempts: int,
        sleep: Sleep = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        meta = client.meta
        self._client = client
        self._events = meta.events
        self._model = meta.service_model.operation_model(_OPERATION)
        self._service_id = meta.service_model.service_id.hyphenize()
        self._url = meta.endpoint_url
        config = meta.config
        self._timeout = float(config.connect_timeout) + float(config.read_timeout)
        from ..aiohttp_transport import AiohttpTransport  # for_client saw it import

        self._transport: AiohttpTransport = AiohttpTransport(
            ssl_context=ssl_context,
            connect_timeout=float(config.connect_timeout),
            limit=max(1, int(config.max_pool_connections)),
            idle_reuse_limit=_IDLE_REUSE,
        )
        self._attempts = attempts
        self._sleep = sleep
        self._jitter = jitter
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._closer: Optional[asyncio.Task[None]] = None

    def __repr__(self) -> str:
        return f"LoopReader(url={self._url!r}, attempts={self._attempts})"

    @classmethod
    def for_client(cls, client: Any) -> Optional[LoopReader]:
        """A reader for ``client``, or None where the store should keep using boto3.

        Reads the client's TLS setting (a CA bundle file is loaded here, so call
        it off the loop). None as well without aiohttp (extra ``aiohttp``).
        """
        try:
            from .. import aiohttp_transport  # noqa: F401
        except ImportError:
            return None
        try:
            meta = client.meta
            config = meta.config
            protocol = meta.service_model.protocol
            verify = client._endpoint.http_session._verify
            retries = dict(config.retries or {})
            url = meta.endpoint_url
        except AttributeError:
            return None
        if protocol != "json" or not isinstance(url, str):
            return None
        if config.proxies or getattr(config, "client_cert", None):
            return None
        mode = retries.get("mode", "legacy")
        if mode == "adaptive":
            return None
        attempts = retries.get("total_max_attempts")
        if not isinstance(attempts, int) or attempts < 1:
            attempts = _STANDARD_ATTEMPTS
        known, context = _ssl_context(verify)
        if not known:
            return None
        return cls(client, ssl_context=context, attempts=attempts)

    def usable_here(self) -> bool:
        """False when another event loop that is still open holds the connection pool."""
        loop = asyncio.get_running_loop()
        return self._loop is None or self._loop is loop or self._loop.is_closed()

    async def aclose(self) -> None:
        """Close the pooled connections (a later read opens new ones)."""
        closer, self._closer, self._loop = self._closer, None, None
        if closer is not None and not closer.done():
            closer.cancel()
        await self._transport.aclose()

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Use ``loop``, and close the connections it opens when it shuts down.

        A pooled aiohttp session has to be closed on its loop, and a store is
        often dropped without ``aclose`` (boto3 clients need none). So a task
        waits on the loop for the end: ``asyncio.run`` (and aiohttp's runner)
        cancel the tasks left when their main coroutine returns, and the
        cancelled task closes the connections then.
        """
        if self._loop is not loop:
            self._loop = loop
            self._closer = loop.create_task(self._close_at_shutdown())

    async def _close_at_shutdown(self) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await self._transport.aclose()

    async def get_secret_value(self, SecretId: str, VersionStage: str) -> dict[str, Any]:
        """``GetSecretValue``: its ``VersionId``, and ``SecretBinary`` or ``SecretString``.

        Raises :class:`~roomsecrets.adapters.aws.errors.AwsError` for an error
        response (after retries) and StoreError for anything else that fails.
        """
        self._bind(asyncio.get_running_loop())
        params = {"SecretId": SecretId, "VersionStage": VersionStage}
        attempt = 1
        while True:
            try:
                return await self._attempt(params)
            except _Retryable as retryable:
                if attempt >= self._attempts:
                    raise retryable.final from None
            backoff = self._jitter() * min(_MAX_BACKOFF, 2.0 ** (attempt - 1))
            attempt += 1
            await self._sleep(backoff)

    async def _attempt(self, params: dict[str, Any]) -> dict[str, Any]:
        events, name = self._events, f"{self._service_id}.{_OPERATION}"
        context: dict[str, Any] = {}
        events.emit(
            f"before-parameter-build.{name}", params=params, model=self._model, context=context
        )
        request_dict = _request_dict(self._url, params, context)
        answered = events.emit_until_response(
            f"before-call.{name}",
            model=self._model,
            params=request_dict,
            request_signer=None,
            context=context,
        )[1]
        if answered is not None:  # a Stubber: (http response, parsed response)
            return _from_parsed(answered[0].status_code, answered[1])
        await self._fresh_credentials()
        from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped, unused-ignore]

        request = AWSRequest(
            method="POST",
            url=request_dict["url"],
            data=request_dict["body"],
            headers=request_dict["headers"],
        )
        request.context = context
        try:
            events.emit(f"request-created.{name}", request=request, operation_name=_OPERATION)
            prepared = request.prepare()
        except Exception as exc:  # botocore's NoCredentialsError, and any hook's failure
            raise StoreError(f"Secrets Manager {_METHOD} failed: {type(exc).__name__}") from None
        mocked = next(
            (r for _, r in events.emit(f"before-send.{name}", request=prepared) if r is not None),
            None,
        )
        if mocked is not None:  # moto's in-process mock: a botocore AWSResponse
            return _from_http(mocked.status_code, dict(mocked.headers), mocked.content)
        http = HttpRequest(
            method="POST",
            url=prepared.url,
            headers=tuple((k, str(v)) for k, v in prepared.headers.items()),
            body=prepared.body if isinstance(prepared.body, bytes) else b"",
        )
        try:
            response = await self._transport.send(http, timeout=self._timeout, max_body=_MAX_BODY)
        except ResponseTooLarge:
            raise StoreError(
                f"Secrets Manager {_METHOD} failed: response over {_MAX_BODY} bytes"
            ) from None
        except ConfigurationError:
            raise
        except TransportError as exc:
            # The message names the method, host and kind of failure only.
            raise _Retryable(StoreError(f"Secrets Manager {_METHOD} failed: {exc}")) from None
        return _from_http(response.status, dict(response.headers), response.body)

    async def _fresh_credentials(self) -> None:
        # botocore refreshes credentials inside signing when they are due, with a
        # blocking call (STS, IMDS, SSO): done in the executor instead.
        credentials = getattr(getattr(self._client, "_request_signer", None), "_credentials", None)
        due = getattr(credentials, "refresh_needed", None)
        if credentials is not None and callable(due) and due():
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(None, credentials.get_frozen_credentials)
            except Exception as exc:
                raise StoreError(
                    f"Secrets Manager {_METHOD} failed: {type(exc).__name__}"
                ) from None


class _Retryable(Exception):
    """An attempt that may succeed if sent again; ``final`` is raised after the last."""

    def __init__(self, final: StoreError) -> None:
        super().__init__()
        self.final = final


def _ssl_context(verify: object) -> tuple[bool, Optional[ssl.SSLContext]]:
    """(understood, the SSL context for the client's ``verify``; None: the system's)."""
    if verify is True or verify is None:
        return True, None
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return True, context
    if isinstance(verify, str):  # botocore's ``verify``: a CA bundle file or directory
        try:
            if os.path.isdir(verify):
                return True, ssl.create_default_context(capath=verify)
            return True, ssl.create_default_context(cafile=verify)
        except (OSError, ssl.SSLError):
            pass
    return False, None


def _request_dict(url: str, params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """The request as botocore's json serializer builds it (``before-call`` handlers see it)."""
    return {
        "url_path": "/",
        "query_string": "",
        "method": "POST",
        "headers": {
            "X-Amz-Target": f"secretsmanager.{_OPERATION}",
            "Content-Type": "application/x-amz-json-1.1",
        },
        "body": json.dumps(params, separators=(",", ":")).encode(),
        "url": url,
        "context": context,
    }


def _from_http(status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The parsed response, or the error it carries (retryable or not)."""
    try:
        payload = json.loads(body) if body else {}
    except (ValueError, RecursionError):
        payload = None
    if status >= 300:
        code = _error_code(payload, headers) or f"HTTP{status}"
        error = AwsError(_METHOD, code, status)
        if status in _RETRY_STATUSES or code in _RETRY_CODES:
            raise _Retryable(error)
        raise error
    if not isinstance(payload, dict):
        raise StoreError(f"Secrets Manager {_METHOD} returned a malformed response")
    parsed: dict[str, Any] = {}
    version = payload.get("VersionId")
    if isinstance(version, str):
        parsed["VersionId"] = version
    binary = payload.get("SecretBinary")
    if isinstance(binary, str):
        try:
            parsed["SecretBinary"] = base64.b64decode(binary, validate=True)
        except (binascii.Error, ValueError):
            raise StoreError(f"Secrets Manager {_METHOD} returned a malformed response") from None
    text = payload.get("SecretString")
    if isinstance(text, str):
        parsed["SecretString"] = text
    return parsed


def _from_parsed(status: int, parsed: dict[str, Any]) -> dict[str, Any]:
    """A response a ``before-call`` handler gave, already parsed by botocore's rules."""
    if status >= 300:
        code = str((parsed.get("Error") or {}).get("Code") or "")
        raise AwsError(_METHOD, code if _CODE.match(code) else "Unknown", status)
    return parsed


def _error_code(payload: object, headers: dict[str, str]) -> Optional[str]:
    """AWS's error code: the body's ``__type`` (after ``#``), else ``x-amzn-ErrorType``."""
    raw: object = payload.get("__type") if isinstance(payload, dict) else None
    if isinstance(raw, str):
        raw = raw.rsplit("#", 1)[-1]
    else:
        lowered = {k.lower(): v for k, v in headers.items()}
        raw = lowered.get("x-amzn-errortype", "").split(":", 1)[0]
    return raw if isinstance(raw, str) and _CODE.match(raw) else None
