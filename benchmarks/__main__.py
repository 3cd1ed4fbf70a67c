"""Run every ``benchmarks/bench_*.py`` and print one table.

    python -m benchmarks            # full run
    python -m benchmarks --quick    # fewer iterations (smoke test)
    python -m benchmarks pkce       # only modules whose name contains "pkce"
"""

from __future__ import annotations

import argparse
import importlib
import pathlib
import sys

from .harness import Row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("only", nargs="*", help="substrings of benchmark module names")
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args(argv)
    here = pathlib.Path(__file__).parent
    names = sorted(p.stem for p in here.glob("bench_*.py"))
    if args.only:
        names = [n for n in names if any(word in n for word in args.only)]
    rows: list[Row] = []
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        rows.extend(module.run(quick=args.quick))
    print_table(rows)
    return 1 if any(row.ok is False for row in rows) else 0


def print_table(rows: list[Row]) -> None:
    header = ("benchmark", "measure", "value", "unit", "target", "ok")
    lines = [header]
    for row in rows:
        ok = "" if row.ok is None else ("yes" if row.ok else "NO")
        lines.append(
            (row.benchmark, row.measure, f"{row.value:.4g}", row.unit, row.target or "", ok)
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for i, line in enumerate(lines):
        print("  ".join(cell.ljust(widths[j]) for j, cell in enumerate(line)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


if __name__ == "__main__":
    sys.exit(main())
