"""AiohttpTransport: the transport contract (``tests/core/transport_contract.py``),
then what is particular to one pooled aiohttp session: pooling, closing, event
loops, and the translation of every aiohttp failure into our errors."""

from __future__ import annotations

import asyncio
import ssl
import threading
from typing import Optional

import pytest

pytest.importorskip("aiohttp")

import aiohttp

from roomsecrets.adapters.aiohttp_transport import (
    _IDLE_REUSE_LIMIT,
    AiohttpTransport,
    translate_aiohttp_error,
)
from roomsecrets.core.errors import (
    ConfigurationError,
    ConnectError,
    InvalidInput,
    ProviderTimeout,
    TransportError,
)
from roomsecrets.core.oauth.http import HttpRequest
from tests.core.transport_contract import TransportContract, _Server, get


class TestAiohttpTransport(TransportContract):
    @pytest.fixture
    def make_transport(self) -> type[AiohttpTransport]:
        return AiohttpTransport

    @pytest.fixture
    def transport(self) -> AiohttpTransport:
        return AiohttpTransport()

    def test_one_pooled_connection_serves_sequential_requests(self, server: _Server) -> None:
        async def main() -> set[int]:
            async with AiohttpTransport() as transport:
                ports = set()
                for _ in range(5):
                    response = await transport.send(
                        get(server.base_url + "/json"), timeout=5, max_body=100
                    )
                    assert response.status == 200
                    session = transport._session
                    assert session is not None
                    ports.add(id(session))
                return ports

        assert len(asyncio.run(main())) == 1

    def test_a_connection_idle_past_the_reuse_limit_is_not_reused(self) -> None:
        """A provider that closes idle keep-alive connections (Node after 5 s) could close
        ours as a refresh POST is sent on it; an idle connection is not reused."""
        pauses = (0.0, 0.0, _IDLE_REUSE_LIMIT / 2, _IDLE_REUSE_LIMIT + 0.3, 0.0)
        # Reused back to back and within the limit; a new connection after it.
        assert asyncio.run(self._connections_seen(pauses)) == [1, 1, 1, 2, 2]

    def test_a_longer_idle_reuse_limit_keeps_the_connection(self) -> None:
        pauses = (0.0, _IDLE_REUSE_LIMIT + 0.3)
        assert asyncio.run(self._connections_seen(pauses, idle_reuse_limit=5.0)) == [1, 1]

    @staticmethod
    async def _connections_seen(pauses: tuple[float, ...], **settings: float) -> list[int]:
        """How many connections the server had seen after each request (sent after its pause)."""
        connections = 0

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            try:
                while True:  # keep-alive: answer every request on this connection
                    await reader.readuntil(b"\r\n\r\n")
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/token"
        seen = []
        try:
            async with AiohttpTransport(**settings) as transport:  # type: ignore[arg-type]
                for pause in pauses:
                    await asyncio.sleep(pause)
                    response = await transport.send(get(url), timeout=5, max_body=100)
                    assert response.status == 200
                    seen.append(connections)
        finally:
            server.close()
            await server.wait_closed()
        return seen

    def test_aclose_closes_the_session_and_a_later_send_opens_a_new_one(
        self, server: _Server
    ) -> None:
        async def main() -> None:
            transport = AiohttpTransport()
            assert transport._session is None  # made lazily, in the running loop
            await transport.send(get(server.base_url + "/json"), timeout=5, max_body=100)
            first = transport._session
            assert first is not None and not first.closed
            await transport.aclose()
            assert first.closed
            await transport.send(get(server.base_url + "/json"), timeout=5, max_body=100)
            assert transport._session is not first
            await transport.aclose()
            await transport.aclose()  # twice is fine

        asyncio.run(main())

    def test_a_session_whose_loop_ended_is_replaced(self, server: _Server) -> None:
        transport = AiohttpTransport()
        request = get(server.base_url + "/json")
        asyncio.run(transport.send(request, timeout=5, max_body=100))
        response = asyncio.run(transport.send(request, timeout=5, max_body=100))
        assert response.status == 200
        asyncio.run(transport.aclose())

    def test_a_session_in_use_by_another_running_loop_is_refused(self, server: _Server) -> None:
        transport = AiohttpTransport()
        request = get(server.base_url + "/json")
        other = asyncio.new_event_loop()
        thread = threading.Thread(target=other.run_forever)
        thread.start()
        try:
            # The session now belongs to ``other``, which keeps running.
            asyncio.run_coroutine_threadsafe(
                transport.send(request, timeout=5, max_body=100), other
            ).result(10)
            with pytest.raises(ConfigurationError):
                asyncio.run(transport.send(request, timeout=5, max_body=100))
            asyncio.run_coroutine_threadsafe(transport.aclose(), other).result(10)
        finally:
            other.call_soon_threadsafe(other.stop)
            thread.join(10)
            other.close()

    def test_repr_shows_no_internals(self) -> None:
        assert repr(AiohttpTransport()) == "AiohttpTransport(trust_env=True)"
        assert repr(AiohttpTransport(trust_env=False)) == "AiohttpTransport(trust_env=False)"

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"connect_timeout": 0},
            {"connect_timeout": float("inf")},
            {"limit": 0},
            {"idle_reuse_limit": 0},
            {"idle_reuse_limit": -1.0},
            {"idle_reuse_limit": float("nan")},
            {"idle_reuse_limit": float("inf")},
        ],
    )
    def test_bad_settings_are_invalid_input(self, kwargs: dict[str, float]) -> None:
        with pytest.raises(InvalidInput):
            AiohttpTransport(**kwargs)  # type: ignore[arg-type]

    def test_a_header_name_that_is_not_a_token_is_refused(self, server: _Server) -> None:
        request = HttpRequest(
            method="GET", url=server.base_url + "/json", headers=(("Bad Name", "x"),)
        )
        with pytest.raises(InvalidInput):
            asyncio.run(AiohttpTransport().send(request, timeout=5, max_body=100))
        assert server.seen == []


class _Key:
    """The connection_key aiohttp's connector errors carry."""

    host = "127.0.0.1"
    port = 1
    ssl: Optional[ssl.SSLContext] = None


def _connector_errors() -> list[tuple[BaseException, type[BaseException], str]]:
    key = _Key()
    cert_error = ssl.SSLCertVerificationError("certificate verify failed")
    return [
        (aiohttp.ClientConnectorCertificateError(key, cert_error), ConnectError, "certificate"),
        (aiohttp.ClientConnectorSSLError(key, ssl.SSLError()), ConnectError, "TLS handshake"),
        (aiohttp.ClientConnectorDNSError(key, OSError()), ConnectError, "name resolution"),
        (aiohttp.ClientProxyConnectionError(key, OSError()), ConnectError, "proxy"),
        (aiohttp.ClientConnectorError(key, ConnectionRefusedError()), ConnectError, "refused"),
        (aiohttp.ClientConnectorError(key, OSError()), ConnectError, "connection failed"),
        (aiohttp.ConnectionTimeoutError(), ConnectError, "connect timed out"),
    ]


def _later_errors() -> list[tuple[BaseException, type[BaseException], str]]:
    from multidict import CIMultiDict, CIMultiDictProxy
    from yarl import URL

    info = aiohttp.RequestInfo(
        URL("http://127.0.0.1/token?code=SECRET"), "POST", CIMultiDictProxy(CIMultiDict())
    )
    return [
        (aiohttp.SocketTimeoutError(), ProviderTimeout, "no complete response"),
        (aiohttp.ServerTimeoutError(), ProviderTimeout, "no complete response"),
        (asyncio.TimeoutError(), ProviderTimeout, "no complete response"),
        (aiohttp.ServerDisconnectedError(), TransportError, "ServerDisconnectedError"),
        (aiohttp.ClientConnectionResetError(), TransportError, "connection failed"),
        (aiohttp.ClientOSError(), TransportError, "connection failed"),
        (aiohttp.ClientPayloadError("cut"), TransportError, "cut short"),
        (aiohttp.ClientResponseError(info, (), status=400), TransportError, "malformed"),
        (ConnectionResetError(), TransportError, "connection failed"),
    ]


@pytest.mark.parametrize(("exc", "kind", "text"), _connector_errors())
def test_failures_before_sending_are_connect_errors(
    exc: BaseException, kind: type[BaseException], text: str
) -> None:
    error = translate_aiohttp_error("POST 127.0.0.1:1", exc, 5.0)
    assert type(error) is kind
    assert text in str(error)
    assert str(error).startswith("POST 127.0.0.1:1: ")


@pytest.mark.parametrize(("exc", "kind", "text"), _later_errors())
def test_failures_after_sending_may_have_been_acted_on(
    exc: BaseException, kind: type[BaseException], text: str
) -> None:
    error = translate_aiohttp_error("POST 127.0.0.1:1", exc, 5.0)
    assert type(error) is kind
    assert not isinstance(error, ConnectError)
    assert text in str(error)
    assert "SECRET" not in str(error)


def test_invalid_urls_and_values_are_invalid_input_without_echoing_them() -> None:
    for exc in (aiohttp.InvalidURL("http://x/?code=SECRET"), ValueError("SECRET\r\n")):
        error = translate_aiohttp_error("GET x", exc, 5.0)
        assert isinstance(error, InvalidInput)
        assert "SECRET" not in str(error)


def test_anything_else_is_not_translated() -> None:
    assert translate_aiohttp_error("GET x", KeyError("bug"), 5.0) is None
    assert translate_aiohttp_error("GET x", asyncio.CancelledError(), 5.0) is None
