"""aiohttp tries the routes under one path prefix in registration order: the calls an
agent repeats on every use of a credential or secret are tried first."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import make_mocked_request

from roomsecrets import MemoryStore
from roomsecrets.adapters.server import create_app
from roomsecrets.adapters.server.http_api import OPERATIONS


def test_the_reads_an_agent_repeats_are_tried_first_and_every_operation_is_still_served() -> None:
    app = create_app(store=MemoryStore(), jwt_key=b"k" * 32, public_url="http://127.0.0.1:1")
    in_order = [
        resource.name for resource in app.router.resources()
        if resource.canonical.startswith("/rooms/{room}/")
    ]
    assert in_order[:2] == ["get_offline_oauth_token", "get_secret"]
    assert sorted(in_order) == sorted(op.name for op in OPERATIONS if op.path.startswith("/rooms/"))

    async def matched(op_method: str, path: str) -> str:
        request = make_mocked_request(op_method, path, app=app)
        info = await app.router.resolve(request)
        return info.route.name or ""

    for op in OPERATIONS:
        path = op.path.replace("{room}", "myroom")
        assert asyncio.run(matched(op.method, path)) == op.name
