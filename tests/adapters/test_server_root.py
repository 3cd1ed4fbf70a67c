"""``GET /`` on the room server redirects to the approval page: someone who opens the
server's address in a browser lands where a person approves. The redirect names the
public URL (right behind a proxy that routes by path too), and /openapi.json lists it."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("aiohttp")

import aiohttp

from roomsecrets.adapters.server import create_app, start_server
from roomsecrets.core.memory_store import MemoryStore
from tests.adapters.server_kit import KEY, bound_socket


async def root_answer(public_url: str) -> tuple[int, dict[str, str], dict[str, object]]:
    sock = bound_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = create_app(store=MemoryStore(), jwt_key=KEY, public_url=public_url or url)
    server = await start_server(app, sock=sock, shutdown_timeout=1.0)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(url + "/", allow_redirects=False) as answer:
                status, headers = answer.status, dict(answer.headers)
            async with session.get(url + "/openapi.json") as document:
                paths = (await document.json())["paths"]
    finally:
        await server.close()
    return status, headers, paths


def test_the_server_s_address_redirects_to_the_approval_page() -> None:
    status, headers, paths = asyncio.run(root_answer("http://127.0.0.1:8700"))
    assert status == 302
    assert headers["Location"] == "http://127.0.0.1:8700/approve"
    assert headers["Cache-Control"] == "no-store"
    assert list(paths["/"]) == ["get"]
    assert list(paths["/"]["get"]["responses"]) == ["302"]


def test_behind_a_proxy_the_redirect_names_the_public_path() -> None:
    status, headers, _ = asyncio.run(root_answer("https://rooms.example/node-3"))
    assert status == 302
    assert headers["Location"] == "https://rooms.example/node-3/approve"
