"""The audit port: events are validated values, sinks are plain callables."""

from __future__ import annotations

import dataclasses

import pytest

from roomsecrets.core.audit import AuditEvent, AuditSink, RecordingAuditSink, null_audit_sink
from roomsecrets.core.errors import InvalidInput


def make_event(**overrides: object) -> AuditEvent:
    fields: dict[str, object] = {
        "action": "secret.delete",
        "room": "room-1",
        "actor": "alice",
        "outcome": "ok",
        "reason": "deleted",
        "at": 1000.0,
    }
    fields.update(overrides)
    return AuditEvent(**fields)  # type: ignore[arg-type]


def test_event_is_frozen() -> None:
    event = make_event()
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.outcome = "error"  # type: ignore[misc]


def test_event_details_default_to_empty() -> None:
    assert make_event().details == ()


def test_event_details_from_a_list_of_lists_become_a_tuple_of_pairs() -> None:
    event = make_event(details=[["secret_id", "mail"], ("client_id", "app")])
    assert event.details == (("secret_id", "mail"), ("client_id", "app"))
    assert hash(event) == hash(make_event(details=(("secret_id", "mail"), ("client_id", "app"))))


def test_event_detail_returns_first_value_or_none() -> None:
    event = make_event(details=[("scope", "a"), ("scope", "b")])
    assert event.detail("scope") == "a"
    assert event.detail("missing") is None


@pytest.mark.parametrize(
    "details",
    [
        "not-pairs",
        [("only-one",)],
        [("name", 3)],
        [(3, "value")],
        [("a", "b", "c")],
        ["ab"],
    ],
)
def test_event_rejects_details_that_are_not_string_pairs(details: object) -> None:
    with pytest.raises(InvalidInput, match="details"):
        make_event(details=details)


@pytest.mark.parametrize("field", ["action", "room", "actor", "outcome", "reason"])
def test_event_rejects_non_string_text_fields(field: str) -> None:
    with pytest.raises(InvalidInput, match=f"AuditEvent.{field}"):
        make_event(**{field: None})


@pytest.mark.parametrize("at", ["now", None, True])
def test_event_rejects_non_numeric_time(at: object) -> None:
    with pytest.raises(InvalidInput, match=r"AuditEvent\.at"):
        make_event(at=at)


def test_event_accepts_integer_time() -> None:
    assert make_event(at=5).at == 5


def test_null_sink_accepts_events_and_returns_none() -> None:
    sink: AuditSink = null_audit_sink
    assert sink(make_event()) is None  # type: ignore[func-returns-value]


def test_recording_sink_keeps_events_in_order() -> None:
    sink = RecordingAuditSink()
    first, second = make_event(action="a"), make_event(action="b")
    sink(first)
    sink(second)
    assert sink.events == [first, second]


def test_recording_sink_repr_counts_events_only() -> None:
    sink = RecordingAuditSink()
    sink(make_event(reason="visible-reason"))
    assert repr(sink) == "RecordingAuditSink(<1 events>)"


def test_recording_sink_is_an_audit_sink() -> None:
    sink: AuditSink = RecordingAuditSink()
    sink(make_event())
    assert isinstance(sink, RecordingAuditSink)
    assert len(sink.events) == 1
