"""Benchmark: the default compile gives the same plan on a loaded machine as on a quiet one.

Every model in models/real and models/synthetic is compiled with the default pipeline
(as ``tierplan compile`` does) twice: once as the machine is, and once beside
``--burners`` CPU-bound processes (``while True: pass``); the plan.json texts are
compared by sha256. So are the placements of hard generated instances solved with the
default budget (the exact engines work there for seconds, not milliseconds).

Every CP-SAT call of both runs is timed against its wall-clock safety cap: the
``cap use`` columns give the largest share of its cap a call took (it must stay far
below 1/4 for the deterministic limits to end every solve before the cap on a machine
four times slower), and a cap that fired would be counted in ``capped``.

Usage: ``python benchmarks/determinism.py [--burners 2] [--quick] [--out FILE]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from ortools.sat.python import cp_model
from rich.console import Console
from rich.table import Table
from tierplan.compiler import compile_model
from tierplan.compiler.packing import Item, place, solve
from tierplan.compiler.packing.exact import region_budget
from tierplan.compiler.packing.instances import cut_blocks, rectangle_cuts, staircases, towers

ROOT = Path(__file__).resolve().parent.parent
DIMS = {"bert_base_dynamic": {"batch": 1, "seq": 128}, "gpt2_dynamic": {"seq": 128}}


@dataclass
class CapUse:
    """CP-SAT calls seen while a case ran: the largest share of its safety cap one took."""

    calls: int = 0
    worst: float = 0.0
    capped: int = 0
    seconds: list[float] = field(default_factory=list)


@contextmanager
def watching_cpsat() -> Iterator[CapUse]:
    """Time every ``CpSolver.solve`` against its ``max_time_in_seconds``."""
    use = CapUse()
    original: Callable[..., Any] = cp_model.CpSolver.solve

    def timed(self: cp_model.CpSolver, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        cap = self.parameters.max_time_in_seconds
        use.calls += 1
        use.worst = max(use.worst, self.wall_time / cap)
        use.capped += self.wall_time >= 0.99 * cap
        return result

    cp_model.CpSolver.solve = timed  # type: ignore[method-assign]
    try:
        yield use
    finally:
        cp_model.CpSolver.solve = original  # type: ignore[method-assign]


def cases(quick: bool) -> list[tuple[str, Callable[[], str]]]:
    """(name, run) pairs; each run returns the text whose hash must not change."""
    models = sorted((ROOT / "models" / "real").glob("*.onnx")) + sorted(
        (ROOT / "models" / "synthetic").glob("*.onnx")
    )
    found: list[tuple[str, Callable[[], str]]] = [
        (f"{path.parent.name}/{path.stem}", lambda path=path: _plan(path)) for path in models
    ]
    instances = {
        "cuts 200 #1": rectangle_cuts(200, 1),
        "cuts 200 #2": rectangle_cuts(200, 2),
        "towers 8x12 #1": towers(8, 12, 1),
        "towers 8x12 #2": towers(8, 12, 2),
        "staircases 30 #1": staircases(30, 1),
        "cut blocks 10k": cut_blocks(10_000, seed=10_000),
    }
    if quick:
        instances = dict(list(instances.items())[:2])
    found += [(name, lambda items=items: _offsets(items)) for name, items in instances.items()]
    return found


def _plan(path: Path) -> str:
    return compile_model(path, dims=DIMS.get(path.stem)).plan_json()


def _offsets(items: list[Item]) -> str:
    placement, _ = solve(items, place(items), "auto", region_budget(2.0, len(items)))
    return json.dumps(sorted(placement.offsets.items()))


def run_all(quick: bool) -> dict[str, tuple[str, float, CapUse]]:
    """Each case's hash, seconds and CP-SAT cap use."""
    results = {}
    for name, run in cases(quick):
        began = time.perf_counter()
        with watching_cpsat() as use:
            text = run()
        results[name] = (
            hashlib.sha256(text.encode()).hexdigest(),
            time.perf_counter() - began,
            use,
        )
    return results


@contextmanager
def burning(count: int) -> Iterator[None]:
    """``count`` CPU-bound processes running beside the body; ended by their own ids."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burners", type=int, default=2, help="CPU-bound processes beside")
    parser.add_argument("--quick", action="store_true", help="two generated instances only")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "determinism.md"
    )
    args = parser.parse_args()
    load_before = os.getloadavg()
    quiet = run_all(args.quick)
    with burning(args.burners):
        time.sleep(1.0)  # let the burners take their cores
        load_burning = os.getloadavg()
        loaded = run_all(args.quick)
    table = Table(title=f"same input, as the machine is vs. beside {args.burners} CPU burners")
    columns = ("case", "plan / offsets sha256", "same", "as is s", "loaded s")
    for column in (*columns, "CP-SAT calls", "cap use as is", "cap use loaded", "capped"):
        table.add_column(column, justify="left" if column in columns[:2] else "right")
    for name, (digest, seconds, use) in quiet.items():
        other, loaded_seconds, loaded_use = loaded[name]
        table.add_row(
            name,
            digest[:16],
            "yes" if digest == other else "NO",
            f"{seconds:.1f}",
            f"{loaded_seconds:.1f}",
            str(use.calls),
            f"{use.worst:.3f}",
            f"{loaded_use.worst:.3f}",
            str(use.capped + loaded_use.capped),
        )
    same = sum(quiet[name][0] == loaded[name][0] for name in quiet)
    slowdown = sum(s for _, s, _ in loaded.values()) / max(
        sum(s for _, s, _ in quiet.values()), 1e-9
    )
    console = Console(record=True, width=160)
    console.print(
        f"{date.today()} on {platform.machine()} ({os.cpu_count()} cores), CPython "
        f"{platform.python_version()}; `python benchmarks/determinism.py {' '.join(sys.argv[1:])}`\n"
        f"load average before: {load_before[0]:.1f}; with the burners: {load_burning[0]:.1f} "
        "(the machine is shared: 'as is' is not an idle machine)"
    )
    console.print(table)
    console.print(
        f"identical: {same}/{len(quiet)}; loaded run took {slowdown:.2f}x the time of the first"
    )
    args.out.write_text("# determinism: last results\n\n```\n" + console.export_text() + "```\n")


if __name__ == "__main__":
    main()
