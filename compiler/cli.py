"""The ``tierplan`` command line.

Commands: ``compile`` (model -> plan.json + annotated model + summary table),
``check`` (validate any plan file against its model), ``passes`` and ``targets``
(list what is registered and shipped).

Exit codes: 0 success; 1 the plan is invalid or cannot be made; 2 bad usage or
bad input; 3 a bug in tierplan or in a plugin. Errors are one line on stderr;
set ``TIERPLAN_DEBUG=1`` to get the traceback of an internal error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

from rich.console import Console
from rich.table import Table
from tierplan.compiler.api import CompileResult, compile_model, default_pipeline
from tierplan.compiler.errors import TierplanError
from tierplan.compiler.frontend import load_model, parse_dims, parse_input_shapes
from tierplan.compiler.pass_manager import load_plugin, registered_passes
from tierplan.compiler.plan import read_plan
from tierplan.compiler.target import load_target, preset_names
from tierplan.compiler.validate import validate_plan

log = logging.getLogger("tierplan")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tierplan",
        description="Memory-planning compiler for AI accelerators: ONNX model in, memory plan out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('tierplan')}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    compile_cmd = commands.add_parser(
        "compile",
        help="plan a model: write plan.json and the annotated model, print a summary",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
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
    compile_cmd.add_argument("--target", default="ascend-like", help="preset name or TOML file")
    compile_cmd.add_argument(
        "--passes",
        default=",".join(default_pipeline()),
        help="pipeline: pass names, options in braces, e.g. 'schedule,liveness,pack,evaluate'",
    )
    compile_cmd.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a module or .py file that registers passes (repeatable)",
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

    check_cmd = commands.add_parser(
        "check",
        help="validate a plan file against its model (exit 0 valid, 1 invalid, 2 bad input)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    check_cmd.add_argument("model", type=Path, help="the .onnx file the plan was made for")
    check_cmd.add_argument("plan", type=Path, help="the plan.json file")
    _model_options(check_cmd, dims_help="(default: the plan's 'dims')")

    passes_cmd = commands.add_parser("passes", help="list the registered passes")
    passes_cmd.add_argument(
        "--plugin", action="append", default=[], metavar="MODULE", help="load a plugin first"
    )
    commands.add_parser("targets", help="list the shipped target presets")
    return parser


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


def _format_bytes(count: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:.1f}{unit}"
    return f"{count}B"


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
    if evaluation is None:
        return table
    for key, peak in evaluation.peak_bytes.items():
        bound = evaluation.lower_bound_bytes[key]
        tier = result.target.tier(key.split("/", 1)[1])
        act_peak = evaluation.activation_peak_bytes.get(key, 0)
        act_bound = evaluation.activation_lower_bound_bytes.get(key, 0)
        table.add_row(
            key,
            _format_bytes(tier.capacity),
            _format_bytes(peak),
            _format_bytes(bound),
            f"{peak / bound:.3f}" if bound else "-",
            _format_bytes(act_peak),
            _format_bytes(act_bound),
            f"{act_peak / act_bound:.3f}" if act_bound else "-",
            _format_bytes(evaluation.no_reuse_bytes.get(key, 0)),
        )
    table.caption = (
        f"{result.ir.operator_count()} operators; estimated latency {evaluation.latency_s * 1e3:.3f} ms; "
        f"compiled in {result.seconds:.2f} s\nbound: max-live for this schedule; act.: the activation "
        "region above the weights; no reuse: every activation in its own bytes"
    )
    return table


def _compile(args: argparse.Namespace, console: Console) -> int:
    out_dir = args.output or Path(f"{args.model.stem}.tierplan")
    result = compile_model(
        args.model,
        target=args.target,
        dims=parse_dims(args.dim),
        shapes=parse_input_shapes(args.input_shape),
        passes=args.passes,
        plugins=args.plugin,
        dump_after=args.dump_after,
        dump_dir=args.dump_dir or out_dir / "ir",
        verify_each=args.verify_each,
    )
    plan_path, model_path = result.write(out_dir)
    if args.graphml:
        result.ir.write_graphml(out_dir / f"{args.model.stem}.graphml")
    if args.quiet:
        return 0
    console.print(_summary_table(result))
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
    plan = read_plan(args.plan)
    dims = parse_dims(args.dim)
    if not dims and isinstance(plan.get("dims"), dict):
        dims = {
            str(k): v
            for k, v in plan["dims"].items()
            if isinstance(v, int) and not isinstance(v, bool)
        }
    loaded = load_model(args.model, dims=dims, shapes=parse_input_shapes(args.input_shape))
    violations = validate_plan(plan, loaded.ir, model_sha256=loaded.ir.model.sha256)
    if not violations:
        console.print(f"{args.plan}: valid plan for {args.model.name}")
        return 0
    for violation in violations:
        print(f"{args.plan}: {violation}", file=sys.stderr)
    print(f"{args.plan}: invalid ({len(violations)} violations)", file=sys.stderr)
    return 1


def _passes(args: argparse.Namespace, console: Console) -> int:
    for plugin in args.plugin:
        load_plugin(plugin)
    table = Table(
        title="registered passes (default pipeline: " + ", ".join(default_pipeline()) + ")"
    )
    for column in ("pass", "requires", "provides", "description"):
        table.add_column(column)
    for name, cls in registered_passes().items():
        table.add_row(
            name,
            ", ".join(sorted(cls.requires)),
            ", ".join(sorted(cls.provides)),
            cls.description(),
        )
    console.print(table)
    return 0


def _targets(args: argparse.Namespace, console: Console) -> int:
    table = Table(title="target presets (--target NAME, or a TOML file of the same form)")
    for column in ("name", "tiers", "alignment", "devices", "description"):
        table.add_column(column)
    for name in preset_names():
        target = load_target(name)
        tiers = ", ".join(f"{t.name} {_format_bytes(t.capacity)}" for t in target.tiers)
        table.add_row(name, tiers, str(target.alignment), str(target.devices), target.description)
    console.print(table)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tierplan`` console script; returns the exit code."""
    logging.basicConfig(format="tierplan: %(levelname)s: %(message)s", level=logging.WARNING)
    args = _parser().parse_args(argv)
    console = Console(highlight=False, markup=False, width=None if sys.stdout.isatty() else 120)
    handlers = {"compile": _compile, "check": _check, "passes": _passes, "targets": _targets}
    try:
        return handlers[args.command](args, console)
    except TierplanError as error:
        if error.exit_code == 3 and os.environ.get("TIERPLAN_DEBUG"):
            raise
        message = " ".join(str(error).split())
        print(f"tierplan: error: {message}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("tierplan: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if os.environ.get("TIERPLAN_DEBUG"):
            raise
        print(
            f"tierplan: internal error: {type(error).__name__}: {error} "
            "(a bug; rerun with TIERPLAN_DEBUG=1 for the traceback and report it)",
            file=sys.stderr,
        )
        return 3


if __name__ == "__main__":
    sys.exit(main())
