"""The server's formatter writes exactly what logging.Formatter writes."""

from __future__ import annotations

import logging

import pytest

from roomsecrets.adapters.server.log_format import SERVER_LOG_FORMAT, ServerLogFormatter


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
