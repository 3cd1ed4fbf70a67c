"""The AWS store's reads on the event loop (``roomsecrets.adapters.aws.loop_reader``).

Against moto (real boto3 over HTTP) for the store, and against a scripted aiohttp
server on 127.0.0.1 for what moto never does: failing, throttling, answering
garbage, and letting us check the signature on exactly the bytes that arrived.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import logging
import threading
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Optional

import pytest

pytest.importorskip("boto3")
from aiohttp import web

from roomsecrets.adapters.aws import SecretsManagerStore
from roomsecrets.adapters.aws.errors import AwsError
from roomsecrets.adapters.aws.loop_reader import LoopReader
from roomsecrets.core.errors import StoreError
from roomsecrets.core.ports import SecretKey

KEY = SecretKey(room="r", owner="alice", secret_id="cred")
ACCESS_KEY, SECRET_KEY = "AKIDLOOPREADER", "loop-reader-secret-key"
OK = (200, {}, json.dumps({"VersionId": "v-1", "SecretString": "hello"}).encode())


def client_for(endpoint: str, **config: Any) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "secretsmanager",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(**{"retries": {"mode": "standard", "max_attempts": 2}, **config}),
    )


class Scripted:
    """An HTTP server answering each request with the next scripted reply (the last repeats)."""

    def __init__(self, *replies: tuple[int, dict[str, str], bytes]) -> None:
        self.replies = list(replies)
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []
        self.stall = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append((request.method, request.path_qs, dict(request.headers), body))
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if reply[0] == 0:  # hang until the test lets go
            await self.stall.wait()
        status, headers, payload = reply
        return web.Response(status=status, headers=headers, body=payload)


@asynccontextmanager
async def serving(script: Scripted) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/", script.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        script.stall.set()
        await runner.cleanup()


async def read_with(
    script: Scripted, sleeps: Optional[list[float]] = None, **config: Any
) -> tuple[dict[str, Any], LoopReader]:
    async with serving(script) as endpoint:
        reader = LoopReader.for_client(client_for(endpoint, **config))
        assert reader is not None
        reader._sleep = _recording(sleeps if sleeps is not None else [])
        reader._jitter = lambda: 0.5
        try:
            return await reader.get_secret_value(SecretId="s", VersionStage="AWSCURRENT"), reader
        finally:
            await reader.aclose()


def _recording(sleeps: list[float]) -> Any:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return sleep


# --- the store reads from the loop --------------------------------------------------


def test_a_read_goes_out_from_the_event_loop_and_writes_through_boto3(moto_client) -> None:
    store = SecretsManagerStore(prefix="loop-reads", client=moto_client)
    boto3_calls: list[tuple[str, int]] = []
    real = store._call_now

    def spy(operation: str, params: dict[str, Any]) -> Any:
        boto3_calls.append((operation, threading.get_ident()))
        return real(operation, params)

    store._call_now = spy  # type: ignore[method-assign]

    async def main() -> int:
        await store.put(KEY, type="t", name=None, data=b"value-1")
        for _ in range(3):
            got = await store.get(KEY)
            assert got is not None and got.data == b"value-1"
        await store.aclose()
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert boto3_calls and all(op != "get_secret_value" for op, _ in boto3_calls)
    assert all(thread != loop_thread for _, thread in boto3_calls)


def test_a_read_is_signed_by_the_clients_signer_over_the_bytes_that_arrive() -> None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    script = Scripted(OK)
    got, _ = asyncio.run(read_with(script))
    assert got == {"VersionId": "v-1", "SecretString": "hello"}
    [(method, path, headers, body)] = script.seen
    assert (method, path) == ("POST", "/")
    assert json.loads(body) == {"SecretId": "s", "VersionStage": "AWSCURRENT"}
    assert headers["X-Amz-Target"] == "secretsmanager.GetSecretValue"
    authorization = headers["Authorization"]
    assert authorization.startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")
    assert "/us-east-1/secretsmanager/aws4_request" in authorization
    signed = authorization.split("SignedHeaders=")[1].split(",")[0].split(";")
    # Recompute the signature over what the server received, at the request's own time.
    again = AWSRequest(
        method=method,
        url=f"http://{headers['Host']}{path}",
        data=body,
        headers={name: value for name, value in headers.items() if name.lower() in signed},
    )
    again.context["timestamp"] = headers["X-Amz-Date"]
    auth = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "secretsmanager", "us-east-1")
    canonical = auth.canonical_request(again)
    expected = auth.signature(auth.string_to_sign(again, canonical), again)
    assert authorization.endswith(f"Signature={expected}")
    assert SECRET_KEY not in json.dumps(headers)


# --- retries: botocore's standard mode ----------------------------------------------


def test_a_5xx_and_a_throttle_are_sent_again_with_backoff() -> None:
    throttle = (400, {}, json.dumps({"__type": "ThrottlingException", "message": "slow"}).encode())
    script = Scripted((503, {}, b""), throttle, OK)
    sleeps: list[float] = []
    got, _ = asyncio.run(read_with(script, sleeps, retries={"mode": "standard", "max_attempts": 4}))
    assert got["SecretString"] == "hello"
    assert len(script.seen) == 3
    assert sleeps == [0.5 * 1, 0.5 * 2]  # jitter * min(20, 2 ** (attempt - 1))


def test_attempts_are_the_clients_total_and_the_last_error_is_raised() -> None:
    busy = (500, {}, json.dumps({"__type": "com.amazon#InternalServiceError"}).encode())
    script = Scripted(busy)
    sleeps: list[float] = []
    with pytest.raises(AwsError, match=r"get_secret_value failed: InternalServiceError \(HTTP 500\)"):
        asyncio.run(read_with(script, sleeps, retries={"mode": "standard", "max_attempts": 2}))
    assert len(script.seen) == 3  # botocore's max_attempts counts retries: 1 + 2
    assert sleeps == [0.5, 1.0]


def test_backoff_is_capped_at_20_seconds() -> None:
    script = Scripted((503, {}, b""))
    sleeps: list[float] = []
    with pytest.raises(StoreError):
        asyncio.run(read_with(script, sleeps, retries={"mode": "standard", "max_attempts": 7}))
    assert sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


@pytest.mark.parametrize(
    "error",
    [
        (400, {}, json.dumps({"__type": "AccessDeniedException"}).encode()),
        (400, {"x-amzn-ErrorType": "ResourceNotFoundException:http://internal/"}, b"{}"),
    ],
)
def test_an_error_that_will_not_change_is_sent_once(error) -> None:
    script = Scripted(error)
    with pytest.raises(AwsError) as caught:
        asyncio.run(read_with(script))
    assert len(script.seen) == 1
    assert caught.value.error_code in ("AccessDeniedException", "ResourceNotFoundException")


def test_a_refused_connection_is_retried_then_a_store_error() -> None:
    reader = LoopReader.for_client(client_for("http://127.0.0.1:9"))
    assert reader is not None
    sleeps: list[float] = []
    reader._sleep = _recording(sleeps)

    async def main() -> None:
        try:
            await reader.get_secret_value(SecretId="s", VersionStage="AWSCURRENT")
        finally:
            await reader.aclose()

    with pytest.raises(StoreError, match=r"POST 127\.0\.0\.1:9: connection refused"):
        asyncio.run(main())
    assert len(sleeps) == 2  # three attempts


# --- hostile answers -----------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        (200, {}, b"not json at all, with secret-in-body"),
        (200, {}, b"[" * 200_000),  # deeper than any parser's recursion limit
        (200, {}, json.dumps(["secret-in-body"]).encode()),
        (200, {}, json.dumps({"VersionId": "v", "SecretBinary": "%%secret-in-body%%"}).encode()),
        (200, {}, b'{"SecretString": "' + b"x" * 300_000 + b'"}'),
    ],
    ids=["not-json", "deep", "not-an-object", "bad-base64", "too-large"],
)
def test_a_malformed_answer_is_a_store_error_sent_once_and_never_quoted(reply) -> None:
    script = Scripted(reply)
    with pytest.raises(StoreError) as caught:
        asyncio.run(read_with(script))
    assert len(script.seen) == 1
    assert "secret-in-body" not in str(caught.value) and "xxxx" not in str(caught.value)


@pytest.mark.parametrize(
    "error_type", ["Bad Code secret-in-body", "\ud800", "x" * 500, "<script>"]
)
def test_an_error_code_that_is_not_a_code_is_not_repeated(error_type: str) -> None:
    body = json.dumps({"__type": error_type}).encode()
    with pytest.raises(AwsError) as caught:
        asyncio.run(read_with(Scripted((400, {}, body))))
    assert caught.value.error_code == "HTTP400"
    assert error_type not in str(caught.value)


# --- the client's own machinery ------------------------------------------------------


def test_a_stubber_on_the_client_answers_reads(moto_client) -> None:
    from botocore.stub import Stubber

    store = SecretsManagerStore(prefix="stubbed", client=moto_client)
    asyncio.run(store.put(KEY, type="t", name=None, data=b"live in moto"))
    stubber = Stubber(moto_client)
    stubber.add_response(
        "get_secret_value",
        {"VersionId": "v" * 32, "SecretString": json.dumps({"roomsecrets": 1, "kind": "deleted"})},
        {"SecretId": "stubbed/r/alice/cred", "VersionStage": "AWSCURRENT"},
    )
    with stubber:
        assert asyncio.run(store.get(KEY)) is None  # the stub's tombstone, not moto's record
    stubber.assert_no_pending_responses()


@pytest.mark.parametrize(
    "config",
    [{"retries": {"mode": "adaptive"}}, {"proxies": {"https": "http://127.0.0.1:3128"}}],
    ids=["adaptive", "proxies"],
)
def test_a_client_it_cannot_follow_keeps_reading_through_boto3(moto_endpoint, config) -> None:
    client = client_for(moto_endpoint, **config)
    assert LoopReader.for_client(client) is None
    assert LoopReader.for_client(object()) is None
    store = SecretsManagerStore(prefix="follow", client=client)
    calls: list[str] = []
    real = store._call_now

    def spy(operation: str, params: dict[str, Any]) -> Any:
        calls.append(operation)
        return real(operation, params)

    store._call_now = spy  # type: ignore[method-assign]
    assert asyncio.run(store.get(KEY)) is None
    assert calls == ["get_secret_value"]


def test_credentials_due_for_a_refresh_are_refreshed_off_the_loop() -> None:
    from botocore.credentials import RefreshableCredentials

    refreshed_on: list[int] = []

    def refresh() -> dict[str, str]:
        refreshed_on.append(threading.get_ident())
        return {
            "access_key": ACCESS_KEY, "secret_key": SECRET_KEY, "token": "t",
            "expiry_time": "2999-01-01T00:00:00Z",
        }

    async def main() -> int:
        script = Scripted(OK)
        async with serving(script) as endpoint:
            client = client_for(endpoint)
            client._request_signer._credentials = RefreshableCredentials.create_from_metadata(
                {"access_key": "old", "secret_key": "old", "token": "t",
                 "expiry_time": "2000-01-01T00:00:00Z"},
                refresh_using=refresh, method="test",
            )
            reader = LoopReader.for_client(client)
            assert reader is not None
            await reader.get_secret_value(SecretId="s", VersionStage="AWSCURRENT")
            await reader.aclose()
            assert f"Credential={ACCESS_KEY}/" in script.seen[0][2]["Authorization"]
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert refreshed_on and loop_thread not in refreshed_on


# --- connections, loops, cancellation ------------------------------------------------


def test_the_read_connections_close_when_the_loop_ends_without_aclose(
    moto_client, caplog
) -> None:
    store = SecretsManagerStore(prefix="no-aclose", client=moto_client)
    with caplog.at_level(logging.ERROR, logger="asyncio"), warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        for _ in range(2):  # a second loop: the first one's pool is gone
            assert asyncio.run(store.get(KEY)) is None
        del store
        gc.collect()
    assert not [r for r in caplog.records if "Unclosed" in r.getMessage()]
    assert not [w for w in warned if issubclass(w.category, ResourceWarning)]


def test_a_read_on_a_second_open_loop_goes_through_boto3(moto_client) -> None:
    store = SecretsManagerStore(prefix="two-loops", client=moto_client)
    first = asyncio.new_event_loop()
    try:
        first.run_until_complete(store.put(KEY, type="t", name=None, data=b"v"))
        assert first.run_until_complete(store.get(KEY)) is not None
        box: list[Any] = []
        thread = threading.Thread(target=lambda: box.append(asyncio.run(store.get(KEY))))
        thread.start()
        thread.join(30)
        assert box and box[0] is not None and box[0].data == b"v"
        first.run_until_complete(store.aclose())
    finally:
        first.close()


def test_a_cancelled_read_leaves_the_reader_working() -> None:
    script = Scripted((0, {}, b""), OK)

    async def main() -> dict[str, Any]:
        async with serving(script) as endpoint:
            reader = LoopReader.for_client(client_for(endpoint))
            assert reader is not None
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(
                    reader.get_secret_value(SecretId="s", VersionStage="AWSCURRENT"), 0.5
                )
            try:
                return await reader.get_secret_value(SecretId="s", VersionStage="AWSCURRENT")
            finally:
                await reader.aclose()

    assert asyncio.run(main())["SecretString"] == "hello"


def test_a_binary_value_comes_back_as_bytes() -> None:
    packed = bytes(range(256)) * 3
    reply = (200, {}, json.dumps({"VersionId": "v", "SecretBinary": base64.b64encode(packed).decode()}).encode())
    got, _ = asyncio.run(read_with(Scripted(reply)))
    assert got == {"VersionId": "v", "SecretBinary": packed}


def test_a_read_after_aclose_opens_new_connections_with_the_callers_client(
    moto_client, monkeypatch
) -> None:
    # Were the caller's client dropped, boto3's default would be built: no region here.
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    store = SecretsManagerStore(prefix="after-aclose", client=moto_client)

    async def main() -> None:
        await store.put(KEY, type="t", name=None, data=b"v")
        for _ in range(2):
            got = await store.get(KEY)
            assert got is not None and got.data == b"v"
            await store.aclose()

    asyncio.run(main())


def test_many_concurrent_reads_share_the_pool_and_all_succeed(moto_client) -> None:
    store = SecretsManagerStore(prefix="concurrent-reads", client=moto_client)

    async def main() -> None:
        await store.put(KEY, type="t", name=None, data=b"v")
        got = await asyncio.gather(*(store.get(KEY) for _ in range(200)))
        assert all(record is not None and record.data == b"v" for record in got)
        await store.aclose()

    asyncio.run(main())
