"""UrllibTransport: the transport contract (``transport_contract.py``), then what is
particular to running urllib in worker threads."""

from __future__ import annotations

import ssl
import threading
import time
from pathlib import Path

import pytest

from roomsecrets.core.errors import ProviderTimeout
from roomsecrets.core.oauth.urllib_transport import UrllibTransport
from tests.core.transport_contract import TransportContract, _Server, get, https_url, send


def _workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("roomsecrets-http")]


def _wait_for_workers_to_end() -> None:
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and _workers():
        time.sleep(0.02)


class TestUrllibTransport(TransportContract):
    @pytest.fixture
    def make_transport(self) -> type[UrllibTransport]:
        return UrllibTransport

    @pytest.fixture
    def transport(self) -> UrllibTransport:
        return UrllibTransport()

    def test_an_abandoned_worker_thread_ends_promptly(
        self, server: _Server, transport: UrllibTransport
    ) -> None:
        # The socket is shut down when the caller gives up, so the worker does not
        # keep reading the drip until the server stops.
        with pytest.raises(ProviderTimeout):
            send(transport, get(server.base_url + "/drip"), timeout=0.3)
        _wait_for_workers_to_end()
        assert _workers() == []

    def test_repr_shows_no_internals(self, transport: UrllibTransport) -> None:
        assert repr(transport) == "UrllibTransport(trust_env=True)"
        assert repr(UrllibTransport(trust_env=False)) == "UrllibTransport(trust_env=False)"

    def test_worker_outcome_after_the_loop_closed_is_dropped_quietly(
        self, server: _Server
    ) -> None:
        # The caller times out and its loop closes before the worker finishes; the
        # late outcome must not raise in the worker thread.
        errors: list[BaseException] = []
        previous = threading.excepthook

        def record(args: threading.ExceptHookArgs) -> None:
            if args.exc_value is not None:
                errors.append(args.exc_value)

        threading.excepthook = record
        try:
            with pytest.raises(ProviderTimeout):
                send(UrllibTransport(), get(server.base_url + "/slow"), timeout=0.2)
            _wait_for_workers_to_end()
        finally:
            threading.excepthook = previous
        assert _workers() == []
        assert errors == []

    def test_the_worker_of_a_slow_https_server_ends(
        self, tls_server: _Server, certificate: tuple[Path, Path]
    ) -> None:
        transport = UrllibTransport(
            ssl_context=ssl.create_default_context(cafile=str(certificate[0]))
        )
        with pytest.raises(ProviderTimeout):
            send(transport, get(https_url(tls_server, "/drip")), timeout=0.4)
        _wait_for_workers_to_end()
        assert _workers() == []
