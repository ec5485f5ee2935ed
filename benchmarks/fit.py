"""Benchmark: `tierplan fit` against an enumeration of the options, its time, and its plans run.

For each model and budget (0.75x, 0.5x, 0.25x and 0.1x of the default plan's
activation peak, summed over the regions of the device as ``rewrites.py`` does):
``tierplan fit --budget`` as a user runs it (a subprocess: its CPU seconds,
its choice and modelled latency from ``summary.fit``; or, when nothing fits, that it
exits 1 with one line and writes no file); the best modelled latency among the
enumerated combinations that fit (screened like the search's compiles, the best
one compiled again in full), chosen by the search's own rule (an exact plan when
one fits, 16-bit only when none does); their ratio; ``tierplan check`` and
``tierplan run`` of the chosen plans (``--run`` budgets). Also ``tierplan fit``
without a budget (the frontier).

The enumeration covers every combination of the knobs' options except those
``RESTRICTED`` drops, each for the reason written beside it (recorded with the
results); 16-bit combinations are enumerated only when no exact one fits a budget
(the rule above never chooses them otherwise).

Usage: ``python benchmarks/fit.py [--models gpt2_seq1024 resnet50] [--factors 0.75 0.5]
[--run 0.5 0.1] [--out benchmarks/results/fit.md]``
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("gpt2_seq1024", "resnet50")
FACTORS = (0.75, 0.5, 0.25, 0.1)
EXACT = "float32"

# Options left out of the enumeration (model -> knob -> labels kept, and why; the
# figures are each option's screened compile alone, from the defaults); the knobs a
# model does not have (no attention in ResNet-50) are dropped by the search.
RESTRICTED: dict[str, dict[str, tuple[tuple[str, ...], str]]] = {
    "resnet50": {},  # every combination: a screened compile takes 0.4 s
    "gpt2_seq1024": {
        "order": (
            ("memory",),
            "the `onnx` order gave the very plan of `memory` (same peak and latency) alone "
            "and combined with sequence and attention chunks",
        ),
        "reuse": (
            ("on",),
            "`off` only removes views and in-place writes: alone 112 MiB instead of 67 and slower",
        ),
        "devices": (
            ("1",),
            "a second device does not split an operator, so the largest device keeps the "
            "heaviest operator's activations (alone: the same 67.2 MiB), and adds "
            "transfers to the latency; the budgets here limit activations, not weights",
        ),
        "recompute": (
            ("off",),
            "alone it fails (the peak is one operator's own tensors, which recomputation "
            "does not shrink); not measured in combination",
        ),
        "attention": (
            ("off", "rows/2", "rows/8", "rows/32"),
            "a grid of chunk counts (rows/4 and rows/16 left out: the machine's time); "
            "`online` chunks: alone, 54 MiB and slower than every `rows` count (42-47 MiB)",
        ),
    },
}


@dataclass
class Started:
    """A ``tierplan`` subprocess started (the fits run beside the enumeration)."""

    process: subprocess.Popen[bytes]
    folder: Path


@dataclass
class Done:
    """A finished ``tierplan`` subprocess: exit status, output, CPU seconds (its wall
    time is not measured: it ran beside others)."""

    returncode: int
    stdout: str
    stderr: str
    cpu: float


def _start(folder: Path, *args: str) -> Started:
    """Start ``tierplan ARGS`` (this tree's code), its output into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "stdout").open("wb") as out, (folder / "stderr").open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "tierplan.compiler.cli", *args], stdout=out, stderr=err
        )
    return Started(process, folder)


def _finish(started: Started) -> Done:
    """Wait for it; its own CPU seconds (user + system) from the kernel's accounting."""
    _, status, usage = os.wait4(started.process.pid, 0)
    started.process.returncode = os.waitstatus_to_exitcode(status)
    return Done(
        started.process.returncode,
        (started.folder / "stdout").read_text(),
        (started.folder / "stderr").read_text(),
        usage.ru_utime + usage.ru_stime,
    )


def _cli(folder: Path, *args: str) -> Done:
    return _finish(_start(folder, *args))


def main() -> None:
    from tierplan.compiler import compile_model
    from tierplan.compiler.fitting import Budget, Search
    from tierplan.compiler.fitting.budget import device_totals
    from tierplan.compiler.fitting.search import Point
    from tierplan.compiler.frontend import load_model
    from tierplan.compiler.target import load_target

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--factors", nargs="+", type=float, default=list(FACTORS))
    parser.add_argument(
        "--run", nargs="*", type=float, default=[0.5, 0.1], help="budgets checked and run"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/fit.md")
    args = parser.parse_args()
    headers = [
        "model", "budget", "MiB", "fit's choice", "act. MiB", "latency ms", "enumerated best",
        "best ms", "ratio", "fit CPU s", "check", "run",
    ]  # fmt: skip
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    notes = []
    table = Table(title="fit: search vs enumeration")
    for header in headers:
        table.add_column(header)
    target = load_target(None)
    for stem in args.models:
        path = ROOT / "models" / "real" / f"{stem}.onnx"
        default = compile_model(path)
        assert default.evaluation is not None
        peak = max(device_totals(default.evaluation.activation_peak_bytes).values())
        work = Path(tempfile.mkdtemp(prefix="fit-bench-"))
        front = _start(work / "frontier", "fit", str(path), "-o", str(work / "frontier/out"), "-q")
        budgets = [Budget(device=int(peak * factor)) for factor in args.factors]
        fits = [
            _start(
                work / f"{factor}",
                "fit",
                str(path),
                "--budget",
                str(budget.device),
                "-o",
                str(work / f"{factor}/out"),
                "-q",
            )
            for factor, budget in zip(args.factors, budgets, strict=True)
        ]
        model = load_model(path)
        every = Search(model, target, Budget())
        cpu = time.process_time()
        restricted = RESTRICTED.get(stem, {})
        exact = enumerate_points(every, restricted, precision=False)
        sixteen: list[Point] = []
        if any(not _fitting(exact, budget) for budget in budgets):
            sixteen = enumerate_points(every, restricted, precision=True)
        enumerated = len(exact) + len(sixteen)
        done = _finish(front)
        assert done.returncode == 0, done.stderr
        plan = json.loads((front.folder / "out/plan.json").read_text())
        fit = plan["summary"]["fit"]
        notes.append(
            f"`tierplan fit {stem}` (no budget, the frontier): {fit['compiles']} of "
            f"{fit['combinations']} combinations compiled, {done.cpu:.1f} s CPU"
        )
        notes += [
            f"{stem}, {knob}: only {', '.join(kept)}: {why}"
            for knob, (kept, why) in restricted.items()
        ]
        notes.append(
            f"{stem}: {enumerated} of {_count(every.knobs)} combinations enumerated "
            f"({len(exact)} exact, {len(sixteen)} 16-bit) in {time.process_time() - cpu:.0f} "
            f"CPU s; knobs {', '.join(k.name + ' ' + str(len(k.options)) for k in every.knobs)}"
        )
        for factor, budget, started in zip(args.factors, budgets, fits, strict=True):
            fitting = _fitting(exact, budget) or _fitting(sixteen, budget)
            best_cells = ["nothing fits", "-"]
            best_ms = None
            if fitting:
                best = min(fitting, key=lambda p: (p.latency_s, p.choice))
                full, _ = every.compile(best.choice, every.full)
                kept = full if budget.excess(full.peak_bytes, full.activation_bytes) <= 1 else best
                best_ms = kept.latency_s * 1e3
                numerics = "" if best.exact else " (16-bit)"
                best_cells = [_options(every, best) + numerics, f"{best_ms:.3f}"]
            cells = [stem, f"{factor}x", f"{(budget.device or 0) / 2**20:.1f}"]
            cells += fit_row(path, started, best_cells, best_ms, factor in args.run)
            table.add_row(*cells)
            lines.append("| " + " | ".join(cells) + " |")
            print(" | ".join(cells), file=sys.stderr, flush=True)
        shutil.rmtree(work)
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
        "fit's choice: `tierplan fit --budget` (a subprocess; its own CPU seconds, user + "
        "system: the fits of a model run at once, beside the enumeration, on a shared "
        "machine, so wall time is not recorded). "
        "enumerated best: the fastest combination that fits among those enumerated (screened, "
        "then compiled in full), exact numerics first as fit chooses; ratio: fit's latency "
        "over it. check: `tierplan check`; run: `tierplan run` against onnxruntime (rtol "
        "1e-4; cosine >= 0.999 for 16-bit plans). Nothing fits: fit's exit status and its "
        "one line, and whether it wrote a file.\n\n"
        "The enumeration: every combination of the options but those the notes below "
        "leave out (each with its reason); 16-bit combinations only when no exact one fits "
        "some budget (fit chooses an exact plan whenever one fits).\n\n"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        header + "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    )


def enumerate_points(
    search: Any, restricted: dict[str, tuple[tuple[str, ...], str]], precision: bool
) -> list[Any]:
    """The screened points of every combination ``restricted`` keeps, exact ones
    (``precision`` False) or 16-bit ones."""
    ranges = []
    for knob in search.knobs:
        kept, _ = restricted.get(knob.name, (None, ""))
        indices = [i for i, o in enumerate(knob.options) if kept is None or o.label in kept]
        if knob.name == "precision":
            indices = [i for i in indices if (knob.options[i].label != EXACT) == precision]
        ranges.append(indices)
    choices = list(itertools.product(*ranges))
    search.expect(choices)
    return [search.point(choice) for choice in choices]


def _fitting(points: list[Any], budget: Any) -> list[Any]:
    return [
        p for p in points if not p.error and budget.excess(p.peak_bytes, p.activation_bytes) <= 1
    ]


def _count(knobs: list[Any]) -> int:
    count = 1
    for knob in knobs:
        count *= len(knob.options)
    return count


def _options(search: Any, point: Any) -> str:
    changed = [
        f"{knob.name}={label}"
        for knob, index, label in zip(search.knobs, point.choice, point.labels, strict=True)
        if index
    ]
    return ", ".join(changed) or "defaults"


def fit_row(
    path: Path, started: Started, best_cells: list[str], best_ms: float | None, run: bool
) -> list[str]:
    """The cells of a ``tierplan fit --budget`` started on ``path`` (and check/run when ``run``)."""
    done = _finish(started)
    out = started.folder / "out"
    if done.returncode != 0:
        stderr = done.stderr.strip().splitlines()
        written = out.exists() and any(out.iterdir())
        said = (
            f"exit {done.returncode}, {len(stderr)} line(s), {'FILES' if written else 'no file'}: "
        )
        choice = said + (stderr[-1].removeprefix("tierplan: error: ") if stderr else "")
        return [choice, "-", "-", *best_cells, "-", f"{done.cpu:.1f}", "-", "-"]
    plan = json.loads((out / "plan.json").read_text())
    fit = plan["summary"]["fit"]
    chosen: dict[str, Any] = next(e for e in fit["frontier"] if e["chosen"])
    latency_ms = plan["summary"]["latency_s"] * 1e3
    ratio = f"{latency_ms / best_ms:.3f}" if best_ms else "-"
    checked = ran = "-"
    if run:
        check = _cli(started.folder / "check", "check", str(path), str(out / "plan.json"))
        checked = "valid" if check.returncode == 0 else f"exit {check.returncode}"
        executed = _cli(started.folder / "run", "run", str(path), str(out / "plan.json"))
        last = (
            executed.stdout.strip().splitlines()[-1:] or executed.stderr.strip().splitlines()[-1:]
        )
        said = last[0] if last else ""
        ran = said if executed.returncode == 0 else f"exit {executed.returncode}: {said}"
    return [
        fit["chosen"],
        f"{chosen['activation_peak_bytes'] / 2**20:.1f}",
        f"{latency_ms:.3f}",
        *best_cells,
        ratio,
        f"{done.cpu:.1f}",
        checked,
        ran,
    ]


if __name__ == "__main__":
    main()
