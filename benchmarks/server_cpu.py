"""Where the room server's time goes: server CPU per request, with one part taken out.

    python -m benchmarks.server_cpu            # every variant, 5 rounds of 6000 requests
    python -m benchmarks.server_cpu bare roomsecrets no-access-log

A diagnostic, not a benchmark (``python -m benchmarks`` does not run it, and it has
no target): it loads each server the way ``bench_server`` does and reads the server
process's CPU time from ``/proc/PID/stat`` (Linux) before and after, so the figure
is the server's work per request, whatever the load generator costs. Variants:

- ``bare``: bench_server's bare aiohttp JSON handler.
- ``roomsecrets``: bench_server's server, as ``roomsecrets serve`` logs.
- ``logging-access-log``: the same with the access records as ``logging`` records
  (``AccessLog``, what ``create_app`` does unless given a ``StreamAccessLog``).
- ``no-access-log``: the same with the access logger above INFO.
- ``constant-core``: the same with ``get_offline_oauth_token``'s call into the core
  (session, grant check, audit, store read) replaced by a constant answer.
- ``no-wrapper``: the same with each route's own handler, without the wrapper that
  turns errors into JSON and writes the access record (so without the record either).

The last three take a part out to price it; none is a configuration to run. The
machine's noise is large: compare medians of several rounds, run twice.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import subprocess
import sys
from typing import Any

from . import bench_server

VARIANTS = (
    "bare", "roomsecrets", "logging-access-log", "no-access-log", "constant-core", "no-wrapper"
)
ROUNDS = 5
REQUESTS = 6_000


async def _variant_app(variant: str, key: bytes) -> Any:
    if variant == "bare":
        return await bench_server._bare_app()
    app = await bench_server._our_app(key)
    if variant == "no-access-log":
        import logging

        logging.getLogger("roomsecrets.server.access").setLevel(logging.WARNING)
    elif variant == "logging-access-log":
        from roomsecrets.adapters.server.access_log import AccessLog
        from roomsecrets.adapters.server.app import _ROOMS

        app[_ROOMS].access_log = AccessLog()
    elif variant == "constant-core":
        from roomsecrets.adapters.server import app as server_app

        async def constant(client: Any, args: Any, request: Any) -> dict[str, Any]:
            return {"access_token": "AT-" + "x" * 40}

        server_app._RUNNERS["get_offline_oauth_token"] = constant
    elif variant == "no-wrapper":
        for route in app.router.routes():
            # A diagnostic: aiohttp has no public way to change a route's handler.
            route._handler = route.handler.keywords["handler"]  # type: ignore[attr-defined]
    return app


async def _serve(variant: str) -> None:
    from aiohttp import web

    app = await _variant_app(variant, os.environ[bench_server.KEY_ENV].encode())
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(f"http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def main(variants: list[str]) -> None:
    key = secrets.token_hex(32)
    headers, body = bench_server.request_parts(key)
    env = dict(os.environ, **{bench_server.KEY_ENV: key})
    env["PYTHONPATH"] = str(bench_server.REPO) + os.pathsep + env.get("PYTHONPATH", "")
    servers: dict[str, tuple[subprocess.Popen[str], str]] = {}
    try:
        for variant in variants:
            process = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.server_cpu", "serve", variant],
                cwd=bench_server.REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                text=True,
            )
            servers[variant] = (process, process.stdout.readline().strip())  # type: ignore[union-attr]
        per_request: dict[str, list[float]] = {variant: [] for variant in variants}
        for _ in range(ROUNDS):
            for variant, (process, url) in servers.items():
                before = _cpu_seconds(process.pid)
                # _load sends REQUESTS to warm up, then REQUESTS measured.
                asyncio.run(bench_server._load(url, headers, body, REQUESTS))
                spent = _cpu_seconds(process.pid) - before
                per_request[variant].append(spent / (2 * REQUESTS) * 1e6)
        for variant, values in per_request.items():
            print(
                f"{variant:14s} server CPU per request: median {statistics.median(values):6.1f} us"
                f"  (rounds: {', '.join(f'{v:.0f}' for v in values)})"
            )
    finally:
        for process, _ in servers.values():
            if process.stdin is not None:
                process.stdin.close()
            process.wait(10)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve" and sys.argv[2] in VARIANTS:
        asyncio.run(_serve(sys.argv[2]))
    elif all(arg in VARIANTS for arg in sys.argv[1:]):
        main(sys.argv[1:] or list(VARIANTS))
    else:
        sys.exit(f"usage: python -m benchmarks.server_cpu [{'|'.join(VARIANTS)} ...]")
