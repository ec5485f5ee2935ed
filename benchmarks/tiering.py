"""Benchmark: tiling into L1 and tier assignment across L2/DDR, per model.

For every model in models/real (and the synthetic ones with GEMMs or convolutions,
and ``reduction_net``: pooling, reductions and rows larger than L1):
the number of tiled operators, the largest tile working set against the L1
capacity, the GEMM/MatMul traffic of operators larger than L1 as a ratio to the
Hong-Kung bound ``2*M*N*K*e / sqrt(S/e)`` (max and mean) and to the I/O lower
bound ``max(Hong-Kung, every operand once)``, the share of activation traffic
served from L2 with the solver's method and bound, and the estimated latency with
every activation in DDR (pipeline without ``tiers``) against the default pipeline.

Usage: ``python benchmarks/tiering.py [--target NAME] [--out benchmarks/results/tiering.md]``
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.table import Table
from tierplan.compiler import CompileResult, compile_model
from tierplan.compiler.cost import moved_bytes
from tierplan.compiler.files import write_atomically
from tierplan.compiler.tiling.gemm import OP_TYPES as GEMMS
from tierplan.compiler.tiling.gemm import gemm_shape, hong_kung_bound
from tierplan.passes.tiers import Tiers

ROOT = Path(__file__).resolve().parent.parent
DIMS = {"bert_base_dynamic": {"batch": 1, "seq": 128}}
ALL_DDR = "schedule,liveness,inplace,tiling,pack,evaluate"
LARGE = 128  # skinnier products (GEMV, per-head attention) are bounded by moving operands once


def gemm_ratios(result: CompileResult) -> tuple[list[float], list[float], list[float]]:
    """Traffic / Hong-Kung bound (all; large products: M, N, K >= LARGE) and
    traffic / I/O bound, for GEMMs larger than L1."""
    ir, capacity = result.ir, result.target.tiers[0].capacity
    to_hk, binding, to_io = [], [], []
    for op in ir.operators():
        if op.op_type not in GEMMS or op.tiles is None:
            continue
        names = [n for n in [*op.inputs, *op.outputs] if n]
        touched = sum(ir.tensor(n).nbytes for n in names)
        bound = hong_kung_bound(ir, op, capacity)
        if bound is None or touched <= capacity:
            continue
        # The bound is for the product itself: A, B and Y (a Gemm's bias C comes on top).
        product = sum(op.tiles.traffic_by_tensor[n] for n in (*op.inputs[:2], op.outputs[0]))
        to_hk.append(product / bound)
        to_io.append(product / max(bound, touched))
        shape = gemm_shape(ir, op)
        if shape is not None and min(shape.m, shape.n, shape.k) >= LARGE:
            binding.append(product / bound)
    return to_hk, binding, to_io


def row(path: Path, target: str) -> list[str]:
    """One table row for the model at ``path``."""
    dims = DIMS.get(path.stem)
    began = time.perf_counter()
    tiered = compile_model(path, target=target, dims=dims)
    seconds = time.perf_counter() - began
    flat = compile_model(path, target=target, dims=dims, passes=ALL_DDR)
    assert tiered.evaluation is not None and flat.evaluation is not None
    l1 = tiered.target.tiers[0]
    tiled = [op for op in tiered.ir.operators() if op.tiles is not None]
    largest = max((op.tiles.l1_bytes for op in tiled if op.tiles is not None), default=0)
    to_hk, binding, to_io = gemm_ratios(tiered)
    tiers = tiered.context.find_result(Tiers)
    reports = tiers.devices if tiers is not None else {}
    served = sum(r.benefit for r in reports.values())
    best = sum(r.bound for r in reports.values())
    moved = sum(
        count
        for op in tiered.ir.operators()
        for name, count in moved_bytes(tiered.ir, op).items()
        if tiered.ir.tensor(name).kind in ("input", "output", "activation")
    )
    methods = ",".join(sorted({r.method for r in reports.values()})) or "-"

    def ratio(values: list[float], how: str) -> str:
        if not values:
            return "-"
        return f"{max(values):.3f}" if how == "max" else f"{sum(values) / len(values):.3f}"

    return [
        f"{path.parent.name}/{path.stem}",
        str(len(tiled)),
        f"{largest / 1024:.0f}/{l1.capacity / 1024:.0f}",
        str(len(to_hk)),
        ratio(to_hk, "max"),
        ratio(to_hk, "mean"),
        f"{ratio(binding, 'max')} ({len(binding)})",
        ratio(to_io, "max"),
        ratio(to_io, "mean"),
        f"{served / 2**20:.1f}",
        f"{100 * served / moved:.1f}%" if moved else "-",
        f"{100 * served / best:.1f}%" if best else "-",
        methods,
        f"{flat.evaluation.latency_s * 1e3:.3f}",
        f"{tiered.evaluation.latency_s * 1e3:.3f}",
        f"{seconds:.1f}",
    ]


HEADERS = [
    "model",
    "tiled ops",
    "max tile KiB / L1",
    "GEMMs > L1",
    "HK ratio max",
    "HK ratio mean",
    "HK ratio max, M,N,K >= 128 (n)",
    "I/O ratio max",
    "I/O ratio mean",
    "L2 traffic MiB",
    "L2 share of traffic",
    "of solver bound",
    "tiers method",
    "latency all-DDR ms",
    "latency tiers ms",
    "compile s",
]


def main() -> None:
    """Compile every model twice and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="ascend-like")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/tiering.md")
    args = parser.parse_args()
    models = sorted((ROOT / "models/real").glob("*.onnx")) + [
        ROOT / "models/synthetic" / f"{name}.onnx"
        for name in ("transformer_stack_4", "unet", "residual_block", "reduction_net")
    ]
    rows = [row(path, args.target) for path in models]
    table = Table(*HEADERS, title=f"tiling and tiers on {args.target}")
    for values in rows:
        table.add_row(*values)
    Console(width=220).print(table)
    lines = [
        f"# Tiling and tiers ({args.target}), {date.today()}, "
        f"{platform.machine()} Python {platform.python_version()}",
        "",
        "HK ratio: tiled traffic / (2·M·N·K·e/√(S/e)), S = L1 bytes, for every GEMM/MatMul "
        "whose operands exceed L1. I/O ratio: traffic / max(HK bound, every operand moved "
        "once); skinny products (M = 1, small batched attention) are bounded by the latter. "
        "Ratios count the product's operands A, B, Y (a Gemm's bias comes on top). "
        "L2 share: activation traffic served from L2 / all activation traffic (graph inputs "
        "and outputs stay in DDR). Of solver bound: L2 traffic / the CP-SAT upper bound.",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "---|" * len(HEADERS),
        *("| " + " | ".join(values) + " |" for values in rows),
    ]
    write_atomically(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
