"""The room server (``tests/adapters/server_kit.serving``) on its own event loop in a
background thread, for clients that block: schemathesis (``requests``), raw sockets."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from tests.adapters.server_kit import Served, serving

T = TypeVar("T")


class ServerThread:
    """A loop in a daemon thread; :meth:`run` executes a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="hostile-test-server", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@contextmanager
def served_in_thread(**options: Any) -> Iterator[tuple[Served, ServerThread]]:
    """Start the room server (``serving(**options)``) in a thread; stop it after."""
    thread = ServerThread()
    context = serving(**options)
    try:
        served = thread.run(context.__aenter__())
        try:
            yield served, thread
        finally:
            thread.run(context.__aexit__(None, None, None))
    finally:
        thread.stop()
