"""Benchmark: one symbolic plan per model for a whole range of sequence lengths (issue 19).

Per model: compile the symbolic plan once; instantiate it at EVERY length of the range
and validate each instance against the model loaded at that length (no recompile);
compile an exact plan (same passes, own schedule) at sampled lengths and compare
activation arenas; run the instance in ``tierplan run`` against onnxruntime at five
lengths. The upper-bound plan is the exact plan at the top of the range, used at
every length (what planning at the maximum shape gives).

Usage: ``python benchmarks/symbolic.py [--out benchmarks/results/symbolic.md] [--exact-every N]``
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CASES = (
    ("bert_base_dynamic", ["batch=1", "seq=1..512"]),
    ("gpt2_dynamic", ["seq=1..1024"]),
)
DENSE_UP_TO = 32  # every length up to here gets an exact plan; above, every --exact-every-th


def _arena(plan: dict[str, object]) -> int:
    from tierplan.compiler.evaluation import ACTIVATION_KINDS
    from tierplan.compiler.plan import PlanBuffer, memory_summary

    peaks, _ = memory_summary(PlanBuffer.of_plan(plan), set(ACTIVATION_KINDS))
    return max(peaks.values())


def main() -> None:
    from tierplan.compiler.api import compile_model
    from tierplan.compiler.execution import run_plan
    from tierplan.compiler.frontend import load_model
    from tierplan.compiler.symbolic.build import SYMBOLIC_PIPELINE, compile_symbolic
    from tierplan.compiler.symbolic.dims import parse_dim_specs
    from tierplan.compiler.symbolic.instantiate import instantiate
    from tierplan.compiler.validate import validate_plan

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/symbolic.md")
    parser.add_argument("--exact-every", type=int, default=16)
    parser.add_argument("models", nargs="*")
    args = parser.parse_args()
    lines = [
        "# Symbolic plans: one plan for every sequence length",
        "",
        f"{date.today()}, {platform.processor() or platform.machine()}, python "
        f"{platform.python_version()}; `python benchmarks/symbolic.py --exact-every "
        f"{args.exact_every}`. Passes: {','.join(SYMBOLIC_PIPELINE)}, target ascend-like "
        "(all buffers in DDR). Arena: activation peak above the weights. Exact: a plan "
        f"compiled for that length (its own schedule), at every length <= {DENSE_UP_TO} and "
        f"every {args.exact_every}-th above, plus the top. Upper bound: the top length's "
        "exact plan, used at every length.",
        "",
    ]
    for name, dim_specs in CASES:
        if args.models and name not in args.models:
            continue
        model = ROOT / "models/real" / f"{name}.onnx"
        specs = parse_dim_specs(dim_specs)
        (dim,) = specs.ranges
        began = time.perf_counter()
        symbolic = compile_symbolic(model, specs)
        compile_s = time.perf_counter() - began
        began = time.perf_counter()
        arenas, invalid = {}, []
        for length in range(dim.low, dim.high + 1):
            binding = {**specs.fixed, dim.name: length}
            plan = instantiate(symbolic.plan, binding)
            if validate_plan(plan, load_model(model, dims=binding).ir):
                invalid.append(length)
            arenas[length] = _arena(plan)
        check_s = time.perf_counter() - began
        sampled = sorted(
            {*range(dim.low, min(DENSE_UP_TO, dim.high) + 1), dim.high}
            | set(range(dim.low, dim.high + 1, args.exact_every))
        )
        began = time.perf_counter()
        exact = {}
        for length in sampled:
            result = compile_model(
                model, dims={**specs.fixed, dim.name: length}, passes=SYMBOLIC_PIPELINE
            )
            evaluation = result.evaluation
            assert evaluation is not None
            exact[length] = max(evaluation.activation_peak_bytes.values())
        exact_s = time.perf_counter() - began
        upper = exact[dim.high]
        ratios = {length: arenas[length] / exact[length] for length in sampled}
        worst = max(ratios, key=lambda length: (ratios[length], -length))
        runs = []
        for length in sorted({dim.low, 7, dim.high // 4 + 3, dim.high // 2 + 1, dim.high}):
            binding = {**specs.fixed, dim.name: length}
            report = run_plan(model, instantiate(symbolic.plan, binding), dims=binding)
            runs.append(f"{length}: {'match' if report.matches else 'MISMATCH'}")
        lines += [
            f"## {name}, {' '.join('--dim ' + s for s in dim_specs)}",
            "",
            f"- symbolic compile: {compile_s:.1f} s; {len(symbolic.plan['buffers'])} buffers",
            f"- instantiated and validated at every length {dim.low}..{dim.high} "
            f"({dim.high - dim.low + 1} plans) in {check_s:.1f} s: "
            f"{'all valid' if not invalid else f'INVALID at {invalid[:10]}'}",
            f"- exact plans compiled at {len(sampled)} lengths in {exact_s:.1f} s; worst ratio "
            f"symbolic / exact: **{ratios[worst]:.4f} at {dim.name}={worst}**",
            f"- tierplan run vs onnxruntime: {', '.join(runs)}",
            "",
            f"| {dim.name} | symbolic arena | exact arena | ratio | upper-bound arena | upper / exact |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        shown = sorted({*sampled[:: max(1, len(sampled) // 16)], worst, dim.high})
        for length in shown:
            lines.append(
                f"| {length} | {arenas[length]} | {exact[length]} | {ratios[length]:.4f} | "
                f"{upper} | {upper / exact[length]:.1f}x |"
            )
        lines.append("")
        print("\n".join(lines[-len(shown) - 12 :]), flush=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
