"""The room server's work per request in CPU instructions, counted by valgrind.

    python -m benchmarks.server_instructions            # bare and roomsecrets
    python -m benchmarks.server_instructions bare roomsecrets constant-core

A diagnostic, not a benchmark (``python -m benchmarks`` does not run it, and it has
no target). ``bench_server`` and ``server_cpu`` time the servers, and on this
project's virtual machines a CPU's speed changes by up to 2x from second to second,
so a change of a few percent in the server's work hides in their noise. This
counts it instead: each variant of ``server_cpu`` (same apps, same requests) runs
under ``valgrind --tool=cachegrind --cache-sim=no``, once serving N1 requests and
once N2, and the difference of the two totals over N2 - N1 is the instructions one
request costs the server (user space; the kernel's share of a request, its system
calls, is not counted). The same code gives the same figure within about 1% from
run to run, whatever the machine is doing. The ratio bare / roomsecrets is what
the throughput ratio of ``bench_server`` approaches when the server, not the load
generator, limits both.

Needs valgrind (Debian: ``apt install valgrind``); a run takes about 15 seconds per
variant.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import subprocess
import sys

from . import bench_server, server_cpu

N1, N2 = 300, 1500


def _count(variant: str, requests: int, key: str, headers: dict[str, str], body: bytes) -> int:
    env = dict(os.environ, PYTHONHASHSEED="0", **{bench_server.KEY_ENV: key})
    env["PYTHONPATH"] = str(bench_server.REPO) + os.pathsep + env.get("PYTHONPATH", "")
    process = subprocess.Popen(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
         sys.executable, "-m", "benchmarks.server_cpu", "serve", variant],
        cwd=bench_server.REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    assert process.stdout is not None and process.stdin is not None
    url = process.stdout.readline().strip()
    if not url.startswith("http://"):
        process.kill()
        raise RuntimeError(f"the {variant} server did not start under valgrind")
    # _load sends its count twice (a warm-up, then the measured requests).
    asyncio.run(bench_server._load(url, headers, body, requests // 2))
    process.stdin.close()  # the server stops when its stdin closes
    assert process.stderr is not None
    errors = process.stderr.read()
    process.wait(120)
    found = re.search(r"I\s+refs:\s+([\d,]+)", errors)
    if found is None:
        raise RuntimeError(f"valgrind gave no instruction count for {variant}")
    return int(found.group(1).replace(",", ""))


def main(variants: list[str]) -> None:
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian: apt install valgrind)")
    key = secrets.token_hex(32)
    headers, body = bench_server.request_parts(key)
    per_request = {}
    for variant in variants:
        low = _count(variant, N1, key, headers, body)
        high = _count(variant, N2, key, headers, body)
        per_request[variant] = (high - low) / (N2 - N1)
        print(f"{variant:18s} {per_request[variant]:>10,.0f} instructions per request", flush=True)
    if "bare" in per_request and "roomsecrets" in per_request:
        ratio = per_request["bare"] / per_request["roomsecrets"]
        print(f"bare / roomsecrets: {ratio:.3f}")


if __name__ == "__main__":
    chosen = sys.argv[1:] or ["bare", "roomsecrets"]
    if not all(variant in server_cpu.VARIANTS for variant in chosen):
        sys.exit(f"usage: python -m benchmarks.server_instructions [{'|'.join(server_cpu.VARIANTS)} ...]")
    main(chosen)
