"""A hostile provider against AiohttpTransport (review).

aiohttp decodes a ``Content-Encoding`` the server chose by itself, although we
never ask for one; aiohttp up to 3.13.2 did so without a bound (GHSA-6mq8-rvhq-8wgg,
CVE-2025-69223), and our extra allows ``aiohttp>=3.9``: a 1 MB gzip answer from a
token endpoint could grow to a gigabyte in memory, whatever our body cap. The two
compression tests failed (aiohttp's cells) before the session was made with
``auto_decompress=False``: the answer comes back as sent, as from ``UrllibTransport``.
"""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import Iterator

import pytest

pytest.importorskip("aiohttp")

from roomsecrets.adapters.aiohttp_transport import AiohttpTransport
from roomsecrets.core.oauth.http import HttpRequest, HttpResponse
from roomsecrets.core.oauth.urllib_transport import UrllibTransport
from roomsecrets.core.ports import HttpTransport
from tests.support.raw_server import RawServer

TOKEN_JSON = b'{"access_token":"at-1","token_type":"Bearer"}'

def _encoded_answer(body: bytes, encoding: str) -> bytes:
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        f"Content-Encoding: {encoding}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


@pytest.fixture
def serve() -> Iterator[list[RawServer]]:
    servers: list[RawServer] = []
    yield servers
    for server in servers:
        server.close()


def _send(transport: HttpTransport, url: str, max_body: int) -> HttpResponse:
    async def main() -> HttpResponse:
        try:
            return await transport.send(
                HttpRequest(method="POST", url=url, body=b"grant_type=refresh_token"),
                timeout=10.0,
                max_body=max_body,
            )
        finally:
            aclose = getattr(transport, "aclose", None)
            if aclose is not None:
                await aclose()

    return asyncio.run(main())


@pytest.mark.parametrize("make", [AiohttpTransport, UrllibTransport], ids=["aiohttp", "urllib"])
def test_a_compressed_answer_nobody_asked_for_comes_back_as_sent(serve, make):
    compressed = gzip.compress(TOKEN_JSON)
    server = RawServer(_encoded_answer(compressed, "gzip"))
    serve.append(server)
    response = _send(make(), server.url, max_body=64 * 1024)
    assert response.status == 200
    assert response.body == compressed
    assert response.header("Content-Encoding") == "gzip"


def test_a_gzip_bomb_under_the_cap_is_never_inflated():
    # 64 MiB of zeros in about 64 KiB: under a 1 MiB cap as sent.
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: the gzip container
    chunk = bytes(1 << 20)
    bomb = b"".join(packer.compress(chunk) for _ in range(64)) + packer.flush()
    assert len(bomb) < 1 << 20
    server = RawServer(_encoded_answer(bomb, "gzip"))
    try:
        response = _send(AiohttpTransport(), server.url, max_body=1 << 20)
    finally:
        server.close()
    assert response.body == bomb


@pytest.mark.parametrize("make", [AiohttpTransport, UrllibTransport], ids=["aiohttp", "urllib"])
def test_an_early_hints_answer_is_skipped_by_both_transports(serve, make):
    # RFC 9110 §15.2; UrllibTransport returned the 103 until the review fixed it.
    final = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(TOKEN_JSON) + TOKEN_JSON
    )
    server = RawServer(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" + final)
    serve.append(server)
    response = _send(make(), server.url, max_body=64 * 1024)
    assert (response.status, response.body) == (200, TOKEN_JSON)
