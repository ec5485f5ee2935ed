"""Benchmark: model-parallel partitioning over K devices, pipeline and graph mode.

For each model and K in {1, 2, 4, 8} (and ``auto``), compile with
``schedule{order=onnx},liveness,inplace,partition{devices=K mode=M},pack,evaluate``
(the ONNX order and no tiling/tiers, so the numbers isolate partitioning) and
report, from the evaluated plan: the DDR peak of every device, the imbalance
(max / mean over the devices used), the DP's estimated max device peak beside the
ideal (one-device peak / K), the bytes sent over the links, the one-inference
latency, the pipeline throughput (1 / slowest device) and its speedup over one
device running every operator, and the compile time. Graph mode runs on the same models for K >= 2.

The Llama models are built by :mod:`models.llama` at 7B widths: 32 layers (the
real 7B, 12.6 GiB of weights) and 48 layers (``models/scale/llama_7b_48l.onnx``,
18.6 GiB, more than one 16 GiB ``inference-card``).

Usage: ``python benchmarks/partition.py [--quick] [--out benchmarks/results/partition.md]``
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tierplan.compiler import TierplanError, compile_model  # noqa: E402
from tierplan.passes.partition import Partition  # noqa: E402

from models.llama import llama  # noqa: E402

PIPELINE = "schedule{order=onnx},liveness,inplace,partition{%s},pack,evaluate"
COUNTS = ("1", "2", "4", "8")
HEADERS = [
    "model", "target", "mode", "K", "device DDR peaks MiB", "max/mean", "DP max MiB",
    "ideal MiB", "transfer MiB", "latency ms", "throughput /s", "speedup", "compile s",
]  # fmt: skip


def models(scratch: Path, quick: bool) -> list[tuple[Path, str]]:
    """(model file, target) pairs; the 32-layer Llama is written to ``scratch``."""
    chosen = [
        (ROOT / "models/synthetic/transformer_stack_4.onnx", "ascend-like"),
        (ROOT / "models/synthetic/wide_branchy.onnx", "ascend-like"),
        (ROOT / "models/synthetic/unet.onnx", "ascend-like"),
        (ROOT / "models/real/resnet50.onnx", "ascend-like"),
        (ROOT / "models/real/gpt2.onnx", "ascend-like"),
    ]
    if not quick:
        llama_32 = scratch / "llama_7b_32l.onnx"
        llama_32.write_bytes(llama(32, name=llama_32.stem).SerializeToString())
        chosen += [
            (llama_32, "inference-card"),
            (ROOT / "models/scale/llama_7b_48l.onnx", "inference-card"),
        ]
    return chosen


def mib(count: float) -> str:
    return f"{count / 2**20:.1f}"


def row(path: Path, target: str, mode: str, count: str) -> list[str]:
    """One table row: compile and read the evaluation (or the reason it failed)."""
    began = time.perf_counter()
    head = [path.stem, target, mode, count]
    try:
        result = compile_model(
            path, target=target, passes=PIPELINE % f"devices={count} mode={mode}"
        )
    except TierplanError as error:
        message = str(error).split(" [in pass")[0]
        return [*head, f"fails: {message[:90]}", *[""] * (len(HEADERS) - 5)]
    seconds = time.perf_counter() - began
    evaluation = result.evaluation
    assert evaluation is not None
    peaks = [v for k, v in evaluation.peak_bytes.items() if k.endswith("/DDR")]
    report = result.context.find_result(Partition)
    devices = result.plan["target"]["devices"]
    throughput = evaluation.throughput
    # One device would run every operator in turn (even when it does not fit).
    unsplit = sum(cost.seconds for cost in evaluation.op_costs if cost.op_type != "Transfer")
    return [
        *head[:3],
        str(devices) if count != "auto" else f"auto={devices}",
        " ".join(mib(p) for p in peaks),
        f"{max(peaks) / (sum(peaks) / len(peaks)):.3f}",
        mib(report.estimate.max_peak) if report else mib(max(peaks)),
        mib(report.ideal_peak) if report else mib(max(peaks)),
        f"{sum(evaluation.transfer_bytes.values()) / 2**20:.2f}",
        f"{evaluation.latency_s * 1e3:.3f}",
        f"{throughput:.1f}",
        f"{throughput * unsplit:.2f}",
        f"{seconds:.2f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/partition.md")
    parser.add_argument("--quick", action="store_true", help="skip the Llama models")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for path, target in models(Path(scratch), args.quick):
            for mode in ("pipeline", "graph"):
                for count in (*COUNTS, "auto") if mode == "pipeline" else COUNTS[1:]:
                    cells = row(path, target, mode, count)
                    rows.append(cells)
                    print(" | ".join(cells), flush=True)
    table = Table(title="partition: K devices, DDR peaks, transfers, pipeline throughput")
    for header in HEADERS:
        table.add_column(header, justify="left" if header in ("model", "mode") else "right")
    for cells in rows:
        table.add_row(*cells)
    Console(width=200).print(table)
    machine = (
        f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}"
    )
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    header = (
        f"# partition: last results\n\n{date.today()} on {machine}; "
        "`python benchmarks/partition.py`\n\n"
        "DP max: the pipeline DP's estimated largest device peak (weights + max-live); ideal: "
        "the one-device peak / K. Throughput: 1 / slowest device (operators + received "
        "transfers); speedup: throughput x the time of all operators on one device (also "
        "where one device does not fit).\n\n"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(header + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
