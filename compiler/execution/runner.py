"""Run a plan: execute a model inside the plan's memory and compare with ONNX Runtime.

:func:`run_plan` is ``tierplan run``. It executes the operators in the plan's
schedule, each reading its inputs from, and writing its outputs into, views of the
plan's arenas (:mod:`~tierplan.compiler.execution.arenas`), with ONNX Runtime
kernels (:mod:`~tierplan.compiler.execution.kernels`); inserted ``Transfer``
operators copy between devices. The graph outputs, read from the arenas at the end,
are compared with ONNX Runtime on the original model with the same weights and
inputs (:mod:`~tierplan.compiler.execution.reference`). On a mismatch the model is
run again with every intermediate value exposed and the plan re-executed step by
step, to name the first operator whose output differs, and which of its inputs was
already wrong when it read it (bytes changed after they were written).

What a match proves: the plan's offsets, lifetimes, aliases and copies keep every
value intact until its last reader, for these inputs. What it does not: numerics
are ONNX Runtime's CPU kernels, not the accelerator's, and tiles are not executed.
"""

from __future__ import annotations

import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from tierplan.compiler.errors import InputError, TierplanError
from tierplan.compiler.execution.arenas import Arenas
from tierplan.compiler.execution.compare import Difference, difference
from tierplan.compiler.execution.feeds import input_values, read_npz, weight_values
from tierplan.compiler.execution.kernels import KernelError, Kernels, ValueType
from tierplan.compiler.execution.reference import reference_values
from tierplan.compiler.frontend import LoadedModel, load_model
from tierplan.compiler.ir import TRANSFER_OP
from tierplan.compiler.plan import (
    Plan,
    PlanBuffer,
    existing_planned_model,
    is_rewritten,
    planned_model_path,
    read_plan,
)
from tierplan.compiler.plan_schema import plan_problems

NARROW_FLOATS = frozenset({"float16", "bfloat16"})
NARROWED_COSINE = 0.999
"""Cosine similarity each output of a plan with 16-bit activations must reach."""


class PlanFault(TierplanError):
    """The plan cannot be executed as written (a reader finds no buffer of its input)."""

    exit_code = 1


@dataclass(frozen=True, slots=True)
class OutputCheck:
    """One graph output of the planned run against the reference."""

    name: str
    shape: tuple[int, ...]
    difference: Difference


@dataclass
class RunReport:
    """What ``tierplan run`` found: per-output errors, the first divergence, timings."""

    outputs: list[OutputCheck]
    rtol: float
    atol: float
    cosine: float | None = None
    divergence: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    kernels: int = 0
    fallbacks: int = 0

    @property
    def matches(self) -> bool:
        """True when every graph output matches the reference."""
        return self.divergence is None and all(o.difference.matches for o in self.outputs)


@dataclass(frozen=True, slots=True)
class _Op:
    node: str
    op_type: str
    device: int
    step: int
    to_device: int | None
    inputs: tuple[str, ...]

    @classmethod
    def from_plan(cls, entry: dict[str, Any]) -> _Op:
        """One entry of the ``ops`` of a plan whose structure the schema accepted."""
        return cls(
            entry["node"], entry["op_type"], entry["device"], entry["step"],
            entry.get("to_device"), tuple(entry["inputs"]),
        )  # fmt: skip


class _Divergence(Exception):
    """Raised inside a checked execution at the first value that differs."""


class _Execution:
    """One execution of a plan over fresh arenas."""

    def __init__(
        self, plan: Plan, loaded: LoadedModel, kernels: Kernels, values: Mapping[str, np.ndarray]
    ) -> None:
        self.loaded = loaded
        self.kernels = kernels
        self.values = values
        self.buffers = PlanBuffer.of_plan(plan)
        self.ops = sorted((_Op.from_plan(entry) for entry in plan["ops"]), key=lambda o: o.step)
        self.nodes = {node.name: node for node in loaded.proto.graph.node}
        self.types = _value_types(loaded)
        self.by_tensor: dict[str, list[PlanBuffer]] = defaultdict(list)
        self.starting: dict[int, list[PlanBuffer]] = defaultdict(list)
        for buffer in self.buffers:
            if buffer.kind != "scratch":
                self.by_tensor[buffer.tensor].append(buffer)
                self.starting[buffer.start].append(buffer)
        self.arenas = Arenas(self.buffers)
        self.filled: set[PlanBuffer] = set()
        self.written_at: dict[PlanBuffer, int] = {}

    def run(
        self,
        expected: Mapping[str, np.ndarray] | None = None,
        rtol: float = 0.0,
        atol: float = 0.0,
        cosine: float | None = None,
    ) -> dict[str, np.ndarray]:
        """Execute every step; return the graph outputs read from the arenas.

        With ``expected`` (reference values by tensor name), raise :class:`_Divergence`
        naming the first operator whose output, or an input as it read it, differs.
        """
        for buffer in self.buffers:
            if buffer.tensor in self.values and buffer.start == 0 and buffer.kind != "scratch":
                self._write(buffer, self.values[buffer.tensor], step=-1)
        for op in self.ops:
            self.arenas.poison_dead(op.step)
            self._copy_started(op)
            if op.op_type == TRANSFER_OP and op.node not in self.nodes:
                self._transfer(op)
            else:
                self._compute(op, expected, rtol, atol, cosine)
        last = self.ops[-1].step if self.ops else 0
        outputs = {}
        for value in self.loaded.proto.graph.output:
            buffer = self._buffer(value.name, None, last, reading=True)
            outputs[value.name] = self._view(buffer).copy()
        return outputs

    def _view(self, buffer: PlanBuffer) -> np.ndarray:
        value_type = self.types[buffer.tensor]
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(value_type.elem_type))
        return self.arenas.view(buffer, dtype, value_type.shape)

    def _write(self, buffer: PlanBuffer, array: np.ndarray, step: int) -> None:
        view = self._view(buffer)
        if tuple(array.shape) != view.shape:
            raise PlanFault(
                f"tensor {buffer.tensor!r}: the kernel produced shape {list(array.shape)}, "
                f"the plan's model says {list(view.shape)}"
            )
        if view.dtype == np.float16 and array.dtype.itemsize > 2:  # a weight stored in float16
            array = np.clip(array, -np.finfo(np.float16).max, np.finfo(np.float16).max)
        view[...] = array
        self.filled.add(buffer)
        self.written_at[buffer] = step

    def _buffer(self, tensor: str, device: int | None, step: int, reading: bool) -> PlanBuffer:
        """The buffer of ``tensor`` a reader (or the writer) at ``step`` uses.

        A reader whose tensor has no live buffer at its step reads the most recent
        one anyway: those bytes are dead, hence poisoned, and the comparison says so.
        """
        here = [b for b in self.by_tensor.get(tensor, []) if device is None or b.device == device]
        if reading:
            live = [b for b in here if b.live_at(step)]
            live.sort(key=lambda b: (b not in self.filled, b.start))
            dead = sorted((b for b in here if b.start <= step), key=lambda b: -b.end)
            candidates = live or dead
        else:
            candidates = [b for b in here if b.start == step]
        if not candidates:
            where = "" if device is None else f" on device {device}"
            verb = "read" if reading else "written"
            raise PlanFault(
                f"tensor {tensor!r} is {verb} at step {step}{where} but the plan gives it "
                "no buffer there by that step"
            )
        return candidates[0]

    def _copy_started(self, op: _Op) -> None:
        """Fill buffers that start at this step as copies of the same tensor (tier moves)."""
        node = self.nodes.get(op.node)
        produced = set(node.output) if node is not None else set()
        received = set(op.inputs) if op.op_type == TRANSFER_OP else set()
        for buffer in self.starting.get(op.step, []):
            tensor = buffer.tensor
            if buffer in self.filled or tensor in produced:
                continue
            if tensor in received and buffer.device == op.to_device:
                continue
            sources = [b for b in self.by_tensor[tensor] if b in self.filled and b.live_at(op.step)]
            if sources:
                sources.sort(key=lambda b: b.device != buffer.device)
                self._write(buffer, self._view(sources[0]), op.step)

    def _transfer(self, op: _Op) -> None:
        """An inserted ``Transfer``: copy its tensor to the receiving device's buffer."""
        if op.to_device is None or len(op.inputs) != 1:
            raise PlanFault(f"transfer {op.node!r} needs one input and a 'to_device'")
        source = self._buffer(op.inputs[0], op.device, op.step, reading=True)
        target = self._buffer(op.inputs[0], op.to_device, op.step, reading=False)
        self._write(target, self._view(source), op.step)

    def _compute(
        self,
        op: _Op,
        expected: Mapping[str, np.ndarray] | None,
        rtol: float,
        atol: float,
        cosine: float | None,
    ) -> None:
        node = self.nodes.get(op.node)
        if node is None:
            raise InputError(
                f"the plan's operator {op.node!r} is not in the model (run the model the plan was made for)"
            )
        inputs: list[tuple[np.ndarray, ValueType] | None] = []
        for name in node.input:
            if not name:
                inputs.append(None)
                continue
            array = self._read(name, op)
            if expected is not None and name in expected:
                found = difference(array, expected[name], rtol, atol, cosine)
                if not found.matches:
                    raise _Divergence(self._corrupted_input(op, name, found))
            inputs.append((array, self.types[name]))
        if self._parts_in_place(node, op):
            return
        outer = {
            name: (self._read(name, op), self.types[name])
            for name in self.loaded.ir.operator(op.node).implicit_inputs
        }
        output_types = [self.types[name] if name else None for name in node.output]
        results = self.kernels.run(node, inputs, outer, output_types)
        for name, result in zip(node.output, results, strict=True):
            # A Concat's output lives from its first part on: written where it is live.
            if result is None or not any(b.live_at(op.step) for b in self.by_tensor.get(name, [])):
                continue
            if expected is not None and name in expected:
                found = difference(result, expected[name], rtol, atol, cosine)
                if not found.matches:
                    raise _Divergence(
                        f"first difference: operator {op.node!r} ({op.op_type}, step {op.step}) "
                        f"computes {name!r} with max abs error {found.max_abs:.3g} from inputs "
                        "that match the reference"
                    )
            for buffer in self.by_tensor[name]:
                if buffer.live_at(op.step) and buffer.device == op.device:
                    self._write(buffer, result, op.step)

    def _parts_in_place(self, node: onnx.NodeProto, op: _Op) -> bool:
        """True when ``node`` is a Concat whose every input already sits, as a concat part
        (plan-format.md), at its position in the output's buffer: it then copies nothing."""
        if node.op_type != "Concat" or not node.output or not node.input:
            return False
        whole = next(
            (
                b
                for b in self.by_tensor.get(node.output[0], [])
                if b.live_at(op.step) and b.device == op.device
            ),
            None,
        )
        if whole is None:
            return False
        position = whole.offset
        for name in node.input:
            part = self._buffer(name, op.device, op.step, reading=True)
            if (
                part.alias_of != whole.tensor
                or part.region != whole.region
                or part.offset != position
            ):
                return False
            position += part.nbytes
        self.filled.add(whole)
        self.written_at[whole] = op.step
        return True

    def _read(self, name: str, op: _Op) -> np.ndarray:
        return self._view(self._buffer(name, op.device, op.step, reading=True))

    def _corrupted_input(self, op: _Op, name: str, found: Difference) -> str:
        buffer = self._buffer(name, op.device, op.step, reading=True)
        writers = [
            (step, other.tensor)
            for other, step in self.written_at.items()
            if other.region == buffer.region
            and other.tensor != name
            and self.written_at.get(buffer, -1) < step < op.step
            and other.offset < buffer.offset + buffer.nbytes
            and buffer.offset < other.offset + other.nbytes
        ]
        cause = (
            "overwritten at step {} by {!r}".format(*max(writers))
            if writers
            else "its bytes were poisoned: the plan let them die before this read"
        )
        return (
            f"first difference: operator {op.node!r} ({op.op_type}, step {op.step}) reads "
            f"{name!r} whose bytes changed after they were written ({cause}; max abs error "
            f"{found.max_abs:.3g})"
        )


def _value_types(loaded: LoadedModel) -> dict[str, ValueType]:
    """Element type and static shape of every tensor of the model."""
    graph = loaded.proto.graph
    codes = {
        v.name: v.type.tensor_type.elem_type
        for v in [*graph.input, *graph.value_info, *graph.output]
    }
    codes.update((t.name, t.data_type) for t in graph.initializer)
    return {
        tensor.name: ValueType(codes[tensor.name], tensor.shape)
        for tensor in loaded.ir.tensors()
        if tensor.name in codes and tensor.copy_of is None
    }


def run_plan(
    model: str | Path,
    plan: Plan | str | Path | None = None,
    *,
    planned_model: str | Path | None = None,
    inputs: Mapping[str, np.ndarray] | str | Path | None = None,
    seed: int = 0,
    rtol: float = 1e-4,
    atol: float = 1e-5,
    cosine: float | None = None,
    dims: Mapping[str, int] | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    compile_options: Mapping[str, Any] | None = None,
) -> RunReport:
    """Execute ``model`` inside ``plan``'s memory and compare with ONNX Runtime.

    Parameters
    ----------
    model:
        The .onnx file the plan was made for (the reference runs it).
    plan:
        A plan (JSON data or a plan.json path); compiled from ``model`` when None,
        with ``compile_options`` (keyword arguments of ``compile_model``).
    planned_model:
        The annotated model the compile wrote (``<stem>.planned.onnx``), needed when
        a pass rewrote the graph: it holds the operators the plan schedules. By
        default the one beside a plan file, if the plan has rewritten operators.
    inputs:
        Values by name (a mapping or an ``.npz`` path) for graph inputs and for any
        weight; the rest is seeded from ``seed`` (see :mod:`.feeds`).
    rtol, atol:
        Tolerance of the comparison with the reference.
    cosine:
        Compare float outputs by cosine similarity, at least this, instead of the
        tolerances. By default :data:`NARROWED_COSINE` when the plan stores float32
        values of the model in 16 bits (``precision`` pass), else the tolerances.
    dims, shapes:
        As for ``compile_model``; ``dims`` defaults to the plan's.

    Raises
    ------
    TierplanError
        Bad input (exit code 2) or a plan that cannot be executed (1). A plan that
        executes but computes wrong values is not an error: see ``RunReport.matches``.
    """
    seconds: dict[str, float] = {}
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tierplan-run-") as scratch:
        if plan is None:
            from tierplan.compiler.api import compile_model

            options = dict(compile_options or {})
            options.setdefault("dims", dims)
            options.setdefault("shapes", shapes)
            result = compile_model(model, **options)
            plan = result.plan
            if is_rewritten(plan) and planned_model is None:
                _, planned_model = result.write(Path(scratch))
            seconds["compile"] = time.perf_counter() - began
        elif isinstance(plan, dict):  # a plan that read_plan or the compiler did not make
            problems = plan_problems(plan, limit=2)
            if problems:
                raise InputError(f"the plan is malformed: {problems[0]}")
        else:
            plan_path = Path(plan)
            plan = read_plan(plan_path)
            if is_rewritten(plan) and planned_model is None:
                planned_model = planned_model_path(plan_path, Path(model))
        return _run(
            Path(model), plan, planned_model, inputs, seed, (rtol, atol, cosine), dims, shapes,
            seconds,
        )  # fmt: skip


def _narrowed(original: LoadedModel, executed: LoadedModel) -> bool:
    """True when the executed model holds in 16 bits a value the original holds in float32."""
    return any(
        tensor.dtype in NARROW_FLOATS
        and original.ir.has_tensor(tensor.name)
        and original.ir.tensor(tensor.name).dtype == "float32"
        for tensor in executed.ir.tensors()
    )


def _run(
    model: Path,
    plan: Plan,
    planned_model: str | Path | None,
    inputs: Mapping[str, np.ndarray] | str | Path | None,
    seed: int,
    tolerance: tuple[float, float, float | None],
    dims: Mapping[str, int] | None,
    shapes: Mapping[str, Sequence[int]] | None,
    seconds: dict[str, float],
) -> RunReport:
    began = time.perf_counter()
    if dims is None:
        dims = plan.get("dims")
    loaded = load_model(model, dims=dims, shapes=shapes)
    recorded = plan["model"]["sha256"]
    if recorded != loaded.ir.model.sha256:
        raise InputError(
            f"the plan was made for another model (its sha256 is {str(recorded)[:12]}..., "
            f"{model.name}'s is {loaded.ir.model.sha256[:12]}...)"
        )
    executed = loaded
    if planned_model is not None:
        executed = load_model(existing_planned_model(planned_model), dims=dims, shapes=shapes)
    rtol, atol, cosine = tolerance
    if cosine is None and _narrowed(loaded, executed):
        cosine = NARROWED_COSINE
    given = dict(read_npz(Path(inputs)) if isinstance(inputs, str | Path) else inputs or {})
    graph = loaded.proto.graph
    weights = weight_values(graph, loaded.path.parent, seed, given)
    tensor_shapes = {t.name: t.shape for t in loaded.ir.tensors()}
    feeds = input_values(graph, tensor_shapes, weights, seed, given)
    unknown = sorted(set(given) - set(weights) - set(feeds))
    if unknown:
        raise InputError(
            f"--inputs names {unknown[0]!r}, which is not an input or weight of the model"
        )
    seconds["load"] = time.perf_counter() - began
    mark = time.perf_counter()
    expected = reference_values(loaded.proto, weights, feeds)
    seconds["reference"] = time.perf_counter() - mark
    for name, value in expected.items():
        if value.dtype.kind in "fc" and not np.isfinite(value).all():
            raise InputError(
                f"onnxruntime's own output {name!r} is not finite (NaN or infinity) for these "
                "inputs and weights, so a comparison would prove nothing: give values with "
                "--inputs (a stripped constant may need its real value) or try another --seed"
            )
    kernels = Kernels(executed.proto.opset_import, executed.proto.ir_version)
    values = {**weights, **feeds}
    mark = time.perf_counter()
    execution = _Execution(plan, executed, kernels, values)
    failure = None
    try:
        actual = execution.run()
    except KernelError as error:
        actual, failure = {}, str(error)
    seconds["planned run"] = time.perf_counter() - mark
    report = RunReport(
        outputs=[
            OutputCheck(
                name,
                tuple(actual[name].shape),
                difference(actual[name], expected[name], rtol, atol, cosine),
            )
            for name in actual
        ],
        rtol=rtol,
        atol=atol,
        cosine=cosine,
        divergence=failure,
        seconds=seconds,
        steps=len(execution.ops),
    )
    if not report.matches and report.divergence is None:
        mark = time.perf_counter()
        report.divergence = _first_divergence(
            plan, loaded, executed, kernels, values, weights, feeds, (rtol, atol, cosine)
        )
        seconds["diagnosis"] = time.perf_counter() - mark
    report.kernels = len(kernels.sessions)
    report.fallbacks = kernels.fallbacks
    seconds["total"] = sum(seconds.values())
    return report


def _first_divergence(
    plan: Plan,
    loaded: LoadedModel,
    executed: LoadedModel,
    kernels: Kernels,
    values: Mapping[str, np.ndarray],
    weights: Mapping[str, np.ndarray],
    feeds: Mapping[str, np.ndarray],
    tolerance: tuple[float, float, float | None],
) -> str:
    """Re-run with every intermediate value the original model has checked against it.

    Values a rewrite introduced have no reference and are not checked; a rewritten
    operator that computes a wrong value is named by the first original value it
    spoils.
    """
    types = _value_types(loaded)
    exposed = [
        (name, types[name])
        for node in loaded.proto.graph.node
        for name in node.output
        if name in types
    ]
    expected = reference_values(loaded.proto, weights, feeds, exposed)
    try:
        _Execution(plan, executed, kernels, values).run(expected, *tolerance)
    except _Divergence as found:
        return str(found)
    except KernelError as error:
        return str(error)
    return "every operator's output matches the reference when checked step by step"
