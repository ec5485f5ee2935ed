"""The Python API: :func:`compile_model` and what it returns.

>>> from tierplan.compiler import compile_model                     # doctest: +SKIP
>>> result = compile_model("models/real/resnet18.onnx")              # doctest: +SKIP
>>> result.evaluation.peak_bytes, result.write("out/")                # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import onnx
from tierplan.compiler.annotate import annotate_model
from tierplan.compiler.errors import InvariantError, PipelineError
from tierplan.compiler.evaluation import Evaluation
from tierplan.compiler.files import write_together
from tierplan.compiler.frontend import load_model
from tierplan.compiler.ir import IRGraph
from tierplan.compiler.pass_manager import (
    DumpAfter,
    Pass,
    PassContext,
    PassInstrument,
    PassManager,
    PassResult,
    PassTimer,
    VerifyEach,
    load_plugin,
    parse_pipeline,
)
from tierplan.compiler.plan import Plan, build_plan, plan_text
from tierplan.compiler.target import Target, load_target

# What a plan says about the model's memory (its summary aside): what must not change
# between the evaluated plan and the one written.
PLAN_CONTENT = ("schedule", "ops", "buffers")


@dataclass
class CompileResult:
    """A compiled model: the annotated IR, the plan and the evaluator's verdict.

    ``target`` is the target the plan is for (with the device count ``partition``
    chose); ``passes`` the pipeline that ran, ``pass_results`` what each returned.
    """

    ir: IRGraph
    model: onnx.ModelProto
    model_path: Path
    target: Target
    passes: list[Pass]
    pass_results: list[PassResult]
    pass_seconds: list[tuple[str, float]]
    seconds: float
    context: PassContext = field(repr=False)

    @property
    def evaluation(self) -> Evaluation | None:
        """The ``evaluate`` pass's result (``None`` if the pipeline had no ``evaluate``)."""
        from tierplan.passes.evaluate import Evaluate  # passes import this package: load late

        return self.context.find_result(Evaluate)

    def notes(self) -> list[tuple[str, Sequence[str]]]:
        """Each pass that ran, in order, with its notes (``-v``)."""
        return [
            (item.name, done.notes)
            for item, done in zip(self.passes, self.pass_results, strict=True)
        ]

    @cached_property
    def plan(self) -> Plan:
        """The plan as JSON data (``plan-format.md``), of the IR as the pipeline left it.

        With ``evaluate`` in the pipeline it is the evaluated plan (its summary has the
        cost), which must be the final IR's: plan.json and the annotated model (written
        from the IR) then describe the same plan. When a wall clock decided a region's
        packing (a time limit, or CP-SAT's safety net), the plan says so (key
        ``packing``): it is the one place a plan may depend on the machine.
        """
        if any(t.needs_buffer and t.offset is None for t in self.ir.tensors()):
            raise PipelineError("the pipeline placed no buffers (add 'pack'), so there is no plan")
        final = build_plan(self.ir, self.target)
        if self.evaluation is None:
            return _with_time_limited_packing(final, self.context)
        evaluated = self.evaluation.plan
        changed = [key for key in PLAN_CONTENT if _content(evaluated, key) != final[key]]
        if changed:
            raise InvariantError(
                f"the plan's {changed[0]} changed after 'evaluate' validated it (a pass after "
                "it changed the IR without invalidating 'evaluation')"
            )
        return _with_time_limited_packing(evaluated, self.context)

    def plan_json(self) -> str:
        """The plan file's exact text."""
        return plan_text(self.plan)

    def write(self, out_dir: str | Path, graphml: bool = False) -> tuple[Path, Path]:
        """Write ``plan.json`` and ``<model stem>.planned.onnx`` (and, with ``graphml``,
        ``<model stem>.graphml``) into ``out_dir``: all of them or, on an error, none."""
        out = Path(out_dir)
        plan_path = out / "plan.json"
        model_path = out / f"{self.model_path.stem}.planned.onnx"
        annotated = annotate_model(self.model, self.ir, self.model_path.parent, out)
        contents: dict[Path, str | bytes] = {
            plan_path: plan_text(self.plan),
            model_path: annotated.SerializeToString(deterministic=True),
        }
        if graphml:
            contents[out / f"{self.model_path.stem}.graphml"] = self.ir.graphml_text()
        write_together(contents)
        return plan_path, model_path


def _with_time_limited_packing(plan: Plan, context: PassContext) -> Plan:
    """``plan`` with, if a wall clock decided any region's packing, the pack pass's report
    per region (``packing``: solver, status, peak, bound, time_limited); otherwise as is,
    so that a deterministic plan stays byte-identical."""
    from tierplan.passes.pack import Pack  # passes import this package: load late

    packed = context.find_result(Pack)
    reports = packed.regions if packed is not None else {}
    if not any(report.time_limited for report in reports.values()):
        return plan
    fields = ("solver", "status", "peak", "bound", "time_limited")
    packing = {
        region: {name: getattr(report, name) for name in fields}
        for region, report in reports.items()
    }
    return {**plan, "packing": packing}


def _content(plan: Plan, key: str) -> object:
    """``plan[key]`` without what the evaluator adds to it (each operator's ``cost``)."""
    if key != "ops":
        return plan[key]
    return [{name: v for name, v in op.items() if name != "cost"} for op in plan["ops"]]


def default_pipeline() -> tuple[str, ...]:
    """Names of the passes run when no pipeline is given."""
    passes = importlib.import_module("tierplan.passes")
    pipeline: tuple[str, ...] = passes.DEFAULT_PIPELINE
    return pipeline


def compile_model(
    model: str | Path,
    target: str | Path | Target | None = None,
    dims: Mapping[str, int] | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    passes: str | Sequence[str] | None = None,
    plugins: Iterable[str] = (),
    dump_after: Iterable[str] = (),
    dump_dir: str | Path | None = None,
    verify_each: bool = False,
    instruments: Iterable[PassInstrument] = (),
    on_pass_start: Callable[[int, Pass], None] | None = None,
    on_status: Callable[[str], None] | None = None,
) -> CompileResult:
    """Compile an ONNX file into a memory plan.

    Parameters
    ----------
    model:
        Path of the .onnx file (its external weights are never read).
    target:
        A preset name, a TOML path or a :class:`Target` (default ``ascend-like``).
    dims:
        Values of symbolic dimensions, e.g. ``{"batch": 1}``.
    shapes:
        Shapes for tensors inference cannot give, e.g. ``{"x": (1, 3, 224, 224)}``.
    passes:
        Pipeline as a string (``"schedule,liveness,pack,evaluate"``) or list of
        pass names; the default pipeline when ``None``.
    plugins:
        Modules (or ``.py`` files) to import first; they register extra passes.
    dump_after, dump_dir:
        Write the IR after these passes (``"all"`` for every one) into ``dump_dir``.
    verify_each:
        Check the IR invariants after every pass.
    instruments:
        Extra :class:`~tierplan.compiler.pass_manager.PassInstrument` objects.
    on_pass_start:
        Called with (1-based position, pass) before each pass runs (progress display).
    on_status:
        Called with a line saying what the running pass is doing (e.g. which region
        and section ``pack`` is proving), for a progress display.

    Raises
    ------
    TierplanError
        With a one-line message: bad input (exit code 2), a plan that cannot be
        made (1), a bug in a pass (3).
    """
    began = time.perf_counter()
    for plugin in plugins:
        load_plugin(plugin)
    pipeline = parse_pipeline(passes if passes is not None else default_pipeline())
    chosen_target = target if isinstance(target, Target) else load_target(target)
    timer = PassTimer()
    active: list[PassInstrument] = [timer, *instruments]
    dump_names = frozenset(dump_after)
    if dump_names:
        active.append(DumpAfter(dump_names, Path(dump_dir or f"{Path(model).stem}.tierplan/ir")))
    context = PassContext(target=chosen_target, on_status=on_status)
    if verify_each:
        active.append(VerifyEach(context))
    manager = PassManager(pipeline, active, on_pass_start)
    loaded = load_model(model, dims=dims, shapes=shapes)
    results = manager.run(loaded.ir, context)
    return CompileResult(
        ir=loaded.ir,
        model=loaded.proto,
        model_path=loaded.path,
        target=context.planned_target(),
        passes=pipeline,
        pass_results=results,
        pass_seconds=timer.seconds,
        seconds=time.perf_counter() - began,
        context=context,
    )
