"""Benchmark: compile every model in models/ and print one table.

Each model is compiled in its own process so that the compiler's peak memory
(max RSS) is measured alone. Columns: operators, tensors, the naive no-reuse
activation arena, the max-live lower bound of the activation region, the peak
the planner reached, their ratio, compile seconds and peak RSS.

Usage: ``python benchmarks/compile_models.py [--out benchmarks/results/compile_models.md]``
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
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


def measure(path: Path) -> dict[str, object]:
    """Compile ``path`` in this process; return the table row as JSON data."""
    from tierplan.compiler import compile_model

    began = time.perf_counter()
    result = compile_model(path, dims=DIMS.get(path.stem))
    seconds = time.perf_counter() - began
    evaluation = result.evaluation
    assert evaluation is not None
    key = "0/DDR"
    return {
        "model": f"{path.parent.name}/{path.stem}",
        "ops": result.ir.operator_count(),
        "tensors": sum(1 for _ in result.ir.tensors()),
        "no_reuse": evaluation.no_reuse_bytes[key],
        "bound": evaluation.activation_lower_bound_bytes[key],
        "bound_no_alias": evaluation.activation_bound_without_aliasing[key],
        "peak": evaluation.activation_peak_bytes[key],
        "total_peak": evaluation.peak_bytes[key],
        "seconds": seconds,
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
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
    headers = [
        "model",
        "ops",
        "tensors",
        "no-reuse MiB",
        "bound w/o aliasing MiB",
        "bound MiB",
        "peak MiB",
        "peak/bound",
        "total peak MiB",
        "compile s",
        "RSS MiB",
    ]
    table = Table(
        title="compile every model (activation region of 0/DDR; bound: max-live with the plan's "
        "aliasing; total includes weights)"
    )
    for header in headers:
        table.add_column(header, justify="left" if header == "model" else "right")
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        if "error" in row:
            cells = [str(row["model"]), "error: " + str(row["error"])] + [""] * (len(headers) - 2)
        else:
            cells = [
                str(row["model"]), str(row["ops"]), str(row["tensors"]), mib(row["no_reuse"]), mib(row["bound_no_alias"]), mib(row["bound"]),
                mib(row["peak"]), f"{row['peak'] / row['bound']:.3f}", mib(row["total_peak"]),
                f"{row['seconds']:.2f}", f"{row['rss_mib']:.0f}",
            ]  # fmt: skip
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    Console(width=160).print(table)
    machine = (
        f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}"
    )
    header = f"# compile_models: last results\n\n{date.today()} on {machine}; `python benchmarks/compile_models.py`\n\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(header + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
