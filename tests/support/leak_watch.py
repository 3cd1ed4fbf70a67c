"""Watches the whole test session for secret values where they must never be.

SPEC.md: tokens, refresh tokens, codes, verifiers, states and client secrets
never appear in logs, reprs, exception messages or audit events. The fake
provider reports every such value it issues or receives
(:func:`remember_secret`); :func:`install` records every log record, every
RoomSecretsError message, every audit event and the repr of every value object
the package creates. At the end of the session, ``tests/conftest.py`` scans the
records for the secrets and fails the run if any appears.
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any, Callable, Optional

_lock = threading.Lock()
_secrets: set[str] = set()
_outputs: list[tuple[str, str]] = []
_installed = False

# Shorter values (test fixtures like "x") would match by accident.
_MIN_SECRET_LENGTH = 8


def remember_secret(value: Optional[str]) -> None:
    """Note a value that must never be shown."""
    if isinstance(value, str) and len(value) >= _MIN_SECRET_LENGTH:
        with _lock:
            _secrets.add(value)


def record(where: str, text: str) -> None:
    with _lock:
        _outputs.append((where, text))


class _Handler(logging.Handler):
    def emit(self, log_record: logging.LogRecord) -> None:
        try:
            text = log_record.getMessage()
        except Exception:  # a malformed record is still scanned by its parts
            text = f"{log_record.msg!r} {log_record.args!r}"
        if log_record.exc_info and log_record.exc_info[1] is not None:
            text += " " + repr(log_record.exc_info[1])
        record(f"log {log_record.name}", text)


def _after_init(cls: type, where: Callable[[Any], str]) -> None:
    original = cls.__init__

    @functools.wraps(original)
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        record(f"{where(self)} {cls.__name__}", where_text(self))

    cls.__init__ = init  # type: ignore[misc]


def where_text(obj: Any) -> str:
    if isinstance(obj, BaseException):
        return str(obj) + " " + repr(obj)
    return repr(obj) + " " + str(obj)


def install() -> None:
    """Start recording (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    handler = _Handler(level=logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    logging.getLogger("roomsecrets").setLevel(logging.DEBUG)

    from roomsecrets.core import (
        audit,
        client,
        credentials,
        errors,
        http,
        pending_registry,
        ports,
        service,
        token_request,
        tokens,
    )

    _after_init(errors.RoomSecretsError, lambda _: "exception")
    _after_init(audit.AuditEvent, lambda _: "audit")
    for cls in (
        tokens.TokenSet,
        credentials.StoredCredential,
        token_request.ClientCredentials,
        http.HttpRequest,
        http.HttpResponse,
        ports.SecretRecord,
        pending_registry.PendingRequest,
        pending_registry.Completed,
        service.OAuthPrompt,
        client.SecretsClient,
    ):
        _after_init(cls, lambda _: "repr")


def find_leaks() -> list[str]:
    """Every recorded output containing a remembered secret (the secret itself left out)."""
    with _lock:
        secrets = list(_secrets)
        outputs = list(_outputs)
    return scan(secrets, outputs)


def recorded_texts() -> list[str]:
    """What has been recorded so far (for the watcher's own tests)."""
    with _lock:
        return [text for _, text in _outputs]


def scan(secrets: list[str], outputs: list[tuple[str, str]]) -> list[str]:
    """The outputs that contain any of ``secrets``, described without the secret."""
    leaks = []
    for where, text in outputs:
        for secret in secrets:
            if secret in text:
                leaks.append(f"{where}: a secret of {len(secret)} chars appears in: "
                             f"{text.replace(secret, '<SECRET>')[:300]}")
    return leaks


def counts() -> tuple[int, int]:
    """(secrets remembered, outputs recorded)."""
    with _lock:
        return len(_secrets), len(_outputs)
