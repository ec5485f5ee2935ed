"""Benchmark: exact packing (MiniMalloc-style search, CP-SAT, auto) against the heuristics.

Three tables, written to ``benchmarks/results/exact_packing.md``:

1. every model in models/: per packed region, the best heuristic's peak/bound and,
   for each engine, its peak/bound, whether it is proven optimal, and its time;
2. generated instances known to fit at max-live (:mod:`tierplan.compiler.packing.instances`):
   per engine, how many reach max-live, mean and worst peak/bound, total time; again
   with ``--large-budget`` units for CP-SAT and auto on the two hardest families;
3. scaling over cut blocks on a shared baseline (:func:`~tierplan.compiler.packing.instances.cut_blocks`:
   1k, 10k and 100k buffers in one section, known to fit at max-live; ``auto``).

Budgets are per 1,000 buffers of a problem (at least that much per problem), as
the ``pack`` pass gives them.

With ``--time-limited`` it runs only the time-limited table instead, and rewrites only
that section of the results file: 11 capacity-tight instances of a few hundred
buffers (towers and cut blocks, like MiniMalloc's "challenging" set) with
``--time-limit 30`` each, and a 20k-buffer production-like trace with 60 s.

Usage: ``python benchmarks/exact_packing.py [--budget 2] [--large-budget 40] [--quick] [--out FILE]``
or ``python benchmarks/exact_packing.py --time-limited [--limit 30] [--large-limit 60]``
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.table import Table
from tierplan.compiler import compile_model
from tierplan.compiler.packing import Item, check_placement, max_live, place, solve
from tierplan.compiler.packing.clock import Deadline
from tierplan.compiler.packing.exact import region_budget
from tierplan.compiler.packing.instances import (
    cut_blocks,
    production_like,
    rectangle_cuts,
    staircases,
    towers,
)
from tierplan.passes.pack import packing_items

ROOT = Path(__file__).resolve().parent.parent
DIMS = {"bert_base_dynamic": {"batch": 1, "seq": 128}, "gpt2_dynamic": {"seq": 128}}
ENGINES = ("search", "cpsat", "auto")


def model_regions() -> list[tuple[str, list[Item]]]:
    """(model/region, activation items) of every model, planned with the heuristics."""
    regions = []
    paths = sorted((ROOT / "models" / "synthetic").glob("*.onnx")) + sorted(
        (ROOT / "models" / "real").glob("*.onnx")
    )
    for path in paths:
        result = compile_model(path, dims=DIMS.get(path.stem), passes=None)
        groups = defaultdict(list)
        for tensor in result.ir.tensors():
            if tensor.needs_buffer and tensor.kind != "weight":
                groups[(tensor.device, tensor.tier)].append(tensor)
        for (device, tier), tensors in sorted(groups.items()):
            items = packing_items(result.ir, tensors, result.target)
            regions.append((f"{path.parent.name}/{path.stem} {device}/{tier}", items))
    return regions


def run(items: list[Item], engine: str, budget: float) -> dict[str, float]:
    """Solve ``items`` with ``engine``; peak/bound ratios, proof and seconds."""
    began = time.perf_counter()
    heuristic = place(items)
    placement, report = solve(items, heuristic, engine, region_budget(budget, len(items)))
    seconds = time.perf_counter() - began
    assert not check_placement(items, placement.offsets), f"{engine}: invalid placement"
    assert placement.peak <= heuristic.peak, f"{engine}: worse than the heuristic"
    bound = max(report.bound, 1)
    return {
        "greedy": heuristic.peak / bound,
        "ratio": placement.peak / bound,
        "optimal": report.status == "OPTIMAL",
        "gap": report.gap,
        "seconds": seconds,
        "exact_items": report.exact_items,
        "windows": report.windows,
        "window_items": report.window_items,
    }


def models_table(budget: float) -> Table:
    table = Table(title=f"models (budget {budget} per region; ratios to the proven bound)")
    for column in ("region", "items", "greedy", *(f"{e} ratio/opt/s" for e in ENGINES)):
        table.add_column(column, justify="right" if column != "region" else "left")
    for name, items in model_regions():
        if not items:
            continue
        results = {engine: run(items, engine, budget) for engine in ENGINES}
        cells = [
            f"{r['ratio']:.4f} {'yes' if r['optimal'] else 'no'} {r['seconds']:.2f}"
            for r in results.values()
        ]
        table.add_row(name, str(len(items)), f"{results['auto']['greedy']:.4f}", *cells)
    return table


def hard_instances(quick: bool) -> dict[str, list[list[Item]]]:
    seeds = range(1, 4 if quick else 6)
    return {
        "cuts 100": [rectangle_cuts(100, seed) for seed in seeds],
        "cuts 200": [rectangle_cuts(200, seed) for seed in seeds],
        "towers 8x12": [towers(8, 12, seed) for seed in seeds],
        "staircases 30": [staircases(30, seed) for seed in seeds],
    }


def instances_table(
    budget: float, quick: bool, engines: tuple[str, ...] = ENGINES, families: set[str] | None = None
) -> Table:
    table = Table(title=f"hard instances, known to fit at max-live (budget {budget})")
    for column in (
        "family",
        "items",
        "engine",
        "at max-live",
        "mean ratio",
        "worst ratio",
        "seconds",
    ):
        table.add_column(column, justify="right" if column not in ("family", "engine") else "left")
    for family, cases in hard_instances(quick).items():
        if families is not None and family not in families:
            continue
        items = statistics.mean(len(case) for case in cases)
        rows = {engine: [run(case, engine, budget) for case in cases] for engine in engines}
        greedy = [r["greedy"] for r in rows[engines[-1]]]
        table.add_row(family, f"{items:.0f}", "greedy", _count(greedy), *_stats(greedy), "-")
        for engine, results in rows.items():
            ratios = [r["ratio"] for r in results]
            seconds = sum(r["seconds"] for r in results)
            table.add_row("", "", engine, _count(ratios), *_stats(ratios), f"{seconds:.1f}")
    return table


def _count(ratios: list[float]) -> str:
    return f"{sum(r <= 1.0 for r in ratios)}/{len(ratios)}"


def _stats(ratios: list[float]) -> tuple[str, str]:
    return f"{statistics.mean(ratios):.3f}", f"{max(ratios):.3f}"


def scaling_table(budget: float, quick: bool) -> Table:
    table = Table(title=f"scaling: cut blocks on a shared baseline, auto (budget {budget})")
    columns = ("buffers", "heuristic s", "total s", "greedy gap", "gap", "exact items", "windows")
    for column in columns:
        table.add_column(column, justify="right")
    for count in (1_000, 10_000) if quick else (1_000, 10_000, 100_000):
        items = cut_blocks(count, seed=count)
        began = time.perf_counter()
        place(items)
        heuristic_seconds = time.perf_counter() - began
        result = run(items, "auto", budget)
        table.add_row(
            str(count),
            f"{heuristic_seconds:.1f}",
            f"{result['seconds']:.1f}",
            f"{result['greedy'] - 1:.2%}",
            f"{result['gap']:.2%}",
            str(result["exact_items"]),
            f"{result['windows']} ({result['window_items']} items)",
        )
    return table


TIME_LIMITED = "## With --time-limit (the best found in time; machine-dependent)"


def challenging() -> dict[str, list[Item]]:
    """11 capacity-tight instances of a few hundred buffers, known to fit at max-live."""
    found = {f"towers 8x12 #{seed}": towers(8, 12, seed) for seed in range(1, 6)}
    found.update({f"towers 10x16 #{seed}": towers(10, 16, seed) for seed in range(1, 4)})
    found.update({f"cut blocks 500 #{seed}": cut_blocks(500, seed) for seed in range(1, 4)})
    return found


def time_limited_table(limit: float, large_limit: float) -> Table:
    """Each instance solved as ``pack --time-limit`` does: heuristics and ``auto`` until
    the deadline."""
    table = Table(
        title=f"time-limited: auto with --time-limit {limit:.0f} ({large_limit:.0f} for 20k)"
    )
    columns = ("instance", "buffers", "limit s", "took s", "greedy", "peak/max-live", "optimal")
    for column in columns:
        table.add_column(column, justify="left" if column == "instance" else "right")
    ratios = []
    cases = [(name, items, limit) for name, items in challenging().items()]
    cases.append(("production-like 20k", production_like(20_000, 1), large_limit))
    for name, items, seconds in cases:
        began = time.perf_counter()
        deadline = Deadline.after(seconds)
        known = place(items, deadline=deadline)
        placement, report = solve(items, known, "auto", 2.0, deadline=deadline)
        took = time.perf_counter() - began
        assert not check_placement(items, placement.offsets)
        ratio = placement.peak / max_live(items)
        if len(items) < 1000:
            ratios.append(ratio)
        table.add_row(
            name,
            str(len(items)),
            f"{seconds:.0f}",
            f"{took:.1f}",
            f"{known.peak / max_live(items):.4f}",
            f"{ratio:.4f}",
            "yes" if report.status == "OPTIMAL" else "no",
        )
    table.caption = (
        f"challenging set: {sum(r <= 1.0 for r in ratios)}/{len(ratios)} at max-live, "
        f"mean {statistics.mean(ratios):.4f}, worst {max(ratios):.4f}"
    )
    return table


def write_time_limited(out: Path, limit: float, large_limit: float) -> None:
    """Rewrite the time-limited section of ``out``, keeping the rest."""
    console = Console(record=True, width=160)
    load = os.getloadavg()[0]
    table = time_limited_table(limit, large_limit)
    console.print(
        f"{date.today()} on {platform.machine()}, CPython {platform.python_version()}, load "
        f"average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (a shared "
        f"machine); `python benchmarks/exact_packing.py {' '.join(sys.argv[1:])}`"
    )
    console.print(table)
    previous = out.read_text() if out.exists() else "# exact_packing: last results\n"
    kept = previous.split(TIME_LIMITED)[0].rstrip("\n")
    out.write_text(f"{kept}\n\n{TIME_LIMITED}\n\n```\n{console.export_text()}```\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=2.0, help="deterministic units per region")
    parser.add_argument(
        "--large-budget",
        type=float,
        default=40.0,
        help="budget of the extra table on the hardest families (0: skip it)",
    )
    parser.add_argument("--quick", action="store_true", help="fewer seeds, no 100k run")
    parser.add_argument(
        "--time-limited", action="store_true", help="only the time-limited table (see above)"
    )
    parser.add_argument("--limit", type=float, default=30.0, help="seconds per instance")
    parser.add_argument("--large-limit", type=float, default=60.0, help="seconds for 20k")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "exact_packing.md"
    )
    args = parser.parse_args()
    if args.time_limited:
        write_time_limited(args.out, args.limit, args.large_limit)
        return
    console = Console(record=True, width=160)
    console.print(
        f"{date.today()} on {platform.machine()}, CPython {platform.python_version()}; "
        f"`python benchmarks/exact_packing.py {' '.join(sys.argv[1:])}`"
    )
    tables = [instances_table(args.budget, args.quick)]
    if args.large_budget:
        hardest = {"cuts 200", "towers 8x12"}
        tables.append(instances_table(args.large_budget, args.quick, ("cpsat", "auto"), hardest))
    for table in (*tables, scaling_table(args.budget, args.quick), models_table(args.budget)):
        console.print(table)
    previous = args.out.read_text() if args.out.exists() else ""
    kept = TIME_LIMITED + previous.split(TIME_LIMITED)[1] if TIME_LIMITED in previous else ""
    text = "# exact_packing: last results\n\n```\n" + console.export_text() + "```\n"
    args.out.write_text(text + (f"\n{kept}" if kept else ""))


if __name__ == "__main__":
    main()
