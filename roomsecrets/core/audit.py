"""The audit port: one :class:`AuditEvent` per decision or action, sent to a sink.

A sink is any callable taking an :class:`AuditEvent` (STYLE.md rule 5: ports are
small). The core default is :func:`null_audit_sink`, which drops events; hosts
inject their own (a logger, a queue, a database writer). :class:`RecordingAuditSink`
keeps events in a list, for tests and for hosts that batch.

Events carry only values that are safe to show: participant ids, client ids,
endpoints, scope names, error codes. Token values, refresh tokens, codes, PKCE
verifiers and client secrets never go into an event; the code that builds an
event is responsible for that, so this module only checks types.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Callable, Optional

from .errors import InvalidInput
from .values import frozen_value

__all__ = [
    "AuditDetails",
    "AuditEvent",
    "AuditSink",
    "RecordingAuditSink",
    "null_audit_sink",
]

#: Extra facts about an event as ``(name, value)`` pairs, order kept.
AuditDetails = tuple[tuple[str, str], ...]


@frozen_value
class AuditEvent:
    """Something the service decided or did, as a plain value.

    ``details`` may be given as any iterable of ``(name, value)`` string pairs; it
    is stored as a tuple of tuples. Raises
    :class:`~roomsecrets.core.errors.InvalidInput` when a field has the wrong type.

    >>> AuditEvent(action="secret.delete", room="r", actor="alice", outcome="ok",
    ...            reason="deleted", at=0.0, details=[("secret_id", "mail")]).detail("secret_id")
    'mail'
    """

    #: What happened, dotted: ``"grant.oauth_request"``, ``"secret.delete"``, ...
    action: str
    #: The room it happened in.
    room: str
    #: The participant id that acted (or asked).
    actor: str
    #: ``"allowed"`` / ``"denied"`` for grant decisions; ``"ok"`` / ``"error"`` for actions.
    outcome: str
    #: Human-readable explanation, built from safe values only.
    reason: str
    #: When, in seconds since the epoch, from the injected clock.
    at: float
    #: Safe extra facts: ids, client ids, endpoints, scope names, error codes.
    details: AuditDetails = ()

    def __post_init__(self) -> None:
        # One event per audited call: the all-strings case is tested in one
        # expression, the loop only finds which field is wrong.
        if not (
            isinstance(self.action, str)
            and isinstance(self.room, str)
            and isinstance(self.actor, str)
            and isinstance(self.outcome, str)
            and isinstance(self.reason, str)
        ):
            for name in ("action", "room", "actor", "outcome", "reason"):
                if not isinstance(getattr(self, name), str):
                    raise InvalidInput(f"AuditEvent.{name} must be a string")
        if isinstance(self.at, bool) or not isinstance(self.at, (int, float)):
            raise InvalidInput("AuditEvent.at must be a number of seconds")
        object.__setattr__(self, "details", _details(self.details))

    def at_time(self, at: float) -> AuditEvent:
        """This event as it happens again at ``at``: a remembered decision is audited
        on every call, and its other fields were checked when it was first made."""
        if isinstance(at, bool) or not isinstance(at, (int, float)):
            raise InvalidInput("AuditEvent.at must be a number of seconds")
        # A copy of the frozen fields with another time, without running every
        # check again (dataclasses.replace would: it calls __init__).
        event = object.__new__(type(self))
        fields = event.__dict__
        fields.update(self.__dict__)
        fields["at"] = at
        return event

    def detail(self, name: str) -> Optional[str]:
        """Return the first detail called ``name``, or None."""
        for key, value in self.details:
            if key == name:
                return value
        return None


def _details(pairs: Iterable[tuple[str, str]]) -> AuditDetails:
    if type(pairs) is tuple:
        # Already the stored shape (how the service builds them): kept as it is.
        for pair in pairs:
            if (
                type(pair) is not tuple
                or len(pair) != 2
                or type(pair[0]) is not str
                or type(pair[1]) is not str
            ):
                break
        else:
            return pairs
    if isinstance(pairs, (str, bytes)):
        raise InvalidInput("AuditEvent.details must be (name, value) string pairs")
    result = []
    for pair in pairs:
        if (
            not isinstance(pair, (tuple, list))
            or len(pair) != 2
            or not isinstance(pair[0], str)
            or not isinstance(pair[1], str)
        ):
            raise InvalidInput("AuditEvent.details must be (name, value) string pairs")
        result.append((pair[0], pair[1]))
    return tuple(result)


#: Receives every audit event. Called synchronously; an exception it raises
#: propagates to the operation being audited, which then does not proceed.
AuditSink = Callable[[AuditEvent], None]


def null_audit_sink(event: AuditEvent) -> None:
    """The default sink: drops ``event``."""


class RecordingAuditSink:
    """A sink that appends every event to :attr:`events`.

    >>> sink = RecordingAuditSink()
    >>> sink(AuditEvent(action="a", room="r", actor="x", outcome="ok", reason="", at=0.0))
    >>> [event.action for event in sink.events]
    ['a']
    """

    def __init__(self) -> None:
        #: Every event received, oldest first.
        self.events: list[AuditEvent] = []

    def __call__(self, event: AuditEvent) -> None:
        self.events.append(event)

    def __repr__(self) -> str:
        return f"RecordingAuditSink(<{len(self.events)} events>)"
