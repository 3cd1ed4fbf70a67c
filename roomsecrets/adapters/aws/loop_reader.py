"""``LoopReader``: ``GetSecretValue`` as async HTTP on the event loop, by the boto3 client's rules.

Why: boto3 blocks, so the store runs its calls in a thread executor. A read then
crosses threads twice (to the worker, and back to the loop), and each crossing is
a thread the scheduler has to wake. On a quiet machine that cost 4-8% of a read
against a local endpoint; with one busy process sharing the CPU it cost 14-18%
(``benchmarks/bench_aws_store.py``). Reads are the hot path (every uncached token
lookup), so they are sent from the loop itself through the aiohttp transport;
writes, leases and listings stay on boto3 in the executor (rare, multi-step, and
where botocore's own request machinery matters most).

What is still the client's
    Only the socket work is ours. The request is built for the ``json`` protocol
    Secrets Manager speaks (``POST /``, ``X-Amz-Target:
    secretsmanager.GetSecretValue``) and then goes through the client's own
    botocore events, as ``Endpoint`` sends them: ``before-parameter-build`` and
    ``before-call`` (a ``botocore.stub.Stubber`` answers there, and then nothing
    is sent), ``request-created`` (where botocore's signer signs it with the
    client's credentials, region and signature version, and adds its retry
    headers), ``before-send`` (moto's in-process mock answers there),
    ``needs-retry`` after every attempt (the client's retry mode decides whether
    and after how long to send again, with its attempt budget and retry quota;
    we sleep with ``asyncio.sleep``) and ``after-call``. The answer is parsed by
    botocore's parser for the protocol. The endpoint is ``meta.endpoint_url``,
    the timeouts ``connect_timeout`` and ``read_timeout``, and TLS is verified
    against the client's CA bundle (botocore's default one when ``verify`` is
    True). Credentials that are due for a refresh are refreshed in the store's
    executor first, so signing never waits on STS or IMDS on the loop.

When boto3 makes the read instead
    :meth:`LoopReader.for_client` returns None, and the store keeps reading
    through boto3, for a client this module cannot follow faithfully: not a
    botocore client, a protocol other than ``json``, proxies, proxy settings or a
    client certificate in its config (botocore applies those itself), ``adaptive``
    retries (a client-side rate limiter that sleeps in ``before-send``), timeouts
    that are not numbers, an endpoint that the client's rule set resolves
    differently from ``meta.endpoint_url`` (dual-stack), a TLS setting it cannot
    read, or no aiohttp installed. The store also uses boto3 for a read made on a
    second event loop while the first is still open (a connection pool belongs
    to one loop), and for a read whose credentials still need a refresh after the
    executor tried one (botocore would retry it while signing, on the loop).

What differs from boto3
    The ``User-Agent`` is ``roomsecrets``. Code that wraps botocore's
    ``_make_api_call`` (some tracers) does not see these reads; handlers of the
    events above do. At most ``max(100, max_pool_connections)`` reads are in
    flight at once per store; a read waiting for a connection counts that wait
    toward its timeout.

Connections
    :meth:`aclose` closes them. A store dropped without it closes them when its
    loop shuts down: ``asyncio.run`` (and aiohttp's runner) cancel the tasks left
    when their main coroutine returns, and a task kept for that closes the pool.
    A loop closed without cancelling its tasks leaves them open until exit: call
    the store's ``aclose`` first.

Responses
    At most 256 KiB is read (a value is at most 64 KiB, 88 KiB as base64). An
    error's code is kept only if it looks like a code: it ends up in an
    exception message. An answer botocore cannot parse is a
    :class:`~roomsecrets.core.errors.StoreError`, never retried.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import ssl
import uuid
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, Optional

from ...core.errors import (
    ConfigurationError,
    ConnectError,
    ProviderTimeout,
    ResponseTooLarge,
    StoreError,
    TransportError,
)
from ...core.oauth.http import HttpRequest
from .errors import AwsError

if TYPE_CHECKING:
    from ..aiohttp_transport import AiohttpTransport

__all__ = ["LoopReader", "ReadThroughBoto3"]

_OPERATION = "GetSecretValue"
_METHOD = "get_secret_value"  # the boto3 name, as in the store's other messages
_MAX_BODY = 256 * 1024
#: AWS closes idle connections after about a minute; a read that meets a closed
#: one fails before or as it is sent, and the retry mode sends it again.
_IDLE_REUSE = 20.0
_MIN_IN_FLIGHT = 100
_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
_MALFORMED = f"Secrets Manager {_METHOD} returned a malformed response"
#: Tasks that close a reader's pool when their loop shuts down (held here: the
#: loop keeps only weak references to its tasks).
_CLOSERS: set[asyncio.Task[None]] = set()


class ReadThroughBoto3(Exception):
    """This read has to be made by boto3 (credentials whose refresh would block)."""


class LoopReader:
    """Reads one secret's value with async HTTP on the running loop (module docstring)."""

    def __init__(
        self,
        client: Any,
        *,
        ssl_context: Optional[ssl.SSLContext],
        executor: Optional[Executor] = None,
    ) -> None:
        from botocore.parsers import create_parser  # type: ignore[import-untyped, unused-ignore]

        from ..aiohttp_transport import AiohttpTransport  # for_client saw it import

        meta = client.meta
        config = meta.config
        self._client = client
        self._events = meta.events
        self._config = config
        self._model = meta.service_model.operation_model(_OPERATION)
        self._parser = create_parser(meta.service_model.protocol)
        self._event = f"{meta.service_model.service_id.hyphenize()}.{_OPERATION}"
        self._url = meta.endpoint_url
        self._timeout = float(config.connect_timeout) + float(config.read_timeout)
        self._transport: AiohttpTransport = AiohttpTransport(
            ssl_context=ssl_context,
            connect_timeout=float(config.connect_timeout),
            limit=max(_MIN_IN_FLIGHT, int(config.max_pool_connections)),
            idle_reuse_limit=_IDLE_REUSE,
        )
        self._executor = executor
        self._sleep = asyncio.sleep
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._closer: Optional[asyncio.Task[None]] = None

    def __repr__(self) -> str:
        return f"LoopReader(url={self._url!r})"

    @classmethod
    def for_client(cls, client: Any, executor: Optional[Executor] = None) -> Optional[LoopReader]:
        """A reader for ``client``, or None where the store should keep using boto3.

        Loads the client's CA bundle, so call it off the loop.
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
            mode = (config.retries or {}).get("mode", "legacy")
            url = meta.endpoint_url
            timeouts = (config.connect_timeout, config.read_timeout)
        except AttributeError:
            return None
        if protocol != "json" or not isinstance(url, str) or mode == "adaptive":
            return None
        if config.proxies or config.proxies_config or getattr(config, "client_cert", None):
            return None
        if not all(isinstance(t, (int, float)) and t > 0 for t in timeouts):
            return None
        if not _resolves_to(client, url):
            return None
        known, context = _ssl_context(verify)
        if not known:
            return None
        try:
            return cls(client, ssl_context=context, executor=executor)
        except Exception:  # a botocore without what we use: boto3 reads, as before
            return None

    def usable_here(self) -> bool:
        """False when another event loop that is still open holds the connection pool."""
        loop = asyncio.get_running_loop()
        return self._loop is None or self._loop is loop or self._loop.is_closed()

    async def aclose(self) -> None:
        """Close the pooled connections (a later read opens new ones)."""
        closer, self._closer, self._loop = self._closer, None, None
        if closer is not None and not closer.done():
            closer.cancel()
            if closer.get_loop() is asyncio.get_running_loop():
                # Let it finish now: cancelled later, it would close a pool
                # that a read after this aclose had opened.
                await asyncio.wait({closer})
        await self._transport.aclose()

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Use ``loop``, and close the connections it opens when it shuts down
        (module docstring, "Connections")."""
        if self._loop is not loop:
            self._loop = loop
            closer = loop.create_task(self._close_at_shutdown())
            _CLOSERS.add(closer)
            closer.add_done_callback(_CLOSERS.discard)
            self._closer = closer

    async def _close_at_shutdown(self) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await self._transport.aclose()

    async def get_secret_value(self, SecretId: str, VersionStage: str) -> dict[str, Any]:
        """``GetSecretValue``: its ``VersionId``, and ``SecretBinary`` or ``SecretString``.

        Raises :class:`~roomsecrets.adapters.aws.errors.AwsError` for an error
        answer, StoreError for anything else that fails, and
        :class:`ReadThroughBoto3` when boto3 has to make this read.
        """
        self._bind(asyncio.get_running_loop())
        events, name = self._events, self._event
        params = {"SecretId": SecretId, "VersionStage": VersionStage}
        context: dict[str, Any] = {"client_config": self._config}
        events.emit(
            f"before-parameter-build.{name}", params=params, model=self._model, context=context
        )
        request_dict = _request_dict(self._url, params, context)
        stubbed = events.emit_until_response(
            f"before-call.{name}", model=self._model, params=request_dict,
            request_signer=None, context=context,
        )[1]
        if stubbed is not None:  # a Stubber: (http response, parsed), nothing sent
            http, parsed = stubbed
        else:
            http, parsed = await self._send(request_dict)
        events.emit(
            f"after-call.{name}", http_response=http, parsed=parsed, model=self._model,
            context=context,
        )
        if http.status_code >= 300:
            code = str((parsed.get("Error") or {}).get("Code") or "")
            raise AwsError(_METHOD, code if _CODE.match(code) else "Unknown", http.status_code)
        return {k: parsed[k] for k in ("VersionId", "SecretBinary", "SecretString") if k in parsed}

    async def _send(self, request_dict: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """Send until the client's retry mode is content (``Endpoint._send_request``)."""
        context = request_dict["context"]
        retries = context.setdefault("retries", {"invocation-id": str(uuid.uuid4())})
        attempts = 1
        while True:
            retries["attempt"] = attempts
            failure: Optional[TransportError] = None
            answer: Optional[tuple[Any, dict[str, Any]]] = None
            try:
                answer = await self._attempt(request_dict)
            except TransportError as exc:
                failure = exc
            delay = _first_answer(self._events.emit(
                f"needs-retry.{self._event}", response=answer, endpoint=None,
                operation=self._model, attempts=attempts,
                caught_exception=None if failure is None else _as_botocore(failure, self._url),
                request_dict=request_dict,
            ))
            if delay is None or delay is False:
                if failure is not None:
                    # The message names the method, host and kind of failure only.
                    raise StoreError(f"Secrets Manager {_METHOD} failed: {failure}") from None
                assert answer is not None
                return answer
            attempts += 1
            await self._sleep(float(delay))

    async def _attempt(self, request_dict: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """One signed request and its parsed answer (TransportError: nothing came back)."""
        from botocore.awsrequest import (  # type: ignore[import-untyped, unused-ignore]
            AWSRequest,
            AWSResponse,
        )

        await self._fresh_credentials()
        request = AWSRequest(
            method="POST", url=request_dict["url"], data=request_dict["body"],
            headers=request_dict["headers"],
        )
        request.context = request_dict["context"]
        try:
            self._events.emit(
                f"request-created.{self._event}", request=request, operation_name=_OPERATION
            )
            prepared = request.prepare()
        except Exception as exc:  # botocore's NoCredentialsError, and any hook's failure
            raise StoreError(f"Secrets Manager {_METHOD} failed: {type(exc).__name__}") from None
        mocked = _first_answer(self._events.emit(f"before-send.{self._event}", request=prepared))
        if mocked is not None:  # moto's in-process mock: a botocore AWSResponse
            http = mocked
            body = mocked.content
        else:
            sent = HttpRequest(
                method="POST",
                url=prepared.url,
                headers=tuple((k, str(v)) for k, v in prepared.headers.items()),
                body=prepared.body if isinstance(prepared.body, bytes) else b"",
            )
            try:
                response = await self._transport.send(
                    sent, timeout=self._timeout, max_body=_MAX_BODY
                )
            except ResponseTooLarge:
                raise StoreError(
                    f"Secrets Manager {_METHOD} failed: response over {_MAX_BODY} bytes"
                ) from None
            except ConfigurationError:
                # The pool is another open loop's: two threads' first reads crossed
                # between usable_here and the send.
                raise ReadThroughBoto3() from None
            http = AWSResponse(prepared.url, response.status, dict(response.headers), None)
            http._content = body = response.body  # the whole body, already read
        try:
            parsed = self._parser.parse(
                {
                    "headers": http.headers,
                    "status_code": http.status_code,
                    "body": body,
                    "context": {"operation_name": _OPERATION},
                },
                self._model.output_shape,
            )
        except Exception:  # not JSON, too deep, bad base64: botocore's own errors
            raise StoreError(_MALFORMED) from None
        if not isinstance(parsed, dict) or (
            http.status_code < 300 and not isinstance(parsed.get("VersionId"), str)
        ):
            raise StoreError(_MALFORMED)
        return http, parsed

    async def _fresh_credentials(self) -> None:
        # botocore refreshes credentials inside signing when they are due, with a
        # blocking call (STS, IMDS, SSO): done in the executor instead, and if
        # they are still due (an early refresh failed, and botocore would try
        # again while signing), this read is boto3's.
        credentials = getattr(getattr(self._client, "_request_signer", None), "_credentials", None)
        due = getattr(credentials, "refresh_needed", None)
        if credentials is None or not callable(due) or not due():
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, credentials.get_frozen_credentials)
        except Exception as exc:
            raise StoreError(f"Secrets Manager {_METHOD} failed: {type(exc).__name__}") from None
        if due():
            raise ReadThroughBoto3()


def _first_answer(responses: list[tuple[Any, Any]]) -> Any:
    """The first handler's answer that is not None, as botocore's ``Endpoint`` takes it."""
    from botocore.hooks import first_non_none_response  # type: ignore[import-untyped, unused-ignore]

    return first_non_none_response(responses)


def _as_botocore(failure: TransportError, url: str) -> Exception:
    """The botocore exception urllib3's failure would have been (retry modes test the class)."""
    from botocore import exceptions  # type: ignore[import-untyped, unused-ignore]

    if isinstance(failure, ConnectError):
        if "timed out" in str(failure):
            kind = exceptions.ConnectTimeoutError
        else:
            kind = exceptions.EndpointConnectionError
    elif isinstance(failure, ProviderTimeout):
        kind = exceptions.ReadTimeoutError
    else:
        kind = exceptions.ConnectionClosedError
    error: Exception = kind(endpoint_url=url)
    return error


def _resolves_to(client: Any, url: str) -> bool:
    """Whether the client's endpoint rule set sends this operation to ``url``, and
    asks nothing more of the request (no extra headers, no other signing region)."""
    resolve = getattr(client, "_resolve_endpoint_ruleset", None)
    if resolve is None:
        return not client.meta.config.use_dualstack_endpoint
    try:
        model = client.meta.service_model.operation_model(_OPERATION)
        context = {"client_region": client.meta.region_name, "client_config": client.meta.config}
        resolved, headers, properties = resolve(
            model, {"SecretId": "x", "VersionStage": "AWSCURRENT"}, context
        )
    except Exception:
        return False
    region = client.meta.region_name
    schemes = (properties or {}).get("authSchemes") or []
    return (
        resolved == url
        and not headers
        and all(s.get("signingRegion", region) == region for s in schemes)
    )


def _ssl_context(verify: object) -> tuple[bool, Optional[ssl.SSLContext]]:
    """(understood, the SSL context for the client's ``verify``)."""
    if verify is None or verify is True:
        # botocore's default bundle (certifi's, where installed), not the system's.
        from botocore.httpsession import where  # type: ignore[import-untyped, unused-ignore]

        verify = where()
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
