"""The session-wide secret scan (tests/conftest.py) can see and can fail."""

import logging

from roomsecrets.core.audit import AuditEvent
from roomsecrets.core.errors import RoomSecretsError
from roomsecrets.core.oauth.tokens import TokenSet
from tests.support import leak_watch


def test_scan_reports_a_planted_secret_without_repeating_it():
    leaks = leak_watch.scan(["s3cret-value-123"], [("log x", "token=s3cret-value-123 oops"),
                                                   ("audit", "clean")])
    assert len(leaks) == 1
    assert "s3cret-value-123" not in leaks[0]
    assert "<SECRET>" in leaks[0]


def test_scan_reports_a_leak_repeated_in_many_outputs_once_where_first_seen():
    outputs = [("audit", "clean")] + [(f"log {n}", "token=s3cret-value-123") for n in range(3)]
    outputs.append(("repr", "other s3cret-value-123"))
    leaks = leak_watch.scan(["s3cret-value-123", "never-seen-456"], outputs)
    assert [leak.split(":")[0] for leak in leaks] == ["log 0", "repr"]


def test_exceptions_logs_audit_events_and_reprs_are_recorded():
    marker = "MARKER-not-a-secret-7f3a"
    RoomSecretsError(f"message {marker}-exc")
    logging.getLogger("roomsecrets.test").warning("log %s", f"{marker}-log")
    AuditEvent(action="a", room="r", actor=f"{marker}-audit", outcome="ok", reason="r", at=0.0)
    TokenSet(access_token="at", issued_at=0.0, scopes=(f"{marker}-repr",))
    texts = "\n".join(leak_watch.recorded_texts())
    for suffix in ("exc", "log", "audit", "repr"):
        assert f"{marker}-{suffix}" in texts
