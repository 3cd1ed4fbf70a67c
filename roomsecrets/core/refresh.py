"""Finding a stored credential and refreshing it, single-flight.

N concurrent callers wanting the same expired credential cause one
token-endpoint POST:

* In one process, callers queue on a per-credential ``asyncio.Lock``; whoever
  gets it second re-reads the store and finds the fresh token.
* Across processes sharing a store, the refresh runs under a store lease. After
  taking the lease we re-read the credential, because another process may have
  refreshed it while we waited; a process that cannot get the lease polls the
  store until the credential is fresh or the lease frees up.

The rotated refresh token is saved before the access token is returned, so a
crash after the POST never leaves only the dead old refresh token behind.
``invalid_grant`` means the grant is gone: the credential is deleted, so the
next ``request_oauth_token`` prompts again and ``get_offline_oauth_token``
returns None. ``invalid_client`` is configuration: nothing is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Sequence
from typing import Callable, Optional, Union

from .audit import AuditEvent, AuditSink
from .credentials import OAUTH_TOKEN_TYPE, StoredCredential
from .errors import InvalidGrant, InvalidInput, RefreshBusy, VersionConflict
from .ports import Clock, Lease, SecretKey, SecretRecord, SecretStore
from .token_endpoint import TokenEndpointClient
from .token_request import ClientCredentials

__all__ = ["CredentialRefresher"]


_MAX_DECODED = 4096


class _NeedsRefresh:
    """The verdict "this credential is usable after a refresh"."""


_REFRESH = _NeedsRefresh()


class CredentialRefresher:
    """Returns a usable access token for a stored credential, refreshing it at most once."""

    def __init__(
        self,
        *,
        store: SecretStore,
        token_endpoint: TokenEndpointClient,
        clock: Clock,
        holder: str,
        audit: AuditSink,
        leeway: float = 60.0,
        lease_ttl: float = 30.0,
        lease_poll: float = 0.05,
        lease_wait: float = 60.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._endpoint = token_endpoint
        self._clock = clock
        self._holder = holder
        self._audit = audit
        self._leeway = leeway
        self._lease_ttl = lease_ttl
        self._lease_poll = lease_poll
        self._lease_wait = lease_wait
        self._sleep = sleep
        self._monotonic = monotonic
        # Decoding a credential costs more than the rest of a cache hit; keep the
        # last decode per key, valid while the store returns the same version
        # and bytes (a different process's write changes both).
        self._decoded: dict[SecretKey, tuple[int, bytes, StoredCredential]] = {}
        self._locks: dict[SecretKey, asyncio.Lock] = {}
        self._lock_users: dict[SecretKey, int] = {}

    async def load(
        self, key: SecretKey
    ) -> tuple[Optional[SecretRecord], Optional[StoredCredential]]:
        """The record at ``key`` and its credential; (record, None) if it is not one."""
        record = await self._store.get(key)
        if record is None or record.type != OAUTH_TOKEN_TYPE:
            self._decoded.pop(key, None)
            return record, None
        cached = self._decoded.get(key)
        if cached is not None and cached[0] == record.version and cached[1] == record.data:
            return record, cached[2]
        try:
            cred = StoredCredential.from_json(record.data)
        except InvalidInput:
            return record, None  # unreadable: treated as absent; a new approval replaces it
        if len(self._decoded) >= _MAX_DECODED:
            self._decoded.clear()  # bounded; refilled by the next reads
        self._decoded[key] = (record.version, record.data, cred)
        return record, cred

    async def access_token(
        self,
        key: SecretKey,
        *,
        client: ClientCredentials,
        token_endpoint: str,
        scopes: Optional[Sequence[str]],
    ) -> Optional[str]:
        """A valid access token from the credential at ``key``, or None.

        None when there is no credential for this client and endpoint, its scopes
        do not cover ``scopes``, it cannot be refreshed, or the provider said
        ``invalid_grant``. Other provider errors propagate (typed).
        """
        _, cred = await self.load(key)
        verdict = self._usable(cred, client.client_id, token_endpoint, scopes)
        if not isinstance(verdict, _NeedsRefresh):
            return verdict
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        self._lock_users[key] = self._lock_users.get(key, 0) + 1
        try:
            async with lock:
                return await self._refresh_across_processes(key, client, token_endpoint, scopes)
        finally:
            self._lock_users[key] -= 1
            if not self._lock_users[key]:
                del self._lock_users[key]
                del self._locks[key]

    def _usable(
        self,
        cred: Optional[StoredCredential],
        client_id: str,
        token_endpoint: str,
        scopes: Optional[Sequence[str]],
    ) -> Union[str, _NeedsRefresh, None]:
        """The access token if usable now, ``_REFRESH`` if it needs a refresh, else None."""
        if cred is None or not cred.matches(client_id=client_id, token_endpoint=token_endpoint):
            return None
        if not cred.tokens.covers(scopes):
            return None
        if not cred.tokens.needs_refresh(self._clock(), self._leeway):
            return cred.tokens.access_token
        return _REFRESH if cred.tokens.refresh_token is not None else None

    async def _refresh_across_processes(
        self,
        key: SecretKey,
        client: ClientCredentials,
        token_endpoint: str,
        scopes: Optional[Sequence[str]],
    ) -> Optional[str]:
        lease_name = f"refresh/{key.room}/{key.owner}/{key.secret_id}/{key.delegated_to or ''}"
        give_up_at = self._monotonic() + self._lease_wait
        while True:
            # Re-read: the previous lock holder, or another process, may have refreshed.
            _, cred = await self.load(key)
            verdict = self._usable(cred, client.client_id, token_endpoint, scopes)
            if not isinstance(verdict, _NeedsRefresh):
                return verdict
            lease = await self._store.acquire_lease(
                lease_name, holder=self._holder, ttl=self._lease_ttl
            )
            if lease is not None:
                try:
                    return await self._refresh_under_lease(
                        key, lease, client, token_endpoint, scopes
                    )
                finally:
                    await self._store.release_lease(lease)
            if self._monotonic() >= give_up_at:
                raise RefreshBusy("another process has been refreshing this credential too long")
            await self._sleep(self._lease_poll)

    async def _refresh_under_lease(
        self,
        key: SecretKey,
        lease: Lease,
        client: ClientCredentials,
        token_endpoint: str,
        scopes: Optional[Sequence[str]],
    ) -> Optional[str]:
        # Re-read after taking the lease: another process may have refreshed
        # between our last read and the lease.
        record, cred = await self.load(key)
        verdict = self._usable(cred, client.client_id, token_endpoint, scopes)
        if not isinstance(verdict, _NeedsRefresh):
            return verdict
        assert record is not None and cred is not None

        async def renew() -> None:
            await self._store.renew_lease(lease, ttl=self._lease_ttl)

        try:
            tokens = await self._endpoint.refresh(
                token_endpoint=token_endpoint,
                client=client,
                tokens=cred.tokens,
                before_retry=renew,
            )
        except InvalidGrant as exc:
            # RFC 6749 §5.2: the refresh token is invalid, expired or revoked.
            # The grant is gone; keeping the credential would only fail again.
            # On a conflict someone stored a new credential meanwhile: keep theirs.
            with contextlib.suppress(VersionConflict):
                await self._store.delete(key, expected_version=record.version)
            self._event(key, "credential.dropped", "error", exc.code)
            return None
        data = cred.with_tokens(tokens).to_json()
        try:
            await self._store.put(
                key,
                type=OAUTH_TOKEN_TYPE,
                name=record.name,
                data=data,
                expected_version=record.version,
            )
        except VersionConflict:
            # Our lease expired mid-refresh and someone wrote meanwhile. These
            # tokens are the provider's newest (it rotated on our POST), and a
            # lost rotated refresh token would lose the grant: keep ours.
            await self._store.put(key, type=OAUTH_TOKEN_TYPE, name=record.name, data=data)
        self._event(key, "credential.refreshed", "ok", "refreshed")
        return tokens.access_token

    def _event(self, key: SecretKey, action: str, outcome: str, reason: str) -> None:
        self._audit(
            AuditEvent(
                action=action,
                room=key.room,
                actor=key.delegated_to or key.owner,
                outcome=outcome,
                reason=reason,
                at=self._clock(),
                details=(("owner", key.owner), ("secret_id", key.secret_id)),
            )
        )
