"""Benchmark: run every model of models/ inside its plan (``tierplan run``), one and two devices.

For each model and device count: whether the planned execution matches onnxruntime,
the largest error of any output (absolute, and relative to the output's largest
magnitude), how the time splits (compile, loading and making weights/inputs, the
onnxruntime reference on the whole model, the planned run step by step), the
number of one-operator kernels built, and the arena bytes the run allocated.

Usage: ``python benchmarks/run_plans.py [--out benchmarks/results/run_plans.md] [MODEL ...]``
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import MODELS, large_model_files, model_files  # noqa: E402

DIMS = {"bert_base_dynamic": {"batch": 1, "seq": 128}}
TWO_DEVICES = "schedule,liveness,inplace,tiling,partition{devices=2},tiers,pack,evaluate"


def main() -> None:
    from tierplan.compiler import compile_model
    from tierplan.compiler.execution import run_plan

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/run_plans.md")
    parser.add_argument("models", nargs="*", type=Path)
    args = parser.parse_args()
    paths = args.models or [
        *model_files(),
        *large_model_files(),
        MODELS / "real" / "bert_base_dynamic.onnx",
    ]
    headers = [
        "model", "devices", "result", "max abs error", "max rel error", "compile s", "load s",
        "reference s", "planned run s", "total s", "kernels", "arena MiB",
    ]  # fmt: skip
    table = Table(title="tierplan run: every model in its plan's memory vs onnxruntime")
    for header in headers:
        table.add_column(header, justify="left" if header == "model" else "right")
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for path in paths:
        for passes, devices in ((None, 1), (TWO_DEVICES, 2)):
            dims = DIMS.get(path.stem)
            began = time.perf_counter()
            plan = compile_model(path, dims=dims, passes=passes).plan
            compiled = time.perf_counter() - began
            arena = sum(plan["summary"]["peak_bytes"].values())
            report = run_plan(path, plan, dims=dims)
            errors = [o.difference for o in report.outputs]
            seconds = {**report.seconds, "compile": compiled}
            seconds["total"] += compiled
            cells = [
                f"{path.parent.name}/{path.stem}",
                str(devices),
                "match" if report.matches else f"MISMATCH: {report.divergence}",
                f"{max(e.max_abs for e in errors):.2g}",
                f"{max(e.max_rel for e in errors):.2g}",
                *(
                    f"{seconds.get(k, 0.0):.2f}"
                    for k in ("compile", "load", "reference", "planned run", "total")
                ),
                str(report.kernels),
                f"{arena / 2**20:.1f}",
            ]
            table.add_row(*cells)
            lines.append("| " + " | ".join(cells) + " |")
    Console(width=200).print(table)
    machine = (
        f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}"
    )
    header = (
        f"# run_plans: last results\n\n{date.today()} on {machine}; "
        "`python benchmarks/run_plans.py`; tolerance rtol 1e-4, atol 1e-5 (fp32)\n\n"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(header + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
