"""``import roomsecrets`` against ``import oauthlib.oauth2``, each in fresh interpreters.

Each sample is one new ``python`` process that times only the import statement
(``time.perf_counter`` around it), so interpreter start-up, which both pay alike,
does not dilute the ratio. The two imports alternate, ``SAMPLES`` each; the table
shows the best and the median, and the ratio of the medians. Target: <= 1.0.
The source tree is first on ``sys.path`` (the ``roomsecrets`` measured is this
checkout); bytecode caches are warmed by one untimed run of each. An extra,
informational row times both imports in interpreters that have already imported
``asyncio`` and ``logging``, as any program that runs an async agent has.
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
SAMPLES = 20
REPO = Path(__file__).resolve().parents[1]
MODULES = ("roomsecrets", "oauthlib.oauth2")
_PROGRAM = (
    "{prelude}import time; started = time.perf_counter(); import {module}; "
    "print(time.perf_counter() - started)"
)


def _sample(module: str, env: dict[str, str], prelude: str = "") -> float:
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM.format(module=module, prelude=prelude)],
        cwd=REPO, env=env, capture_output=True, text=True, check=True, timeout=60,
    )
    return float(done.stdout.strip())


def run(quick: bool = False) -> list[Row]:
    if importlib.util.find_spec("oauthlib") is None:
        print("bench_import: oauthlib is not installed (pip install oauthlib)", file=sys.stderr)
        return []
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    samples = 5 if quick else SAMPLES
    times: dict[str, list[float]] = {module: [] for module in MODULES}
    in_async_app: dict[str, list[float]] = {module: [] for module in MODULES}
    for module in MODULES:
        _sample(module, env)  # warm the bytecode cache
    for _ in range(samples):
        for module in MODULES:
            times[module].append(_sample(module, env))
            in_async_app[module].append(_sample(module, env, "import asyncio, logging; "))
    median = {module: statistics.median(t) for module, t in times.items()}
    best = {module: min(t) for module, t in times.items()}
    ratio = median["roomsecrets"] / median["oauthlib.oauth2"]
    name = f"import time ({samples} fresh interpreters each)"
    rows = []
    for module in MODULES:
        rows += [
            Row(name, f"import {module} best", best[module] * 1e3, "ms"),
            Row(name, f"import {module} median", median[module] * 1e3, "ms"),
        ]
    rows += [
        Row(name, "roomsecrets / oauthlib.oauth2 (median)", ratio, "x", f"<= {TARGET}",
            ratio <= TARGET),
        Row(name, "roomsecrets / oauthlib.oauth2 (best)",
            best["roomsecrets"] / best["oauthlib.oauth2"], "x"),
        Row(name, "same, asyncio + logging already imported (median)",
            statistics.median(in_async_app["roomsecrets"])
            / statistics.median(in_async_app["oauthlib.oauth2"]), "x"),
    ]
    return rows
