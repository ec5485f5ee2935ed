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

Usage: ``python benchmarks/exact_packing.py [--budget 2] [--large-budget 40] [--quick] [--out FILE]``
"""

from __future__ import annotations

import argparse
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
from tierplan.compiler.packing import Item, check_placement, place, solve
from tierplan.compiler.packing.exact import region_budget
from tierplan.compiler.packing.instances import cut_blocks, rectangle_cuts, staircases, towers
from tierplan.passes.pack import packing_items

ROOT = Path(__file__).resolve().parent.parent
DIMS = {"bert_base_dynamic": {"batch": 1, "seq": 128}}
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
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "exact_packing.md"
    )
    args = parser.parse_args()
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
    args.out.write_text("# exact_packing: last results\n\n```\n" + console.export_text() + "```\n")


if __name__ == "__main__":
    main()
