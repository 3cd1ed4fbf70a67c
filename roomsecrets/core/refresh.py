"""Finding a stored credential and refreshing it, single-flight.

N concurrent callers wanting the same expired credential cause one
token-endpoint POST:

* In one process, the refresh of a credential is one task owned by the
  refresher; every caller awaits it through ``asyncio.shield``. A caller that
  gives up (cancelled, timed out) never aborts a POST the provider may already
  have acted on: the task still saves the rotated refresh token.
* Across processes sharing a store, the task refreshes under a store lease,
  renewed in the background while the POST runs so a slow provider cannot
  outlive it. After taking the lease it re-reads the credential, because
  another process may have refreshed it meanwhile; a process that cannot get
  the lease polls the store until the credential is fresh or the lease frees.

The rotated refresh token is saved (compare-and-swap on the version read
under the lease) before any caller gets the access token. If the write
conflicts, someone deleted the credential or stored a newer approval while we
refreshed: the store wins and our tokens are dropped, so a person's delete is
never undone. ``invalid_grant`` means the grant is gone: the credential is
deleted, so the next ``request_oauth_token`` prompts again and
``get_offline_oauth_token`` returns None. ``invalid_client`` is
configuration: nothing is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Sequence
from typing import Callable, Optional, Union

from .audit import AuditEvent, AuditSink
from .credentials import OAUTH_TOKEN_TYPE, StoredCredential
from .errors import InvalidGrant, InvalidInput, LeaseLost, RefreshBusy, VersionConflict
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
        # The one refresh in flight per credential in this process.
        self._inflight: dict[SecretKey, asyncio.Future[None]] = {}

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
        # Two rounds: join (or start) a refresh, then look again. A token that
        # still needs a refresh right after one is not usable.
        for _ in range(2):
            _, cred = await self.load(key)
            verdict = self._usable(cred, client.client_id, token_endpoint, scopes)
            if not isinstance(verdict, _NeedsRefresh):
                return verdict
            task = self._inflight.get(key)
            if task is None:
                task = asyncio.ensure_future(
                    self._refresh_across_processes(key, client, token_endpoint)
                )
                self._inflight[key] = task
                task.add_done_callback(functools.partial(self._forget, key))
            await asyncio.shield(task)
        _, cred = await self.load(key)
        verdict = self._usable(cred, client.client_id, token_endpoint, scopes)
        return None if isinstance(verdict, _NeedsRefresh) else verdict

    def _forget(self, key: SecretKey, task: asyncio.Future[None]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved here: every caller may have given up

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

    def _due(self, cred: Optional[StoredCredential], client_id: str, token_endpoint: str) -> bool:
        """True while the credential still needs (and can get) a refresh."""
        return isinstance(self._usable(cred, client_id, token_endpoint, None), _NeedsRefresh)

    async def _refresh_across_processes(
        self, key: SecretKey, client: ClientCredentials, token_endpoint: str
    ) -> None:
        lease_name = f"refresh/{key.room}/{key.owner}/{key.secret_id}/{key.delegated_to or ''}"
        give_up_at = self._monotonic() + self._lease_wait
        while True:
            # Re-read: another process may have refreshed while we waited.
            _, cred = await self.load(key)
            if not self._due(cred, client.client_id, token_endpoint):
                return
            lease = await self._store.acquire_lease(
                lease_name, holder=self._holder, ttl=self._lease_ttl
            )
            if lease is not None:
                try:
                    await self._refresh_under_lease(key, lease, client, token_endpoint)
                    return
                finally:
                    await self._store.release_lease(lease)
            if self._monotonic() >= give_up_at:
                raise RefreshBusy("another process has been refreshing this credential too long")
            await self._sleep(self._lease_poll)

    async def _keep_lease(self, lease: Lease) -> None:
        """Renew ``lease`` every third of its TTL until cancelled (real time, not the
        injected sleep: the lease must outlive a POST however tests pace retries)."""
        while True:
            await asyncio.sleep(self._lease_ttl / 3)
            try:
                lease = await self._store.renew_lease(lease, ttl=self._lease_ttl)
            except LeaseLost:
                return  # nothing safe to do mid-POST; the CAS write below still guards

    async def _refresh_under_lease(
        self, key: SecretKey, lease: Lease, client: ClientCredentials, token_endpoint: str
    ) -> None:
        # Re-read after taking the lease: another process may have refreshed
        # between our last read and the lease.
        record, cred = await self.load(key)
        if not self._due(cred, client.client_id, token_endpoint):
            return
        assert record is not None and cred is not None
        keeper = asyncio.ensure_future(self._keep_lease(lease))
        try:
            tokens = await self._endpoint.refresh(
                token_endpoint=token_endpoint, client=client, tokens=cred.tokens
            )
        except InvalidGrant as exc:
            # RFC 6749 §5.2: the refresh token is invalid, expired or revoked.
            # The grant is gone; keeping the credential would only fail again.
            # On a conflict someone stored a new credential meanwhile: keep theirs.
            with contextlib.suppress(VersionConflict):
                await self._store.delete(key, expected_version=record.version)
            self._event(key, "credential.dropped", "error", exc.code)
            return
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        try:
            await self._store.put(
                key,
                type=OAUTH_TOKEN_TYPE,
                name=record.name,
                data=cred.with_tokens(tokens).to_json(),
                expected_version=record.version,
            )
        except VersionConflict:
            # Deleted by the person, or replaced by a newer approval, while we
            # refreshed: the store wins.
            self._event(key, "credential.refresh_discarded", "error", "version_conflict")
            return
        self._event(key, "credential.refreshed", "ok", "refreshed")

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
