"""The server's formatter writes exactly what logging.Formatter writes."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from roomsecrets.adapters.server.log_format import (
    SERVER_LOG_FORMAT,
    ServerLogFormatter,
    configure_server_logging,
)


def record_at(created: float, message: str = "POST /rooms/{room}/x 200") -> logging.LogRecord:
    record = logging.LogRecord("roomsecrets.server.access", logging.INFO, __file__, 1,
                               message, (), None)
    record.created = created
    record.msecs = (created - int(created)) * 1000
    return record


# Within a second, across seconds, a clock that steps back, a minute and a day boundary.
TIMES = [1_700_000_000.001, 1_700_000_000.5, 1_700_000_000.999, 1_700_000_001.0,
         1_700_000_000.25, 1_700_000_059.9, 1_700_000_060.0, 1_700_006_400.0,
         1_700_092_799.999, 1_700_092_800.0]


def test_every_line_is_the_standard_formatters_line_whatever_the_order_of_times() -> None:
    ours, standard = ServerLogFormatter(), logging.Formatter(SERVER_LOG_FORMAT)
    lines = [ours.format(record_at(t)) for t in TIMES + TIMES[::-1]]
    assert lines == [standard.format(record_at(t)) for t in TIMES + TIMES[::-1]]
    assert len(set(lines)) == len(set(TIMES))


def test_the_stamp_changes_when_the_second_does() -> None:
    ours = ServerLogFormatter()
    first = ours.format(record_at(1_700_000_000.9))
    second = ours.format(record_at(1_700_000_001.1))
    assert first.split(",")[0] != second.split(",")[0]
    assert second == logging.Formatter(SERVER_LOG_FORMAT).format(record_at(1_700_000_001.1))


@pytest.mark.parametrize("datefmt", ["%H:%M", "%Y"])
def test_a_date_format_of_its_own_is_the_standard_one(datefmt: str) -> None:
    record = record_at(1_700_000_000.5)
    assert ServerLogFormatter().formatTime(record, datefmt) == (
        logging.Formatter().formatTime(record, datefmt)
    )


@pytest.fixture
def own_logging() -> Iterator[None]:
    """Put back the root logger and logging's process-wide switches."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    switches = {name: getattr(logging, name) for name in SWITCHES if hasattr(logging, name)}
    try:
        yield
    finally:
        root.handlers, root.level = handlers, level
        for name, value in switches.items():
            setattr(logging, name, value)


SWITCHES = ("logThreads", "logProcesses", "logMultiprocessing", "logAsyncioTasks")


def test_the_server_logs_info_in_its_format_to_the_stream(own_logging: None) -> None:
    stream = io.StringIO()
    logging.getLogger().handlers = []  # as in a fresh process (pytest adds its own)
    handler = configure_server_logging(stream)
    assert isinstance(handler.formatter, ServerLogFormatter)
    assert logging.getLogger().level == logging.INFO
    logging.getLogger("roomsecrets.server.access").info("POST %s %s", "/rooms/{room}/x", 200)
    (line,) = stream.getvalue().splitlines()
    assert line.endswith(" INFO roomsecrets.server.access POST /rooms/{room}/x 200")


def test_the_server_logging_looks_up_no_thread_or_process_names(own_logging: None) -> None:
    configure_server_logging(io.StringIO())
    record = logging.getLogger("roomsecrets.server.access").makeRecord(
        "roomsecrets.server.access", logging.INFO, __file__, 1, "m", (), None
    )
    assert (record.thread, record.threadName) == (None, None)
    assert (record.process, record.processName) == (None, None)
    assert getattr(record, "taskName", None) is None
