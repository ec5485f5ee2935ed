"""The command line of fitting: ``compile --budget`` and ``tierplan fit``, and pool sizing flags.

``cli.py`` calls :func:`add_pool_options` and :func:`add_fit_parser` to declare the
flags, :func:`compile_within_budget` when ``compile`` has a ``--budget``, and
:func:`fit_command` for ``tierplan fit``. Nothing is written when nothing fits:
the :class:`DoesNotFit` error (exit 1) carries the one-line reason.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from tierplan.compiler.api import CompileResult, default_pipeline
from tierplan.compiler.errors import InputError, PassFailure
from tierplan.compiler.fitting.budget import Budget, parse_budget
from tierplan.compiler.fitting.explain import why_not
from tierplan.compiler.fitting.search import (
    MAX_COMPILES,
    OBJECTIVES,
    FitResult,
    Point,
    Search,
    frontier,
)
from tierplan.compiler.frontend import load_model, parse_dims, parse_input_shapes
from tierplan.compiler.inputs import MAX_DEVICES, integer_text
from tierplan.compiler.pass_manager import load_plugin
from tierplan.compiler.pools import (
    DEFAULT_HEADROOM,
    DEFAULT_WARN_AT,
    add_pool_sizing,
    check_margins,
    pool_line,
)
from tierplan.compiler.report.frontier import write_frontier_png
from tierplan.compiler.report.progress import compile_progress, progress_wanted
from tierplan.compiler.report.units import human_bytes
from tierplan.compiler.target import load_target


class DoesNotFit(PassFailure):
    """No combination of options fits the budget (exit 1)."""


def add_pool_options(command: argparse.ArgumentParser) -> None:
    """``--headroom`` and ``--warn-at``: the pool sizing written in the summary."""
    command.add_argument(
        "--headroom",
        type=float,
        default=DEFAULT_HEADROOM,
        help="margin of the pool to preallocate per device and tier, over the plan's peak",
    )
    command.add_argument(
        "--warn-at",
        type=float,
        default=DEFAULT_WARN_AT,
        help="share of the pool at which a runtime should warn",
    )


def add_budget_option(command: argparse.ArgumentParser) -> None:
    """``--budget``: per device (SIZE) and/or per tier (TIER=SIZE)."""
    command.add_argument(
        "--budget",
        metavar="SIZE|TIER=SIZE,...",
        help="activation bytes each device may hold (all its tiers; weights not counted) "
        "and/or a tier's bytes (weights included), e.g. 48MiB or L2=6MiB,DDR=2GiB: the "
        "fastest plan within it is chosen",
    )


def add_fit_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    model_options: Callable[[argparse.ArgumentParser], None],
    formatter: type[argparse.HelpFormatter],
) -> None:
    """The ``fit`` command."""
    fit_cmd = commands.add_parser(
        "fit",
        help="search the options (order, attention chunks, tiers, devices, rewrites) for the "
        "fastest plan within a budget; print the Pareto frontier",
        formatter_class=formatter,
    )
    fit_cmd.add_argument("model", type=Path, help="the .onnx file")
    fit_cmd.add_argument(
        "-o", "--output", type=Path, help="output folder (default: ./<stem>.tierplan/)"
    )
    add_budget_option(fit_cmd)
    fit_cmd.add_argument("--plot", type=Path, metavar="FILE.png", help="draw the frontier")
    fit_cmd.add_argument("--target", default="ascend-like", help="preset name or TOML file")
    fit_cmd.add_argument(
        "--devices", metavar="K|auto", help="fix the device count (default: part of the search)"
    )
    fit_cmd.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default="latency",
        help="what the chosen plan minimizes: its modelled latency, or (pipelines over "
        "several devices) the slowest stage's time, which sets the throughput",
    )
    fit_cmd.add_argument(
        "--max-compiles",
        type=int,
        default=MAX_COMPILES,
        help="compiles the search may make (a count: results never depend on the clock)",
    )
    fit_cmd.add_argument(
        "--plugin", action="append", default=[], metavar="MODULE", help="load a plugin first"
    )
    model_options(fit_cmd)
    add_pool_options(fit_cmd)
    fit_cmd.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")


def search_of(args: argparse.Namespace, on_status: Callable[[str], None] | None = None) -> Search:
    """The search the flags describe (model, target, budget, devices, compile count)."""
    check_margins(args.headroom, args.warn_at)
    budget = parse_budget(args.budget) if args.budget is not None else Budget()
    devices = None
    if args.devices not in (None, "auto"):
        devices = [integer_text(str(args.devices), "--devices", 1, MAX_DEVICES)]
    count = getattr(args, "max_compiles", MAX_COMPILES)
    if count < 1:
        raise InputError(f"--max-compiles must be at least 1, got {count}")
    target = load_target(args.target)
    model = load_model(
        args.model, dims=parse_dims(args.dim), shapes=parse_input_shapes(args.input_shape)
    )
    objective = getattr(args, "objective", "latency")
    return Search(model, target, budget, devices, count, on_status, objective)


def fitted(args: argparse.Namespace) -> tuple[FitResult, CompileResult]:
    """Run the search (a spinner names the combination being compiled); the chosen plan
    with ``summary.fit`` and ``summary.pools`` in it, or :class:`DoesNotFit` with the reason."""
    with compile_progress(progress_wanted(args.quiet), 0) as hooks:
        found = search_of(args, hooks.on_status).run()
    if found.chosen is None or found.result is None:
        if found.closest is None:
            errors = sorted({p.error for p in found.points if p.error})
            raise DoesNotFit(
                f"does not fit: no combination compiled: {errors[0] if errors else '?'}"
            )
        nearest = min(found.points, key=lambda p: (p.excess, p.choice))
        reason = why_not(found.closest, found.budget, found.options(nearest), found.heaviest())
        raise DoesNotFit(f"does not fit: {reason}")
    plan = found.result.plan
    plan["summary"]["fit"] = fit_summary(found)
    add_pool_sizing(plan, found.result.target, args.headroom, args.warn_at)
    return found, found.result


def fit_summary(found: FitResult) -> dict[str, Any]:
    """``summary.fit`` of the plan (``docs/plan-summary.md``): the budget, the choice, the
    frontier of the compiled combinations."""
    assert found.chosen is not None
    chosen = found.chosen

    def entry(point: Point) -> dict[str, Any]:
        return {
            "options": found.options(point),
            "activation_peak_bytes": point.activation_peak,
            "device_peak_bytes": point.device_peak,
            "latency_s": point.latency_s,
            "slowest_stage_s": point.stage_s,
            "extra_flops": found.extra_flops(point),
            "numerics": "exact" if point.exact else "16-bit",
            "fits": point.fits,
            "chosen": point.choice == chosen.choice,
        }

    front = frontier([*(p for p in found.points if p.choice != chosen.choice), chosen])
    return {
        "budget": found.budget.spelled,
        "objective": found.objective,
        "chosen": found.options(chosen),
        "compiles": len(found.points),
        "combinations": _combinations(found),
        "frontier": [entry(p) for p in front],
    }


def _combinations(found: FitResult) -> int:
    count = 1
    for knob in found.knobs:
        count *= len(knob.options)
    return count


def compile_within_budget(args: argparse.Namespace) -> CompileResult:
    """``compile --budget``: the fastest plan within the budget (see :func:`fitted`)."""
    if args.passes != ",".join(default_pipeline()):
        raise InputError("--budget chooses the passes itself; drop --passes")
    return fitted(args)[1]


def frontier_table(found: FitResult, fit: dict[str, Any]) -> Table:
    """The frontier as printed by ``tierplan fit``; the chosen plan marked."""
    table = Table(
        title=f"Pareto frontier: {fit['compiles']} of {fit['combinations']} combinations compiled; "
        f"budget {fit['budget']}"
    )
    throughput = fit["objective"] == "throughput"
    table.add_column("")
    columns = ["act. peak", "device peak", "latency ms", "extra FLOPs", "numerics", "fits"]
    if throughput:
        columns.insert(3, "slowest stage ms")
    for column in columns:
        table.add_column(column, justify="right")
    table.add_column("options")
    for entry in fit["frontier"]:
        cells = [
            "*" if entry["chosen"] else "",
            human_bytes(entry["activation_peak_bytes"]),
            human_bytes(entry["device_peak_bytes"]),
            f"{entry['latency_s'] * 1e3:.3f}",
            f"{entry['extra_flops'] / max(1, found.baseline_flops):+.2%}",
            entry["numerics"],
            "yes" if entry["fits"] else "no",
            entry["options"],
        ]
        if throughput:
            cells.insert(4, f"{entry['slowest_stage_s'] * 1e3:.3f}")
        table.add_row(*cells)
    table.caption = (
        "* chosen: the fastest that fits (--objective). act. peak: the largest device's activations, all its "
        "tiers (what --budget SIZE limits); device peak: its total, weights included"
    )
    return table


def fit_command(args: argparse.Namespace, console: Console) -> int:
    """``tierplan fit``: search, print the frontier, write the chosen plan (and the plot)."""
    for plugin in args.plugin:
        load_plugin(plugin)
    found, result = fitted(args)
    fit = result.plan["summary"]["fit"]
    out_dir = args.output or Path(f"{args.model.stem}.tierplan")
    plan_path, model_path = result.write(out_dir)
    if args.plot is not None:
        write_frontier_png(fit, f"{args.model.name}: budget {fit['budget']}", args.plot)
    if args.quiet:
        return 0
    console.print(frontier_table(found, fit))
    evaluation = result.evaluation
    assert evaluation is not None
    stage = ""
    if fit["objective"] == "throughput":
        stage = f"slowest stage {1e3 / evaluation.throughput:.3f} ms ({evaluation.throughput:.1f} inferences/s); "
    console.print(
        f"chosen: {fit['chosen']}; modelled latency {evaluation.latency_s * 1e3:.3f} ms; "
        + stage
        + pool_line(result.plan["summary"]["pools"], human_bytes)
    )
    console.print(
        f"wrote {plan_path} and {model_path}" + (f" and {args.plot}" if args.plot else "")
    )
    return 0
