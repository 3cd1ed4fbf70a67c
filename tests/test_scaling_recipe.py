"""docs/scaling.md's recipe, "A recipe that runs: two nodes behind one URL", runs as
written: a moto server, two ``roomsecrets serve --node-url`` nodes on it, and
``examples/balancer.py`` in front of them, with four approvals through the balancer.
The balancer hands callbacks to the nodes in turn, so some reach the node that does
not hold the request; the node logs show that node forwarding them, and the agent
gets a working token every time.

How the test runs the page, and every way that differs from a person at a terminal:

- Every ```sh recipe block of the page, in order, joined into one bash script that
  runs with ``set -e -o pipefail`` (a failing command stops the run and is named),
  from the repository's root (the recipe starts at the clone's root).
- The five ports are set to free ones first; the page's first block keeps them
  (``${PUBLIC_PORT:-8700}``...). In the text blocks, the page's ports stand for them.
- The environment is clean: no ``ROOMSECRETS_*``, ``AWS_*`` or proxy variables, AWS
  config files pointed at /dev/null; ``TMPDIR`` is the test's folder (the page's
  ``mktemp -d`` lands there); this Python's scripts come first on ``PATH``.

Whatever happens, every process the page started is stopped at the end (the script
runs in a session of its own, and the test ends its process group).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("jwt")
pytest.importorskip("boto3")
pytest.importorskip("moto.server")

from tests.support import leak_watch

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "scaling.md"
SECTION = "## A recipe that runs: two nodes behind one URL"
#: The page's default ports, which its text blocks show.
PAGE_PORTS = {"PUBLIC_PORT": "8700", "NODE_A_PORT": "8701", "NODE_B_PORT": "8702",
              "PROVIDER_PORT": "8710", "MOTO_PORT": "8720"}
RUN_TIMEOUT = 90
APPROVALS = 4
_FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def load_balancer() -> Any:
    spec = importlib.util.spec_from_file_location("balancer", REPO / "examples" / "balancer.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def recipe_section(text: str) -> str:
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start:] if end < 0 else text[start:end]


def blocks(text: str) -> list[tuple[str, str]]:
    """(info string, body) of each fenced block, in order."""
    return [(info.strip(), body) for info, body in _FENCE.findall(text)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening(ports: list[str], within: float = 10.0) -> list[str]:
    """The ports still accepting connections after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        still = []
        for port in ports:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", int(port))) == 0:
                    still.append(port)
        if not still or time.monotonic() > deadline:
            return still
        time.sleep(0.1)


def expected_line(line: str, ports: dict[str, str]) -> re.Pattern[str]:
    """A text block's line as a pattern: ``…`` matches anything, the page's ports the
    test's."""
    for shown, real in ports.items():
        line = line.replace(shown, real)
    return re.compile(".*".join(re.escape(piece) for piece in line.strip().split("…")))


def stop_group(group: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, sig)
        time.sleep(0.5)


def test_the_recipe_is_marked_and_only_in_its_section() -> None:
    text = PAGE.read_text(encoding="utf-8")
    section = recipe_section(text)
    inside = [info for info, _ in blocks(section)]
    assert inside.count("sh recipe") >= 5 and set(inside) == {"sh recipe", "text"}, inside
    outside = text.replace(section, "")
    assert all(info != "sh recipe" for info, _ in blocks(outside))


def test_the_recipe_runs_as_written(tmp_path: Path) -> None:
    if shutil.which("curl") is None or shutil.which("bash") is None:
        pytest.skip("the recipe needs bash and curl")
    bin_dir = os.path.dirname(sys.executable)
    path = bin_dir + os.pathsep + os.environ.get("PATH", "")
    if shutil.which("moto_server", path=path) is None:
        pytest.skip("the recipe needs moto's server (pip install 'moto[server]')")
    section = recipe_section(PAGE.read_text(encoding="utf-8"))
    steps = [body for info, body in blocks(section) if info == "sh recipe"]
    for word in ("moto_server", "--node-url", "balancer", "token mint", "oauth2 prompts",
                 "oauth2 request", "curl -fsSL", "oauth2 get", "kill"):
        assert any(word in step for step in steps), word

    ports = {name: str(free_port()) for name in PAGE_PORTS}
    shown = {PAGE_PORTS[name]: port for name, port in ports.items()}
    home = tmp_path / "home"
    home.mkdir()
    run_sh = tmp_path / "run.sh"
    run_sh.write_text(
        "set -e -o pipefail\n"
        "trap 'printf \"@@@ failed: %s\\n\" \"$BASH_COMMAND\" >&2' ERR\n"
        + "\n".join(steps)
    )
    environ = {
        name: value for name, value in os.environ.items()
        if not name.startswith(("ROOMSECRETS_", "AWS_")) and "proxy" not in name.lower()
    }
    environ.update(
        ports, PATH=path, TMPDIR=str(home),
        PYTHONPATH=str(REPO) + os.pathsep + environ.get("PYTHONPATH", ""),
        AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true", NO_PROXY="127.0.0.1,localhost",
    )
    # Files, not pipes: a process the page failed to stop would hold a pipe open.
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        run = subprocess.Popen(
            ["bash", str(run_sh)], cwd=REPO, env=environ, stdin=subprocess.DEVNULL,
            stdout=out, stderr=err, start_new_session=True,
        )
        try:
            run.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        finally:
            # The page's last step stops everything: nothing may still listen.
            finished = run.poll() == 0
            still_listening = listening(list(ports.values())) if finished else []
            stop_group(run.pid)
            run.wait()
    stdout = (tmp_path / "out").read_text(errors="replace")
    stderr = (tmp_path / "err").read_text(errors="replace")
    made = [path for path in home.iterdir() if path.is_dir()]  # the page's mktemp -d
    assert len(made) == 1, f"the recipe did not get as far as its folder:\n{stdout}{stderr}"
    work = made[0]
    files = {path.name: path.read_text(errors="replace") for path in work.iterdir()
             if path.is_file()}
    logs = {name: text for name, text in files.items() if name.endswith(".log")}

    # What the page's processes logged is scanned for the secrets the run handed out:
    # the agent's access tokens and the states in alice's authorization URLs.
    prompts = [line.split("\t") for line in files.get("prompts.txt", "").splitlines()]
    for fields in prompts:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(fields[-1]).query)
        for state in query.get("state", []):
            leak_watch.remember_secret(state)
    tokens = [files.get(f"token-{i}.txt", "").strip() for i in range(1, APPROVALS + 1)]
    for token in tokens:
        leak_watch.remember_secret(token)
    for name, text in logs.items():
        leak_watch.record(f"scaling recipe {name}", text)

    everything = stdout + stderr + "".join(logs.values())
    failed = re.search(r"@@@ failed: (.*)", stderr)
    assert failed is None, f"the recipe failed at {failed.group(1)!r}:\n{everything}"
    assert run.returncode == 0, everything
    assert still_listening == [], everything

    # Each line the page's text blocks show, in what the blocks printed.
    printed = [line.strip() for line in (stdout + stderr).splitlines()]
    for info, body in blocks(section):
        if info != "text":
            continue
        for line in filter(str.strip, body.splitlines()):
            pattern = expected_line(line, shown)
            assert any(pattern.fullmatch(got) for got in printed), (
                f"the page shows {line!r}, which nothing printed:\n{everything}")

    # Four approvals, four different working tokens.
    assert len(prompts) == APPROVALS and len(set(tokens)) == APPROVALS, everything
    assert all(token.startswith("at_") for token in tokens), everything
    assert stdout.count("<h1>Approved</h1>") == APPROVALS
    assert stdout.count('"sub": "alice@example.test"') == APPROVALS

    # Room demo's node, by the balancer's hash, holds every request (its id names it);
    # each callback that reached the other node was forwarded to it.
    node_ports = [ports["NODE_A_PORT"], ports["NODE_B_PORT"]]
    urls = [f"http://127.0.0.1:{port}" for port in node_ports]
    holder, other = (("node-a", "node-b") if load_balancer().node_for_room("demo", urls) == urls[0]
                     else ("node-b", "node-a"))
    assert all(fields[0].startswith(holder + ".") for fields in prompts), prompts
    callbacks = {node: logs[f"{node}.log"].count("GET /oauth/callback 200")
                 for node in (holder, other)}
    forwarded = {node: logs[f"{node}.log"].count("POST /cluster/callback 200")
                 for node in (holder, other)}
    assert sum(callbacks.values()) == APPROVALS, callbacks
    assert callbacks[other] >= 1, f"no callback reached the node without the request: {logs}"
    assert forwarded == {holder: callbacks[other], other: 0}, forwarded
    # The balancer sent the callbacks round-robin, and never logged a query string.
    balancer_log = logs["balancer.log"]
    assert balancer_log.splitlines()[0] == f"balancing on http://127.0.0.1:{ports['PUBLIC_PORT']}"
    assert "?" not in balancer_log and "code=" not in balancer_log
    # (The approvals' callbacks, then the page's forged one.)
    routed = re.findall(r"GET /oauth/callback -> (\S+)", balancer_log)[:APPROVALS]
    assert len(routed) == APPROVALS and set(routed) == set(urls), routed


def test_the_example_balancer_routes_rooms_by_hash_and_the_rest_in_turn() -> None:
    """examples/balancer.py on its own, in front of two echo nodes: a room always
    reaches one node, other paths alternate, headers and the body pass, a WebSocket
    carries text both ways and the node's close code, /cluster/ is not reachable, and
    no query is logged."""
    import aiohttp
    from aiohttp import web

    balancer = load_balancer()

    def echo_node(name: str) -> web.Application:
        async def http(request: web.Request) -> web.StreamResponse:
            if request.headers.get("Upgrade", "").lower() == "websocket":
                ws = web.WebSocketResponse()
                await ws.prepare(request)
                await ws.send_str(f"hello from {name}")
                async for message in ws:
                    if message.data == "bye":
                        await ws.close(code=4001, message=b"bye")
                    else:
                        await ws.send_str(f"{name} got {message.data}")
                return ws
            return web.json_response({
                "node": name, "path": request.path_qs, "body": (await request.read()).decode(),
                "authorization": request.headers.get("Authorization"),
            })

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", http)
        return app

    async def scenario() -> None:
        runners = []
        try:
            urls = []
            for name in ("a", "b"):
                runner = web.AppRunner(echo_node(name))
                await runner.setup()
                await web.TCPSite(runner, "127.0.0.1", 0).start()
                runners.append(runner)
                urls.append(f"http://127.0.0.1:{runner.addresses[0][1]}")
            front = web.AppRunner(balancer.make_app(urls), access_log=None)
            await front.setup()
            await web.TCPSite(front, "127.0.0.1", 0).start()
            runners.append(front)
            base = f"http://127.0.0.1:{front.addresses[0][1]}"
            async with aiohttp.ClientSession() as session:
                async def call(path: str, **kw: Any) -> tuple[int, Any]:
                    async with session.post(base + path, **kw) as answer:
                        if answer.content_type != "application/json":
                            return answer.status, await answer.text()
                        return answer.status, await answer.json()

                home = "a" if balancer.node_for_room("r1", urls) == urls[0] else "b"
                for _ in range(4):
                    status, body = await call("/rooms/r1/request_oauth_token", data=b"{}",
                                              headers={"Authorization": "Bearer t"})
                    assert status == 200 and body["node"] == home
                    assert body["authorization"] == "Bearer t" and body["body"] == "{}"
                turns = [(await call("/oauth/callback?code=c0de-secret&state=s"))[1]
                         for _ in range(4)]
                assert [turn["node"] for turn in turns] in (list("abab"), list("baba"))
                assert turns[0]["path"] == "/oauth/callback?code=c0de-secret&state=s"
                assert (await call("/cluster/callback"))[0] == 404
                async with session.ws_connect(base + "/rooms/r1/ws") as ws:
                    assert (await ws.receive_str()) == f"hello from {home}"
                    await ws.send_str("ping")
                    assert (await ws.receive_str()) == f"{home} got ping"
                    await ws.send_str("bye")  # the node's close code comes through
                    assert (await ws.receive()).type == aiohttp.WSMsgType.CLOSE
                    assert ws.close_code == 4001
        finally:
            for runner in reversed(runners):
                await runner.cleanup()

    logged = io.StringIO()
    with contextlib.redirect_stderr(logged):
        asyncio.run(scenario())
    assert "/oauth/callback ->" in logged.getvalue()
    assert "c0de-secret" not in logged.getvalue() and "?" not in logged.getvalue()
