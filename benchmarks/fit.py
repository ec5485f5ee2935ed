"""Benchmark: the fit search against exhaustive enumeration, and proof that its plans run.

For each model and budget (0.75x, 0.5x, 0.25x and 0.1x of the default plan's
activation peak, summed over the regions of the device as ``rewrites.py`` does):
the search's chosen plan (its activation peak, modelled latency, options, compiles
and CPU seconds), or its one-line reason when nothing fits; the best modelled
latency among every combination of every option (screened compiles, the best one
compiled again in full), and the ratio; ``tierplan check`` and ``tierplan run`` of
the chosen plan. Also the time of ``tierplan fit`` without a budget (the frontier).

Usage: ``python benchmarks/fit.py [--models gpt2_seq1024 resnet50] [--out benchmarks/results/fit.md]``
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("gpt2_seq1024", "resnet50")
FACTORS = (0.75, 0.5, 0.25, 0.1)


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


def main() -> None:
    from tierplan.compiler import compile_model, validate_plan
    from tierplan.compiler.errors import TierplanError
    from tierplan.compiler.execution import run_plan
    from tierplan.compiler.fitting import Budget, Search, exhaustive
    from tierplan.compiler.fitting.budget import device_totals
    from tierplan.compiler.fitting.explain import why_not
    from tierplan.compiler.frontend import load_model
    from tierplan.compiler.target import load_target

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/fit.md")
    args = parser.parse_args()
    headers = [
        "model", "budget", "MiB", "chosen act. MiB", "latency ms", "exhaustive best ms",
        "ratio", "options", "compiles", "fit CPU s", "check", "run",
    ]  # fmt: skip
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    notes = []
    table = Table(title="fit: search vs exhaustive enumeration")
    for header in headers:
        table.add_column(header)
    target = load_target(None)
    for stem in args.models:
        path = ROOT / "models" / "real" / f"{stem}.onnx"
        default = compile_model(path)
        assert default.evaluation is not None
        peak = max(device_totals(default.evaluation.activation_peak_bytes).values())
        model = load_model(path)
        began = time.perf_counter()
        cpu = _cpu()
        frontier_search = Search(model, target, Budget())
        frontier_search.run()
        notes.append(
            f"`tierplan fit {stem}` (no budget, frontier): {len(frontier_search.points)} compiles, "
            f"{_cpu() - cpu:.1f} CPU s, {time.perf_counter() - began:.1f} s wall"
        )
        every = Search(model, target, Budget())
        cpu = _cpu()
        points = exhaustive(every)
        notes.append(
            f"{stem}: exhaustive enumeration of {len(points)} combinations in {_cpu() - cpu:.0f} CPU s"
        )
        for factor in FACTORS:
            budget = Budget(device=int(peak * factor))
            fitting = [
                p
                for p in points
                if not p.error and budget.excess(p.peak_bytes, p.activation_bytes) <= 1
            ]
            best_ms = "-"
            if fitting:
                best = min(fitting, key=lambda p: (p.latency_s, p.choice))
                full, _ = every.compile(best.choice, every.full)
                chosen_best = (
                    full if budget.excess(full.peak_bytes, full.activation_bytes) <= 1 else best
                )
                best_ms = f"{chosen_best.latency_s * 1e3:.3f}"
            cpu = _cpu()
            search = Search(model, target, budget)
            found = search.run()
            seconds = _cpu() - cpu
            cells = [stem, f"{factor}x", f"{budget.device / 2**20:.1f}" if budget.device else "-"]
            if found.chosen is None or found.result is None:
                assert found.closest is not None
                nearest = min(found.points, key=lambda p: (p.excess, p.choice))
                reason = why_not(found.closest, budget, found.options(nearest), found.heaviest())
                cells += ["does not fit", "-", best_ms, "-", reason, str(len(found.points)),
                          f"{seconds:.1f}", "-", "-"]  # fmt: skip
            else:
                chosen = found.chosen
                ratio = f"{chosen.latency_s * 1e3 / float(best_ms):.3f}" if best_ms != "-" else "-"
                with tempfile.TemporaryDirectory() as folder:
                    plan_path, _ = found.result.write(folder)
                    violations = validate_plan(found.result.plan, found.result.ir)
                    try:
                        report = run_plan(path, plan_path)
                        ran = "match" if report.matches else f"MISMATCH: {report.divergence}"
                    except TierplanError as error:
                        ran = f"error: {error}"
                cells += [
                    f"{chosen.activation_peak / 2**20:.1f}",
                    f"{chosen.latency_s * 1e3:.3f}",
                    best_ms,
                    ratio,
                    found.options(chosen),
                    str(len(found.points)),
                    f"{seconds:.1f}",
                    "valid" if not violations else f"{len(violations)} violations",
                    ran,
                ]
            table.add_row(*cells)
            lines.append("| " + " | ".join(cells) + " |")
            print(" | ".join(cells), file=sys.stderr, flush=True)
    Console(width=240).print(table)
    load = os.getloadavg()
    machine = (
        f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}; load average at the end {load[0]:.1f} / {load[1]:.1f} / "
        f"{load[2]:.1f} (1/5/15 min; the machine is shared)"
    )
    header = (
        f"# fit: last results\n\n{date.today()} on {machine}; `python benchmarks/fit.py`.\n\n"
        "Budget: the activations of a device (all its tiers), a share of the default plan's. "
        "exhaustive best: the fastest of every combination that fits (screened compiles, the "
        "best compiled again in full); ratio: the search's chosen latency over it. check: "
        "the validator `tierplan check` applies, against the compiled (rewritten) IR; run: "
        "`tierplan run` against onnxruntime (rtol 1e-4). CPU seconds, not wall: the machine "
        "is shared.\n\n"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        header + "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    )


if __name__ == "__main__":
    main()
