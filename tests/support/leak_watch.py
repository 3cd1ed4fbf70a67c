"""Watches the whole test session for secret values where they must never be.

SPEC.md: tokens, refresh tokens, codes, verifiers, states, client secrets and
participant JWTs never appear in logs, reprs, exception messages, audit events
or CLI output other than the one value a command exists to print. The fake
provider reports every such value it issues or receives
(:func:`remember_secret`), and so does every participant token minted in this
process. :func:`install` records every log record (the server's aiohttp
loggers included), every RoomSecretsError message, every audit event, the repr
of every value object the package creates, and the stdout and stderr of every
``roomsecrets`` CLI subprocess (:class:`_WatchedPopen`). At the end of the
session, ``tests/conftest.py`` scans the records for the secrets and fails the
run if any appears.
"""

from __future__ import annotations

import functools
import logging
import re
import subprocess
import threading
from collections.abc import Sequence
from typing import Any, Callable, Optional

_lock = threading.Lock()
_secrets: set[str] = set()
_outputs: list[tuple[str, str]] = []
_processes: list[_WatchedProcess] = []
_installed = False

# Shorter values (test fixtures like "x") would match by accident.
_MIN_SECRET_LENGTH = 8


def remember_secret(value: Optional[str]) -> None:
    """Note a value that must never be shown."""
    if isinstance(value, str) and len(value) >= _MIN_SECRET_LENGTH:
        with _lock:
            _secrets.add(value)


def remembered(value: str) -> bool:
    """True if ``value`` is among the secrets the scan looks for."""
    with _lock:
        return value in _secrets


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

    from roomsecrets.core import api, audit, client, credentials, errors, ports, service
    from roomsecrets.core.oauth import http, token_request, tokens
    from roomsecrets.core.pending import registry as pending_registry

    # The server's own loggers: aiohttp's are quiet (WARNING, from the root)
    # unless asked, so their INFO/DEBUG records would never be made, let alone scanned.
    for name in ("aiohttp", "aiohttp.access", "aiohttp.server", "aiohttp.web"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    subprocess.Popen = _WatchedPopen  # type: ignore[misc]
    _remember_minted_tokens()

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
        api.SecretPrompt,
        service._SecretAsk,
        client.SecretsClient,
    ):
        _after_init(cls, lambda _: "repr")


def find_leaks() -> list[str]:
    """Every recorded output containing a remembered secret (the secret itself left out)."""
    outputs = _all_outputs()
    with _lock:
        secrets = list(_secrets)
    return scan(secrets, outputs)


def recorded_texts() -> list[str]:
    """What has been recorded so far (for the watcher's own tests)."""
    return [text for _, text in _all_outputs()]


def _all_outputs() -> list[tuple[str, str]]:
    """The recorded outputs plus those of every CLI process so far."""
    with _lock:
        outputs = list(_outputs)
        processes = list(_processes)
    for process in processes:
        outputs.extend(process.outputs())
    return outputs


# --- participant tokens minted in this process -------------------------------------


def _remember_minted_tokens() -> None:
    """Wrap ``mint_participant_token`` so every JWT it makes is a secret to look for.

    Installed before the test modules import it by name. Skipped on a bare
    Python (tests/core runs without PyJWT or aiohttp).
    """
    try:
        from roomsecrets.adapters.server import participant_tokens
    except ImportError:
        return
    original = participant_tokens.mint_participant_token

    @functools.wraps(original)
    def mint(*args: Any, **kwargs: Any) -> str:
        token = original(*args, **kwargs)
        remember_secret(token)
        return token

    participant_tokens.mint_participant_token = mint  # type: ignore[assignment]


# --- roomsecrets CLI subprocesses ----------------------------------------------------

#: Commands whose stdout is the one secret they exist to print (SPEC.md, the CLI).
PRINTS_ONE_SECRET = frozenset(
    {
        ("token", "mint"),
        ("oauth2", "request"),
        ("oauth2", "get"),
        ("secret", "get"),
        ("secret", "request"),
    }
)
# ``oauth2 prompts`` prints each prompt's authorization URL: the state in it is
# what the person's browser must carry to the provider.
_STATE_IN_URL = re.compile(r"([?&]state=)[^&\s\"']+")
_OPTIONS_WITH_VALUES = frozenset({"--server", "--token"})


def cli_command(argv: object) -> Optional[list[str]]:
    """The arguments after ``-m roomsecrets`` (or a ``roomsecrets`` executable), else None."""
    if isinstance(argv, (str, bytes)) or not isinstance(argv, Sequence):
        return None
    words = [str(word) for word in argv]
    for index, word in enumerate(words):
        if word == "roomsecrets" and index > 0 and words[index - 1] == "-m":
            return words[index + 1 :]
        if word.endswith("/roomsecrets") and index == 0:
            return words[1:]
    return None


def _subcommand(args: list[str]) -> tuple[str, ...]:
    """The command words (``("oauth2", "get")``), skipping global options before them."""
    words: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in _OPTIONS_WITH_VALUES:
            skip = True
        elif not arg.startswith("-"):
            words.append(arg)
        if len(words) == 2:
            break
    return tuple(words)


class _WatchedProcess:
    """What one CLI subprocess wrote, as the test process read it."""

    def __init__(self, args: list[str]) -> None:
        self.command = _subcommand(args)
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        #: True while Popen.communicate reads (it returns the text itself).
        self.paused = False

    def note(self, sink: list[str], data: object) -> None:
        if isinstance(data, bytes):
            data = data.decode("utf-8", "replace")
        if isinstance(data, str) and data:
            sink.append(data)

    def outputs(self) -> list[tuple[str, str]]:
        name = " ".join(self.command) or "(no command)"
        stdout = "".join(self.stdout)
        printed = stdout.strip()
        if self.command in PRINTS_ONE_SECRET and printed and "\n" not in printed:
            # The one value it exists to print is allowed here, and only here.
            remember_secret(printed)
            stdout = stdout.replace(printed, "", 1)
        if self.command == ("oauth2", "prompts"):
            stdout = _STATE_IN_URL.sub(r"\1<state>", stdout)
        return [(f"cli stdout of {name}", stdout), (f"cli stderr of {name}", "".join(self.stderr))]


class _Tee:
    """A subprocess pipe that notes everything read through it."""

    def __init__(self, stream: Any, process: _WatchedProcess, sink: list[str]) -> None:
        self._stream = stream
        self._process = process
        self._sink = sink

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def _note(self, data: Any) -> Any:
        if not self._process.paused:
            self._process.note(self._sink, data)
        return data

    def read(self, *args: Any) -> Any:
        return self._note(self._stream.read(*args))

    def readline(self, *args: Any) -> Any:
        return self._note(self._stream.readline(*args))

    def readlines(self, *args: Any) -> Any:
        lines = self._stream.readlines(*args)
        for line in lines:
            self._note(line)
        return lines

    def __iter__(self) -> _Tee:
        return self

    def __next__(self) -> Any:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def __enter__(self) -> _Tee:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stream.close()


class _WatchedPopen(subprocess.Popen):  # type: ignore[type-arg]
    """``subprocess.Popen`` that notes what a ``roomsecrets`` CLI process prints.

    Installed as ``subprocess.Popen`` for the session (``subprocess.run`` uses it),
    so every CLI test is watched without routing through a helper. Other programs
    run untouched.
    """

    def __init__(self, args: Any, *rest: Any, **kwargs: Any) -> None:
        super().__init__(args, *rest, **kwargs)
        command = cli_command(args)
        self._watched: Optional[_WatchedProcess] = None
        if command is None:
            return
        watched = self._watched = _WatchedProcess(command)
        with _lock:
            _processes.append(watched)
        if self.stdout is not None:
            self.stdout = _Tee(self.stdout, watched, watched.stdout)  # type: ignore[assignment]
        if self.stderr is not None:
            self.stderr = _Tee(self.stderr, watched, watched.stderr)  # type: ignore[assignment]

    def communicate(self, *args: Any, **kwargs: Any) -> Any:
        watched = self._watched
        if watched is None:
            return super().communicate(*args, **kwargs)
        watched.paused = True
        try:
            stdout, stderr = super().communicate(*args, **kwargs)
        finally:
            watched.paused = False
        watched.note(watched.stdout, stdout)
        watched.note(watched.stderr, stderr)
        return stdout, stderr


def scan(secrets: list[str], outputs: list[tuple[str, str]]) -> list[str]:
    """The outputs that contain any of ``secrets``, described without the secret.

    A run records up to ~500k outputs, most of them repeats (the same audit event or
    log line from many examples): each distinct text is compared with the secrets
    once, and reported under the first place it was seen. Comparing every output
    took 7 s of a 2-minute tests/core run; the distinct ones are a seventh of them.
    """
    first_seen: dict[str, str] = {}
    for where, text in outputs:
        first_seen.setdefault(text, where)
    leaks = []
    for text, where in first_seen.items():
        for secret in secrets:
            if secret in text:
                leaks.append(f"{where}: a secret of {len(secret)} chars appears in: "
                             f"{text.replace(secret, '<SECRET>')[:300]}")
    return leaks


def counts() -> tuple[int, int]:
    """(secrets remembered, outputs recorded)."""
    outputs = len(_all_outputs())
    with _lock:
        return len(_secrets), outputs
