"""SecretsManagerStore against moto in server mode: the store contract, then AWS specifics."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import os
import struct
import uuid
from typing import Any, Optional

import pytest

pytest.importorskip("boto3")
pytest.importorskip("moto")

from roomsecrets.adapters.aws import MAX_VALUE_BYTES, SecretsManagerStore
from roomsecrets.adapters.aws.names import MAX_NAME as MAX_SECRET_NAME
from roomsecrets.adapters.aws.names import record_secret_name
from roomsecrets.core.errors import InvalidInput, StoreError, VersionConflict
from roomsecrets.core.inputs import MAX_NAME, MAX_SECRET_BYTES, MAX_TYPE
from roomsecrets.core.ports import SecretKey, SecretRecord
from roomsecrets.testing import FakeClock, StoreContract
from tests.adapters.conftest import secretsmanager_client

TYPE = "application/octet-stream"
WIDE = "\U0001f511"  # four UTF-8 bytes
#: The longest type and name callers may set, in the most bytes: 1,021 and 1,024.
LONGEST_TYPE = WIDE * (MAX_TYPE // 2) + "/" + WIDE * (MAX_TYPE - MAX_TYPE // 2 - 1)
LONGEST_NAME = WIDE * MAX_NAME
#: A packed record's bytes besides its data, at most: the 15-byte header, the
#: longest key a secret name leaves room for (a 1-character prefix and 3 slashes;
#: every key byte takes at least one name character), the longest type and name.
MAX_KEY_BYTES = MAX_SECRET_NAME - 1 - 3
MAX_METADATA = 15 + MAX_KEY_BYTES + len(LONGEST_TYPE.encode()) + len(LONGEST_NAME.encode())
#: The data every record can hold, whatever its key, type and name.
DATA_THAT_ALWAYS_FITS = MAX_VALUE_BYTES - MAX_METADATA


def unique_prefix() -> str:
    return f"test/{uuid.uuid4().hex[:12]}"


def forget_prefix(client: Any, prefix: str) -> None:
    """Remove every secret under ``prefix`` from moto at once (no recovery window)."""
    paginator = client.get_paginator("list_secrets")
    pages = paginator.paginate(
        Filters=[{"Key": "name", "Values": [prefix + "/"]}], IncludePlannedDeletion=True
    )
    for page in pages:
        for entry in page["SecretList"]:
            client.delete_secret(SecretId=entry["ARN"], ForceDeleteWithoutRecovery=True)


def key(secret_id: str = "s", **kw: Any) -> SecretKey:
    kw.setdefault("room", "r")
    kw.setdefault("owner", "alice")
    return SecretKey(secret_id=secret_id, **kw)


@pytest.fixture
def store_on(moto_client: Any):
    """Build stores on the session's moto server, each under a fresh prefix."""

    def build(**kw: Any) -> SecretsManagerStore:
        kw.setdefault("prefix", unique_prefix())
        return SecretsManagerStore(client=moto_client, **kw)

    return build


class TestSecretsManagerStoreContract(StoreContract):
    """The whole store contract, each store under its own prefix on one moto server."""

    @pytest.fixture(autouse=True)
    def _moto(self, moto_client: Any) -> None:
        self.client = moto_client

    async def make_store(self, clock: FakeClock) -> SecretsManagerStore:
        return SecretsManagerStore(prefix=unique_prefix(), client=self.client, clock=clock)

    async def close_store(self, store: SecretsManagerStore) -> None:
        # Each example has its own prefix on the session's one moto server, and
        # moto's ListSecrets scans every secret it holds: without this, each list
        # in the model's invariant gets slower with every example run before it.
        await asyncio.to_thread(forget_prefix, self.client, store.prefix)

    def state_machine_settings(self):  # type: ignore[no-untyped-def]
        from hypothesis import settings

        # Each step is a few HTTP round trips to moto; 50 examples locally, 100 in CI.
        return settings(
            max_examples=100 if os.environ.get("CI") else 50,
            stateful_step_count=30,
            deadline=None,
        )


class TestSecretsManagerStoreContractWithCache(TestSecretsManagerStoreContract):
    """With the read cache on, one store instance still keeps every rule."""

    async def make_store(self, clock: FakeClock) -> SecretsManagerStore:
        return SecretsManagerStore(
            prefix=unique_prefix(), client=self.client, clock=clock, cache_ttl=3600
        )

    def state_machine_settings(self):  # type: ignore[no-untyped-def]
        from hypothesis import settings

        return settings(
            max_examples=50 if os.environ.get("CI") else 25,
            stateful_step_count=30,
            deadline=None,
        )


# --- naming ---------------------------------------------------------------------


def test_one_secret_per_record_with_escaped_injective_names(store_on, moto_client) -> None:
    store = store_on()

    async def main() -> None:
        await store.put(key("a/B_c"), type=TYPE, name=None, data=b"1")
        await store.put(key("a/B_c", delegated_to="bot-1"), type=TYPE, name=None, data=b"2")
        await store.put(key("x", room="../..", owner="Ünï"), type=TYPE, name=None, data=b"3")

    asyncio.run(main())
    listed = moto_client.list_secrets(Filters=[{"Key": "name", "Values": [store.prefix + "/"]}])
    names = sorted(entry["Name"] for entry in listed["SecretList"])
    prefix = store.prefix
    assert names == [
        f"{prefix}/_2e_2e_2f_2e_2e/_c3_9cn_c3_af/x",
        f"{prefix}/r/alice/a_2f_42_5fc",
        f"{prefix}/r/alice/a_2f_42_5fc/bot_2d1",
    ]


def test_a_key_whose_name_would_exceed_512_characters_is_refused_but_leases_fit(store_on) -> None:
    store = store_on()
    fits = key("a" * (512 - len(store.prefix) - len("/r/alice/")))
    too_long = key("a" * (513 - len(store.prefix) - len("/r/alice/")))
    upper = key("A" * 200)  # escaped: 3 characters each

    async def main() -> None:
        await store.put(fits, type=TYPE, name=None, data=b"x")
        assert (await store.get(fits)) is not None
        for bad in (too_long, upper):
            with pytest.raises(InvalidInput, match="512"):
                await store.put(bad, type=TYPE, name=None, data=b"x")
            with pytest.raises(InvalidInput, match="512"):
                await store.get(bad)
        # Leases only need distinct names: a long one is hashed, never refused.
        for name in ("L" * 400, "L" * 399 + "M"):
            assert await store.acquire_lease(name, holder="h", ttl=1) is not None
        assert await store.acquire_lease("L" * 400, holder="other", ttl=1) is None

    asyncio.run(main())


@pytest.mark.parametrize("prefix", ["", "/a", "a/", "a//b", "a b", "ü", 7])
def test_a_prefix_outside_aws_names_is_refused(prefix: Any) -> None:
    with pytest.raises(InvalidInput):
        SecretsManagerStore(prefix=prefix, client=object())


def test_data_too_large_for_one_secret_value_is_refused_before_any_call(store_on) -> None:
    """64 KiB of data (more than the documented limit allows) with the smallest key, type
    and name: 19 bytes over Secrets Manager's cap, refused with the sizes and without an
    AWS call."""
    store = store_on()
    calls: list[str] = []
    real = store._call_now

    def counted(operation: str, params: dict[str, Any]) -> Any:
        calls.append(operation)
        return real(operation, params)

    store._call_now = counted  # type: ignore[method-assign]
    tiny = SecretKey(room="r", owner="o", secret_id="s")

    async def main() -> None:
        with pytest.raises(InvalidInput, match=r"65536 bytes of data and 19 bytes .* 65555-byte"):
            await store.put(tiny, type="/", name=None, data=b"x" * 65536)
        assert calls == []
        assert await store.get(tiny) is None

    asyncio.run(main())


def test_the_documented_data_limit_fits_with_the_longest_key_type_and_name() -> None:
    # docs/limits.md: every store takes every allowed secret.
    assert MAX_SECRET_BYTES + MAX_METADATA <= MAX_VALUE_BYTES


def test_the_longest_key_type_and_name_leave_62968_bytes_for_data(moto_client) -> None:
    """The byte budget, exactly: 15 + 508 + 1,021 + 1,024 bytes of header, key, type and
    name plus 62,968 of data make a 65,536-byte SecretBinary; one byte more is refused
    before any call and changes nothing."""
    assert (MAX_METADATA, DATA_THAT_ALWAYS_FITS) == (2568, 62968)
    store = SecretsManagerStore(prefix="t", client=moto_client)
    room = uuid.uuid4().hex  # the one-character prefix is shared: the room keeps runs apart
    longest = SecretKey(
        room=room, owner="o", secret_id="s" * (MAX_KEY_BYTES - len(room) - len("o"))
    )
    name = f"t/{room}/o/{longest.secret_id}"
    assert len(name) == MAX_SECRET_NAME
    data = os.urandom(DATA_THAT_ALWAYS_FITS)

    async def main() -> None:
        put = await store.put(longest, type=LONGEST_TYPE, name=LONGEST_NAME, data=data)
        want = SecretRecord(
            key=longest, type=LONGEST_TYPE, name=LONGEST_NAME, data=data, version=put.version
        )
        assert put == want
        assert await store.get(longest) == want
        with pytest.raises(InvalidInput, match="62969 bytes of data and 2568 bytes"):
            await store.put(longest, type=LONGEST_TYPE, name=LONGEST_NAME, data=data + b"!")
        assert await store.get(longest) == want

    asyncio.run(main())
    stored = moto_client.get_secret_value(SecretId=name, VersionStage="AWSCURRENT")
    assert len(stored["SecretBinary"]) == MAX_VALUE_BYTES


def packed(*lengths: int) -> bytes:
    """A format 2 header with these six text lengths."""
    return b"rs\x02" + struct.pack(">6H", *lengths)


NONE = 0xFFFF


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (b"xx\x02" + bytes(12) + b"data", "not a roomsecrets value"),
        (b"rs\x03" + bytes(12) + b"data", "not a roomsecrets value"),
        (b"rs\x02\x00\x01", "unreadable record"),  # the header stops short
        (packed(1, 5, 1, NONE, 1, 99) + b"ralicest", "unreadable record"),
        (packed(NONE, 5, 1, NONE, 1, NONE) + b"alicest", "unreadable record"),
        (packed(1, 5, 1, NONE, 2, NONE) + b"ralices\xff\xfe", "unreadable record"),
    ],
    ids=["magic", "format", "short-header", "past-the-end", "room-none", "bad-utf8"],
)
def test_a_damaged_packed_record_is_a_store_error(
    store_on, moto_client, value: bytes, error: str
) -> None:
    store = store_on()
    moto_client.create_secret(
        Name=f"{store.prefix}/r/alice/s", SecretBinary=value, ClientRequestToken=str(uuid.uuid4())
    )
    with pytest.raises(StoreError, match=error):
        asyncio.run(store.get(key()))


# --- values, versions, deletes --------------------------------------------------


def test_record_value_is_packed_binary_and_version_is_the_aws_version_id(
    store_on, moto_client
) -> None:
    """Format 2: b"rs", 2, six big-endian 16-bit lengths (0xFFFF for None), the texts
    in UTF-8, then the data as it is; no SecretString, no base64."""
    store = store_on()

    async def main() -> list[SecretRecord]:
        return [
            await store.put(
                key("k", delegated_to="bot"), type="oauth_token", name="Mäil", data=b"\x00\xff"
            ),
            await store.put(key("n"), type="t/x", name=None, data=b""),
        ]

    delegated, unnamed = asyncio.run(main())
    stored = moto_client.get_secret_value(
        SecretId=f"{store.prefix}/r/alice/k/bot", VersionStage="AWSCURRENT"
    )
    assert uuid.UUID(stored["VersionId"]).int == delegated.version
    assert "SecretString" not in stored
    assert stored["SecretBinary"] == (
        packed(1, 5, 1, 3, 11, 5) + b"ralicekbotoauth_tokenM\xc3\xa4il" + b"\x00\xff"
    )
    stored = moto_client.get_secret_value(
        SecretId=f"{store.prefix}/r/alice/n", VersionStage="AWSCURRENT"
    )
    assert uuid.UUID(stored["VersionId"]).int == unnamed.version
    assert stored["SecretBinary"] == packed(1, 5, 1, NONE, 3, NONE) + b"ralicent/x"


def test_a_lone_surrogate_in_type_or_name_round_trips_as_it_did_in_json(store_on) -> None:
    """Format 1's JSON escapes carried a lone surrogate; format 2's UTF-8 must too."""
    store = store_on()

    async def main() -> None:
        put = await store.put(key(), type="t/\ud800", name="\udfff", data=b"x")
        assert await store.get(key()) == put
        assert (put.type, put.name) == ("t/\ud800", "\udfff")

    asyncio.run(main())


# --- records written before format 2 (JSON in SecretString) ----------------------------


def format_1_value(record_key: SecretKey, type: str, name: Optional[str], data: bytes) -> str:
    """A record exactly as roomsecrets wrote it before format 2 (a frozen copy)."""
    return json.dumps(
        {
            "roomsecrets": 1,
            "kind": "record",
            "room": record_key.room,
            "owner": record_key.owner,
            "secret_id": record_key.secret_id,
            "delegated_to": record_key.delegated_to,
            "type": type,
            "name": name,
            "data": base64.b64encode(data).decode("ascii"),
        },
        separators=(",", ":"),
    )


def write_format_1(
    moto_client: Any,
    store: SecretsManagerStore,
    record_key: SecretKey,
    data: bytes,
    *,
    name: Optional[str] = "Mäil 🔑",
) -> SecretRecord:
    """Create the secret of ``record_key`` holding a format 1 record, as a UUID version."""
    version_id = str(uuid.uuid4())
    moto_client.create_secret(
        Name=record_secret_name(store.prefix, record_key),
        SecretString=format_1_value(record_key, TYPE, name, data),
        ClientRequestToken=version_id,
    )
    return SecretRecord(
        key=record_key, type=TYPE, name=name, data=data, version=uuid.UUID(version_id).int
    )


def test_a_format_1_record_is_read_and_listed_and_its_next_write_stores_format_2(
    store_on, moto_client
) -> None:
    """People have format 1 records in AWS now: get and list read them (version, key,
    type, non-ASCII name, binary data near format 1's ~48 KiB cap), and a
    compare-and-swap from their version succeeds and leaves a SecretBinary."""
    store = store_on()
    data = bytes(index % 256 for index in range(48 * 1024))
    old = write_format_1(moto_client, store, key("k", delegated_to="bot"), data)
    plain = write_format_1(moto_client, store, key("p"), b"", name=None)
    secret_name = f"{store.prefix}/r/alice/k/bot"

    async def main() -> SecretRecord:
        assert await store.get(old.key) == old
        assert await store.get(plain.key) == plain
        assert await store.list("r", "alice") == [old, plain]
        return await store.put(
            old.key, type=TYPE, name="new", data=b"rotated", expected_version=old.version
        )

    new = asyncio.run(main())
    assert new.version != old.version
    stored = moto_client.get_secret_value(SecretId=secret_name, VersionStage="AWSCURRENT")
    assert "SecretString" not in stored
    assert stored["SecretBinary"].startswith(b"rs\x02")
    assert stored["SecretBinary"].endswith(b"rotated")
    assert asyncio.run(store.get(old.key)) == new


def test_compare_and_swap_on_a_format_1_record_works_as_before(store_on, moto_client) -> None:
    """Versions of format 1 records are AWS version ids as before: a stale or wrong
    expected version conflicts (naming the format 1 version) and changes nothing, the
    right one deletes, and a racing writer from the same version loses."""
    store = store_on()
    other = store_on(prefix=store.prefix)
    old = write_format_1(moto_client, store, key(), b"format-1")

    async def main() -> None:
        for wrong in (0, old.version + 1):
            with pytest.raises(VersionConflict) as conflict:
                await store.put(key(), type=TYPE, name=None, data=b"x", expected_version=wrong)
            assert conflict.value.actual == old.version
            with pytest.raises(VersionConflict):
                await store.delete(key(), expected_version=wrong)
        assert await store.get(key()) == old
        first = await store.put(
            key(), type=TYPE, name=None, data=b"a", expected_version=old.version
        )
        with pytest.raises(VersionConflict) as lost:
            await other.put(key(), type=TYPE, name=None, data=b"b", expected_version=old.version)
        assert lost.value.actual == first.version
        assert await other.get(key()) == first

        again = write_format_1(moto_client, store, key("d"), b"to delete")
        assert await store.delete(key("d"), expected_version=again.version) is True
        assert await store.get(key("d")) is None

    asyncio.run(main())


def test_delete_schedules_deletion_with_the_configured_window(store_on, moto_client) -> None:
    store = store_on(recovery_window_days=7)
    name = f"{store.prefix}/r/alice/s"

    async def main() -> None:
        await store.put(key(), type=TYPE, name=None, data=b"x")
        assert await store.delete(key()) is True

    asyncio.run(main())
    described = moto_client.describe_secret(SecretId=name)
    deleted_at = described["DeletedDate"]
    window = deleted_at - datetime.datetime.now(tz=deleted_at.tzinfo)
    assert datetime.timedelta(days=6) < window <= datetime.timedelta(days=7)


def test_default_delete_leaves_the_window_to_aws(store_on, moto_client) -> None:
    store = store_on()
    asyncio.run(store.put(key(), type=TYPE, name=None, data=b"x"))
    asyncio.run(store.delete(key()))
    deleted_at = moto_client.describe_secret(SecretId=f"{store.prefix}/r/alice/s")["DeletedDate"]
    window = deleted_at - datetime.datetime.now(tz=deleted_at.tzinfo)
    assert window > datetime.timedelta(days=29)  # AWS's (and moto's) default: 30 days


@pytest.mark.parametrize("days", [0, 6, 31, True, 7.5])
def test_recovery_window_outside_aws_range_is_refused(days: Any) -> None:
    with pytest.raises(InvalidInput):
        SecretsManagerStore(client=object(), recovery_window_days=days)


def test_recreating_a_key_scheduled_for_deletion_restores_it_with_a_new_version(
    store_on, moto_client
) -> None:
    store = store_on()
    name = f"{store.prefix}/r/alice/s"

    async def main() -> None:
        first = await store.put(key(), type=TYPE, name=None, data=b"one")
        await store.delete(key())
        assert "DeletedDate" in moto_client.describe_secret(SecretId=name)
        with pytest.raises(VersionConflict):
            await store.put(key(), type=TYPE, name=None, data=b"x", expected_version=first.version)
        again = await store.put(key(), type=TYPE, name=None, data=b"two", expected_version=0)
        assert again.version != first.version
        assert "DeletedDate" not in moto_client.describe_secret(SecretId=name)
        assert (await store.get(key())) == again
        assert [r.key for r in await store.list("r", "alice")] == [key()]

    asyncio.run(main())


def test_a_delete_that_lands_after_a_recreate_is_undone(store_on, moto_client) -> None:
    """DeleteSecret is not conditional: if it lands on a secret that holds a new
    record (another writer re-created the key after our tombstone), the record stays."""
    store = store_on()
    other = store_on(prefix=store.prefix)
    name = f"{store.prefix}/r/alice/s"

    async def main() -> None:
        await store.put(key(), type=TYPE, name=None, data=b"one")
        real_schedule = store._schedule_deletion

        async def slow_schedule(secret_name: str) -> None:
            # The other writer re-creates the key between our tombstone and DeleteSecret.
            await other.put(key(), type=TYPE, name=None, data=b"reborn", expected_version=0)
            await real_schedule(secret_name)

        store._schedule_deletion = slow_schedule  # type: ignore[method-assign]
        assert await store.delete(key()) is True
        got = await other.get(key())
        assert got is not None and got.data == b"reborn"
        assert "DeletedDate" not in moto_client.describe_secret(SecretId=name)

    asyncio.run(main())


def test_a_recreate_that_lands_after_delete_secret_restores_the_secret(
    store_on, moto_client
) -> None:
    """moto accepts writes to a secret scheduled for deletion (AWS refuses them): a
    re-create whose read came before DeleteSecret still ends with a live record."""
    store = store_on()
    name = f"{store.prefix}/r/alice/s"

    async def main() -> None:
        await store.put(key(), type=TYPE, name=None, data=b"one")
        real_read = store._read
        deleted_meanwhile = False

        async def read_then_delete(secret_name: str):  # type: ignore[no-untyped-def]
            nonlocal deleted_meanwhile
            state = await real_read(secret_name)
            if not deleted_meanwhile and secret_name == name:
                deleted_meanwhile = True
                await asyncio.to_thread(moto_client.delete_secret, SecretId=name)
            return state

        await store.delete(key())
        await asyncio.to_thread(moto_client.restore_secret, SecretId=name)
        store._read = read_then_delete  # type: ignore[method-assign]
        record = await store.put(key(), type=TYPE, name=None, data=b"two", expected_version=0)
        store._read = real_read  # type: ignore[method-assign]
        assert deleted_meanwhile
        assert "DeletedDate" not in moto_client.describe_secret(SecretId=name)
        assert await store.get(key()) == record

    asyncio.run(main())


def test_wrong_remove_from_version_id_fails_in_moto(moto_client) -> None:
    """The property compare-and-swap rests on: moving AWSCURRENT from a version that
    does not hold it fails (AWS documents it; moto enforces it)."""
    from botocore.exceptions import ClientError

    name = f"{unique_prefix()}/probe"
    first, second, third = (str(uuid.uuid4()) for _ in range(3))
    moto_client.create_secret(Name=name, SecretString="1", ClientRequestToken=first)
    for token in (second, third):
        moto_client.put_secret_value(
            SecretId=name, SecretString=token, ClientRequestToken=token, VersionStages=["x"]
        )
    moto_client.update_secret_version_stage(
        SecretId=name, VersionStage="AWSCURRENT", MoveToVersionId=second, RemoveFromVersionId=first
    )
    with pytest.raises(ClientError) as refused:
        moto_client.update_secret_version_stage(
            SecretId=name, VersionStage="AWSCURRENT", MoveToVersionId=third,
            RemoveFromVersionId=first,
        )
    assert refused.value.response["Error"]["Code"] == "InvalidParameterException"
    current = moto_client.get_secret_value(SecretId=name, VersionStage="AWSCURRENT")
    assert current["VersionId"] == second
    # moto quirk: without VersionStage it returns the last version *put* as current.
    assert moto_client.get_secret_value(SecretId=name)["VersionId"] == first


def test_kms_key_id_is_used_for_new_secrets(store_on, moto_client) -> None:
    store = store_on(kms_key_id="alias/roomsecrets-test")
    asyncio.run(store.put(key(), type=TYPE, name=None, data=b"x"))
    described = moto_client.describe_secret(SecretId=f"{store.prefix}/r/alice/s")
    assert described["KmsKeyId"] == "alias/roomsecrets-test"


def test_list_reads_every_page(store_on) -> None:
    store = store_on()
    store._list_page = 2
    ids = [f"s{index}" for index in range(5)]

    async def main() -> None:
        for secret_id in reversed(ids):
            await store.put(key(secret_id), type=TYPE, name=None, data=b"x")
        await store.delete(key("s3"))
        listed = await store.list("r", "alice")
        assert [r.key.secret_id for r in listed] == ["s0", "s1", "s2", "s4"]

    asyncio.run(main())


# --- the boundary: boto3 off the loop, botocore errors translated ----------------


def test_client_is_created_lazily_with_standard_retries(moto_endpoint, monkeypatch) -> None:
    for name, value in {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    store = SecretsManagerStore(prefix=unique_prefix())
    assert store._client is None

    async def main() -> None:
        await store.put(key(), type=TYPE, name=None, data=b"x")
        got = await store.get(key())
        assert got is not None and got.data == b"x"
        await store.aclose()

    asyncio.run(main())


def test_boto3_calls_run_off_the_event_loop(store_on) -> None:
    import threading

    store = store_on()
    threads = set()
    real = store._call_now

    def spy(operation: str, params: dict[str, Any]) -> Any:
        threads.add(threading.get_ident())
        return real(operation, params)

    store._call_now = spy  # type: ignore[method-assign]

    async def main() -> None:
        await store.put(key(), type=TYPE, name=None, data=b"x")
        await store.get(key())
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert threads and loop_thread not in threads


def test_unreachable_endpoint_is_a_store_error() -> None:
    client = secretsmanager_client("http://127.0.0.1:9", max_attempts=1)
    store = SecretsManagerStore(prefix="unreachable", client=client)
    with pytest.raises(StoreError, match=r"get_secret_value failed: POST 127\.0\.0\.1:9: connection refused") as caught:
        asyncio.run(store.get(key()))
    assert type(caught.value).__module__.startswith("roomsecrets")


@pytest.mark.parametrize("code", ["ThrottlingException", "InternalServiceError", "AccessDeniedException"])
def test_aws_error_responses_are_store_errors(code: str, moto_client) -> None:
    from botocore.stub import Stubber

    stubber = Stubber(moto_client)
    stubber.add_client_error("get_secret_value", service_error_code=code, http_status_code=400)
    store = SecretsManagerStore(prefix="stubbed", client=moto_client)
    with stubber, pytest.raises(StoreError, match=code):
        asyncio.run(store.get(key()))


def test_missing_region_is_a_store_error(monkeypatch) -> None:
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    store = SecretsManagerStore(prefix="noregion")
    with pytest.raises(StoreError, match="NoRegionError"):
        asyncio.run(store.get(key()))


# --- the read cache ----------------------------------------------------------------


class CountingStore:
    """A cached store and an uncached one ("another process") on one prefix, with a
    count of the AWS calls the cached one makes."""

    def __init__(self, build: Any, **kw: Any) -> None:
        self.clock = FakeClock()
        self.store = build(clock=self.clock, cache_ttl=30, **kw)
        self.other = build(prefix=self.store.prefix)
        self.calls: list[str] = []
        real = self.store._call

        async def counted(operation: str, **params: Any) -> Any:
            self.calls.append(operation)
            return await real(operation, **params)

        self.store._call = counted


def test_cache_is_off_by_default(store_on) -> None:
    box = CountingStore(lambda **kw: store_on(**{**kw, "cache_ttl": None}))

    async def main() -> None:
        await box.store.put(key(), type=TYPE, name=None, data=b"x")
        box.calls.clear()
        await box.store.get(key())
        await box.store.get(key())
        assert box.calls == ["get_secret_value", "get_secret_value"]

    asyncio.run(main())


def test_cached_reads_make_no_call_until_the_ttl_passes(store_on) -> None:
    box = CountingStore(store_on)

    async def main() -> None:
        await box.other.put(key(), type=TYPE, name=None, data=b"x")
        first = await box.store.get(key())
        assert box.calls == ["get_secret_value"]
        for _ in range(5):
            assert await box.store.get(key()) is first
        assert box.calls == ["get_secret_value"]
        box.clock.advance(30)
        assert await box.store.get(key()) == first
        assert box.calls == ["get_secret_value", "get_secret_value"]

    asyncio.run(main())


def test_missing_keys_are_not_cached(store_on) -> None:
    box = CountingStore(store_on)

    async def main() -> None:
        assert await box.store.get(key()) is None
        written = await box.other.put(key(), type=TYPE, name=None, data=b"x")
        assert await box.store.get(key()) == written

    asyncio.run(main())


def test_own_writes_and_deletes_update_the_cache(store_on) -> None:
    box = CountingStore(store_on)

    async def main() -> None:
        written = await box.store.put(key(), type=TYPE, name=None, data=b"x")
        box.calls.clear()
        assert await box.store.get(key()) == written
        assert box.calls == []
        await box.store.delete(key())
        box.calls.clear()
        assert await box.store.get(key()) is None
        assert box.calls == ["get_secret_value"]

    asyncio.run(main())


def test_cas_put_from_a_stale_cached_version_is_refused_by_aws(store_on) -> None:
    box = CountingStore(store_on)

    async def main() -> None:
        await box.other.put(key(), type=TYPE, name=None, data=b"old")
        stale = await box.store.get(key())
        assert stale is not None
        newer = await box.other.put(key(), type=TYPE, name=None, data=b"new")
        assert await box.store.get(key()) is stale  # served from the cache, within its TTL
        box.calls.clear()
        with pytest.raises(VersionConflict) as conflict:
            await box.store.put(
                key(), type=TYPE, name=None, data=b"lost", expected_version=stale.version
            )
        assert "update_secret_version_stage" in box.calls  # AWS said no, not the cache
        assert conflict.value.actual == newer.version
        assert await box.store.get(key()) == newer  # the failed write dropped the entry
        assert (await box.other.get(key())) == newer

    asyncio.run(main())


def test_reads_while_holding_a_lease_bypass_the_cache(store_on) -> None:
    """The core re-reads a credential under the refresh lease with a plain ``get``:
    that read must see another process's refresh, never a cached copy."""
    box = CountingStore(store_on)

    async def main() -> None:
        await box.other.put(key(), type=TYPE, name=None, data=b"rt-1")
        assert (await box.store.get(key())).data == b"rt-1"  # cached
        await box.other.put(key(), type=TYPE, name=None, data=b"rt-2")  # another process refreshed
        assert (await box.store.get(key())).data == b"rt-1"
        lease = await box.store.acquire_lease("refresh", holder="me", ttl=30)
        assert lease is not None
        await box.other.put(key(), type=TYPE, name=None, data=b"rt-3")
        box.calls.clear()
        assert (await box.store.get(key())).data == b"rt-3"
        assert (await box.store.get(key())).data == b"rt-3"
        assert box.calls == ["get_secret_value", "get_secret_value"]
        await box.store.release_lease(lease)
        box.calls.clear()
        assert (await box.store.get(key())).data == b"rt-3"  # cached again
        assert box.calls == []

    asyncio.run(main())


def test_a_failed_acquire_empties_the_cache(store_on) -> None:
    """A process waiting for another's refresh polls the store; it must see the save."""
    box = CountingStore(store_on)

    async def main() -> None:
        await box.other.put(key(), type=TYPE, name=None, data=b"rt-1")
        await box.store.get(key())
        assert await box.other.acquire_lease("refresh", holder="them", ttl=30) is not None
        await box.other.put(key(), type=TYPE, name=None, data=b"rt-2")
        assert await box.store.acquire_lease("refresh", holder="me", ttl=30) is None
        assert (await box.store.get(key())).data == b"rt-2"

    asyncio.run(main())


def test_a_read_that_began_before_a_write_is_not_cached(store_on) -> None:
    box = CountingStore(store_on)

    async def main() -> None:
        await box.store.put(key(), type=TYPE, name=None, data=b"one")
        box.store._cache.clear()
        real_read = box.store._read

        async def slow_read(name: str):  # type: ignore[no-untyped-def]
            state = await real_read(name)  # sees "one"
            box.store._read = real_read
            written.append(await box.store.put(key(), type=TYPE, name=None, data=b"two"))
            return state

        written: list[Any] = []
        box.store._read = slow_read
        assert (await box.store.get(key())).data == b"one"
        (written,) = written
        assert await box.store.get(key()) == written  # not the stale "one"

    asyncio.run(main())


def test_racing_deletes_and_recreates_never_leave_a_live_record_scheduled_for_deletion(
    store_on, moto_client
) -> None:
    """DeleteSecret is not conditional, and moto even accepts writes to a secret
    scheduled for deletion: after any race, a record that reads as present is not
    about to be purged, and a secret scheduled for deletion reads as missing."""
    store = store_on()
    other = store_on(prefix=store.prefix)
    name = f"{store.prefix}/r/alice/s"

    async def churn(target: SecretsManagerStore, seed: int) -> None:
        for step in range(6):
            if (seed + step) % 2:
                await target.put(key(), type=TYPE, name=None, data=b"%d.%d" % (seed, step))
            else:
                await target.delete(key())

    async def main() -> None:
        await asyncio.gather(*(churn(store if i % 2 else other, i) for i in range(8)))
        got = await store.get(key())
        scheduled = "DeletedDate" in await asyncio.to_thread(
            moto_client.describe_secret, SecretId=name
        )
        assert not (got is not None and scheduled), "a live record is scheduled for deletion"

    for _ in range(3):
        asyncio.run(main())


def test_boto3_calls_run_on_the_given_executor(store_on) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    seen: set[str] = set()
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="aws-store") as executor:
        store = store_on(executor=executor)
        real = store._call_now

        def spy(operation: str, params: dict[str, Any]) -> Any:
            seen.add(threading.current_thread().name)
            return real(operation, params)

        store._call_now = spy  # type: ignore[method-assign]
        asyncio.run(store.put(key(), type=TYPE, name=None, data=b"x"))
    assert seen and all(name.startswith("aws-store") for name in seen)


@pytest.mark.parametrize("module", ["roomsecrets.adapters.aws.store", "roomsecrets.adapters.aws.names"])
def test_docstring_examples(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
