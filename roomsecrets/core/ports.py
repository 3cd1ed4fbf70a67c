"""The ports the core's service layer drives: storage, HTTP, clock, randomness, audit.

Each port is small (STYLE.md rule 5). The core ships a stdlib implementation of
each (``MemoryStore``, ``UrllibTransport``, ``time.time``, ``secrets``, a no-op
audit sink); adapters provide the rest. Implementations translate their own
libraries' exceptions into :mod:`roomsecrets.core.errors` at the boundary.
"""

from __future__ import annotations

from typing import Callable, Optional, Protocol

from .oauth.http import HttpRequest, HttpResponse
from .values import frozen_value

__all__ = [
    "Clock",
    "HttpTransport",
    "Lease",
    "SecretKey",
    "SecretRecord",
    "SecretStore",
]

#: Returns the current time in seconds since the epoch (``time.time`` by default).
Clock = Callable[[], float]


@frozen_value
class SecretKey:
    """Where a secret lives: its room, its owner, its id, and who it is delegated to.

    Two secrets with the same id but different ``delegated_to`` are different
    secrets (the seed's ``delete_user_secret(id=..., delegated_to=...)``).
    """

    room: str
    owner: str
    secret_id: str
    delegated_to: Optional[str] = None


@frozen_value
class SecretRecord:
    """A stored secret with its version. ``data`` is never shown by ``repr``."""

    key: SecretKey
    type: str
    name: Optional[str]
    data: bytes
    #: Names this one write of this key forever: a positive int, never reused for
    #: the key, even after it was deleted and written again (see ``SecretStore``).
    version: int

    def __repr__(self) -> str:
        return (
            f"SecretRecord(key={self.key!r}, type={self.type!r}, name={self.name!r}, "
            f"data=<{len(self.data)} bytes>, version={self.version})"
        )


@frozen_value
class Lease:
    """Exclusive right to ``name`` until ``expires_at`` (store clock), held by ``holder``."""

    name: str
    holder: str
    expires_at: float


class SecretStore(Protocol):
    """Async, versioned secret storage with compare-and-swap and leases.

    Versions are positive ints, and a version names one write of one key
    forever: a store never returns the same version twice for a key, not even
    after the key was deleted and written again (otherwise a compare-and-swap
    started before a delete could overwrite the record created after it).
    They need not be consecutive.

    ``expected_version``: ``None`` writes unconditionally; ``0`` requires that the
    key does not exist; ``n > 0`` requires the stored version to be ``n``. A
    mismatch raises :class:`~roomsecrets.core.errors.VersionConflict` and
    changes nothing. Backend failures raise
    :class:`~roomsecrets.core.errors.StoreError`.
    """

    async def get(self, key: SecretKey) -> Optional[SecretRecord]:
        """Return the record at ``key``, or None."""
        ...

    async def put(
        self,
        key: SecretKey,
        *,
        type: str,
        name: Optional[str],
        data: bytes,
        expected_version: Optional[int] = None,
    ) -> SecretRecord:
        """Write ``data`` at ``key``; return the stored record with its new version."""
        ...

    async def delete(self, key: SecretKey, *, expected_version: Optional[int] = None) -> bool:
        """Delete ``key``; True if something was deleted."""
        ...

    async def list_delegated(self, room: str, delegated_to: str) -> list[SecretRecord]:
        """Every record in ``room`` delegated to ``delegated_to``, whoever owns it,
        ordered by (owner, secret_id).

        This is how a delegate finds what others shared with it: ``list`` only
        answers an owner.
        """
        ...

    async def list(self, room: str, owner: str) -> list[SecretRecord]:
        """Every record ``owner`` has in ``room``, ordered by (secret_id, delegated_to)."""
        ...

    async def acquire_lease(self, name: str, *, holder: str, ttl: float) -> Optional[Lease]:
        """Take the lease ``name`` for ``ttl`` seconds; None if someone else holds it.

        The same holder acquiring again extends its lease.
        """
        ...

    async def renew_lease(self, lease: Lease, *, ttl: float) -> Lease:
        """Extend a held lease; raise :class:`~roomsecrets.core.errors.LeaseLost` if it is gone."""
        ...

    async def release_lease(self, lease: Lease) -> None:
        """Give the lease back; a no-op if it expired or another holder has it now."""
        ...


class HttpTransport(Protocol):
    """Sends one request, returns one response. Never follows redirects.

    Raises :class:`~roomsecrets.core.errors.ProviderTimeout` after ``timeout``
    seconds, :class:`~roomsecrets.core.errors.TransportError` on network failure
    and :class:`~roomsecrets.core.errors.ResponseTooLarge` when the body exceeds
    ``max_body`` bytes. Any HTTP status is a response, not an error.
    """

    async def send(
        self, request: HttpRequest, *, timeout: float, max_body: int
    ) -> HttpResponse:
        """Send ``request`` and return the response."""
        ...
