"""The import a user makes to do the job, against Authlib's async client, in fresh interpreters.

Ours is ``from roomsecrets import SecretsService, SecretsGrant, MemoryStore``: the
service, a grant and a store, all an async agent host needs before its first token.
The peer is ``from authlib.integrations.httpx_client import AsyncOAuth2Client``,
Authlib's async OAuth 2 client. Both load asyncio, which stays (the service is async).

Each sample is one new ``python`` process that times only the import statement
(``time.perf_counter`` around it), so interpreter start-up, which both pay alike,
does not dilute the ratio. A round takes one sample of each, back to back, the order
alternating between rounds; the table shows the best and the median over ``ROUNDS``
rounds and the ratio of the medians. Target: <= 1.0. The source tree is first on
``sys.path`` (the ``roomsecrets`` measured is this checkout); bytecode caches are
warmed by one untimed run of each. Informational rows: ``import oauthlib.oauth2``
(synchronous, no transport), and ours / Authlib in interpreters that have already
imported ``asyncio`` and ``logging``, as any program that runs an async agent has.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import subprocess
import sys
from pathlib import Path

from .harness import Row

TARGET = 1.0
ROUNDS = 20
REPO = Path(__file__).resolve().parents[1]
OURS = "from roomsecrets import SecretsService, SecretsGrant, MemoryStore"
PEER = "from authlib.integrations.httpx_client import AsyncOAuth2Client"
INFORMATIONAL = "import oauthlib.oauth2"
_LABEL = {OURS: "roomsecrets service+grant+store", PEER: "Authlib AsyncOAuth2Client",
          INFORMATIONAL: "oauthlib.oauth2"}
_PROGRAM = (
    "{prelude}import time; started = time.perf_counter(); {statement}; "
    "print(time.perf_counter() - started)"
)
_IN_ASYNC_APP = "import asyncio, logging; "


def _sample(statement: str, env: dict[str, str], prelude: str = "") -> float:
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM.format(statement=statement, prelude=prelude)],
        cwd=REPO, env=env, capture_output=True, text=True, check=True, timeout=60,
    )
    return float(done.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> list[Row]:
    if importlib.util.find_spec("authlib") is None or importlib.util.find_spec("httpx") is None:
        print("bench_import: Authlib's async client needs authlib and httpx "
              "(pip install authlib httpx)", file=sys.stderr)
        return []
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    rounds = 5 if quick else ROUNDS
    statements = [OURS, PEER]
    if importlib.util.find_spec("oauthlib") is not None:
        statements.append(INFORMATIONAL)
    times: dict[str, list[float]] = {statement: [] for statement in statements}
    in_async_app: dict[str, list[float]] = {OURS: [], PEER: []}
    for statement in statements:
        _sample(statement, env)  # warm the bytecode cache
    for i in range(rounds):
        pair = (OURS, PEER) if i % 2 == 0 else (PEER, OURS)
        for statement in pair:
            times[statement].append(_sample(statement, env))
        for statement in pair:
            in_async_app[statement].append(_sample(statement, env, _IN_ASYNC_APP))
        if INFORMATIONAL in times:
            times[INFORMATIONAL].append(_sample(INFORMATIONAL, env))
    median = {statement: statistics.median(t) for statement, t in times.items()}
    best = {statement: min(t) for statement, t in times.items()}
    name = f"import time ({rounds} rounds of fresh interpreters)"
    rows = []
    for statement in statements:
        rows += [
            Row(name, f"{_LABEL[statement]} best", best[statement] * 1e3, "ms"),
            Row(name, f"{_LABEL[statement]} median", median[statement] * 1e3, "ms"),
        ]
    ratio = median[OURS] / median[PEER]
    rows += [
        Row(name, "roomsecrets / Authlib AsyncOAuth2Client (median)", ratio, "x",
            f"<= {TARGET}", ratio <= TARGET),
        Row(name, "roomsecrets / Authlib AsyncOAuth2Client (best)", best[OURS] / best[PEER], "x"),
        Row(name, "same, asyncio + logging already imported (median)",
            statistics.median(in_async_app[OURS]) / statistics.median(in_async_app[PEER]), "x"),
    ]
    if INFORMATIONAL in times:
        rows.append(Row(name, "roomsecrets / oauthlib.oauth2 (median)",
                        median[OURS] / median[INFORMATIONAL], "x"))
    return rows
