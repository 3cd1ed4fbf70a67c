"""Cluster mode (``serve --node-url``): what forwarding costs a callback, and what a
second node adds to offline-token throughput, on loopback in one run.

Two ``roomsecrets serve`` nodes (``node-a``, ``node-b``) run as child processes on
one shared store (a file store in a temporary directory; ``--store aws``: Secrets
Manager on a moto server this benchmark starts), behind one public URL nobody
listens on (the balancer's). The OAuth provider is ``roomsecrets dev-provider``
(:mod:`roomsecrets.dev_provider`), which approves at once, in its own process
too. Every child's log goes to a file: a pipe would have to be drained by this
process, which is also the load generator.

1. Callback latency, local vs forwarded. An agent asks ``alice`` through node A
   (``RemoteSecretsClient``), ``alice``'s WebSocket is on A, so A holds the
   pending request. The provider's redirect (``authorization_redirect``) is then
   delivered either to A (local) or to B, which forwards it to A
   (``POST /cluster/callback``). Only the callback GET is timed (a keep-alive
   client, as a browser tab); it includes A's code exchange at the provider in
   both cases, and, when forwarded, B's look-up of A's node record in the store
   and the extra hop. Local and forwarded alternate, and so does their order,
   so that drift hits both alike. Each request asks a scope of its own: a
   stored credential covering it would otherwise be handed back without a prompt.
2. Offline-token throughput, one node vs two. With the credential the last
   request stored, ``CLIENTS`` clients (each its own keep-alive session, one
   connection) POST ``get_offline_oauth_token`` with a fixed body as fast as
   they can: all against A, then half against A and half against B. Rounds
   alternate the two layouts. The load generator is raw aiohttp, not
   ``RemoteSecretsClient``: it shares the machine's cores with the nodes, so it
   should spend as little CPU as it can.

Informational rows only (ratios measured in the same run; no timed assertion).
The core count is shown, and how many cores the nodes, the moto server (with
``--store aws``) and the load generator kept busy during the throughput rounds
(Linux: from /proc): on a small machine two nodes share the CPU with each other,
the provider, the store's server and the load generator, so the two-node figure
says what a second process on the same machine gives, not what a second machine
would.

    python -m benchmarks.bench_cluster [--quick] [--requests N] [--clients N]
                                       [--offline-requests N] [--store file|aws]
    python -m benchmarks cluster [--quick]     # with the others' table
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.util
import json
import math
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Optional

from .harness import Row

if TYPE_CHECKING:
    import aiohttp

    from roomsecrets.adapters.remote import RemoteSecretsClient
    from roomsecrets.core.api import OAuthPrompt

BENCH = "cluster"
ROOM = "benchroom"
CLIENT_ID = "bench-mail"
CLIENTS = 32
REPO = Path(__file__).resolve().parents[1]
#: How long a child process may take to listen.
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class Settings:
    """How much to measure."""

    requests: int  # timed callbacks of each kind
    warmup: int  # untimed callbacks of each kind first (connections, code paths)
    offline_requests: int  # offline-token requests per round and layout
    rounds: int  # rounds of (one node, two nodes)
    clients: int  # concurrent offline-token clients
    store: str  # "file" or "aws"

    @classmethod
    def for_run(cls, quick: bool, store: str = "file") -> Settings:
        if quick:
            # Three short rounds rather than one long one: a median, even in a smoke test.
            return cls(requests=20, warmup=3, offline_requests=800, rounds=3,
                       clients=CLIENTS, store=store)
        return cls(requests=200, warmup=10, offline_requests=6_000, rounds=3,
                   clients=CLIENTS, store=store)


# --- the child processes ----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Child:
    """A child process listening on ``127.0.0.1:port``, its output in ``log_path``."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], port: int,
                 logs: Path) -> None:
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = logs / f"{name}.log"
        self._log: IO[str] = open(self.log_path, "w")  # noqa: SIM115 - closed by stop()
        self.process = subprocess.Popen(
            list(argv), cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            self._wait_listening()
        except BaseException:
            self.stop()
            raise

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not listen within {START_TIMEOUT:.0f} s:\n"
                           f"{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        # SIGTERM: a node stops cleanly and deletes its record from the store.
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()


def _child(stack: ExitStack, name: str, argv: Sequence[str], env: dict[str, str], port: int,
           logs: Path) -> _Child:
    child = _Child(name, argv, env, port, logs)
    stack.callback(child.stop)
    return child


def _base_env(key: str) -> dict[str, str]:
    """The environment of every child: no inherited roomsecrets, AWS or proxy settings."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("ROOMSECRETS_", "AWS_"))
           and name.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update(PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
               ROOMSECRETS_JWT_KEY=key, NO_PROXY="127.0.0.1,localhost")
    return env


@dataclass(frozen=True)
class _Cluster:
    node_a: _Child
    node_b: _Child
    provider: _Child
    key: str
    moto: Optional[_Child]  # the store's server, with --store aws


@contextmanager
def _cluster(store: str) -> Iterator[_Cluster]:
    """Two nodes on one store, and the provider; all stopped on the way out."""
    key = secrets.token_hex(32)
    public = f"http://127.0.0.1:{_free_port()}"  # the balancer's address; nobody listens
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp, ExitStack() as stack:
        logs = Path(tmp)
        env = _base_env(key)
        if store == "aws":
            port = _free_port()
            moto = _child(stack, "moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                          "-p", str(port)], env, port, logs)
            env.update(AWS_ENDPOINT_URL_SECRETS_MANAGER=moto.url, AWS_ACCESS_KEY_ID="testing",
                       AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
                       AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
                       AWS_EC2_METADATA_DISABLED="true")
            spec = f"aws:bench-cluster/{secrets.token_hex(4)}"
        else:
            moto = None
            spec = f"file:{logs / 'store'}"
        port = _free_port()
        provider = _child(
            stack, "provider",
            [sys.executable, "-m", "roomsecrets", "dev-provider", "--port", str(port),
             "--client-id", CLIENT_ID, "--redirect-uri", public + "/oauth/callback"],
            env, port, logs,
        )
        nodes = []
        for node_id in ("node-a", "node-b"):
            port = _free_port()
            url = f"http://127.0.0.1:{port}"
            nodes.append(_child(
                stack, node_id,
                [sys.executable, "-m", "roomsecrets", "serve", "--port", str(port), "--store",
                 spec, "--public-url", public, "--node-url", url, "--node-id", node_id],
                env, port, logs,
            ))
        yield _Cluster(node_a=nodes[0], node_b=nodes[1], provider=provider, key=key, moto=moto)


# --- 1. callback latency ----------------------------------------------------------------


def _token(cluster: _Cluster, participant_id: str, *, allow_all: bool = False) -> str:
    from roomsecrets.adapters.server.participant_tokens import mint_participant_token
    from roomsecrets.core.grants import SecretsGrant

    grant = SecretsGrant.allow_all() if allow_all else None
    return mint_participant_token(cluster.key.encode(), room=ROOM, participant_id=participant_id,
                                  grant=grant, ttl=3600)


def _oauth_args(cluster: _Cluster, scope: str) -> dict[str, Any]:
    return dict(client_id=CLIENT_ID, authorization_endpoint=cluster.provider.url + "/authorize",
                token_endpoint=cluster.provider.url + "/token", scopes=[scope])


def _on_node(url: str, node: _Child) -> str:
    """The provider's redirect (to the public URL), delivered to ``node`` instead."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(netloc=f"127.0.0.1:{node.port}"))


async def _one_callback(cluster: _Cluster, agent: RemoteSecretsClient,
                        prompts: AsyncIterator[OAuthPrompt], browser: aiohttp.ClientSession,
                        to: _Child, scope: str) -> tuple[float, str]:
    """Open a request on A, approve it, deliver the redirect to ``to``: seconds the
    callback GET took, and the agent's token."""
    from roomsecrets.dev_provider import authorization_redirect

    asking = asyncio.ensure_future(agent.request_oauth_token(
        **_oauth_args(cluster, scope), from_participant_id="alice", timeout=60))
    try:
        prompt = await asyncio.wait_for(prompts.__anext__(), 15)
        if not prompt.request_id.startswith("node-a.") or prompt.scopes != (scope,):
            raise RuntimeError(f"unexpected prompt {prompt!r}")
        redirect = await asyncio.to_thread(authorization_redirect, prompt.authorization_url)
        url = _on_node(redirect, to)
        started = time.perf_counter()
        async with browser.get(url, allow_redirects=False) as response:
            page = await response.text()
        elapsed = time.perf_counter() - started
        if response.status != 200 or "Approved" not in page:
            raise RuntimeError(f"callback on {to.name}: HTTP {response.status}\n"
                               f"{to.log_tail()}")
        return elapsed, await asyncio.wait_for(asking, 15)
    finally:
        if not asking.done():
            asking.cancel()


async def _callback_latency(cluster: _Cluster, settings: Settings
                            ) -> tuple[dict[str, list[float]], str, str]:
    """Timed callbacks by kind ("local", "forwarded"); the last scope asked and token."""
    import aiohttp

    from roomsecrets.adapters.remote import RemoteSecretsClient

    a, b = cluster.node_a, cluster.node_b
    agent = RemoteSecretsClient(a.url, token=_token(cluster, "agent-1", allow_all=True))
    person = RemoteSecretsClient(a.url, token=_token(cluster, "alice"))
    await person.connect()  # the person's WebSocket is on A, as the request is
    # One prompt stream for the whole run: each prompt comes out of it once.
    prompts = person.oauth_prompts()
    timings: dict[str, list[float]] = {"local": [], "forwarded": []}
    scope, token = "", ""
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as browser:
            for index in range(settings.warmup + settings.requests):
                # Alternate which kind goes first, so neither is always second.
                order = [("local", a), ("forwarded", b)]
                if index % 2:
                    order.reverse()
                for kind, node in order:
                    scope = f"scope-{kind}-{index}"
                    elapsed, token = await _one_callback(cluster, agent, prompts, browser, node,
                                                         scope)
                    if index >= settings.warmup:
                        timings[kind].append(elapsed)
    finally:
        await prompts.aclose()  # type: ignore[attr-defined]
        await agent.close()
        await person.close()
    return timings, scope, token


# --- 2. offline-token throughput --------------------------------------------------------


@dataclass(frozen=True)
class _Round:
    """One throughput measurement: requests/s, and the cores the nodes, the store's
    server and this process kept busy meanwhile (None where the system cannot tell,
    or there is no store server)."""

    rate: float
    nodes_cpu: Optional[float]
    store_cpu: Optional[float]
    generator_cpu: float


def _cpu_seconds(pid: int) -> Optional[float]:
    """CPU time (user + system, all threads) process ``pid`` has used: Linux only."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # The fields after the command name, which is in parentheses and may hold spaces.
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu(children: Sequence[Optional[_Child]]) -> Optional[float]:
    """CPU seconds ``children`` have used in all (None if one is None or unknown)."""
    used = [None if child is None else _cpu_seconds(child.process.pid) for child in children]
    return None if None in used else sum(u for u in used if u is not None)


async def _offline_round(cluster: _Cluster, targets: Sequence[str], headers: dict[str, str],
                         body: bytes, expected: bytes, clients: int, total: int) -> _Round:
    """``total`` offline-token POSTs by ``clients`` clients, client ``i`` on
    ``targets[i % len(targets)]``."""
    import aiohttp

    path = f"/rooms/{ROOM}/get_offline_oauth_token"
    sessions = [
        aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=1),
                              cookie_jar=aiohttp.DummyCookieJar())
        for _ in range(clients)
    ]
    left = 0

    async def client(index: int, once: bool) -> None:
        nonlocal left
        session, url = sessions[index], targets[index % len(targets)] + path
        while once or left > 0:
            left -= 1
            async with session.post(url, data=body) as response:
                payload = await response.read()
            # A byte search, not a JSON parse: the load generator's CPU is the nodes'.
            if response.status != 200 or expected not in payload:
                raise RuntimeError(f"offline token: HTTP {response.status} {payload[:200]!r}")
            if once:
                return

    try:
        # Untimed: each client opens its keep-alive connection.
        await asyncio.gather(*(client(i, True) for i in range(clients)))
        left = total
        groups = ([cluster.node_a, cluster.node_b], [cluster.moto])
        before = [_children_cpu(group) for group in groups], time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(client(i, False) for i in range(clients)))
        elapsed = time.perf_counter() - started
        after = [_children_cpu(group) for group in groups], time.process_time()
    finally:
        for session in sessions:
            await session.close()
    # Cores busy: CPU seconds used per second of the round.
    busy = [None if b is None or a is None else (a - b) / elapsed
            for b, a in zip(before[0], after[0])]
    return _Round(rate=total / elapsed, nodes_cpu=busy[0], store_cpu=busy[1],
                  generator_cpu=(after[1] - before[1]) / elapsed)


async def _offline_throughput(cluster: _Cluster, settings: Settings, scope: str, token: str
                              ) -> dict[str, list[_Round]]:
    """Rounds by layout: all clients on A ("one"), split over A and B ("two")."""
    agent_token = _token(cluster, "agent-1", allow_all=True)
    headers = {"Authorization": f"Bearer {agent_token}", "Content-Type": "application/json"}
    body = json.dumps({**_oauth_args(cluster, scope), "delegated_by": "alice"}).encode()
    expected = json.dumps({"access_token": token})[1:-1].encode()  # '"access_token": "..."'
    layouts = {"one": [cluster.node_a.url], "two": [cluster.node_a.url, cluster.node_b.url]}
    rounds: dict[str, list[_Round]] = {name: [] for name in layouts}
    for index in range(settings.rounds):
        names = list(layouts) if index % 2 == 0 else list(reversed(layouts))
        for name in names:
            rounds[name].append(await _offline_round(
                cluster, layouts[name], headers, body, expected, settings.clients,
                settings.offline_requests))
    return rounds


# --- the run ----------------------------------------------------------------------------


def _percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def _cores() -> int:
    # The cores this process may run on (a container may allow fewer than exist).
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def measure(settings: Settings) -> list[Row]:
    async def both(cluster: _Cluster) -> tuple[dict[str, list[float]], dict[str, list[_Round]]]:
        timings, scope, token = await _callback_latency(cluster, settings)
        return timings, await _offline_throughput(cluster, settings, scope, token)

    with _cluster(settings.store) as cluster:
        timings, rounds = asyncio.run(both(cluster))

    latency = f"{BENCH}: callback GET, {settings.store} store ({settings.requests} of each)"
    median = {kind: statistics.median(values) for kind, values in timings.items()}
    p95 = {kind: _percentile(values, 0.95) for kind, values in timings.items()}
    throughput = (f"{BENCH}: offline token, {settings.store} store (c={settings.clients}, "
                  f"{settings.offline_requests} req x {settings.rounds})")
    rate = {name: statistics.median(r.rate for r in rs) for name, rs in rounds.items()}
    rows = [
        Row(BENCH, "CPU cores (shared by the nodes, provider, moto and load generator)",
            _cores(), "cores"),
        Row(latency, "local (to the node holding it) median", median["local"] * 1e3, "ms"),
        Row(latency, "local p95", p95["local"] * 1e3, "ms"),
        Row(latency, "forwarded (to the other node) median", median["forwarded"] * 1e3, "ms"),
        Row(latency, "forwarded p95", p95["forwarded"] * 1e3, "ms"),
        Row(latency, "forwarded / local (medians)", median["forwarded"] / median["local"], "x"),
        Row(latency, "forwarded / local (p95s)", p95["forwarded"] / p95["local"], "x"),
        Row(throughput, "one node (median round)", rate["one"], "req/s"),
        Row(throughput, "two nodes, clients split (median round)", rate["two"], "req/s"),
        Row(throughput, "two nodes / one node", rate["two"] / rate["one"], "x"),
    ]
    # Where the CPU went: whether the nodes or the load generator had the cores.
    for name, label in (("one", "one node"), ("two", "two nodes")):
        nodes = [r.nodes_cpu for r in rounds[name] if r.nodes_cpu is not None]
        if nodes:
            rows.append(Row(throughput, f"{label}: cores busy in the node(s)",
                            statistics.median(nodes), "cores"))
        store = [r.store_cpu for r in rounds[name] if r.store_cpu is not None]
        if store:
            rows.append(Row(throughput, f"{label}: cores busy in the store server (moto)",
                            statistics.median(store), "cores"))
        rows.append(Row(throughput, f"{label}: cores busy in the load generator",
                        statistics.median(r.generator_cpu for r in rounds[name]), "cores"))
    return rows


def run(quick: bool = False) -> list[Row]:
    try:
        import aiohttp  # noqa: F401
        import jwt  # noqa: F401
    except ImportError:
        return []
    return measure(Settings.for_run(quick))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_cluster",
                                     description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (smoke test)")
    parser.add_argument("--store", choices=("file", "aws"), default="file",
                        help="the shared store: a temporary file store, or Secrets Manager "
                        "on a moto server started here (default file)")
    parser.add_argument("--requests", type=int, help="timed callbacks of each kind")
    parser.add_argument("--offline-requests", type=int,
                        help="offline-token requests per round and layout")
    parser.add_argument("--clients", type=int, help=f"concurrent clients (default {CLIENTS})")
    args = parser.parse_args(argv)
    settings = Settings.for_run(args.quick, args.store)
    changes = {name: value for name, value in (
        ("requests", args.requests), ("offline_requests", args.offline_requests),
        ("clients", args.clients)) if value is not None}
    if any(value < 1 for value in changes.values()):
        parser.error("--requests, --offline-requests and --clients are at least 1")
    if args.store == "aws" and not all(
        importlib.util.find_spec(name) for name in ("boto3", "moto")
    ):
        parser.error("--store aws needs boto3 and moto")
    settings = dataclasses.replace(settings, **changes)
    from .__main__ import print_table

    print_table(measure(settings))
    cores = _cores()
    moto = ", the moto server" if settings.store == "aws" else ""
    print(f"\n{cores} CPU core(s): both nodes, the provider{moto} and this load generator "
          f"share {'them' if cores > 1 else 'it'}, so the two-node throughput is what a "
          "second process on this machine adds, not what a second machine would.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
