"""Benchmark: what the graph rewrites save, what they cost, and proof that they compute the same.

For each model and rewrite: the activation peak (all tiers and devices, the bytes
above the weights) before and after, the largest total of attention-score bytes
alive at one step (Softmax inputs and outputs), the extra FLOPs, the modelled
latency before and after, and ``tierplan run``'s largest error of the rewritten plan
against onnxruntime on the original model.

Recomputation (:data:`RECOMPUTE_CASES`, its own table): for each model and budget (a
ratio of the unrewritten activation peak), the peak before and after, the extra FLOPs,
the engine and CP-SAT's gap, or the smallest peak recomputation reaches when the
budget cannot be met.

Usage: ``python benchmarks/rewrites.py [--out benchmarks/results/rewrites.md]
[--recompute-only]`` (``--recompute-only`` replaces only the recomputation table).
"""

from __future__ import annotations

import argparse
import platform
import re
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
PRECISION_CASES: list[tuple[str, str]] = [
    ("bert_base", "precision{weights=float16}"),
    ("bert_base", "precision"),
    ("resnet50", "precision{weights=float16}"),
    ("resnet50", "precision"),
    ("whisper_tiny_encoder", "precision{weights=float16}"),
    ("whisper_tiny_encoder", "attention,precision{weights=float16}"),
]
"""16-bit activations: each against the unrewritten float32 plan, compared by cosine."""

RECOMPUTE_CASES: list[tuple[str, str]] = [
    ("synthetic/unet", "0.8"),
    ("synthetic/unet", "0.6"),
    ("synthetic/unet_strided", "0.8"),
    ("synthetic/unet_strided", "0.6"),
    ("real/resnet50", "0.8"),
    ("real/resnet50", "0.6"),
    ("real/unet_classic", "0.8"),
    ("real/unet_classic", "0.6"),
    ("synthetic/random_dag_1k", "0.95"),
]
"""(model under models/, budget) of the ``recompute`` rows."""
RECOMPUTE_MARKER = "## recompute"


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
        "regions": dict(evaluation.activation_peak_bytes),
        "scores": _score_bytes_alive(result),
        "flops": sum(operator_flops(result.ir, op) for op in result.ir.operators()),
        "latency": evaluation.latency_s,
        "seconds": result.seconds,
    }


def _table(title: str, headers: list[str]) -> tuple[Table, list[str]]:
    """A console table and the Markdown lines of its header."""
    table = Table(title=title)
    for header in headers:
        table.add_column(header, justify="left" if header in ("model", "rewrite") else "right")
    return table, ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]


TIERS = ("L2", "DDR", "L1")
"""The tiers of the precision table, in its column order."""


def _tier_peak(measures: dict[str, Any], tier: str) -> int:
    """A plan's activation peaks in ``tier``, summed over its devices."""
    return sum(peak for key, peak in measures["regions"].items() if key.endswith(f"/{tier}"))


def _rewrite_run(
    stem: str, rewrite: str, baselines: dict[str, dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """The unrewritten plan's measures (once per model), the rewritten one's, and its run."""
    from tierplan.compiler.execution import run_plan

    path = ROOT / "models" / "real" / f"{stem}.onnx"
    before = baselines.setdefault(stem, _measure(path, None))
    passes = f"{rewrite},{REST}"
    return before, _measure(path, passes), run_plan(path, compile_options={"passes": passes})


def _recompute_rows() -> list[list[str]]:
    """One row per :data:`RECOMPUTE_CASES` entry (printed as it is made)."""
    from tierplan.compiler import compile_model
    from tierplan.compiler.errors import PassFailure
    from tierplan.compiler.execution import run_plan
    from tierplan.passes.recompute import Recompute

    rows = []
    for stem, budget in RECOMPUTE_CASES:
        path = ROOT / "models" / f"{stem}.onnx"
        passes = f"schedule,recompute{{budget={budget}}},{REST.removeprefix('schedule,')}"
        before = _measure(path, None)
        mib = 2**20
        cells = [stem, f"recompute{{budget={budget}}}"]
        cells.append(f"{before['activation'] / mib:.3f}")
        try:
            result = compile_model(path, passes=passes)
        except PassFailure as failure:
            smallest = re.search(r"reachable by recomputation is (\d+)", str(failure))
            proof = re.search(r"(cpsat|greedy) ?(\w*)\)", str(failure))
            reached = int(smallest.group(1)) / mib if smallest else float("nan")
            engine = " ".join(proof.groups()).strip() if proof else "-"
            cells += [f"cannot: smallest {reached:.3f}", "-", "-", engine, "-", "-", "-", "-"]
            rows.append(cells)
            print(" | ".join(cells), file=sys.stderr, flush=True)
            continue
        report = result.context.result(Recompute)
        evaluation = result.evaluation
        assert evaluation is not None
        run = run_plan(path, compile_options={"passes": passes})
        gap = f"{report.gap:.2%}" if report.engine == "cpsat" else "-"
        cells += [
            f"{report.after / mib:.3f}",
            f"{report.after / report.before:.3f}",
            f"{report.extra_flops} ({report.extra_flops / report.flops_before:+.2%})",
            f"{report.engine} {report.status}".strip(),
            gap,
            f"{evaluation.latency_s * 1e3:.3f}",
            "match" if run.matches else f"MISMATCH: {run.divergence}",
            f"{max(o.difference.max_rel for o in run.outputs):.2g}",
        ]
        rows.append(cells)
        print(" | ".join(cells), file=sys.stderr, flush=True)
    return rows


def _recompute_section() -> str:
    headers = [
        "model", "rewrite", "act. peak MiB before", "after", "ratio", "extra FLOPs",
        "engine", "CP-SAT gap", "latency ms after", "run", "max rel error",
    ]  # fmt: skip
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cells) + " |" for cells in _recompute_rows()]
    return (
        f"{RECOMPUTE_MARKER}\n\n{date.today()}; `python benchmarks/rewrites.py "
        "--recompute-only`. budget: a ratio of the unrewritten activation peak (the final "
        "plan's, all regions); cannot: no choice of recomputations meets it, the smallest "
        "peak the engines reached is shown (engine: OPTIMAL when CP-SAT proved that its "
        "model's lowest peak is the unrewritten one)\n\n" + "\n".join(lines) + "\n"
    )


def main() -> None:

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/rewrites.md")
    parser.add_argument("--recompute-only", action="store_true", help="only the recompute rows")
    args = parser.parse_args()
    if args.recompute_only:
        kept = args.out.read_text().split(RECOMPUTE_MARKER)[0] if args.out.exists() else ""
        args.out.write_text(kept.rstrip("\n") + "\n\n" + _recompute_section())
        return
    headers = [
        "model", "rewrite", "act. peak MiB before", "after", "ratio", "scores alive MiB before",
        "after", "ratio", "extra FLOPs", "latency ms before", "after", "compile s", "run",
        "max rel error",
    ]  # fmt: skip
    title = "graph rewrites: memory saved, cost, and tierplan run against onnxruntime"
    table, lines = _table(title, headers)
    baselines: dict[str, dict[str, Any]] = {}
    for stem, rewrite in CASES:
        before, after, report = _rewrite_run(stem, rewrite, baselines)
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
    args.out.write_text(
        header
        + "\n".join(lines)
        + "\n"
        + _precision_section(baselines)
        + "\n"
        + _recompute_section()
    )


def _precision_section(baselines: dict[str, dict[str, Any]]) -> str:
    """The 16-bit activation rows: peaks (all regions, and L2 alone), cost, cosine."""

    headers = [
        "model", "rewrite", "act. peak MiB before", "after", "ratio", "L2 MiB before", "after",
        "L2 ratio", "DDR MiB before", "after", "L1 MiB before", "after", "extra FLOPs",
        "latency ms before", "after", "compile s", "run", "min cosine", "max abs error",
        "max rel error",
    ]  # fmt: skip
    table, lines = _table(
        "16-bit activations: memory saved, cost, and tierplan run by cosine", headers
    )
    mib = 2**20
    for stem, rewrite in PRECISION_CASES:
        before, after, report = _rewrite_run(stem, rewrite, baselines)
        l2, ddr, l1 = ([_tier_peak(m, tier) for m in (before, after)] for tier in TIERS)
        cells = [
            stem,
            rewrite,
            f"{before['activation'] / mib:.2f}",
            f"{after['activation'] / mib:.2f}",
            f"{after['activation'] / before['activation']:.3f}",
            *(f"{peak / mib:.2f}" for peak in l2),
            f"{l2[1] / max(1, l2[0]):.3f}",
            *(f"{peak / mib:.2f}" for peak in (*ddr, *l1)),
            f"{after['flops'] / before['flops'] - 1:+.2%}",
            f"{before['latency'] * 1e3:.3f}",
            f"{after['latency'] * 1e3:.3f}",
            f"{after['seconds']:.1f}",
            "match" if report.matches else f"MISMATCH: {report.divergence}",
            f"{min(o.difference.cosine for o in report.outputs):.6f}",
            f"{max(o.difference.max_abs for o in report.outputs):.2g}",
            f"{max(o.difference.max_rel for o in report.outputs):.2g}",
        ]
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
        print(" | ".join(cells), file=sys.stderr, flush=True)
    Console(width=220).print(table)
    return (
        "\n## 16-bit activations (`precision`)\n\nEach row against the unrewritten float32 "
        "plan; run: `tierplan run` compares every output by cosine similarity (>= 0.999). "
        "L2, DDR, L1: each tier's activation peak (all devices) before and after. On "
        "bert_base and resnet50 the DDR peak is the float32 graph outputs (bert_base) or "
        "input (resnet50), whose type stays, and the L1 peak the tile buffers of the "
        "tilings with the least traffic, which fill L1 at either width\n\n"
        + "\n".join(lines)
        + "\n"
    )


if __name__ == "__main__":
    main()
