"""The ``tierplan`` command line.

Commands: ``compile`` (model -> plan.json + annotated model + summary table),
``check`` (validate any plan file against its model), ``run`` (execute a model inside
its plan's memory and compare with onnxruntime), ``passes`` and ``targets``
(list what is registered and shipped), and the views of a plan: ``report`` (HTML),
``plot`` (PNG timeline), ``inspect`` (terminal tables).

Exit codes: 0 success; 1 the plan is invalid or cannot be made; 2 bad usage or
bad input; 3 a bug in tierplan or in a plugin. Errors are one line on stderr;
set ``TIERPLAN_DEBUG=1`` to get the traceback of an internal error.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Sequence
from difflib import get_close_matches
from importlib.metadata import version
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.table import Table
from tierplan.compiler.allocators import ALLOCATORS, requests, simulate
from tierplan.compiler.api import CompileResult, compile_model, default_pipeline
from tierplan.compiler.errors import InputError, PipelineError, TierplanError
from tierplan.compiler.evaluation import ACTIVATION_KINDS
from tierplan.compiler.execution import run_plan
from tierplan.compiler.files import write_atomically
from tierplan.compiler.fitting.command import (
    add_budget_option,
    add_fit_parser,
    add_pool_options,
    compile_within_budget,
    fit_command,
)
from tierplan.compiler.frontend import load_model, parse_dims, parse_input_shapes, read_model_proto
from tierplan.compiler.inputs import escape_controls
from tierplan.compiler.packing import SOLVERS, SolveReport, place, solve
from tierplan.compiler.packing.clock import Deadline
from tierplan.compiler.packing.exact import region_budget
from tierplan.compiler.packing.traces import read_trace, write_trace
from tierplan.compiler.pass_manager import (
    load_plugin,
    option_types,
    parse_pipeline,
    registered_passes,
    type_text,
    with_options,
)
from tierplan.compiler.plan import (
    Plan,
    PlanBuffer,
    existing_planned_model,
    is_rewritten,
    memory_summary,
    planned_model_path,
    read_plan,
    region_key,
)
from tierplan.compiler.pools import add_pool_sizing, check_margins, pool_line
from tierplan.compiler.report import inspect
from tierplan.compiler.report.compare import render_comparison
from tierplan.compiler.report.data import PlanView
from tierplan.compiler.report.html import render_html
from tierplan.compiler.report.plot import write_timeline_png
from tierplan.compiler.report.progress import compile_progress, progress_wanted, solve_progress
from tierplan.compiler.report.source import op_sources, plan_target, view_of_plan_file
from tierplan.compiler.report.terminal import EscapingFormatter, TerminalConsole
from tierplan.compiler.report.units import human_bytes, traffic_text
from tierplan.compiler.symbolic.command import check_every_binding, compile_ranged, read_plan_at
from tierplan.compiler.symbolic.dims import DimSpecs, parse_dim_specs
from tierplan.compiler.target import load_target, parse_size, preset_names
from tierplan.compiler.validate import validate_plan

log = logging.getLogger("tierplan")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default once: not when its help already says it, nor when it is
    None, False or empty (nothing worth printing)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "(default" in text or action.default in (None, False, [], argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tierplan",
        description="Memory-planning compiler for AI accelerators: ONNX model in, memory plan out.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('tierplan')}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    compile_cmd = commands.add_parser(
        "compile",
        help="plan a model: write plan.json and the annotated model, print a summary",
        formatter_class=_HelpFormatter,
    )
    compile_cmd.add_argument("model", type=Path, help="the .onnx file (weights are never read)")
    compile_cmd.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="output folder (default: ./<model stem>.tierplan/)",
    )
    _model_options(compile_cmd)
    _pipeline_options(compile_cmd)
    compile_cmd.add_argument(
        "--solver-report",
        action="store_true",
        help="print, per region, the exact packing's peak, bound, gap, status and time",
    )
    compile_cmd.add_argument(
        "--dump-after",
        action="append",
        default=[],
        metavar="PASS",
        help="dump the IR after this pass, or 'all' (repeatable)",
    )
    compile_cmd.add_argument(
        "--dump-dir", type=Path, default=None, help="folder for IR dumps (default: OUTPUT/ir)"
    )
    compile_cmd.add_argument(
        "--verify-each", action="store_true", help="check the IR invariants after every pass"
    )
    compile_cmd.add_argument(
        "--time-passes", action="store_true", help="print the time each pass took"
    )
    compile_cmd.add_argument(
        "--graphml", action="store_true", help="also write the planned IR as GraphML"
    )
    compile_cmd.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    compile_cmd.add_argument(
        "-v", "--verbose", action="store_true", help="also print every pass's notes"
    )
    add_budget_option(compile_cmd)
    add_pool_options(compile_cmd)
    add_fit_parser(commands, _model_options, _HelpFormatter)

    check_cmd = commands.add_parser(
        "check",
        help="validate a plan file against its model (exit 0 valid, 1 invalid, 2 bad input)",
        formatter_class=_HelpFormatter,
    )
    check_cmd.add_argument("model", type=Path, help="the .onnx file the plan was made for")
    check_cmd.add_argument("plan", type=Path, help="the plan.json file")
    _planned_model_option(check_cmd)
    _model_options(check_cmd, dims_help="(default: the plan's 'dims')")

    passes_cmd = commands.add_parser("passes", help="list the registered passes")
    passes_cmd.add_argument(
        "--plugin", action="append", default=[], metavar="MODULE", help="load a plugin first"
    )
    commands.add_parser("targets", help="list the shipped target presets")
    _run_parser(commands)
    _view_parsers(commands)
    _pack_parser(commands)
    _simulate_parser(commands)
    return parser


def _pipeline_options(command: argparse.ArgumentParser) -> None:
    """Options that choose how a model is compiled (``compile``, and ``run`` without a plan)."""
    command.add_argument("--target", default="ascend-like", help="preset name or TOML file")
    command.add_argument(
        "--passes",
        default=",".join(default_pipeline()),
        help="pipeline: pass names, options in braces, e.g. 'schedule,liveness,pack,evaluate'",
    )
    _solver_options(command, default=None)
    command.add_argument(
        "--devices",
        metavar="K|auto",
        help="split over K devices, or the fewest whose memory fits (partition{devices=...})",
    )
    command.add_argument(
        "--partition",
        choices=("pipeline", "graph"),
        help="contiguous pipeline stages, or any operator anywhere (partition{mode=...})",
    )
    command.add_argument(
        "--balance",
        choices=("memory", "time"),
        help="what pipeline stages balance first (partition{balance=...})",
    )
    command.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a module or .py file that registers passes (repeatable)",
    )


def _solver_options(command: argparse.ArgumentParser, default: str | None) -> None:
    """``--solver``, ``--solver-budget``, ``--workers``, ``--time-limit``: None leaves the
    pack pass's own."""
    command.add_argument(
        "--solver",
        choices=SOLVERS,
        default=default,
        help="offset engine after the heuristics: greedy (none), search, cpsat or auto (pack{solver=...})",
    )
    command.add_argument(
        "--solver-budget",
        type=float,
        default=None,
        metavar="UNITS",
        help="deterministic work per 1,000 buffers of a region, at least this much per region "
        "(CP-SAT deterministic seconds) (pack{budget=...})",
    )
    command.add_argument(
        "--workers",
        type=int,
        default=None,
        help="CP-SAT threads, deterministic too; above 1 CP-SAT bounds the work loosely and "
        "its wall-clock safety net may fire (reported time-limited) (pack{workers=...})",
    )
    command.add_argument(
        "--time-limit",
        type=float,
        default=None,
        metavar="SECONDS",
        help="solve for this long by the wall clock instead of the deterministic budget and "
        "keep the best plan found; the result is marked time-limited (it depends on the "
        "machine) (pack{time_limit=...})",
    )


def _pack_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pack_cmd = commands.add_parser(
        "pack",
        help="pack a lifetime trace (MiniMalloc CSV or 'size first last' lines) and write offsets",
        formatter_class=_HelpFormatter,
    )
    pack_cmd.add_argument("trace", type=Path, help="the trace file")
    pack_cmd.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="output file (default: <stem>.packed<suffix>)",
    )
    _solver_options(pack_cmd, default="auto")
    pack_cmd.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")


def _pack(args: argparse.Namespace, console: Console) -> int:
    began = time.perf_counter()  # a time limit counts reading the trace too
    trace = read_trace(args.trace)
    # The pack pass's options (and their checks and defaults) apply to traces too.
    pack = parse_pipeline(_with_pack_options(args, "pack"))[0]
    solver, budget, workers, time_limit = (
        getattr(pack, name) for name in ("solver", "budget", "workers", "time_limit")
    )
    items = [item for item in trace.items if item.size > 0]
    title = f"packing {len(items)} buffers ({solver})"
    with solve_progress(progress_wanted(args.quiet), title) as on_progress:
        units = region_budget(budget, len(items))
        deadline = Deadline(began + time_limit) if time_limit else None
        known = place(items, deadline=deadline)
        placement, report = solve(items, known, solver, units, workers, on_progress, deadline)
    offsets = {item.key: placement.offsets.get(item.key, 0) for item in trace.items}
    output = args.output or args.trace.with_name(f"{args.trace.stem}.packed{args.trace.suffix}")
    write_trace(output, trace, offsets)
    if not args.quiet:
        console.print(_solve_table({str(args.trace.name): report}, "packing"))
        limited = ", time-limited: depends on the machine" if report.time_limited else ""
        console.print(
            f"arena {report.peak} bytes, bound {report.bound}, gap {report.gap:.2%} "
            f"({report.status}{limited}); wrote {output}"
        )
    return 0


def _planned_model_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--planned-model",
        type=Path,
        metavar="FILE.onnx",
        help="the rewritten model a compile wrote, when a pass rewrote the graph "
        "(default: <stem>.planned.onnx beside PLAN.json)",
    )


def _run_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run_cmd = commands.add_parser(
        "run",
        help="execute a model inside its plan's memory and compare with onnxruntime "
        "(exit 0 match, 1 mismatch, 2 bad input)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    run_cmd.add_argument("model", type=Path, help="the .onnx file the plan was made for")
    run_cmd.add_argument(
        "plan", type=Path, nargs="?", help="the plan.json file (default: compile the model first)"
    )
    _planned_model_option(run_cmd)
    run_cmd.add_argument(
        "--inputs",
        type=Path,
        metavar="FILE.npz",
        help="values of graph inputs (and of stripped weights) by name; the rest is seeded",
    )
    run_cmd.add_argument("--seed", type=int, default=0, help="seed of generated inputs and weights")
    run_cmd.add_argument("--rtol", type=float, default=1e-4, help="relative tolerance")
    run_cmd.add_argument("--atol", type=float, default=1e-5, help="absolute tolerance")
    run_cmd.add_argument(
        "--cosine",
        type=float,
        metavar="C",
        help="compare float outputs by cosine similarity >= C instead of --rtol/--atol "
        "(default: 0.999 for a plan whose activations are 16-bit, precision pass)",
    )
    _model_options(run_cmd, dims_help="(default: the plan's 'dims')")
    _pipeline_options(run_cmd)
    run_cmd.add_argument("-q", "--quiet", action="store_true", help="print only the verdict")


def _view_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report_cmd = commands.add_parser(
        "report",
        help="write a self-contained HTML report (memory timeline, consumers, latency)",
        formatter_class=_HelpFormatter,
    )
    report_cmd.add_argument(
        "source", type=Path, help="a model (.onnx, compiled first) or a plan.json"
    )
    report_cmd.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="the .html file (default: report.html beside a plan, <stem>.report.html for a model)",
    )
    report_cmd.add_argument(
        "--model", type=Path, default=None, help="the plan's model (default: found from the plan)"
    )
    report_cmd.add_argument(
        "--compare",
        type=Path,
        default=None,
        metavar="PLAN",
        help="a second plan.json (or model) to show beside the first: per-tier peaks and "
        "the tensors that moved, vanished or appeared",
    )
    _model_source_options(report_cmd)
    report_cmd.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    plot_cmd = commands.add_parser(
        "plot",
        help="draw the memory timeline of a plan as a PNG (needs tierplan[plot])",
        formatter_class=_HelpFormatter,
    )
    plot_cmd.add_argument("plan", type=Path, help="a plan.json, or a model (.onnx, compiled first)")
    plot_cmd.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="the .png file (default: timeline.png beside a plan, <stem>.timeline.png for a model)",
    )
    _model_source_options(plot_cmd)
    plot_cmd.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    inspect_cmd = commands.add_parser(
        "inspect",
        help="print a plan's summary, or one tensor's life, one step, one operator",
        formatter_class=_HelpFormatter,
    )
    inspect_cmd.add_argument(
        "plan", type=Path, help="a plan.json, or a model (.onnx, compiled first)"
    )
    asked = inspect_cmd.add_mutually_exclusive_group()
    asked.add_argument("--tensor", metavar="NAME", help="a tensor: producer, readers, steps, place")
    asked.add_argument(
        "--step", type=int, metavar="N", help="what is live at step N, biggest first"
    )
    asked.add_argument("--op", metavar="NAME", help="an operator: tensors, tiles and traffic")
    inspect_cmd.add_argument(
        "--model",
        type=Path,
        default=None,
        help="the plan's model, to cost an older plan whose ops carry no cost",
    )
    _model_source_options(inspect_cmd)


def _model_source_options(command: argparse.ArgumentParser) -> None:
    """``--target`` and the model options of a view command handed a model, not a plan."""
    command.add_argument("--target", default="ascend-like", help="preset or TOML (for a model)")
    _model_options(command)


def _model_options(command: argparse.ArgumentParser, dims_help: str = "") -> None:
    command.add_argument(
        "--dim",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=f"bind a symbolic dimension (repeatable) {dims_help}".strip(),
    )
    command.add_argument(
        "--input-shape",
        "--shape",
        action="append",
        default=[],
        metavar="NAME:D1,D2,...",
        help="shape of a tensor inference cannot give (repeatable)",
    )


def _summary_table(result: CompileResult) -> Table:
    evaluation = result.evaluation
    table = Table(title=f"tierplan: {result.model_path.name} on {result.target.name}")
    table.add_column("region")
    for column in (
        "capacity",
        "peak",
        "bound",
        "peak/bound",
        "act. peak",
        "act. bound",
        "act. ratio",
        "no reuse",
    ):
        table.add_column(column, justify="right")
    assert evaluation is not None  # _compile prints no table without evaluate
    for key, peak in evaluation.peak_bytes.items():
        bound = evaluation.lower_bound_bytes[key]
        tier = result.target.tier(key.split("/", 1)[1])
        act_peak = evaluation.activation_peak_bytes.get(key, 0)
        act_bound = evaluation.activation_lower_bound_bytes.get(key, 0)
        table.add_row(
            key,
            human_bytes(tier.capacity),
            human_bytes(peak),
            human_bytes(bound),
            f"{peak / bound:.3f}" if bound else "-",
            human_bytes(act_peak),
            human_bytes(act_bound),
            f"{act_peak / act_bound:.3f}" if act_bound else "-",
            human_bytes(evaluation.no_reuse_bytes.get(key, 0)),
        )
    table.caption = (
        f"{result.ir.operator_count()} operators; estimated latency {evaluation.latency_s * 1e3:.3f} ms; "
        f"traffic {traffic_text(evaluation.bytes_by_tier())}; "
        f"compiled in {result.seconds:.2f} s\nbound: max-live for this schedule; act.: the activation "
        "region above the weights; no reuse: every activation in its own bytes"
    )
    if len(evaluation.device_seconds) > 1:
        busy = ", ".join(f"{d}: {s * 1e3:.3f} ms" for d, s in evaluation.device_seconds.items())
        links = ", ".join(f"{k} {human_bytes(n)}" for k, n in evaluation.transfer_bytes.items())
        table.caption += (
            f"\nper device (operators + received transfers): {busy}; pipeline throughput "
            f"{evaluation.throughput:.1f}/s; transfers: {links or 'none'}"
        )
    return table


def _with_pass_options(pipeline: str, name: str, given: dict[str, object], flags: str) -> str:
    """``pipeline`` with the options ``given`` (None: not given) set on its pass ``name``:
    CLI flags are spellings of pass options, the pipeline stays the one source of truth."""
    options = {option: value for option, value in given.items() if value is not None}
    if not options:
        return pipeline
    passes = parse_pipeline(pipeline)
    if not any(item.name == name for item in passes):
        raise PipelineError(
            f"{flags} are options of the {name!r} pass, which the --passes pipeline lacks"
        )
    return ",".join(
        (with_options(item, options) if item.name == name else item).spelled() for item in passes
    )


def _with_partition_options(args: argparse.Namespace) -> str:
    """``--passes`` with ``--devices``/``--partition``/``--balance`` set on its partition pass."""
    given = {"devices": args.devices, "mode": args.partition, "balance": args.balance}
    return _with_pass_options(
        str(args.passes), "partition", given, "--devices, --partition and --balance"
    )


def _with_pack_options(args: argparse.Namespace, pipeline: str) -> str:
    """``pipeline`` with ``--solver``/``--solver-budget``/``--workers``/``--time-limit`` set
    on its pack pass."""
    if args.time_limit is not None and not 0 < args.time_limit < math.inf:
        raise InputError(
            f"--time-limit must be a positive number of seconds, got {args.time_limit}"
        )
    given = {
        "solver": args.solver,
        "budget": args.solver_budget,
        "workers": args.workers,
        "time_limit": args.time_limit,
    }
    flags = "--solver, --solver-budget, --workers and --time-limit"
    return _with_pass_options(pipeline, "pack", given, flags)


def _solve_table(reports: dict[str, SolveReport], title: str) -> Table:
    """One row per packed region: what the exact engines proved, and at what cost."""
    table = Table(title=title)
    table.add_column("region")
    for column in (
        "items",
        "exact items",
        "heuristic",
        "peak",
        "bound",
        "gap",
        "status",
        "seconds",
    ):
        table.add_column(column, justify="right")
    for region, report in reports.items():
        table.add_row(
            region,
            str(report.items),
            f"{report.exact_items} in {report.exact_sections} sections",
            human_bytes(report.heuristic_peak),
            human_bytes(report.peak),
            human_bytes(report.bound),
            f"{report.gap:.2%}",
            f"{report.status} ({report.solver}{', time-limited' if report.time_limited else ''})",
            f"{report.seconds:.2f}",
        )
    return table


def _compile(args: argparse.Namespace, console: Console) -> int:
    out_dir = args.output or Path(f"{args.model.stem}.tierplan")
    check_margins(args.headroom, args.warn_at)
    for plugin in args.plugin:
        load_plugin(plugin)
    specs = parse_dim_specs(args.dim)
    if specs.ranges or specs.buckets:
        if args.budget is not None:
            raise InputError(
                "--budget plans one binding of the dimensions: give --dim NAME=VALUE, "
                "not a range or buckets"
            )
        passes = _with_pack_options(args, _with_partition_options(args))
        chosen = None if passes == ",".join(default_pipeline()) else passes
        shapes = parse_input_shapes(args.input_shape)
        console_or_none = None if args.quiet else console
        compile_ranged(args.model, specs, out_dir, console_or_none, args.target, shapes, chosen)
        return 0
    if args.budget is not None:
        result = compile_within_budget(args)
    else:
        passes = _with_pack_options(args, _with_partition_options(args))
        with compile_progress(progress_wanted(args.quiet), len(parse_pipeline(passes))) as hooks:
            result = compile_model(
                args.model,
                target=args.target,
                dims=parse_dims(args.dim),
                shapes=parse_input_shapes(args.input_shape),
                passes=passes,
                dump_after=args.dump_after,
                dump_dir=args.dump_dir or out_dir / "ir",
                verify_each=args.verify_each,
                on_pass_start=hooks.on_pass_start,
                on_status=hooks.on_status,
            )
    if result.evaluation is not None:
        add_pool_sizing(result.plan, result.target, args.headroom, args.warn_at)
    plan_path, model_path = result.write(out_dir, graphml=args.graphml)
    if args.quiet:
        return 0
    if result.evaluation is None:
        console.print(
            "no summary: the --passes pipeline has no 'evaluate' pass "
            "(add it for peaks, bounds and latency)"
        )
    else:
        console.print(_summary_table(result))
        console.print(pool_line(result.plan["summary"]["pools"], human_bytes))
        if "fit" in result.plan["summary"]:
            console.print(
                f"within --budget {args.budget}: {result.plan['summary']['fit']['chosen']}"
            )
    if args.solver_report:
        from tierplan.passes.pack import Pack  # passes import this package: load late

        packed = result.context.find_result(Pack)
        console.print(_solve_table(packed.regions if packed else {}, "exact packing"))
    if args.verbose:
        notes = Table(title="notes of each pass")
        notes.add_column("pass")
        notes.add_column("notes")
        for name, lines in result.notes():
            notes.add_row(name, "\n".join(lines) or "-")
        console.print(notes)
    if args.time_passes:
        timing = Table(title="time per pass")
        timing.add_column("pass")
        timing.add_column("seconds", justify="right")
        for name, seconds in result.pass_seconds:
            timing.add_row(name, f"{seconds:.3f}")
        console.print(timing)
    console.print(f"wrote {plan_path} and {model_path}")
    return 0


def _check(args: argparse.Namespace, console: Console) -> int:
    specs = parse_dim_specs(args.dim)
    if specs.ranges:
        return check_range(args, console, specs)
    plan, symbolic = read_plan_at(args.plan, parse_dims(args.dim))
    # Every other rule would fail too on another model's plan: say the one that matters.
    recorded = plan.get("model", {}).get("sha256") if isinstance(plan.get("model"), dict) else None
    if isinstance(recorded, str) and recorded:
        _, actual = read_model_proto(args.model)
        if actual != recorded:
            print(
                f"{args.plan}: [model] made for another model: the plan's sha256 {recorded!r} is "
                f"not {args.model.name}'s ({actual}); nothing else checked",
                file=sys.stderr,
            )
            return 1
    dims = parse_dims(args.dim)
    if (symbolic or not dims) and isinstance(plan.get("dims"), dict):
        dims = {
            str(k): v
            for k, v in plan["dims"].items()
            if isinstance(v, int) and not isinstance(v, bool)
        }
    graph_file, identity = args.model, True
    if is_rewritten(plan):  # its graph is the rewritten one; identity checked above
        graph_file = existing_planned_model(
            args.planned_model or planned_model_path(args.plan, args.model)
        )
        identity = False
    loaded = load_model(graph_file, dims=dims, shapes=parse_input_shapes(args.input_shape))
    sha256 = loaded.ir.model.sha256 if identity else None
    violations = validate_plan(plan, loaded.ir, model_sha256=sha256)
    if not violations:
        console.print(f"{args.plan}: valid plan for {args.model.name}")
        return 0
    for violation in violations:
        print(escape_controls(f"{args.plan}: {violation}"), file=sys.stderr)
    print(f"{args.plan}: invalid ({len(violations)} violations)", file=sys.stderr)
    return 1


def check_range(args: argparse.Namespace, console: Console, specs: DimSpecs) -> int:
    """``check`` of a symbolic plan at every binding of ``--dim NAME=LOW..HIGH``."""
    shapes = parse_input_shapes(args.input_shape)
    checked = failed = 0
    for binding, violations in check_every_binding(args.model, args.plan, specs, shapes):
        checked += 1
        where = ", ".join(f"{k}={v}" for k, v in binding.items())
        for violation in violations[:3]:
            print(escape_controls(f"{args.plan} at {where}: {violation}"), file=sys.stderr)
        failed += bool(violations)
    if failed:
        print(f"{args.plan}: invalid at {failed} of {checked} bindings", file=sys.stderr)
        return 1
    console.print(f"{args.plan}: valid plan for {args.model.name} at all {checked} bindings")
    return 0


def _run(args: argparse.Namespace, console: Console) -> int:
    for plugin in args.plugin:
        load_plugin(plugin)
    passes = _with_pack_options(args, _with_partition_options(args))
    tolerances = (args.rtol, args.atol)
    if not all(math.isfinite(t) and t >= 0 for t in tolerances):
        raise InputError("--rtol and --atol must be finite and not negative")
    if args.cosine is not None and not -1.0 <= args.cosine <= 1.0:
        raise InputError(f"--cosine {args.cosine}: expected a similarity between -1 and 1")
    plan = args.plan and read_plan_at(args.plan, parse_dims(args.dim))
    report = run_plan(
        args.model,
        plan[0] if plan and plan[1] else args.plan,
        planned_model=args.planned_model,
        inputs=args.inputs,
        seed=args.seed,
        rtol=args.rtol,
        atol=args.atol,
        cosine=args.cosine,
        dims=parse_dims(args.dim) or None,
        shapes=parse_input_shapes(args.input_shape),
        compile_options={"target": args.target, "passes": passes},
    )
    if not args.quiet:
        table = Table(title=f"tierplan run: {args.model.name} in its plan's memory vs onnxruntime")
        table.add_column("output")
        table.add_column("shape")
        for column in ("max abs error", "max rel error", "cosine", "result"):
            table.add_column(column, justify="right")
        for output in report.outputs:
            found = output.difference
            table.add_row(
                output.name,
                "x".join(map(str, output.shape)) or "scalar",
                f"{found.max_abs:.3g}",
                f"{found.max_rel:.3g}",
                f"{found.cosine:.6f}",
                "PASS" if found.matches else "FAIL",
            )
        split = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in report.seconds.items())
        table.caption = (
            f"{report.steps} steps, {report.kernels} operator kernels"
            f"{f' ({report.fallbacks} on onnx.reference)' if report.fallbacks else ''}; "
            + (
                f"rtol {report.rtol:g}, atol {report.atol:g}"
                if report.cosine is None
                else f"floats by cosine >= {report.cosine:g}"
            )
            + f"; {split}"
        )
        console.print(table)
    if report.matches:
        console.print(
            f"PASS: the planned execution matches onnxruntime on {len(report.outputs)} outputs"
        )
        return 0
    reason = report.divergence or "outputs differ"
    print(f"tierplan: FAIL: {escape_controls(' '.join(reason.split()))}", file=sys.stderr)
    return 1


def _passes(args: argparse.Namespace, console: Console) -> int:
    for plugin in args.plugin:
        load_plugin(plugin)
    table = Table(
        title="registered passes (default pipeline: " + ", ".join(default_pipeline()) + ")"
    )
    for column in ("pass", "requires", "provides", "options (name: type = default)", "description"):
        table.add_column(column, overflow="fold")  # long choice lists wrap, never cut
    for name, cls in registered_passes().items():
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        options = [
            f"{option}: {type_text(hint)} = {_default_text(defaults[option])}"
            for option, hint in option_types(cls).items()
        ]
        table.add_row(
            name,
            ", ".join(sorted(cls.requires)),
            ", ".join(sorted(cls.provides)),
            "\n".join(options) or "-",
            cls.description(),
        )
    console.print(table)
    return 0


def _default_text(value: object) -> str:
    """An option's default as a pipeline would spell it (``''`` for an empty text)."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value) if value != "" else "''"


def _targets(args: argparse.Namespace, console: Console) -> int:
    table = Table(title="target presets (--target NAME, or a TOML file of the same form)")
    for column in ("name", "tiers", "alignment", "devices", "description"):
        table.add_column(column)
    for name in preset_names():
        target = load_target(name)
        tiers = ", ".join(f"{t.name} {human_bytes(t.capacity)}" for t in target.tiers)
        table.add_row(name, tiers, str(target.alignment), str(target.devices), target.description)
    console.print(table)
    return 0


def _is_model(source: Path) -> bool:
    """A view command's source is a model to compile unless it is a .json plan."""
    return source.suffix.lower() != ".json"


def _view_of(
    source: Path, args: argparse.Namespace, costs: bool, quiet: bool = True
) -> tuple[PlanView, str]:
    """The view of a plan file, or of the plan of a model compiled with the command's
    ``--target``/``--dim``/``--input-shape``; and its title. ``costs``: add latency views
    (they need the model)."""
    if not _is_model(source):
        plan, symbolic = read_plan_at(source, parse_dims(args.dim))
        if symbolic:
            return PlanView(plan), str(plan["model"]["path"])
        model = getattr(args, "model", None)
        view = view_of_plan_file(source, model) if costs else PlanView(read_plan(source))
        return view, str(view.plan.get("model", {}).get("path", source.name))
    with compile_progress(progress_wanted(quiet), len(default_pipeline())) as hooks:
        result = compile_model(
            source,
            target=args.target,
            dims=parse_dims(args.dim),
            shapes=parse_input_shapes(args.input_shape),
            on_pass_start=hooks.on_pass_start,
            on_status=hooks.on_status,
        )
    op_costs = result.evaluation.op_costs if result.evaluation else None
    return PlanView(result.plan, op_costs, op_sources(source)), source.name


def _report(args: argparse.Namespace, console: Console) -> int:
    default = (
        Path(f"{args.source.stem}.report.html")
        if _is_model(args.source)
        else args.source.with_name("report.html")
    )
    output = args.output or default
    view, title = _view_of(args.source, args, costs=True, quiet=args.quiet)
    if args.compare is not None:
        other, other_title = _view_of(args.compare, args, costs=False, quiet=args.quiet)
        document = render_comparison(view, title, other, other_title)
    else:
        document = render_html(view, title)
    write_atomically(output, document)
    if not args.quiet:
        console.print(f"wrote {output} ({output.stat().st_size} bytes)")
    return 0


def _plot(args: argparse.Namespace, console: Console) -> int:
    view, name = _view_of(args.plan, args, costs=False, quiet=args.quiet)
    default = (
        Path(f"{args.plan.stem}.timeline.png")
        if _is_model(args.plan)
        else args.plan.with_name("timeline.png")
    )
    output = args.output or default
    write_timeline_png(view, f"{name} on {view.plan.get('target', {}).get('name', '?')}", output)
    if not args.quiet:
        console.print(f"wrote {output}")
    return 0


def _inspect(args: argparse.Namespace, console: Console) -> int:
    view, name = _view_of(args.plan, args, costs=args.model is not None or _is_model(args.plan))
    if args.tensor is not None:
        tables = [inspect.tensor_table(view, args.tensor)]
    elif args.step is not None:
        tables = [inspect.step_table(view, args.step)]
    elif args.op is not None:
        tables = [inspect.op_table(view, args.op)]
    else:
        tables = inspect.summary_tables(view, name)
    for table in tables:
        console.print(table)
    return 0


def _simulate_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    simulate_cmd = commands.add_parser(
        "simulate",
        help="replay the schedule through runtime allocators (pool, buddy) beside the static plan",
        formatter_class=_HelpFormatter,
    )
    simulate_cmd.add_argument(
        "model", type=Path, help="a model (.onnx, compiled first) or a plan.json"
    )
    simulate_cmd.add_argument(
        "--allocator", choices=[*ALLOCATORS, "all"], default="all", help="which runtime allocator"
    )
    simulate_cmd.add_argument(
        "--capacity",
        default=None,
        metavar="BYTES",
        help="bytes for the activations, e.g. 8MiB, in every region but the scratch-only "
        "(tile) ones, whose buffers tiling sized to their tier (default: the tier's capacity)",
    )
    simulate_cmd.add_argument(
        "--in-place",
        action="store_true",
        help="let the runtime make the plan's in-place writes too (default: an eager runtime, "
        "where only views share an input's block)",
    )
    simulate_cmd.add_argument("--target", default="ascend-like", help="preset name or TOML file")
    _model_options(simulate_cmd)


def _scratch_only(plan: Plan) -> set[str]:
    """Regions whose activation-kind buffers are all scratch (tiles)."""
    kinds: dict[str, set[str]] = {}
    for buffer in plan["buffers"]:
        if buffer["kind"] in ACTIVATION_KINDS:
            key = region_key(buffer["device"], buffer["tier"])
            kinds.setdefault(key, set()).add(buffer["kind"])
    return {key for key, found in kinds.items() if found == {"scratch"}}


def _simulate(args: argparse.Namespace, console: Console) -> int:
    if _is_model(args.model):
        plan = compile_model(
            args.model,
            target=args.target,
            dims=parse_dims(args.dim),
            shapes=parse_input_shapes(args.input_shape),
        ).plan
    else:
        plan = read_plan(args.model)
    target = plan_target(plan)
    peaks, bounds = memory_summary(PlanBuffer.of_plan(plan), set(ACTIVATION_KINDS))
    scratch_only = _scratch_only(plan)
    names = list(ALLOCATORS) if args.allocator == "all" else [args.allocator]
    table = Table(title=f"tierplan simulate: {args.model.name}: static plan vs runtime allocators")
    for column in ("region", "allocator", "capacity", "footprint", "max-live", "fragmentation"):
        table.add_column(column, justify="left" if column in ("region", "allocator") else "right")
    table.add_column("failed allocs", justify="right")
    table.add_column("static plan saves", justify="right")
    regions = requests(plan, ACTIVATION_KINDS, in_place=args.in_place)
    for region, region_requests in regions.items():
        capacity = (
            parse_size(args.capacity, "--capacity")
            if args.capacity and region not in scratch_only
            else target.tier(region.split("/", 1)[1]).capacity
        )
        static, bound = peaks[region], bounds[region]
        fits = "0" if static <= capacity else "does not fit"
        cells = [human_bytes(capacity), human_bytes(static), human_bytes(bound)]
        table.add_row(region, "static plan", *cells, f"{static / bound - 1:.1%}", fits, "")
        for name in names:
            run = simulate(name, region_requests, capacity)
            # With failed allocations the footprint is not comparable: nothing saved.
            saves = f"{1 - static / run.footprint:.1%}" if run.footprint and not run.failed else "-"
            table.add_row(
                region, name, human_bytes(capacity), human_bytes(run.footprint),
                human_bytes(run.requested_peak),
                "-" if run.fragmentation is None else f"{run.fragmentation:.1%}",
                str(run.failed), saves,
            )  # fmt: skip
    table.caption = (
        "footprint: highest byte used; max-live: the requests' peak (no allocator beats it); "
        "fragmentation: footprint / max-live - 1 ('-' once an allocation failed); "
        + ("--capacity not applied to scratch-only regions; " if args.capacity else "")
        + "runtime: "
        + ("the plan's views and in-place writes" if args.in_place else "eager (views only)")
    )
    console.print(table)
    return 0


def _parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse, reporting an unknown flag with the command's own usage and the closest flags
    (argparse reports it from the top-level parser, with no suggestion)."""
    args, unknown = parser.parse_known_args(argv)
    if not unknown:
        return args
    command: argparse.ArgumentParser = next(
        action.choices[args.command]
        for action in parser._subparsers._group_actions  # type: ignore[union-attr]
        if isinstance(action, argparse._SubParsersAction)
    )
    flags = [flag for action in command._actions for flag in action.option_strings]
    hints = []
    for word in unknown:
        close = get_close_matches(word.split("=", 1)[0], flags, n=1) if word.startswith("-") else []
        hints.append(f"{word} (did you mean {close[0]}?)" if close else word)
    command.error(f"unrecognized arguments: {' '.join(hints)}")


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, to take Ctrl-C's clean-up path."""


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tierplan`` console script; returns the exit code."""
    handler = logging.StreamHandler()
    handler.setFormatter(EscapingFormatter("tierplan: %(levelname)s: %(message)s"))
    logging.basicConfig(handlers=[handler], level=logging.WARNING)
    args = _parse_args(_parser(), argv)
    console = TerminalConsole(
        highlight=False, markup=False, width=None if sys.stdout.isatty() else 120
    )
    handlers = {"compile": _compile, "check": _check, "passes": _passes, "targets": _targets}
    handlers.update(report=_report, plot=_plot, inspect=_inspect)
    handlers.update(simulate=_simulate)
    handlers.update(pack=_pack, run=_run, fit=fit_command)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return handlers[args.command](args, console)
    except TierplanError as error:
        if error.exit_code == 3 and os.environ.get("TIERPLAN_DEBUG"):
            raise
        message = " ".join(str(error).split())
        print(f"tierplan: error: {escape_controls(message)}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt as error:
        signalled = isinstance(error, _Terminated)
        print(f"tierplan: {'terminated' if signalled else 'interrupted'}", file=sys.stderr)
        return 128 + (signal.SIGTERM if signalled else signal.SIGINT)
    except Exception as error:
        if os.environ.get("TIERPLAN_DEBUG"):
            raise
        print(
            escape_controls(
                f"tierplan: internal error: {type(error).__name__}: {' '.join(str(error).split())} "
                "(a bug; rerun with TIERPLAN_DEBUG=1 for the traceback and report it)"
            ),
            file=sys.stderr,
        )
        return 3
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
