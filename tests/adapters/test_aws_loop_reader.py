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

from .conftest import secretsmanager_client

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
        try:
            return await reader.get_secret_value(SecretId="s", VersionStage="AWSCURRENT"), reader
        finally:
            await reader.aclose()


def boto3_calls_of(store: SecretsManagerStore) -> list[tuple[str, int]]:
    """The calls ``store`` makes through boto3 from now on: (operation, thread id)."""
    calls: list[tuple[str, int]] = []
    real = store._call_now

    def spy(operation: str, params: dict[str, Any]) -> Any:
        calls.append((operation, threading.get_ident()))
        return real(operation, params)

    store._call_now = spy  # type: ignore[method-assign]
    return calls


def _recording(sleeps: list[float]) -> Any:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return sleep


# --- the store reads from the loop --------------------------------------------------


def test_a_read_goes_out_from_the_event_loop_and_writes_through_boto3(moto_client) -> None:
    store = SecretsManagerStore(prefix="loop-reads", client=moto_client)
    boto3_calls = boto3_calls_of(store)

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


# --- retries: the client's own retry mode ---------------------------------------------

THROTTLED = (400, {}, json.dumps({"__type": "ThrottlingException", "message": "slow"}).encode())
DENIED = (400, {}, json.dumps({"__type": "AccessDeniedException"}).encode())
INTERNAL = (500, {}, json.dumps({"__type": "com.amazon#InternalServiceError"}).encode())
SCENARIOS = {
    "5xx-then-ok": [(503, {}, b""), (502, {}, b""), OK],
    "throttled-then-ok": [THROTTLED, OK],
    "always-throttled": [THROTTLED],
    "429-without-a-code": [(429, {}, b"")],
    "denied": [DENIED],
    "always-internal": [INTERNAL],
}


async def _outcome(call: Any) -> tuple[str, Optional[str]]:
    try:
        got = await call()
    except AwsError as exc:
        return "error", exc.error_code
    except Exception as exc:  # boto3's ClientError
        response = getattr(exc, "response", None)
        return "error", (response or {}).get("Error", {}).get("Code")
    return "ok", got["SecretString"]


@pytest.mark.parametrize(
    "retries",
    [{"mode": "standard", "max_attempts": 2}, {"mode": "standard"}, {"mode": "legacy"}],
    ids=["standard-3", "standard-default", "legacy-default"],
)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_read_is_sent_as_often_as_boto3_sends_it_and_ends_the_same(
    scenario: str, retries: dict[str, Any], monkeypatch
) -> None:
    import time

    import boto3
    from botocore.config import Config

    boto3_sleeps: list[float] = []
    monkeypatch.setattr(time, "sleep", boto3_sleeps.append)  # botocore's retry sleep

    async def both() -> list[tuple[int, tuple[str, Optional[str]], int]]:
        seen = []
        for side in ("boto3", "ours"):
            script = Scripted(*SCENARIOS[scenario])
            async with serving(script) as endpoint:
                client = boto3.session.Session().client(
                    "secretsmanager", region_name="us-east-1", endpoint_url=endpoint,
                    aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                    config=Config(retries=retries),
                )
                sleeps: list[float] = []
                if side == "boto3":
                    outcome = await _outcome(lambda client=client: asyncio.to_thread(
                        client.get_secret_value, SecretId="s", VersionStage="AWSCURRENT"
                    ))
                    sleeps = boto3_sleeps
                else:
                    reader = LoopReader.for_client(client)
                    assert reader is not None
                    reader._sleep = _recording(sleeps)
                    outcome = await _outcome(lambda reader=reader: reader.get_secret_value(
                        SecretId="s", VersionStage="AWSCURRENT"
                    ))
                    await reader.aclose()
            seen.append((len(script.seen), outcome, len(sleeps)))
        return seen

    boto3_side, ours = asyncio.run(both())
    assert ours == boto3_side
    assert ours[0] >= 1


def test_a_refused_connection_is_retried_as_boto3_does_then_a_store_error(monkeypatch) -> None:
    import time

    from botocore.exceptions import EndpointConnectionError

    boto3_sleeps: list[float] = []
    monkeypatch.setattr(time, "sleep", boto3_sleeps.append)
    client = client_for("http://127.0.0.1:9")
    with pytest.raises(EndpointConnectionError):
        client.get_secret_value(SecretId="s", VersionStage="AWSCURRENT")
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
    assert len(sleeps) == len(boto3_sleeps) == 2  # three attempts (max_attempts=2 retries)


def test_an_error_code_is_read_as_botocore_reads_it() -> None:
    typed = json.dumps({"__type": "aws.api#ResourceNotFoundException:http://internal/"}).encode()
    with pytest.raises(AwsError) as caught:
        asyncio.run(read_with(Scripted((400, {}, typed))))
    assert caught.value.error_code == "ResourceNotFoundException"  # the store's "missing"


# --- hostile answers -----------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        (200, {}, b"not json at all, with secret-in-body"),
        (200, {}, b"[" * 200_000),  # deeper than any parser's recursion limit
        (200, {}, json.dumps(["secret-in-body"]).encode()),
        (200, {}, json.dumps({"SecretString": "secret-in-body"}).encode()),  # no VersionId
        (200, {}, b'{"SecretString": "' + b"x" * 300_000 + b'"}'),
    ],
    ids=["not-json", "deep", "not-an-object", "no-version", "too-large"],
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
    assert caught.value.error_code == "Unknown"
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
    [
        {"retries": {"mode": "adaptive"}},
        {"proxies": {"https": "http://127.0.0.1:3128"}},
        {"proxies_config": {"proxy_use_forwarding_for_https": True}},
        {"read_timeout": None},
        {"connect_timeout": None},
    ],
    ids=["adaptive", "proxies", "proxies-config", "no-read-timeout", "no-connect-timeout"],
)
def test_a_client_it_cannot_follow_keeps_reading_through_boto3(moto_endpoint, config) -> None:
    client = client_for(moto_endpoint, **config)
    assert LoopReader.for_client(client) is None
    assert LoopReader.for_client(object()) is None
    store = SecretsManagerStore(prefix="follow", client=client)
    calls = boto3_calls_of(store)
    assert asyncio.run(store.get(KEY)) is None
    assert [operation for operation, _ in calls] == ["get_secret_value"]


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


def test_a_dual_stack_client_reads_through_boto3() -> None:
    import boto3
    from botocore.config import Config

    client = boto3.session.Session().client(
        "secretsmanager", region_name="us-east-1", aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY, config=Config(use_dualstack_endpoint=True),
    )
    assert LoopReader.for_client(client) is None  # its rule set sends reads elsewhere
    client = boto3.session.Session().client(
        "secretsmanager", region_name="us-east-1", aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    assert LoopReader.for_client(client) is not None


def test_tls_is_verified_against_botocores_ca_bundle(monkeypatch, tmp_path) -> None:
    import boto3
    import botocore.httpsession

    def client(**kw: Any) -> Any:
        return boto3.session.Session().client(
            "secretsmanager", region_name="us-east-1", aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY, **kw,
        )

    assert LoopReader.for_client(client(verify=False)) is not None
    # verify=True means botocore's bundle: with it missing, we cannot follow the client.
    monkeypatch.setattr(botocore.httpsession, "where", lambda: str(tmp_path / "missing.pem"))
    assert LoopReader.for_client(client(verify=True)) is None
    assert LoopReader.for_client(client(verify=str(tmp_path / "missing.pem"))) is None


def test_credentials_still_due_after_a_refresh_in_the_executor_are_read_through_boto3(
    moto_client,
) -> None:
    import datetime

    from botocore.credentials import RefreshableCredentials

    refreshed_on: list[int] = []

    def failing_refresh() -> dict[str, str]:
        refreshed_on.append(threading.get_ident())
        raise RuntimeError("STS is down")

    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=12)
    client = secretsmanager_client(moto_client.meta.endpoint_url)
    # In botocore's advisory window (15 min), not its mandatory one (10 min): a failed
    # refresh is logged and the old credentials stay, still due.
    client._request_signer._credentials = RefreshableCredentials.create_from_metadata(
        {"access_key": ACCESS_KEY, "secret_key": SECRET_KEY, "token": "t",
         "expiry_time": soon.isoformat()},
        refresh_using=failing_refresh, method="test",
    )
    store = SecretsManagerStore(prefix="still-due", client=client)
    boto3_reads = boto3_calls_of(store)

    async def main() -> int:
        assert await store.get(KEY) is None
        await store.aclose()
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert [operation for operation, _ in boto3_reads] == ["get_secret_value"]  # via boto3
    assert refreshed_on and loop_thread not in refreshed_on


def test_a_store_dropped_on_a_running_loop_logs_nothing(moto_client, caplog) -> None:
    async def main() -> None:
        store = SecretsManagerStore(prefix="dropped", client=moto_client)
        assert await store.get(KEY) is None
        del store
        gc.collect()
        await asyncio.sleep(0.05)

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        asyncio.run(main())
        gc.collect()
    assert not [r.getMessage() for r in caplog.records], caplog.text


def test_reads_after_aclose_keep_their_new_connections() -> None:
    script = Scripted(OK)

    async def main() -> None:
        async with serving(script) as endpoint:
            # One attempt only: a read whose pool is closed under it fails outright.
            reader = LoopReader.for_client(
                client_for(endpoint, retries={"mode": "standard", "max_attempts": 0})
            )
            assert reader is not None
            # Bound to the loop with no pool open yet: aclose has nothing to close, and
            # the cancelled closer must be done before a read opens the next pool.
            reader._bind(asyncio.get_running_loop())
            await asyncio.sleep(0)
            await reader.aclose()
            await reader.get_secret_value(SecretId="s", VersionStage="AWSCURRENT")
            await reader.aclose()
            for _ in range(3):
                await reader.get_secret_value(SecretId="s", VersionStage="AWSCURRENT")
                await asyncio.sleep(0.01)
            await reader.aclose()

    asyncio.run(main())
    assert len(script.seen) == 4


def test_a_read_that_meets_another_open_loops_pool_goes_through_boto3(moto_client) -> None:
    store = SecretsManagerStore(prefix="crossed-loops", client=moto_client)
    other = asyncio.new_event_loop()
    thread = threading.Thread(target=other.run_forever)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(
            store.put(KEY, type="t", name=None, data=b"v"), other
        ).result(30)
        asyncio.run_coroutine_threadsafe(store.get(KEY), other).result(30)  # pool on `other`
        reader = store._reader
        assert isinstance(reader, LoopReader)
        reader._loop = None  # as if this thread's check ran before the other bound it
        got = asyncio.run(store.get(KEY))
        assert got is not None and got.data == b"v"
        asyncio.run_coroutine_threadsafe(store.aclose(), other).result(30)
    finally:
        other.call_soon_threadsafe(other.stop)
        thread.join(10)
        other.close()
