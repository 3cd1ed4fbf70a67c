"""Where the room server's access records go: one per request.

A record holds the method, the route's template (never the raw path, nor the query
string: on ``/oauth/callback`` it holds the code), room, participant, status, error
code and duration. Two destinations, one interface:

- :class:`AccessLog`, what :func:`~roomsecrets.adapters.server.create_app` uses
  unless told otherwise: a ``logging`` record at INFO on the
  ``roomsecrets.server.access`` logger, its values also in the record's
  ``roomsecrets`` attribute for structured handlers. The embedding program's
  logging configuration decides where it goes.
- :class:`StreamAccessLog`, what ``roomsecrets serve`` uses: the line the server's
  own handler (:func:`~.log_format.configure_server_logging`) would write for that
  record, written to the handler's stream directly, under the handler's lock.
  ``logging``'s per-record machinery (a LogRecord, the caller lookup, the walk up
  the logger tree, two lock rounds, the formatter's dictionary formatting) is a
  tenth or more of the server's work on a cheap request (``python -m
  benchmarks.server_cpu roomsecrets logging-access-log`` compares the two); the
  line itself costs a string format.
  The access logger's level still switches it off; filters added to that logger or
  to the handler are not consulted (use :class:`AccessLog` for those).
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Callable, Optional, TextIO

from .log_format import SERVER_LOG_FORMAT, ServerLogFormatter

__all__ = ["ACCESS_LOGGER", "AccessLog", "StreamAccessLog"]

#: The logger access records are written for (and whose level switches them off).
ACCESS_LOGGER = logging.getLogger("roomsecrets.server.access")

_MESSAGE = "%s %s %s room=%r participant=%r error=%s %.1fms"

class AccessLog:
    """Access records as ``logging`` records on ``logger`` (INFO)."""

    def __init__(self, logger: logging.Logger = ACCESS_LOGGER) -> None:
        self.logger = logger

    def enabled(self) -> bool:
        """Whether a record would be written (the caller skips its work if not)."""
        return self.logger.isEnabledFor(logging.INFO)

    def write(
        self,
        *,
        method: str,
        route: str,
        room: Optional[str],
        participant: Optional[str],
        status: int,
        error: Optional[str],
        duration_ms: float,
    ) -> None:
        fields = {
            "method": method,
            "route": route,
            "room": room,
            "participant": participant,
            "status": status,
            "error": error,
            "duration_ms": round(duration_ms, 1),
        }
        self.logger.info(
            _MESSAGE, method, route, status, room, participant, error or "-", duration_ms,
            extra={"roomsecrets": fields},
        )


class StreamAccessLog(AccessLog):
    """Access records as the lines ``handler`` would write, written to its stream.

    ``handler`` is a ``logging.StreamHandler`` whose formatter is a
    :class:`~.log_format.ServerLogFormatter` in the server's format (what
    :func:`~.log_format.configure_server_logging` returns); anything else is
    refused with ValueError, since its lines could not be reproduced here.
    """

    def __init__(
        self,
        handler: logging.StreamHandler[TextIO],
        logger: logging.Logger = ACCESS_LOGGER,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        formatter = handler.formatter
        if type(formatter) is not ServerLogFormatter or formatter._fmt != SERVER_LOG_FORMAT:
            raise ValueError(
                "StreamAccessLog writes the server's log format: give it the handler "
                "configure_server_logging returns"
            )
        super().__init__(logger)
        self._handler = handler
        self._formatter = formatter
        # The head of every line: "LEVEL logger " after the time stamp.
        self._head = f" {logging.getLevelName(logging.INFO)} {logger.name} "
        self._clock = clock

    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO) and self._handler.level <= logging.INFO

    def write(
        self,
        *,
        method: str,
        route: str,
        room: Optional[str],
        participant: Optional[str],
        status: int,
        error: Optional[str],
        duration_ms: float,
    ) -> None:
        created = self._clock()
        message = _MESSAGE % (method, route, status, room, participant, error or "-", duration_ms)
        # The msecs of logging.LogRecord (3.11's rule) for the formatter's stamp.
        msecs = int((created - int(created)) * 1000)
        handler = self._handler
        line = self._formatter.stamp(created, msecs) + self._head + message + handler.terminator
        # The handler's own lock (what handler.acquire() takes), held directly.
        with handler.lock or contextlib.nullcontext():
            try:
                handler.stream.write(line)
                handler.stream.flush()
            except (OSError, ValueError):
                # A log stream that is gone (closed, broken pipe) must not fail the
                # request; logging's own handlers report such errors and carry on too.
                pass
