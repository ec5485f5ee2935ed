"""Benchmark: place 100k synthetic lifetimes with every placer, and with ``best``.

The lifetimes look like a long schedule's: one tensor made per step, most read
within a few steps (geometric lifetimes, mean 20 steps), one in a hundred kept for
thousands of steps (skip connections), sizes log-uniform from 64 B to 4 MiB,
64-byte aligned. Target: the best heuristic places them in under 10 s.

Usage: ``python benchmarks/placement_scale.py [--items 100000] [--out benchmarks/results/placement_scale.md]``
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from tierplan.compiler.packing import PLACERS, Item, Placement, check_placement, max_live, place

ROOT = Path(__file__).resolve().parent.parent


def lifetimes(count: int, seed: int = 0) -> list[Item]:
    """``count`` items as described in the module docstring (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    starts = np.arange(count)
    lengths = rng.geometric(1 / 20, count)
    long_lived = rng.random(count) < 0.01
    lengths[long_lived] = rng.integers(1000, 5000, int(long_lived.sum()))
    ends = np.minimum(starts + lengths, count - 1)
    sizes = np.exp(rng.uniform(np.log(64), np.log(4 * 2**20), count)).astype(np.int64)
    sizes = (sizes + 63) // 64 * 64
    return [
        Item(f"t{i}", int(s), int(e), int(n))
        for i, (s, e, n) in enumerate(zip(starts, ends, sizes, strict=True))
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "placement_scale.md"
    )
    args = parser.parse_args()
    items = lifetimes(args.items)
    bound = max_live(items)
    rows: list[tuple[str, Placement, float]] = []
    for strategy in [*PLACERS, "best"]:
        began = time.perf_counter()
        placement = place(items, strategy)
        rows.append((strategy, placement, time.perf_counter() - began))
    best = rows[-1][1]
    if check_placement(items, best.offsets):
        raise SystemExit("placement_scale: the best placement is invalid")
    headers = ["placer", "peak MiB", "peak/max-live", "seconds"]
    table = Table(title=f"{len(items)} lifetimes, max-live {bound / 2**20:.1f} MiB")
    for header in headers:
        table.add_column(header, justify="left" if header == "placer" else "right")
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for strategy, placement, seconds in rows:
        name = f"best ({placement.placer})" if strategy == "best" else strategy
        cells = [
            name,
            f"{placement.peak / 2**20:.1f}",
            f"{placement.peak / bound:.4f}",
            f"{seconds:.2f}",
        ]
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    Console(width=120).print(table)
    machine = (
        f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}"
    )
    header = (
        f"# placement_scale: last results\n\n{date.today()} on {machine}; "
        f"`python benchmarks/placement_scale.py --items {args.items}`\n\n"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(header + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
