"""Access records: as ``logging`` records (AccessLog, create_app's default) or as the
server's log lines written straight to its stream (StreamAccessLog, what
``roomsecrets serve`` uses). Both say the same thing; the stream's line is the one
the server's logging handler would have written."""

from __future__ import annotations

import asyncio
import io
import logging
import secrets
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from roomsecrets import MemoryStore, SecretsGrant
from roomsecrets.adapters.server.access_log import ACCESS_LOGGER, AccessLog, StreamAccessLog
from roomsecrets.adapters.server.log_format import (
    SERVER_LOG_FORMAT,
    ServerLogFormatter,
    configure_server_logging,
)
from tests.support import leak_watch

aiohttp = pytest.importorskip("aiohttp")
pytest.importorskip("jwt")

from aiohttp import web  # noqa: E402

from roomsecrets.adapters.server import create_app  # noqa: E402
from roomsecrets.adapters.server.participant_tokens import mint_participant_token  # noqa: E402

KEY = secrets.token_bytes(32)
ROOM = "lab"

# Within a second, across seconds, a clock that steps back, a day boundary.
TIMES = [1_700_000_000.001, 1_700_000_000.5, 1_700_000_000.999, 1_700_000_001.0,
         1_700_000_000.25, 1_700_092_799.999, 1_700_092_800.0]

VALUES: dict[str, Any] = dict(
    method="POST", route="/rooms/{room}/get_secret", room=ROOM, participant="agent-1",
    status=403, error="grant_denied", duration_ms=1.25,
)


@pytest.fixture
def own_logging() -> Iterator[None]:
    """Put back the root logger, the access logger's level and logging's switches."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    access_level = ACCESS_LOGGER.level
    switches = {name: getattr(logging, name) for name in
                ("logThreads", "logProcesses", "logMultiprocessing", "logAsyncioTasks")
                if hasattr(logging, name)}
    try:
        yield
    finally:
        root.handlers, root.level = handlers, level
        ACCESS_LOGGER.setLevel(access_level)
        for name, value in switches.items():
            setattr(logging, name, value)


def logged_line(handler: logging.Handler, created: float, values: dict[str, Any]) -> str:
    """What ``handler`` writes for AccessLog's record of ``values`` made at ``created``."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep, propagate = Keep(), ACCESS_LOGGER.propagate
    ACCESS_LOGGER.addHandler(keep)
    ACCESS_LOGGER.propagate = False  # to ``handler`` only through handler.format below
    try:
        AccessLog().write(**values)
    finally:
        ACCESS_LOGGER.removeHandler(keep)
        ACCESS_LOGGER.propagate = propagate
    (record,) = records
    record.created = created
    record.msecs = int((created - int(created)) * 1000)
    return handler.format(record) + "\n"


def test_each_line_is_the_line_the_servers_handler_writes_for_the_logging_record(
    own_logging: None,
) -> None:
    stream = io.StringIO()
    logging.getLogger().handlers = []
    handler = configure_server_logging(stream)
    other = {**VALUES, "room": None, "participant": None, "status": 200, "error": None,
             "route": "<unmatched>", "duration_ms": 0.04}
    expected = []
    for created in TIMES + TIMES[::-1]:
        for values in (VALUES, other):
            StreamAccessLog(handler, clock=lambda created=created: created).write(**values)
            expected.append(logged_line(handler, created, values))
    assert stream.getvalue().splitlines(keepends=True) == expected
    assert expected[0].endswith(
        " INFO roomsecrets.server.access POST /rooms/{room}/get_secret 403 room='lab' "
        "participant='agent-1' error=grant_denied 1.2ms\n"
    )


class Sly(str):
    """A str subclass that equals any string (and hashes like "agent-1")."""

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return hash("agent-1")


def test_one_stream_log_writes_the_logging_line_for_every_record_it_has_seen_before(
    own_logging: None,
) -> None:
    # One StreamAccessLog's formatter remembers the last time stamp: records that
    # repeat earlier values, at times within one millisecond, across milliseconds
    # and back, still get logging's own line.
    stream = io.StringIO()
    logging.getLogger().handlers = []
    handler = configure_server_logging(stream)
    now = [0.0]
    access = StreamAccessLog(handler, clock=lambda: now[0])
    records = [
        VALUES,
        {**VALUES, "status": 200, "error": None, "duration_ms": 0.05},
        {**VALUES, "participant": Sly("mallory")},
        {**VALUES, "room": None, "participant": None},
    ]
    expected = []
    times = [1_700_000_000.0011, 1_700_000_000.0012, 1_700_000_000.0025, 1_700_000_000.0011,
             1_700_000_001.0011]
    for created in times:
        for values in records + records[::-1]:
            now[0] = created
            access.write(**values)
            expected.append(logged_line(handler, created, values))
    lines = stream.getvalue().splitlines(keepends=True)
    assert lines == expected
    assert sum("participant='mallory'" in line for line in lines) == 2 * len(times)
    # And the standard formatter's own stamps (not the server formatter's).
    standard = logging.Formatter(SERVER_LOG_FORMAT)
    for line, created in zip(lines[:: 2 * len(records)], times):
        record = logging.makeLogRecord({"created": created})
        record.msecs = int((created - int(created)) * 1000)
        assert line.startswith(standard.formatTime(record) + " INFO ")


def test_the_logging_record_carries_the_values_for_structured_handlers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER.name):
        AccessLog().write(**VALUES)
    (record,) = [r for r in caplog.records if r.name == ACCESS_LOGGER.name]
    assert record.roomsecrets == {**VALUES, "duration_ms": 1.2}  # type: ignore[attr-defined]


@pytest.mark.parametrize("quiet", ["logger", "handler"])
def test_a_level_above_info_on_the_logger_or_the_handler_writes_nothing(
    own_logging: None, quiet: str
) -> None:
    stream = io.StringIO()
    handler = configure_server_logging(stream)
    access = StreamAccessLog(handler)
    assert access.enabled()
    (ACCESS_LOGGER if quiet == "logger" else handler).setLevel(logging.WARNING)
    assert not access.enabled()


def test_a_handler_whose_lines_it_cannot_reproduce_is_refused() -> None:
    plain = logging.StreamHandler(io.StringIO())
    with pytest.raises(ValueError, match="configure_server_logging"):
        StreamAccessLog(plain)
    plain.setFormatter(ServerLogFormatter("%(message)s"))
    with pytest.raises(ValueError):
        StreamAccessLog(plain)

    class Other(ServerLogFormatter):
        pass

    plain.setFormatter(Other())
    with pytest.raises(ValueError):
        StreamAccessLog(plain)


def test_a_stream_that_is_gone_fails_no_request_and_releases_the_handlers_lock() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(ServerLogFormatter())
    stream.close()  # writes raise ValueError, as a closed stderr would
    StreamAccessLog(handler).write(**VALUES)
    lock = handler.lock
    assert lock is not None
    taken: list[bool] = []

    def take() -> None:  # another thread: the lock is reentrant for this one
        taken.append(lock.acquire(blocking=False))
        if taken[0]:
            lock.release()

    other = threading.Thread(target=take)
    other.start()
    other.join()
    assert taken == [True]  # not left held


def test_a_served_request_gets_one_line_naming_the_route_and_no_token(own_logging: None) -> None:
    asyncio.run(serve_one_request())


async def serve_one_request() -> None:
    stream = io.StringIO()
    handler = configure_server_logging(stream)
    app = create_app(store=MemoryStore(), jwt_key=KEY, public_url="http://127.0.0.1:1",
                     access_log=StreamAccessLog(handler))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    token = mint_participant_token(KEY, room=ROOM, participant_id="agent-1",
                                   grant=SecretsGrant.allow_all(), ttl=600)
    leak_watch.remember_secret(token)
    try:
        async with aiohttp.ClientSession() as session, session.post(
            f"http://127.0.0.1:{port}/rooms/{ROOM}/get_secret?x=query-value",
            json={"secret_id": "nothing-here"},
            headers={"Authorization": f"Bearer {token}"},
        ) as answer:
            assert answer.status == 200
    finally:
        await runner.cleanup()
    (line,) = [line for line in stream.getvalue().splitlines() if "server.access" in line]
    assert " INFO roomsecrets.server.access POST /rooms/{room}/get_secret 200 room='lab' " \
        "participant='agent-1' error=- " in line
    assert token not in line and "query-value" not in line
