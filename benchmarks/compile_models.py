"""Benchmark: compile every model in models/ and print one table.

Each model is compiled in its own process so that the compiler's peak memory
(max RSS) is measured alone: once with the default pipeline (compile seconds, RSS,
total peak) and once in one activation arena (``ARENA_PIPELINE``) for the reuse
columns: naive no-reuse arena, buddy and pool runtime allocators replaying the same
schedule (eager: views share blocks, every other output gets its own; and with the
plan's in-place writes too), each placement heuristic (peak over its own max-live),
the max-live of the ONNX order and of the chosen order (no aliasing), the bound with
aliasing for the ONNX order and for the chosen order (what scheduling gains), the
final peak, how much smaller it is than each runtime allocator, and the share of
activation bytes aliased.

Usage: ``python benchmarks/compile_models.py [--out benchmarks/results/compile_models.md]``
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
# Models with symbolic dimensions, and the values the benchmark binds.
DIMS = {"bert_base_dynamic": {"batch": 1, "seq": 128}}
# Reuse is measured in one activation arena (no tiling or tiers), as the runtime
# allocators it is compared with would see it.
ARENA_PIPELINE = "schedule,liveness,inplace,pack,evaluate"
ONNX_ORDER = "schedule{order=onnx}"


def measure(path: Path) -> dict[str, object]:
    """Compile ``path`` in this process; return the table row as JSON data."""
    from tierplan.compiler import compile_model
    from tierplan.compiler.allocators import ALLOCATORS, requests, simulate
    from tierplan.compiler.evaluation import ACTIVATION_KINDS
    from tierplan.compiler.packing import PLACERS, Item, max_live, place
    from tierplan.compiler.pass_manager import PassTimer
    from tierplan.passes.schedule import Schedule

    timer = PassTimer()
    began = time.perf_counter()
    result = compile_model(path, dims=DIMS.get(path.stem), instruments=[timer])
    seconds = time.perf_counter() - began
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert result.evaluation is not None
    arena = compile_model(path, dims=DIMS.get(path.stem), passes=ARENA_PIPELINE)
    in_onnx_order = compile_model(
        path, dims=DIMS.get(path.stem), passes=ARENA_PIPELINE.replace("schedule", ONNX_ORDER, 1)
    ).evaluation
    evaluation, schedule = arena.evaluation, arena.context.result(Schedule)
    assert evaluation is not None and in_onnx_order is not None
    key = "0/DDR"
    eager = requests(evaluation.plan, ACTIVATION_KINDS)[key]
    planned = requests(evaluation.plan, ACTIVATION_KINDS, in_place=True)[key]
    items = [
        Item(str(i), r.start, r.end, arena.target.align_up(r.size)) for i, r in enumerate(planned)
    ]
    activations = [b for b in evaluation.plan["buffers"] if b["kind"] in ACTIVATION_KINDS]
    return {
        "model": f"{path.parent.name}/{path.stem}",
        "ops": result.ir.operator_count(),
        "naive": evaluation.no_reuse_bytes[key],
        **{name: simulate(name, eager, 2**62).footprint for name in ALLOCATORS},
        **{f"{name} in-place": simulate(name, planned, 2**62).footprint for name in ALLOCATORS},
        **{name: place(items, name).peak / max_live(items) for name in PLACERS},
        "onnx_bound": evaluation.onnx_order_bound_bytes,
        "order_bound": evaluation.activation_bound_without_aliasing[key],
        "order": f"{schedule.order} ({schedule.method}"
        + (", budget spent)" if schedule.budget_spent else ")"),
        "onnx_order_aliased_bound": in_onnx_order.activation_lower_bound_bytes[key],
        "bound": evaluation.activation_lower_bound_bytes[key],
        "peak": evaluation.activation_peak_bytes[key],
        "aliased": sum(b["bytes"] for b in activations if b["alias_of"])
        / sum(b["bytes"] for b in activations),
        "total_peak": sum(result.evaluation.peak_bytes.values()),
        "seconds": seconds,
        "slowest": "{} {:.2f}".format(*max(timer.seconds, key=lambda item: item[1])),
        "rss_mib": rss,
    }


def models() -> list[Path]:
    """The benchmarked models: synthetic first, then real exported ones."""
    return sorted((ROOT / "models" / "synthetic").glob("*.onnx")) + sorted(
        (ROOT / "models" / "real").glob("*.onnx")
    )


def mib(count: float) -> str:
    return f"{count / 2**20:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "compile_models.md"
    )
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker)))
        return
    rows = []
    for path in models():
        done = subprocess.run(
            [sys.executable, __file__, "--worker", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            rows.append(
                {
                    "model": f"{path.parent.name}/{path.stem}",
                    "error": done.stderr.strip().splitlines()[-1],
                }
            )
        else:
            rows.append(json.loads(done.stdout))
    from tierplan.compiler.packing import PLACERS

    heuristics = list(PLACERS)
    headers = [
        "model", "ops", "naive", "buddy", "pool", "buddy in-place", "pool in-place", *heuristics,
        "ONNX-order bound", "chosen-order bound", "order", "aliased bound ONNX order", "bound",
        "scheduling gain", "final peak", "final/ONNX bound", "final vs buddy", "final vs pool",
        "aliased", "total peak", "compile s", "slowest pass s", "RSS MiB",
    ]  # fmt: skip
    table = Table(
        title="compile every model. MiB of the activation arena (one tier, no tiling): naive "
        "no reuse, runtime buddy and pool allocators (eager, and with the plan's in-place "
        "writes), each heuristic as peak/its bound, max-live without aliasing in the ONNX and the "
        "chosen order, the bound with aliasing in the ONNX and the chosen order (scheduling "
        "gain), the final peak and how much smaller it is than each eager allocator; aliased: "
        "share of activation bytes reusing another's; total peak: default pipeline, all tiers "
        "and weights"
    )
    for header in headers:
        table.add_column(header, justify="left" if header in ("model", "order") else "right")
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        if "error" in row:
            cells = [str(row["model"]), "error: " + str(row["error"])] + [""] * (len(headers) - 2)
        else:
            cells = [
                str(row["model"]), str(row["ops"]), mib(row["naive"]), mib(row["buddy"]),
                mib(row["pool"]), mib(row["buddy in-place"]), mib(row["pool in-place"]),
                *(f"{row[h]:.3f}" for h in heuristics), mib(row["onnx_bound"]),
                mib(row["order_bound"]), str(row["order"]), mib(row["onnx_order_aliased_bound"]),
                mib(row["bound"]), f"{1 - row['bound'] / row['onnx_order_aliased_bound']:.1%}",
                mib(row["peak"]), f"{row['peak'] / row['onnx_bound']:.3f}",
                f"{1 - row['peak'] / row['buddy']:.1%}", f"{1 - row['peak'] / row['pool']:.1%}",
                f"{row['aliased']:.0%}",
                mib(row["total_peak"]), f"{row['seconds']:.2f}", str(row["slowest"]), f"{row['rss_mib']:.0f}",
            ]  # fmt: skip
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    Console(width=200).print(table)
    machine = (
        f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}"
    )
    header = f"# compile_models: last results\n\n{date.today()} on {machine}; `python benchmarks/compile_models.py`\n\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    timed = sorted((float(row["seconds"]), str(row["model"])) for row in rows if "error" not in row)
    if timed:
        middle = statistics.median(seconds for seconds, _ in timed)
        lines += [
            "",
            f"Compile time (default pipeline): median {middle:.2f} s, slowest "
            f"{timed[-1][0]:.2f} s ({timed[-1][1]}); issue 16's targets: median < 3 s, "
            'every model < 10 s. "slowest pass s": the default pipeline\'s slowest pass.',
        ]
    args.out.write_text(header + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
