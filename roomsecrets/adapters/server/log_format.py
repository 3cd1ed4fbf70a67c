"""The server's log lines: ``logging.Formatter``'s output, with the time stamp
formatted once per second instead of once per record.

``roomsecrets serve`` writes one access record per request. With the standard
formatter, ``%(asctime)s`` costs a ``time.localtime`` and a ``time.strftime`` for
every record, a measurable part of a cheap request (benchmarks/bench_server.py).
The stamp only changes once a second, so it is kept until the second changes.

:func:`configure_server_logging` is what ``roomsecrets serve`` does with logging.
"""

from __future__ import annotations

import logging
import time
from typing import Optional, TextIO

__all__ = ["SERVER_LOG_FORMAT", "ServerLogFormatter", "configure_server_logging"]

#: What ``roomsecrets serve`` logs: time, level, logger, message.
SERVER_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class ServerLogFormatter(logging.Formatter):
    """A ``logging.Formatter`` (same output) that reuses the last second's stamp."""

    def __init__(self, fmt: str = SERVER_LOG_FORMAT) -> None:
        super().__init__(fmt)
        # One tuple, replaced whole: a thread never sees one second's stamp
        # paired with another second.
        self._last: tuple[Optional[int], str] = (None, "")
        # The last whole stamp with its millisecond: a busy server writes several
        # records a millisecond.
        self._last_msec: tuple[Optional[int], float, str] = (None, -1.0, "")

    def formatTime(self, record: logging.LogRecord, datefmt: Optional[str] = None) -> str:
        if datefmt is not None:  # not ours: the standard way
            return super().formatTime(record, datefmt)
        return self.stamp(record.created, record.msecs)

    def stamp(self, created: float, msecs: float) -> str:
        """The time stamp of a record made at ``created`` (``msecs`` as LogRecord has it)."""
        second = int(created)
        last_second, last_msecs, whole = self._last_msec
        if second == last_second and msecs == last_msecs:
            return whole
        whole = self._stamp(second, created, msecs)
        self._last_msec = (second, msecs, whole)
        return whole

    def _stamp(self, second: int, created: float, msecs: float) -> str:
        last_second, stamp = self._last
        if second != last_second:
            # The standard formatter's own steps (default_time_format), once a second.
            stamp = time.strftime(self.default_time_format, self.converter(created))
            self._last = (second, stamp)
        msec_format = self.default_msec_format
        if msec_format is None:  # a subclass turned milliseconds off
            return stamp
        return msec_format % (stamp, msecs)


def configure_server_logging(stream: Optional[TextIO] = None) -> logging.StreamHandler[TextIO]:
    """Log INFO and up to ``stream`` (stderr by default) in :data:`SERVER_LOG_FORMAT`,
    as ``roomsecrets serve`` does; return the handler installed on the root logger.

    It also stops ``logging`` from looking up, for every record, the thread, process
    and multiprocessing names (and, on Python 3.12+, the asyncio task name) that the
    format never shows: with one access record per request, those lookups were a
    measurable share of a cheap request. They are process-wide switches, so only a
    program that owns its logging (the server) should call this.
    """
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    if hasattr(logging, "logAsyncioTasks"):  # Python 3.12+
        logging.logAsyncioTasks = False
    handler = logging.StreamHandler(stream)
    handler.setFormatter(ServerLogFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    return handler
