"""A tiny load balancer for trying ``roomsecrets serve`` cluster mode on one machine.

    python examples/balancer.py --port 8700 --node http://127.0.0.1:8701 \\
        --node http://127.0.0.1:8702

An example (docs/scaling.md), not a product: no TLS, no health checks, no retries,
no limits. It shows the one routing rule cluster mode still needs:

- ``/rooms/{room}/...`` (HTTP and the WebSocket) goes to one node chosen by a stable
  hash of the room name: a room's pending requests and its person's WebSocket must
  meet on one node;
- everything else (``/oauth/callback``, ``/approve``, ``/``, ...) goes round-robin,
  so a provider's redirect reaches the node that does not hold the request about
  half the time, and that node forwards it (``serve --node-url``);
- ``/cluster/...`` is for the nodes only (they call each other at their
  ``--node-url``): 404 here.

Headers (``Authorization`` among them) pass through. It logs one line per request:
the method, the path and the node, never the query string (a callback's holds the
authorization code).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import sys
from collections.abc import AsyncIterator
from typing import Union

import aiohttp
from aiohttp import web

Socket = Union[web.WebSocketResponse, aiohttp.ClientWebSocketResponse]

#: Hop-by-hop headers (RFC 9110 §7.6.1), and those aiohttp sets itself.
_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailer", "transfer-encoding", "upgrade", "host", "content-length"}
#: aiohttp hands us the request body already decoded.
_DECODED = {"content-encoding"}
_WS_HANDSHAKE = {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
                 "sec-websocket-accept"}


def node_for_room(room: str, nodes: list[str]) -> str:
    """The node a room lives on: the same for every balancer with the same node list."""
    digest = hashlib.sha256(room.encode("utf-8")).digest()
    return nodes[int.from_bytes(digest[:8], "big") % len(nodes)]


def make_app(nodes: list[str]) -> web.Application:
    turns = itertools.cycle(nodes)
    session: list[aiohttp.ClientSession] = []

    async def client(app: web.Application) -> AsyncIterator[None]:
        # No total timeout: request_oauth_token waits for a person (300 s by default).
        session.append(aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            auto_decompress=False, trust_env=False))
        yield
        await session[0].close()

    async def proxy(request: web.Request) -> web.StreamResponse:
        parts = request.path.split("/")
        if parts[1] == "cluster":
            return web.Response(status=404, text="not here")
        room = parts[2] if len(parts) > 3 and parts[1] == "rooms" else None
        node = node_for_room(room, nodes) if room else next(turns)
        print(f"{request.method} {request.path} -> {node}", file=sys.stderr, flush=True)
        url = node + request.rel_url.raw_path_qs
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in _HOP and k.lower() not in _DECODED}
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await websocket(request, url, headers)
        async with session[0].request(request.method, url, headers=headers,
                                      data=await request.read(), allow_redirects=False) as answer:
            body = await answer.read()
            kept = [(k, v) for k, v in answer.headers.items() if k.lower() not in _HOP]
            return web.Response(status=answer.status, body=body, headers=kept)

    async def websocket(request: web.Request, url: str, headers: dict[str, str]
                        ) -> web.StreamResponse:
        headers = {k: v for k, v in headers.items() if k.lower() not in _WS_HANDSHAKE}
        try:
            upstream = await session[0].ws_connect(url, headers=headers)
        except aiohttp.WSServerHandshakeError as refused:  # the node's 401, 403, 409...
            return web.Response(status=refused.status, text=refused.message)
        downstream = web.WebSocketResponse()
        await downstream.prepare(request)

        async def pump(source: Socket, sink: Socket) -> None:
            with contextlib.suppress(ConnectionError):  # the sink went away first
                async for message in source:
                    if message.type == aiohttp.WSMsgType.TEXT:
                        await sink.send_str(message.data)
                    elif message.type == aiohttp.WSMsgType.BINARY:
                        await sink.send_bytes(message.data)
                # One side closed: close the other with its code (one that may be sent).
                code = source.close_code
                await sink.close(code=1001 if code in (None, 1005, 1006, 1015) else code)

        pumps = [asyncio.ensure_future(pump(upstream, downstream)),
                 asyncio.ensure_future(pump(downstream, upstream))]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            await upstream.close()
        return downstream

    app = web.Application(client_max_size=2**20)
    app.cleanup_ctx.append(client)
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app


async def serve(port: int, nodes: list[str]) -> None:
    # handler_cancellation: a caller who hangs up cuts the call to the node too.
    runner = web.AppRunner(make_app(nodes), access_log=None, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"balancing on http://127.0.0.1:{runner.addresses[0][1]}", file=sys.stderr, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description="route rooms by hash, the rest round-robin")
    parser.add_argument("--port", type=int, default=8700, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--node", action="append", required=True, help="a node's URL (repeat)")
    args = parser.parse_args()
    nodes = [node.rstrip("/") for node in args.node]
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C stops it
        asyncio.run(serve(args.port, nodes))


if __name__ == "__main__":
    main()
