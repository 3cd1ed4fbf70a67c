"""The small measuring kit every benchmark module uses.

A benchmark module is ``benchmarks/bench_<topic>.py`` with a ``run(quick: bool)``
function returning a list of :class:`Row`. ``python -m benchmarks`` finds and runs
them all and prints one table. Targets are ratios against a floor or a peer
measured in the same run, so a slow or busy machine moves both sides alike.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable, Optional


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    benchmark: str
    measure: str
    value: float
    unit: str
    target: Optional[str] = None  # e.g. "<= 1.5"
    ok: Optional[bool] = None  # None when the row is informational


def best_per_call(fn: Callable[[], object], *, number: int, repeat: int = 7) -> float:
    """Seconds per call: the minimum over ``repeat`` timings of ``number`` calls.

    The minimum is the least noisy estimate of the cost itself (timeit's advice).
    """
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        elapsed = time.perf_counter() - start
        best = min(best, elapsed / number)
    return best


def interleaved_best(
    fns: dict[str, Callable[[], object]], *, number: int, repeat: int = 9
) -> dict[str, float]:
    """Like :func:`best_per_call` for several functions, alternating them each round
    so that a change in machine load hits all sides equally."""
    best = {name: float("inf") for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(number):
                fn()
            best[name] = min(best[name], (time.perf_counter() - start) / number)
    return best


def separate_cpus() -> Optional[tuple[int, int]]:
    """Two CPUs of this process's set, (for the peer process, for this one), if it has two.

    A peer that stands for another machine (a server under load, AWS) runs on one
    CPU and the measuring process on another, as across a network: left to the
    scheduler, the two sometimes share one CPU for part of a round, and on this
    project's 2-CPU virtual machines that alone moved ratios by 10 to 20 percent
    from run to run. None where affinity cannot be set (not Linux) or there is one CPU.
    """
    if not hasattr(os, "sched_getaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    return (allowed[-1], allowed[0]) if len(allowed) >= 2 else None
