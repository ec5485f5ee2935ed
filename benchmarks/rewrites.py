"""Benchmark: what the graph rewrites save, what they cost, and proof that they compute the same.

For each model and rewrite: the activation peak (all tiers and devices, the bytes
above the weights) before and after, the largest total of attention-score bytes
alive at one step (Softmax inputs and outputs), the extra FLOPs, the modelled
latency before and after, and ``tierplan run``'s largest error of the rewritten plan
against onnxruntime on the original model.

Usage: ``python benchmarks/rewrites.py [--out benchmarks/results/rewrites.md]``
"""

from __future__ import annotations

import argparse
import platform
import sys
from datetime import date
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
REST = "schedule,liveness,inplace,tiling,partition,tiers,pack,evaluate"
CASES: list[tuple[str, str]] = [
    ("whisper_tiny_encoder", "attention"),
    ("whisper_tiny_encoder", "attention{chunks=16}"),
    ("whisper_tiny_encoder", "attention{chunks=16 mode=online}"),
    ("gpt2_seq1024", "attention"),
    ("gpt2_seq1024", "attention{chunks=32}"),
    ("gpt2_seq1024", "attention{chunks=32 mode=online}"),
    ("gpt2_seq1024", "sequence{chunks=16}"),
    ("whisper_tiny_encoder", "sequence{chunks=8}"),
    ("bert_base", "attention{chunks=4}"),
    ("gpt2", "attention{chunks=4 mode=online}"),
]


def _score_bytes_alive(result: Any) -> int:
    """Largest total of bytes of attention scores alive at one step, over all regions:
    Softmax inputs and outputs, and the score blocks a rewrite labels; a tensor
    written in place over another counts once."""
    from tierplan.passes.attention import SCORES

    ir = result.ir
    names = {
        n for op in ir.operators() if op.op_type == "Softmax" for n in (*op.inputs, *op.outputs)
    }
    names |= {t.name for t in ir.tensors() if f"/{SCORES}" in t.name}
    live = [ir.tensor(n) for n in names if ir.tensor(n).needs_buffer]
    groups = ir.alias_groups(live)
    steps = ir.operator_count()
    return max(
        (
            sum(
                max(t.nbytes for t in members if t.start <= step <= t.end)
                for members in groups.values()
                if any(t.start <= step <= t.end for t in members)
            )
            for step in range(steps)
        ),
        default=0,
    )


def _measure(path: Path, passes: str | None) -> dict[str, Any]:
    from tierplan.compiler import compile_model
    from tierplan.compiler.cost import operator_flops

    result = compile_model(path, passes=passes)
    evaluation = result.evaluation
    assert evaluation is not None
    return {
        "activation": sum(evaluation.activation_peak_bytes.values()),
        "scores": _score_bytes_alive(result),
        "flops": sum(operator_flops(result.ir, op) for op in result.ir.operators()),
        "latency": evaluation.latency_s,
        "seconds": result.seconds,
    }


def main() -> None:
    from tierplan.compiler.execution import run_plan

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/rewrites.md")
    args = parser.parse_args()
    headers = [
        "model", "rewrite", "act. peak MiB before", "after", "ratio", "scores alive MiB before",
        "after", "ratio", "extra FLOPs", "latency ms before", "after", "compile s", "run",
        "max rel error",
    ]  # fmt: skip
    table = Table(title="graph rewrites: memory saved, cost, and tierplan run against onnxruntime")
    for header in headers:
        table.add_column(header, justify="left" if header in ("model", "rewrite") else "right")
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    baselines: dict[str, dict[str, Any]] = {}
    for stem, rewrite in CASES:
        path = ROOT / "models" / "real" / f"{stem}.onnx"
        before = baselines.setdefault(stem, _measure(path, None))
        passes = f"{rewrite},{REST}"
        after = _measure(path, passes)
        report = run_plan(path, compile_options={"passes": passes})
        mib = 2**20
        cells = [
            stem,
            rewrite,
            f"{before['activation'] / mib:.1f}",
            f"{after['activation'] / mib:.1f}",
            f"{after['activation'] / before['activation']:.3f}",
            f"{before['scores'] / mib:.2f}",
            f"{after['scores'] / mib:.2f}",
            f"{before['scores'] / max(1, after['scores']):.1f}x lower",
            f"{after['flops'] / before['flops'] - 1:+.2%}",
            f"{before['latency'] * 1e3:.3f}",
            f"{after['latency'] * 1e3:.3f}",
            f"{after['seconds']:.1f}",
            "match" if report.matches else f"MISMATCH: {report.divergence}",
            f"{max(o.difference.max_rel for o in report.outputs):.2g}",
        ]
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
        print(" | ".join(cells), file=sys.stderr, flush=True)
    Console(width=220).print(table)
    machine = (
        f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}"
    )
    header = (
        f"# rewrites: last results\n\n{date.today()} on {machine}; `python benchmarks/rewrites.py`. "
        "act. peak: bytes above the weights, summed over every region (device/tier); scores "
        "alive: Softmax inputs and outputs alive at one step; run: `tierplan run` of the "
        "rewritten plan against onnxruntime on the original model (rtol 1e-4, atol 1e-5)\n\n"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(header + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
