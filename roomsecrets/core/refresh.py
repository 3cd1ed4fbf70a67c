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
under the lease) before any caller gets the access token. Once the provider
has answered, nothing but the store may stop that save: a failed lease renewal
ends only the renewing task, and a failing store is retried. If it still fails,
the rotated credential is kept in this process (callers get its access token,
later refreshes use its refresh token, and every call tries the save again) so
the old refresh token is never replayed from here. If the write conflicts,
someone deleted the credential or stored a newer approval while we refreshed
(versions are never reused, so a re-approval after a delete is a conflict too):
the store wins and our tokens are dropped, so a person's delete is never undone.

Before a token is handed out (or refreshed) the caller's ``allow`` check sees
the scopes the credential actually carries, so narrowing a grant takes effect
for credentials stored before it. ``invalid_grant`` means the grant is gone: the credential is
deleted, so the next ``request_oauth_token`` prompts again and
``get_offline_oauth_token`` returns None. ``invalid_client`` is
configuration: nothing is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Sequence
from typing import Callable, Optional, Union

from .audit import AuditEvent, AuditSink
from .credentials import OAUTH_TOKEN_TYPE, StoredCredential
from .errors import (
    InvalidGrant,
    InvalidInput,
    RefreshBusy,
    RoomSecretsError,
    StoreError,
    VersionConflict,
)
from .oauth.token_endpoint import TokenEndpointClient
from .oauth.token_request import ClientCredentials
from .oauth.tokens import TokenSet
from .ports import Clock, Lease, SecretKey, SecretRecord, SecretStore

__all__ = ["CredentialRefresher", "ScopeCheck"]

#: Raises (GrantDenied) unless the caller may receive a token carrying these scopes.
ScopeCheck = Callable[[tuple[str, ...]], None]

_log = logging.getLogger("roomsecrets.refresh")

_MAX_DECODED = 4096
#: Tries (the first included) to save a rotated credential when the store fails.
_SAVE_ATTEMPTS = 4
_SAVE_DELAY = 0.05
#: Refreshes one call may wait for before it gives up on a credential that still
#: needs one (another process refreshed it, or the store moved on, in between).
_REFRESH_ROUNDS = 2


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
        # The one refresh in flight per credential in this process; its result is
        # the fresh token set, or None when it did not refresh.
        self._inflight: dict[SecretKey, asyncio.Future[Optional[TokenSet]]] = {}
        # Rotated credentials the store refused to save, by key, with the version
        # they replace: the live refresh token must not be forgotten (see module doc).
        self._unsaved: dict[SecretKey, tuple[int, StoredCredential]] = {}

    @property
    def busy(self) -> bool:
        """True while a refresh runs or a rotated credential waits to be saved: state
        that lives only in this object and would be lost with it."""
        return bool(self._inflight) or bool(self._unsaved)

    async def load(
        self, key: SecretKey
    ) -> tuple[Optional[SecretRecord], Optional[StoredCredential]]:
        """The record at ``key`` and its credential; (record, None) if it is not one."""
        record = await self._store.get(key)
        # (Only looked up when there is any: hashing a key costs a Python call.)
        unsaved = self._unsaved.get(key) if self._unsaved else None
        if unsaved is not None:
            if record is not None and record.version == unsaved[0]:
                return record, unsaved[1]  # newer than the store's copy
            del self._unsaved[key]  # deleted or replaced since: the store wins
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
        allow: ScopeCheck,
        rejected: Optional[str] = None,
    ) -> Optional[str]:
        """A valid access token from the credential at ``key``, or None.

        ``rejected`` is an access token the resource server refused (a 401):
        while the credential still holds it, it counts as expired, so it is
        refreshed (once, however many callers report it: the refresh is
        single-flight and a caller whose token was already replaced gets the
        new one without another refresh).

        None when there is no credential for this client and endpoint, its scopes
        do not cover ``scopes``, it cannot be refreshed, or the provider said
        ``invalid_grant``. ``allow`` is called with the scopes the credential
        carries before its token is handed out or refreshed; what it raises
        (GrantDenied) propagates. Provider errors propagate (typed).
        """
        if self._unsaved and key in self._unsaved:
            await self._save_unsaved(key)
        rounds = 0
        while True:
            _, cred = await self.load(key)
            verdict = self._usable(cred, client.client_id, token_endpoint, scopes, rejected)
            if verdict is None:
                return None
            assert cred is not None
            allow(cred.tokens.scopes)
            if not isinstance(verdict, _NeedsRefresh):
                return verdict
            if rounds == _REFRESH_ROUNDS:
                return None  # still expiring after that many refreshes: not usable
            rounds += 1
            # Join (or start) the refresh; if it did not refresh (another process
            # did, or the store moved on), look again.
            fresh = await asyncio.shield(
                self._refresh_task(key, client, token_endpoint, rejected)
            )
            if fresh is not None:
                # Freshly issued: handed out even if it already counts as expiring
                # (``expires_in: 0``); the next call refreshes it.
                if not fresh.covers(scopes):
                    return None
                allow(fresh.scopes)
                return fresh.access_token

    def _refresh_task(
        self,
        key: SecretKey,
        client: ClientCredentials,
        token_endpoint: str,
        rejected: Optional[str] = None,
    ) -> asyncio.Future[Optional[TokenSet]]:
        """The one refresh of ``key`` in flight in this process, started if there is none."""
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(
                self._refresh_across_processes(key, client, token_endpoint, rejected)
            )
            self._inflight[key] = task
            task.add_done_callback(functools.partial(self._forget, key))
        return task

    def _forget(self, key: SecretKey, task: asyncio.Future[Optional[TokenSet]]) -> None:
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
        rejected: Optional[str] = None,
    ) -> Union[str, _NeedsRefresh, None]:
        """The access token if usable now, ``_REFRESH`` if it needs a refresh, else None."""
        if cred is None or not cred.matches(client_id=client_id, token_endpoint=token_endpoint):
            return None
        if not cred.tokens.covers(scopes):
            return None
        if cred.tokens.access_token != rejected and not cred.tokens.needs_refresh(
            self._clock(), self._leeway
        ):
            return cred.tokens.access_token
        return _REFRESH if cred.tokens.refresh_token is not None else None

    def _due(
        self,
        cred: Optional[StoredCredential],
        client_id: str,
        token_endpoint: str,
        rejected: Optional[str] = None,
    ) -> bool:
        """True while the credential still needs (and can get) a refresh."""
        verdict = self._usable(cred, client_id, token_endpoint, None, rejected)
        return isinstance(verdict, _NeedsRefresh)

    async def _refresh_across_processes(
        self,
        key: SecretKey,
        client: ClientCredentials,
        token_endpoint: str,
        rejected: Optional[str] = None,
    ) -> Optional[TokenSet]:
        lease_name = f"refresh/{key.room}/{key.owner}/{key.secret_id}/{key.delegated_to or ''}"
        give_up_at = self._monotonic() + self._lease_wait
        while True:
            # Re-read: another process may have refreshed while we waited.
            _, cred = await self.load(key)
            if not self._due(cred, client.client_id, token_endpoint, rejected):
                return None
            lease = await self._store.acquire_lease(
                lease_name, holder=self._holder, ttl=self._lease_ttl
            )
            if lease is not None:
                try:
                    return await self._refresh_under_lease(
                        key, lease, client, token_endpoint, rejected
                    )
                finally:
                    await self._release(key, lease)
            if self._monotonic() >= give_up_at:
                raise RefreshBusy("another process has been refreshing this credential too long")
            await self._sleep(self._lease_poll)

    async def _release(self, key: SecretKey, lease: Lease) -> None:
        # After the refresh the lease only saves other processes a wait; failing
        # to give it back must not turn a saved refresh into an error.
        try:
            await self._store.release_lease(lease)
        except RoomSecretsError as exc:
            self._event(key, "credential.lease_release_failed", "error", exc.code)

    async def _keep_lease(self, key: SecretKey, lease: Lease) -> None:
        """Renew ``lease`` every third of its TTL until cancelled (real time, not the
        injected sleep: the lease must outlive a POST however tests pace retries).

        Any failure ends only this task (audited): the POST is already on its way
        and its answer must still be saved; the CAS write guards that save.
        """
        while True:
            await asyncio.sleep(self._lease_ttl / 3)
            try:
                lease = await self._store.renew_lease(lease, ttl=self._lease_ttl)
            except Exception as exc:
                code = exc.code if isinstance(exc, RoomSecretsError) else type(exc).__name__
                _log.warning("refresh lease renewal failed (%s); the refresh goes on", code)
                self._event(key, "credential.lease_renewal_failed", "error", code)
                return

    async def _refresh_under_lease(
        self,
        key: SecretKey,
        lease: Lease,
        client: ClientCredentials,
        token_endpoint: str,
        rejected: Optional[str] = None,
    ) -> Optional[TokenSet]:
        # Re-read after taking the lease: another process may have refreshed
        # between our last read and the lease.
        record, cred = await self.load(key)
        if not self._due(cred, client.client_id, token_endpoint, rejected):
            return None
        assert record is not None and cred is not None
        keeper = asyncio.ensure_future(self._keep_lease(key, lease))
        try:
            # RFC 8707 §2.2: the refresh asks for a token for the same resource
            # (passed only when there is one: endpoints written before it exist).
            extra = {} if cred.resource is None else {"resource": cred.resource}
            tokens = await self._endpoint.refresh(
                token_endpoint=token_endpoint, client=client, tokens=cred.tokens, **extra
            )
        except InvalidGrant as exc:
            # RFC 6749 §5.2: the refresh token is invalid, expired or revoked.
            # The grant is gone; keeping the credential would only fail again.
            # On a conflict someone stored a new credential meanwhile: keep theirs.
            self._unsaved.pop(key, None)
            try:
                await self._store.delete(key, expected_version=record.version)
            except VersionConflict:
                pass
            except StoreError as store_error:
                # Left in place; the next refresh meets invalid_grant and tries again.
                self._event(key, "credential.drop_failed", "error", store_error.code)
            self._event(key, "credential.dropped", "error", exc.code)
            return None
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        fresh = cred.with_tokens(tokens)
        if not await self._save(key, record, fresh):
            return None
        self._event(key, "credential.refreshed", "ok", "refreshed")
        return tokens

    async def _save(self, key: SecretKey, record: SecretRecord, fresh: StoredCredential) -> bool:
        """Write ``fresh`` over ``record``; False if the store moved on (it wins).

        A failing store is tried again; if it keeps failing, ``fresh`` is kept in
        memory in place of ``record`` and the save is retried on later calls.
        """
        try:
            await self._put(key, fresh, name=record.name, expected_version=record.version)
        except VersionConflict:
            # Deleted by the person, or replaced by a newer approval, while we
            # refreshed (or an earlier try of ours landed after all): the store
            # wins, and our tokens are dropped.
            self._unsaved.pop(key, None)
            self._event(key, "credential.refresh_discarded", "error", "version_conflict")
            return False
        except StoreError as exc:
            self._unsaved[key] = (record.version, fresh)
            _log.warning("could not save a refreshed credential (%s); kept in memory", exc.code)
            self._event(key, "credential.save_failed", "error", exc.code)
            return True
        self._unsaved.pop(key, None)
        return True

    async def save_new(self, key: SecretKey, credential: StoredCredential) -> None:
        """Store a newly approved ``credential`` at ``key``, replacing whatever is there.

        A failing store is tried again a few times; the last StoreError propagates.
        """
        await self._put(key, credential, name=credential.display_name, expected_version=None)
        # The new approval replaces any rotated leftovers, but only once it is in the
        # store: until then the kept rotated credential is still the live one, and a call
        # made during the write must not fall back to the spent refresh token in the store.
        self._unsaved.pop(key, None)

    async def _put(
        self,
        key: SecretKey,
        credential: StoredCredential,
        *,
        name: Optional[str],
        expected_version: Optional[int],
    ) -> None:
        """Write ``credential``, trying again (with growing pauses) while the store fails."""
        data = credential.to_json()
        attempt = 1
        while True:
            try:
                await self._store.put(
                    key,
                    type=OAUTH_TOKEN_TYPE,
                    name=name,
                    data=data,
                    expected_version=expected_version,
                )
                return
            except StoreError:
                if attempt >= _SAVE_ATTEMPTS:
                    raise
            await self._sleep(_SAVE_DELAY * 2**attempt)
            attempt += 1

    async def _save_unsaved(self, key: SecretKey) -> None:
        """Try once more to save a rotated credential the store refused earlier."""
        record, cred = await self.load(key)
        unsaved = self._unsaved.get(key)
        if unsaved is None or record is None or cred is not unsaved[1]:
            return
        try:
            await self._store.put(
                key,
                type=OAUTH_TOKEN_TYPE,
                name=record.name,
                data=cred.to_json(),
                expected_version=record.version,
            )
        except StoreError:
            return  # still down: kept, tried again on the next call
        except VersionConflict:
            pass  # someone wrote meanwhile: the store wins
        else:
            self._event(key, "credential.refreshed", "ok", "saved after a store failure")
        self._unsaved.pop(key, None)

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
