"""``SecretsManagerStore``: a :class:`~roomsecrets.core.ports.SecretStore` on AWS Secrets Manager.

One AWS secret per record, one per lease. Reads (``GetSecretValue``) are sent
from the event loop with aiohttp, signed by the boto3 client
(:mod:`roomsecrets.adapters.aws.loop_reader` says why and when not); every
other boto3 call runs in a thread executor, never on the event loop, and every
botocore/boto3 exception or error response becomes
one of ours at the boundary (:class:`~roomsecrets.core.errors.StoreError`, or
``None``/``False`` where AWS says the secret does not exist).

Names
    ``{prefix}/{room}/{owner}/{secret_id}[/{delegated_to}]`` and
    ``{prefix}/_leases/{lease name}``, each component escaped injectively (see
    :mod:`roomsecrets.adapters.aws.names`). A key whose name would exceed
    AWS's 512 characters raises :class:`~roomsecrets.core.errors.InvalidInput`
    (a lease name that long is hashed instead: it only has to be distinct).
    Prefixes of two stores must not nest (``app`` and ``app/r``).

Values
    A record is one ``SecretBinary`` value, packed (format 2)::

        b"rs", 2             magic and format: 3 bytes
        6 x uint16           big-endian byte lengths of room, owner, secret_id,
                             delegated_to, type, name (0xFFFF: None)
        the six texts        UTF-8, in that order
        data                 as it is, to the end of the value

    The key and metadata change atomically with the data (tags are not
    versioned). Secrets Manager caps a value at 65,536 bytes (``SecretString``
    and ``SecretBinary`` alike, and a version holds one of them, not both), and
    the data shares them with the rest: the 15-byte header, the key (at most
    508 bytes: each of its UTF-8 bytes takes at least one of the secret name's
    512 characters) and the type and name (the core allows 256 characters
    each: at most 1,021 UTF-8 bytes for a type, which holds a ``/``, and 1,024
    for a name). So 62,968 bytes of data always fit. The core's own limit, 64
    KiB (``MAX_SECRET_BYTES``), never does: even the smallest key, type and
    name take 19 bytes. A value over 65,536 bytes raises InvalidInput before
    any call.

    Tombstones and leases are small JSON ``SecretString`` values
    (``{"roomsecrets": 1, "kind": ...}``). Records written before format 2 are
    JSON ``SecretString`` values too (the key, ``type``, ``name`` and base64
    ``data``, about 48 KiB of data at most); they are still read, and the next
    write of the key stores format 2. A roomsecrets older than format 2 cannot
    read a format 2 record (StoreError): upgrade every process that reads a
    prefix before any process writes to it.

Versions
    A record's version is the 128-bit integer of the UUID that names its AWS
    version (we choose it: it is the ``ClientRequestToken`` of the write).
    Random UUIDs never repeat, so a version is never reused for a key, whatever
    happens in between: a delete with a recovery window, a restore, a forced or
    expired deletion that forgets every old version, another region. A counter
    kept in the value would restart at 1 after AWS purges a deleted secret (7-30
    days later, or at once when forced), which is exactly the ABA case. The
    integers are large (up to 2**128) and not ordered; the contract asks for
    neither small nor growing versions.

Compare-and-swap
    The one atomic step AWS offers is moving the ``AWSCURRENT`` label:
    ``UpdateSecretVersionStage(MoveToVersionId=new, RemoveFromVersionId=old)``
    fails when ``old`` no longer holds the label (AWS documents this; moto
    enforces it too). So a write first adds its value as a new version under a
    private label (``PutSecretValue(VersionStages=["roomsecrets-staged"])``,
    which AWS moves from version to version, so abandoned writes are never
    pinned), then moves ``AWSCURRENT`` from the version the caller expects. A
    ``put(expected_version=n)`` costs two calls and no read. A refused move is
    checked with ``DescribeSecret``: if our version holds the label after all
    (botocore retried a move that had landed) the write succeeded. Writes that
    must win (``expected_version=None``, leases) read again and retry after a
    lost race, with jittered exponential backoff, and raise StoreError after
    32 lost rounds.

    Creating a secret only ever writes an *empty* value (a tombstone, or a free
    lease); the real value then goes through the same move. So nothing relies
    on ``CreateSecret`` being atomic, which moto server does not promise (its
    name check and insert run without a lock; a lost race there would let the
    second create silently replace the first).

Deletes
    ``delete`` writes a tombstone through the compare-and-swap above (that is
    the moment the record is gone), then asks AWS to delete the secret
    (``DeleteSecret``, with ``recovery_window_days`` or AWS's default window; a
    forced delete is not offered, as it could not be undone if a re-create
    raced it). Reads treat a tombstone and a secret scheduled for deletion as
    missing. Writing a key whose secret is scheduled for deletion restores it
    (``RestoreSecret``; its value is a tombstone) and writes over the
    tombstone. Because ``DeleteSecret`` is not conditional, whoever deletes or
    re-creates checks afterwards (``DescribeSecret``) that a secret scheduled
    for deletion does not hold a live record, and restores it if it does.

Leases
    A lease is a secret whose value holds ``holder`` and ``expires_at`` (by the
    injected ``clock``); acquire, renew and release are compare-and-swaps on
    it. Each one adds a secret version: Secrets Manager keeps at most about 100
    versions and removes unlabelled ones only after 24 hours, so one credential
    refreshed more than ~40 times a day risks the versions quota on its lease.

Read cache (``cache_ttl``)
    Off by default. When on, ``get`` serves a record this store read or wrote
    less than ``cache_ttl`` seconds ago (by ``clock``) without a round trip,
    like ``aws-secretsmanager-caching``. Handing out a cached OAuth credential
    is safe until its access token's own expiry: an access token is a bearer
    token the provider honours until ``expires_at`` whether or not someone
    refreshed meanwhile, and the core decides "needs refresh" from that very
    ``expires_at``, so a stale copy is never used past it. What must never come
    from a cache is the credential a refresh starts from (an old refresh token
    replayed makes providers revoke the grant). The core reads it with the
    same ``get`` right after taking the refresh lease, so: while this store
    holds any lease, ``get`` goes to AWS; every ``acquire_lease`` call empties
    the cache (another process may be refreshing); a write or delete by this
    store replaces its cache entry, and a failed one drops it; a read that
    began before any of these is not cached. Compare-and-swap never consults
    the cache: a ``put`` with a version read from a stale entry is refused by
    AWS. Missing keys are not cached. Other processes' writes show up here
    within ``cache_ttl``.

Where moto (5.x) differs from AWS's documentation, and how this store copes:
``GetSecretValue`` without ``VersionStage`` returns the version that was last
*put* as current, ignoring ``UpdateSecretVersionStage`` (we always pass
``VersionStage="AWSCURRENT"``); ``PutSecretValue`` and
``UpdateSecretVersionStage`` succeed on a secret scheduled for deletion (AWS
refuses with ``InvalidRequestException``; hence the checks after deletes and
re-creates); ``CreateSecret`` on a name scheduled for deletion gives
``ResourceExistsException`` (AWS: ``InvalidRequestException``; both are
handled); moto server runs requests in threads without a lock around its
model, so ``CreateSecret``'s check-then-insert is not atomic in principle, and
reads do fail with HTTP 500 ("dictionary changed size during iteration") while
another request changes the secret (botocore retries them); the 64 KiB value
and 512-character name limits and the name alphabet are not enforced (we check
them ourselves).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import json
import logging
import re
import struct
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, Literal, Optional, Union

from botocore.exceptions import (  # type: ignore[import-untyped, unused-ignore]
    BotoCoreError,
    ClientError,
)

from ...core.errors import InvalidInput, LeaseLost, StoreError, VersionConflict
from ...core.oauth.retry import RetryPolicy
from ...core.ports import Clock, Lease, SecretKey, SecretRecord
from ...core.store_arguments import (
    check_expected_version,
    check_key,
    check_lease,
    check_name,
    check_ttl,
    delegated_order,
    list_order,
)
from .errors import AwsError
from .loop_reader import LoopReader, ReadThroughBoto3
from .names import (
    MAX_NAME,
    check_prefix,
    escape,
    lease_secret_name,
    owner_folder,
    record_secret_name,
    room_folder,
)

if TYPE_CHECKING:
    from ...core.ports import SecretStore

__all__ = ["MAX_VALUE_BYTES", "SecretsManagerStore"]

#: Secrets Manager's cap on a secret value (``SecretString`` or ``SecretBinary``), in bytes.
MAX_VALUE_BYTES = 65536

_log = logging.getLogger("roomsecrets.aws")

_CURRENT = "AWSCURRENT"
#: Our private staging label for a version that is written but not yet current.
_STAGED = "roomsecrets-staged"
#: The format of JSON values: tombstones, leases, and records written before format 2.
_FORMAT = 1
#: The format of packed records (``SecretBinary``; module docstring, "Values").
_PACKED = 2
_MAGIC = b"rs"
_HEADER = struct.Struct(">2sB6H")
#: The length a packed text has when it is None (``delegated_to``, ``name``).
_NONE = 0xFFFF
#: Rounds of read-and-swap before giving up on a key other writers keep changing.
_ATTEMPTS = 32
_LIST_PAGE = 100
# Capped exponential backoff with full jitter (the core's RetryPolicy): writers
# that lost a compare-and-swap race spread out instead of colliding again.
_BACKOFF = RetryPolicy(attempts=_ATTEMPTS, base_delay=0.005, max_delay=0.2)
_LOST_RACE = StoreError("another writer changed the secret first")
_MAX_CACHED = 10_000
_TOMBSTONE = json.dumps({"roomsecrets": _FORMAT, "kind": "deleted"}, separators=(",", ":"))


class _Absent(enum.Enum):
    #: No secret has this name.
    MISSING = "missing"
    #: The secret is scheduled for deletion (AWS refuses to read it).
    SCHEDULED = "scheduled"


class _Current:
    """The ``AWSCURRENT`` version of a secret: its AWS version id and decoded value."""

    __slots__ = ("payload", "version_id")

    def __init__(self, version_id: str, payload: Mapping[str, Any]) -> None:
        self.version_id = version_id
        self.payload = payload


_State = Union[_Absent, _Current]
#: A secret value: JSON text (``SecretString``) or a packed record (``SecretBinary``).
_Value = Union[str, bytes]


class _Swap(enum.Enum):
    #: Our version is current now.
    DONE = "done"
    #: The expected version was no longer current; nothing changed.
    CONFLICT = "conflict"
    #: The secret does not exist or is scheduled for deletion; nothing changed.
    ABSENT = "absent"


class _ReadCache:
    """Records this store read or wrote, each served for ``ttl`` seconds by ``clock``."""

    def __init__(self, ttl: float, clock: Clock) -> None:
        self.ttl = ttl
        self._clock = clock
        self._entries: dict[SecretKey, tuple[float, SecretRecord]] = {}
        #: Bumped by every change this store makes and every lease acquisition;
        #: a read that began under an older generation may be stale, and is not kept.
        self.generation = 0

    def get(self, key: SecretKey) -> Optional[SecretRecord]:
        entry = self._entries.get(key)
        if entry is None:
            return None
        age = self._clock() - entry[0]
        if 0 <= age < self.ttl:
            return entry[1]
        del self._entries[key]
        return None

    def fill(self, key: SecretKey, record: Optional[SecretRecord], generation: int) -> None:
        """Keep what a read that began at ``generation`` returned, if nothing changed since."""
        if generation == self.generation:
            self._set(key, record)

    def wrote(self, key: SecretKey, record: Optional[SecretRecord]) -> None:
        """This store just wrote ``record`` (None: deleted) at ``key``."""
        self.generation += 1
        self._set(key, record)

    def forget(self, key: SecretKey) -> None:
        self.generation += 1
        self._entries.pop(key, None)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()

    def _set(self, key: SecretKey, record: Optional[SecretRecord]) -> None:
        if record is None:
            self._entries.pop(key, None)
            return
        if len(self._entries) >= _MAX_CACHED:
            self._entries.clear()  # bounded; refilled by the next reads
        self._entries[key] = (self._clock(), record)


class SecretsManagerStore:
    """Keeps secrets and leases in AWS Secrets Manager, one AWS secret each.

    ``client`` is a boto3 ``secretsmanager`` client; by default one is created
    on first use from boto3's default credentials and region, with botocore's
    ``retry_mode`` (``"standard"`` or ``"adaptive"``) and ``max_attempts``.
    ``clock`` decides lease expiry and cache age. ``kms_key_id`` encrypts new
    secrets with that KMS key (AWS's default key otherwise).
    ``recovery_window_days`` (7-30) is how long a deleted secret stays
    restorable; ``None`` leaves AWS's default (30 days). ``cache_ttl`` turns on
    the read cache (module docstring). ``executor`` runs the boto3 calls (the
    event loop's default executor otherwise); reads go out from the event loop
    where the client allows it (:mod:`~roomsecrets.adapters.aws.loop_reader`),
    and :meth:`aclose` closes their connections.

    Invalid arguments raise :class:`~roomsecrets.core.errors.InvalidInput`
    (also a key whose AWS name would exceed 512 characters, or data too large
    for one secret value); AWS failures, throttling after botocore's retries
    and network errors raise :class:`~roomsecrets.core.errors.StoreError`.

    >>> store = SecretsManagerStore(prefix="myapp/roomsecrets", cache_ttl=30)
    >>> store
    SecretsManagerStore(prefix='myapp/roomsecrets', cache_ttl=30)
    """

    def __init__(
        self,
        prefix: str = "roomsecrets",
        client: Any = None,
        *,
        clock: Clock = time.time,
        kms_key_id: Optional[str] = None,
        recovery_window_days: Optional[int] = None,
        cache_ttl: Optional[float] = None,
        executor: Optional[Executor] = None,
        retry_mode: str = "standard",
        max_attempts: int = 5,
    ) -> None:
        self._prefix = check_prefix(prefix)
        if kms_key_id is not None and (not isinstance(kms_key_id, str) or not kms_key_id):
            raise InvalidInput("kms_key_id must be a non-empty string or None")
        if recovery_window_days is not None and (
            isinstance(recovery_window_days, bool)
            or not isinstance(recovery_window_days, int)
            or not 7 <= recovery_window_days <= 30
        ):
            raise InvalidInput("recovery_window_days must be None or an integer from 7 to 30")
        if cache_ttl is not None:
            check_ttl(cache_ttl, "cache_ttl")
        if retry_mode not in ("standard", "adaptive"):
            raise InvalidInput("retry_mode must be 'standard' or 'adaptive'")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise InvalidInput("max_attempts must be an integer >= 1")
        self._client = client
        self._owns_client = client is None
        self._client_lock = threading.Lock()
        # None: not decided yet; False: reads go through boto3 too.
        self._reader: Union[LoopReader, Literal[False], None] = None
        self._clock = clock
        self._kms_key_id = kms_key_id
        self._recovery_window_days = recovery_window_days
        self._cache_ttl = cache_ttl
        self._cache = None if cache_ttl is None else _ReadCache(cache_ttl, clock)
        self._executor = executor
        self._retry_mode = retry_mode
        self._max_attempts = max_attempts
        self._list_page = _LIST_PAGE
        # Leases this store holds, (name, holder) -> expires_at: while any is
        # held, reads bypass the cache (module docstring, "Read cache").
        self._held: dict[tuple[str, str], float] = {}

    def __repr__(self) -> str:
        return f"SecretsManagerStore(prefix={self._prefix!r}, cache_ttl={self._cache_ttl!r})"

    @property
    def prefix(self) -> str:
        """The name prefix of every secret this store writes."""
        return self._prefix

    async def aclose(self) -> None:
        """Close the read connections, and the boto3 client if this store created it."""
        reader, self._reader = self._reader, None
        if reader:
            await reader.aclose()
        # A caller's client is the caller's: kept, so a later call still uses it
        # (not boto3's default client on the default credentials).
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await asyncio.get_running_loop().run_in_executor(self._executor, client.close)

    # --- records --------------------------------------------------------------

    async def get(self, key: SecretKey) -> Optional[SecretRecord]:
        """Return the record at ``key``, or None (also for a deleted one)."""
        check_key(key)
        cache = self._cache
        generation = 0
        if cache is not None:
            if not self._holds_a_lease():
                hit = cache.get(key)
                if hit is not None:
                    return hit
            generation = cache.generation
        name = record_secret_name(self._prefix, key)
        state = await self._read(name)
        record = self._record_from(state, name)
        if record is not None and record.key != key:
            raise StoreError(f"secret {name} holds another key")
        if cache is not None:
            cache.fill(key, record, generation)
        return record

    async def put(
        self,
        key: SecretKey,
        *,
        type: str,
        name: Optional[str],
        data: bytes,
        expected_version: Optional[int] = None,
    ) -> SecretRecord:
        """Write ``data`` at ``key``; return the stored record with its new version.

        Raises :class:`VersionConflict` (and changes nothing) when
        ``expected_version`` does not match; InvalidInput when the value would
        not fit in one secret.
        """
        check_key(key)
        check_name("type", type)
        if name is not None and not isinstance(name, str):
            raise InvalidInput("name must be a string or None")
        if not isinstance(data, bytes):
            raise InvalidInput(f"data must be bytes, not {data.__class__.__name__}")
        check_expected_version(expected_version)
        secret_name = record_secret_name(self._prefix, key)
        data = bytes(data)  # a bytes subclass could carry mutable state
        value = _pack_record(key, type, name, data)
        try:
            version_id = await self._write(secret_name, value, expected_version)
        except BaseException:
            if self._cache is not None:
                self._cache.forget(key)
            raise
        record = SecretRecord(
            key=key, type=type, name=name, data=data, version=_version_of(version_id)
        )
        if self._cache is not None:
            self._cache.wrote(key, record)
        return record

    async def delete(self, key: SecretKey, *, expected_version: Optional[int] = None) -> bool:
        """Delete ``key``; True if something was deleted.

        Raises :class:`VersionConflict` (and deletes nothing) when
        ``expected_version`` does not match.
        """
        check_key(key)
        check_expected_version(expected_version)
        secret_name = record_secret_name(self._prefix, key)
        try:
            deleted = await self._remove(secret_name, expected_version)
        except BaseException:
            if self._cache is not None:
                self._cache.forget(key)
            raise
        if self._cache is not None:
            self._cache.wrote(key, None)
        return deleted

    # --- leases ---------------------------------------------------------------

    async def acquire_lease(self, name: str, *, holder: str, ttl: float) -> Optional[Lease]:
        """Take the lease ``name`` for ``ttl`` seconds; None if someone else holds it.

        The same holder acquiring again extends its lease to ``now + ttl``.
        """
        check_name("lease name", name)
        check_name("holder", holder)
        check_ttl(ttl, "ttl")
        secret_name = lease_secret_name(self._prefix, name)
        if self._cache is not None:
            # A lease is taken to change a record; whoever holds it may be
            # changing one now, so nothing cached is trusted past this point.
            self._cache.clear()
        for attempt in range(_ATTEMPTS):
            await _after_lost_race(attempt)
            now = self._clock()
            lease = Lease(name=name, holder=holder, expires_at=now + ttl)
            current = await self._lease_state(secret_name, name)
            if current is None:
                continue  # it was just created or restored: read it again
            if current[1] is not None:
                held = current[1]
                if held.holder != holder and held.expires_at > now:
                    return None
            outcome = await self._swap(secret_name, current[0], _lease_value(lease))
            if outcome is _Swap.DONE:
                self._held[(name, holder)] = lease.expires_at
                return lease
        raise _busy(secret_name)

    async def renew_lease(self, lease: Lease, *, ttl: float) -> Lease:
        """Extend a held lease to ``now + ttl``.

        Raises :class:`LeaseLost` if it expired or another holder has it now.
        """
        check_lease(lease)
        check_ttl(ttl, "ttl")
        secret_name = lease_secret_name(self._prefix, lease.name)
        for attempt in range(_ATTEMPTS):
            await _after_lost_race(attempt)
            now = self._clock()
            current = await self._lease_state(secret_name, lease.name, create=False)
            held = None if current is None else current[1]
            if held is None or held.holder != lease.holder or held.expires_at <= now:
                self._held.pop((lease.name, lease.holder), None)
                raise LeaseLost(f"lease {lease.name!r} is no longer held by {lease.holder!r}")
            assert current is not None
            renewed = Lease(name=lease.name, holder=lease.holder, expires_at=now + ttl)
            outcome = await self._swap(secret_name, current[0], _lease_value(renewed))
            if outcome is _Swap.DONE:
                self._held[(lease.name, lease.holder)] = renewed.expires_at
                return renewed
        raise _busy(secret_name)

    async def release_lease(self, lease: Lease) -> None:
        """Give the lease back; a no-op if another holder has it now."""
        check_lease(lease)
        secret_name = lease_secret_name(self._prefix, lease.name)
        self._held.pop((lease.name, lease.holder), None)
        for attempt in range(_ATTEMPTS):
            await _after_lost_race(attempt)
            current = await self._lease_state(secret_name, lease.name, create=False)
            if current is None or current[1] is None or current[1].holder != lease.holder:
                return
            free = _lease_value(None, lease.name)
            if await self._swap(secret_name, current[0], free) is _Swap.DONE:
                return
        raise _busy(secret_name)

    # --- the compare-and-swap and its building blocks -------------------------

    async def _write(self, name: str, value: _Value, expected: Optional[int]) -> str:
        """Make ``value`` the current value of ``name``; return its AWS version id."""
        if expected is not None and expected > 0:
            # The caller names the version: one swap, no read.
            version_id = str(uuid.uuid4())
            from_id = _version_id(expected)
            if from_id is not None:
                outcome = await self._swap(name, from_id, value, version_id)
                if outcome is _Swap.DONE:
                    return version_id
            raise await self._conflict(name, expected)
        for attempt in range(_ATTEMPTS):
            await _after_lost_race(attempt)
            state = await self._read(name)
            if state is _Absent.SCHEDULED:
                await self._restore(name)
                continue
            created = False
            if state is _Absent.MISSING:
                from_id = await self._create_empty(name, _TOMBSTONE)
                if from_id is None:
                    continue  # someone else created it: look again
                created = True
            else:
                assert isinstance(state, _Current)
                live = _live_version(state)
                if expected == 0 and live is not None:
                    raise _conflict_error(expected, live)
                from_id = state.version_id
            version_id = str(uuid.uuid4())
            outcome = await self._swap(name, from_id, value, version_id)
            if outcome is _Swap.DONE:
                if not created:
                    # Written over a tombstone whose DeleteSecret may still be
                    # on its way (or landed first, on moto): keep our record.
                    await self._rescue(name)
                return version_id
        raise _busy(name)

    async def _remove(self, name: str, expected: Optional[int]) -> bool:
        """Replace the live record at ``name`` with a tombstone, then schedule deletion."""
        for attempt in range(_ATTEMPTS):
            await _after_lost_race(attempt)
            if expected is not None and expected > 0:
                from_id = _version_id(expected)
                if from_id is None:
                    raise await self._conflict(name, expected)
            else:
                state = await self._read(name)
                live = None if isinstance(state, _Absent) else _live_version(state)
                if live is None:
                    return False
                if expected == 0:
                    raise _conflict_error(expected, live)
                assert isinstance(state, _Current)
                from_id = state.version_id
            outcome = await self._swap(name, from_id, _TOMBSTONE, uuid.uuid4().hex)
            if outcome is _Swap.DONE:
                await self._schedule_deletion(name)
                return True
            if expected is not None:
                raise await self._conflict(name, expected)
        raise _busy(name)

    async def _swap(
        self, name: str, from_id: str, value: _Value, version_id: Optional[str] = None
    ) -> _Swap:
        """Make ``value`` current if and only if ``from_id`` is current now."""
        version_id = version_id or str(uuid.uuid4())
        field = "SecretBinary" if isinstance(value, bytes) else "SecretString"
        try:
            await self._call(
                "put_secret_value",
                SecretId=name,
                ClientRequestToken=version_id,
                VersionStages=[_STAGED],
                **{field: value},
            )
        except AwsError as exc:
            if exc.error_code in ("ResourceNotFoundException", "InvalidRequestException"):
                return _Swap.ABSENT
            raise
        try:
            await self._call(
                "update_secret_version_stage",
                SecretId=name,
                VersionStage=_CURRENT,
                MoveToVersionId=version_id,
                RemoveFromVersionId=from_id,
            )
        except StoreError:
            # Refused, or failed in a way that leaves the outcome open: AWS
            # knows which. (A retried move that had landed is refused too.)
            current, _ = await self._describe(name)
            if current == version_id:
                return _Swap.DONE
            if current == from_id:
                raise  # not a conflict: the move failed and changed nothing
            return _Swap.CONFLICT
        return _Swap.DONE

    async def _read(self, name: str) -> _State:
        """The current version of ``name`` (always asked for by label: see moto above)."""
        try:
            response = await self._call("get_secret_value", SecretId=name, VersionStage=_CURRENT)
        except AwsError as exc:
            if exc.error_code == "ResourceNotFoundException":
                return _Absent.MISSING
            if exc.error_code == "InvalidRequestException":
                return _Absent.SCHEDULED
            raise
        version_id = response.get("VersionId")
        if not isinstance(version_id, str):
            raise StoreError(f"secret {name} has no version id")
        packed = response.get("SecretBinary")
        if isinstance(packed, bytes):
            return _Current(version_id, _unpack_record(packed, name))
        text = response.get("SecretString")
        if not isinstance(text, str):
            raise StoreError(f"secret {name} has no value")
        try:
            payload = json.loads(text)
        except ValueError:
            raise StoreError(f"secret {name} does not hold JSON") from None
        if not isinstance(payload, dict) or payload.get("roomsecrets") != _FORMAT:
            raise StoreError(f"secret {name} is not a roomsecrets value")
        return _Current(version_id, payload)

    async def _describe(self, name: str) -> tuple[Optional[str], bool]:
        """The version id holding AWSCURRENT (None if no secret) and "scheduled for deletion"."""
        try:
            response = await self._call("describe_secret", SecretId=name)
        except AwsError as exc:
            if exc.error_code == "ResourceNotFoundException":
                return None, False
            raise
        stages = response.get("VersionIdsToStages") or {}
        current = next((vid for vid, labels in stages.items() if _CURRENT in labels), None)
        return current, response.get("DeletedDate") is not None

    async def _create_empty(self, name: str, value: str) -> Optional[str]:
        """Create ``name`` holding an empty ``value``; its version id, or None if it exists."""
        version_id = uuid.uuid4().hex
        params: dict[str, Any] = {
            "Name": name,
            "SecretString": value,
            "ClientRequestToken": version_id,
        }
        if self._kms_key_id is not None:
            params["KmsKeyId"] = self._kms_key_id
        try:
            await self._call("create_secret", **params)
        except AwsError as exc:
            # Exists; or (AWS) scheduled for deletion: the next read sees which.
            if exc.error_code in ("ResourceExistsException", "InvalidRequestException"):
                return None
            raise
        return version_id

    async def _restore(self, name: str) -> None:
        try:
            await self._call("restore_secret", SecretId=name)
        except AwsError as exc:
            if exc.error_code != "ResourceNotFoundException":
                raise

    async def _rescue(self, name: str) -> None:
        """Restore ``name`` if it is scheduled for deletion while holding a live record.

        DeleteSecret is not conditional: it can land after a tombstone was
        overwritten by a new record. Tombstone version ids are 32 hex digits,
        record ids are canonical UUIDs, so the current id tells them apart.
        """
        current, scheduled = await self._describe(name)
        if scheduled and current is not None and _is_record_id(current):
            await self._restore(name)

    async def _schedule_deletion(self, name: str) -> None:
        params: dict[str, Any] = {"SecretId": name}
        if self._recovery_window_days is not None:
            params["RecoveryWindowInDays"] = self._recovery_window_days
        try:
            await self._call("delete_secret", **params)
            await self._rescue(name)
        except StoreError as exc:
            # The tombstone already deleted the record; the scheduled deletion
            # only stops AWS from keeping (and billing) an empty secret.
            _log.warning("could not schedule deletion of secret %s (%s)", name, exc)

    async def _conflict(self, name: str, expected: int) -> VersionConflict:
        state = await self._read(name)
        actual = None if isinstance(state, _Absent) else _live_version(state)
        return _conflict_error(expected, actual)

    async def _lease_state(
        self, name: str, lease_name: str, *, create: bool = True
    ) -> Optional[tuple[str, Optional[Lease]]]:
        """(current version id, the lease or None if free); None if there is no lease secret.

        With ``create``, a missing secret is created free (and a scheduled one
        restored) first; None then means "read again".
        """
        state = await self._read(name)
        if isinstance(state, _Absent):
            if create:
                if state is _Absent.SCHEDULED:
                    await self._restore(name)
                    return None
                created = await self._create_empty(name, _lease_value(None, lease_name))
                return None if created is None else (created, None)
            return None
        return state.version_id, _lease_from(state, lease_name, name)

    async def _names_under(self, folder: str) -> list[str]:
        names: list[str] = []
        params: dict[str, Any] = {
            "Filters": [{"Key": "name", "Values": [folder]}],
            "MaxResults": self._list_page,
        }
        while True:
            page = await self._call("list_secrets", **params)
            for entry in page.get("SecretList") or ():
                name = entry.get("Name")
                # AWS's name filter is a prefix match; check it ourselves anyway.
                if isinstance(name, str) and name.startswith(folder):
                    names.append(name)
            token = page.get("NextToken")
            if not token:
                return names
            params["NextToken"] = token

    def _record_from(self, state: _State, name: str) -> Optional[SecretRecord]:
        if isinstance(state, _Absent):
            return None
        payload = state.payload
        kind = payload.get("kind")
        if kind == "deleted":
            return None
        if kind != "record":
            raise StoreError(f"secret {name} does not hold a record")
        try:
            key = SecretKey(
                room=_text(payload["room"]),
                owner=_text(payload["owner"]),
                secret_id=_text(payload["secret_id"]),
                delegated_to=_optional_text(payload["delegated_to"]),
            )
            record = SecretRecord(
                key=key,
                type=_text(payload["type"]),
                name=_optional_text(payload["name"]),
                data=_data_of(payload),
                version=_version_of(state.version_id),
            )
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise StoreError(f"secret {name} holds an unreadable record") from None
        return record

    def _holds_a_lease(self) -> bool:
        if not self._held:
            return False
        now = self._clock()
        for held, expires_at in list(self._held.items()):
            if expires_at <= now:
                del self._held[held]
        return bool(self._held)

    # --- the boto3 boundary ---------------------------------------------------

    async def _call(self, operation: str, **params: Any) -> Any:
        """Make one Secrets Manager call; errors come back as StoreError.

        A read goes out from the event loop when the client allows it (see
        :mod:`roomsecrets.adapters.aws.loop_reader`); every other call is boto3's,
        in the executor.
        """
        loop = asyncio.get_running_loop()
        if operation == "get_secret_value":
            reader = self._reader
            if reader is None:
                reader = await loop.run_in_executor(self._executor, self._reader_now)
            if isinstance(reader, LoopReader) and reader.usable_here():
                try:
                    return await reader.get_secret_value(**params)
                except ReadThroughBoto3:
                    pass  # the loop reader's docstring says when
        return await loop.run_in_executor(self._executor, self._call_now, operation, params)

    def _reader_now(self) -> Union[LoopReader, Literal[False]]:
        """The client's loop reader, or False (made once: it may load a CA bundle)."""
        try:
            client = self._client_now()
        except BotoCoreError as exc:  # no region or credentials configuration
            raise StoreError(
                f"Secrets Manager get_secret_value failed: {type(exc).__name__}"
            ) from None
        with self._client_lock:
            if self._reader is None:
                self._reader = LoopReader.for_client(client, self._executor) or False
            return self._reader

    def _call_now(self, operation: str, params: dict[str, Any]) -> Any:
        try:
            return getattr(self._client_now(), operation)(**params)
        except ClientError as exc:
            error = exc.response.get("Error") or {}
            status = (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
            raise AwsError(operation, str(error.get("Code") or "Unknown"), status) from None
        except BotoCoreError as exc:
            # Connection refused, timeouts, no credentials or region, bad parameters.
            raise StoreError(f"Secrets Manager {operation} failed: {type(exc).__name__}") from None

    def _client_now(self) -> Any:
        client = self._client
        if client is not None:
            return client
        with self._client_lock:
            if self._client is None:
                import boto3  # type: ignore[import-untyped, unused-ignore]
                from botocore.config import (  # type: ignore[import-untyped, unused-ignore]
                    Config,
                )

                # Our own session: boto3's default session is not thread-safe.
                self._client = boto3.session.Session().client(
                    "secretsmanager",
                    config=Config(
                        retries={"mode": self._retry_mode, "max_attempts": self._max_attempts},
                        max_pool_connections=32,
                    ),
                )
            return self._client


    async def list_delegated(self, room: str, delegated_to: str) -> list[SecretRecord]:
        """Every record in ``room`` delegated to ``delegated_to``, ordered by (owner, secret_id).

        Lists the room's names (``ListSecrets``, all pages), then reads only
        those of the form ``room/owner/secret_id/<delegate>``: an escaped
        component holds no ``/``, so the name alone says who a record is for.
        """
        check_name("room", room)
        check_name("delegated_to", delegated_to)
        folder = room_folder(self._prefix, room)
        if len(folder) >= MAX_NAME:
            return []  # no record name can be this long
        delegate = escape(delegated_to)
        names = [
            name
            for name in await self._names_under(folder)
            if name.count("/", len(folder)) == 2 and name.rsplit("/", 1)[1] == delegate
        ]
        states = await asyncio.gather(*(self._read(name) for name in names))
        records = []
        for name, state in zip(names, states):
            record = self._record_from(state, name)
            if record is None:
                continue
            if (record.key.room, record.key.delegated_to) != (room, delegated_to) or (
                record_secret_name(self._prefix, record.key) != name
            ):
                raise StoreError(f"secret {name} holds another key")
            records.append(record)
        return sorted(records, key=delegated_order)

    # Last, because inside the class body ``list`` names this method from here on.
    async def list(self, room: str, owner: str) -> list[SecretRecord]:
        """Every record ``owner`` has in ``room``, ordered by (secret_id, delegated_to).

        ``delegated_to=None`` sorts before any delegate. Uses ``ListSecrets``
        with a name filter (all pages), then reads each secret's current value.
        """
        check_name("room", room)
        check_name("owner", owner)
        folder = owner_folder(self._prefix, room, owner)
        if len(folder) >= MAX_NAME:
            return []  # no record name can be this long
        names = await self._names_under(folder)
        states = await asyncio.gather(*(self._read(name) for name in names))
        records = []
        for name, state in zip(names, states):
            record = self._record_from(state, name)
            if record is None:
                continue
            if (record.key.room, record.key.owner) != (room, owner) or (
                record_secret_name(self._prefix, record.key) != name
            ):
                raise StoreError(f"secret {name} holds another key")
            records.append(record)
        return sorted(records, key=list_order)


# --- values ---------------------------------------------------------------------


def _pack_record(key: SecretKey, type: str, name: Optional[str], data: bytes) -> bytes:
    """The ``SecretBinary`` of a record (format 2, module docstring); InvalidInput if
    it is over :data:`MAX_VALUE_BYTES`."""
    # surrogatepass: a lone surrogate in a type or name round-trips, as it did
    # through format 1's JSON escapes (the key's names refuse them already).
    texts = [
        None if text is None else text.encode("utf-8", "surrogatepass")
        for text in (key.room, key.owner, key.secret_id, key.delegated_to, type, name)
    ]
    rest = _HEADER.size + sum(len(text) for text in texts if text is not None)
    if rest + len(data) > MAX_VALUE_BYTES:
        raise InvalidInput(
            f"the secret is too large for Secrets Manager: {len(data)} bytes of data and "
            f"{rest} bytes of key, type, name and header make a {rest + len(data)}-byte value, "
            f"at most {MAX_VALUE_BYTES} are allowed"
        )
    header = _HEADER.pack(
        _MAGIC, _PACKED, *(_NONE if text is None else len(text) for text in texts)
    )
    return b"".join([header, *(text for text in texts if text is not None), data])


def _unpack_record(packed: bytes, name: str) -> dict[str, Any]:
    """The payload of a format 2 record, shaped like a format 1 one (``data`` is bytes)."""
    if packed[:3] != _MAGIC + bytes([_PACKED]):
        raise StoreError(f"secret {name} is not a roomsecrets value")
    try:
        _, _, *lengths = _HEADER.unpack_from(packed)
        offset = _HEADER.size
        texts: list[Optional[str]] = []
        for length in lengths:
            if length == _NONE:
                texts.append(None)
                continue
            if offset + length > len(packed):
                raise ValueError("a text runs past the end")
            texts.append(packed[offset : offset + length].decode("utf-8", "surrogatepass"))
            offset += length
    except (struct.error, ValueError):
        raise StoreError(f"secret {name} holds an unreadable record") from None
    room, owner, secret_id, delegated_to, type, record_name = texts
    return {
        "roomsecrets": _PACKED,
        "kind": "record",
        "room": room,
        "owner": owner,
        "secret_id": secret_id,
        "delegated_to": delegated_to,
        "type": type,
        "name": record_name,
        "data": packed[offset:],
    }


def _data_of(payload: Mapping[str, Any]) -> bytes:
    """A record's data: bytes in format 2, base64 text in format 1."""
    data = payload["data"]
    if payload.get("roomsecrets") == _PACKED:
        if not isinstance(data, bytes):
            raise TypeError("expected bytes")
        return data
    return base64.b64decode(_text(data), validate=True)


def _lease_value(lease: Optional[Lease], name: Optional[str] = None) -> str:
    return json.dumps(
        {
            "roomsecrets": _FORMAT,
            "kind": "lease",
            "name": lease.name if lease is not None else name,
            "holder": None if lease is None else lease.holder,
            "expires_at": None if lease is None else lease.expires_at,
        },
        separators=(",", ":"),
    )


def _lease_from(state: _Current, lease_name: str, name: str) -> Optional[Lease]:
    payload = state.payload
    if payload.get("kind") != "lease" or payload.get("name") != lease_name:
        raise StoreError(f"secret {name} does not hold this lease")
    holder, expires_at = payload.get("holder"), payload.get("expires_at")
    if holder is None:
        return None
    if not isinstance(holder, str) or not isinstance(expires_at, (int, float)):
        raise StoreError(f"secret {name} holds an unreadable lease")
    return Lease(name=lease_name, holder=holder, expires_at=float(expires_at))


def _live_version(state: _Current) -> Optional[int]:
    """The record version current in ``state``; None for a tombstone."""
    return None if state.payload.get("kind") == "deleted" else _version_of(state.version_id)


# A version id we wrote: a UUID as str(uuid.UUID(...)) spells it (RFC 9562 §4:
# 8-4-4-4-12 hex digits, lowercase, hyphens). Matched rather than parsed twice: the
# test runs on every read, after the answer arrives.
_RECORD_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _is_record_id(version_id: object) -> bool:
    return isinstance(version_id, str) and _RECORD_ID.fullmatch(version_id) is not None


def _version_of(version_id: str) -> int:
    """A record's version: the integer of its AWS version id (a UUID we chose)."""
    if not _is_record_id(version_id):
        raise StoreError("a record version id is not a UUID written by roomsecrets")
    return int(version_id.replace("-", ""), 16)


def _version_id(version: int) -> Optional[str]:
    """The AWS version id of ``version``; None if no record can have it."""
    if version >= 1 << 128:
        return None
    return str(uuid.UUID(int=version))


def _conflict_error(expected: int, actual: Optional[int]) -> VersionConflict:
    found = "no record" if actual is None else f"version {actual}"
    return VersionConflict(
        f"expected version {expected}, found {found}", expected=expected, actual=actual
    )


async def _after_lost_race(attempt: int) -> None:
    """Wait before round ``attempt`` of a read-and-swap loop (not before the first)."""
    if attempt:
        await asyncio.sleep(_BACKOFF.delay(_LOST_RACE, attempt - 1))


def _busy(name: str) -> StoreError:
    return StoreError(f"secret {name} kept changing under {_ATTEMPTS} attempts to write it")


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _optional_text(value: object) -> Optional[str]:
    return None if value is None else _text(value)


if TYPE_CHECKING:
    # mypy proves SecretsManagerStore satisfies the port.
    _conforms: SecretStore = SecretsManagerStore()
