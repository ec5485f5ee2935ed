"""Operator kernels for running a plan: one ONNX Runtime session per operator signature.

Each operator runs alone, as a one-node ONNX model whose inputs and outputs carry
the planned tensors' types and static shapes. Operators with the same attributes
and the same input and output types share one cached session (the node is renamed
to canonical value names for the cache key). An operator ONNX Runtime cannot load
(a missing kernel for a type, an operator it does not implement) runs on
``onnx.reference`` instead. Operators with subgraphs (If, Loop, Scan) keep their
value names: the subgraph refers to outer-scope values by name, which the one-node
model receives as extra inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import onnx
from onnx import helper
from tierplan.compiler.errors import TierplanError

_QUIET = 3  # ONNX Runtime's log severity "error": no warnings about unused initializers etc.


class KernelError(TierplanError):
    """An operator's kernel could not be built or failed on the data it was given."""

    exit_code = 1


class _Session(Protocol):
    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...


@dataclass(frozen=True, slots=True)
class ValueType:
    """The element type (an ``onnx.TensorProto`` code) and static shape of one value."""

    elem_type: int
    shape: tuple[int, ...]

    def info(self, name: str) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, self.elem_type, list(self.shape))


class _OrtSession:
    def __init__(self, model: onnx.ModelProto) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = _QUIET
        options.intra_op_num_threads = 1
        # Thousands of one-node sessions live at once (one per signature): an arena or
        # memory pattern per session would keep each one's peak allocated for good.
        options.enable_cpu_mem_arena = False
        options.enable_mem_pattern = False
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
        self._session = onnxruntime.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        self._outputs = [o.name for o in model.graph.output]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return list(self._session.run(self._outputs, feeds))


class _ReferenceSession:
    def __init__(self, model: onnx.ModelProto) -> None:
        from onnx.reference import ReferenceEvaluator

        self._evaluator = ReferenceEvaluator(model)

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(value) for value in self._evaluator.run(None, feeds)]


@dataclass
class Kernels:
    """Builds and caches the one-node sessions of a model's operators.

    ``opsets`` and ``ir_version`` come from the model, so each operator runs at the
    model's opset. ``fallbacks`` counts the signatures that run on ``onnx.reference``.
    """

    opsets: Sequence[onnx.OperatorSetIdProto]
    ir_version: int
    sessions: dict[bytes, _Session] = field(default_factory=dict)
    fallbacks: int = 0

    def run(
        self,
        node: onnx.NodeProto,
        inputs: Sequence[tuple[np.ndarray, ValueType] | None],
        outer: dict[str, tuple[np.ndarray, ValueType]],
        outputs: Sequence[ValueType | None],
    ) -> list[np.ndarray | None]:
        """Run ``node`` on ``inputs`` (one per input slot, None for an omitted one).

        ``outer`` holds the outer-scope values its subgraphs read; ``outputs`` the
        type of each output slot (None for an omitted one). Returns one array per
        output slot (None for an omitted one).
        """
        standalone = not outer
        in_names = [
            ("" if value is None else f"in{slot}" if standalone else node.input[slot])
            for slot, value in enumerate(inputs)
        ]
        out_names = [
            ("" if value is None else f"out{slot}" if standalone else node.output[slot])
            for slot, value in enumerate(outputs)
        ]
        canonical = onnx.NodeProto()
        canonical.CopyFrom(node)
        canonical.name = ""
        canonical.ClearField("input")
        canonical.ClearField("output")
        canonical.input.extend(in_names)
        canonical.output.extend(out_names)
        graph_inputs = [
            value[1].info(name)
            for name, value in zip(in_names, inputs, strict=True)
            if value is not None
        ]
        graph_inputs += [value_type.info(name) for name, (_, value_type) in outer.items()]
        graph_outputs = [
            value.info(name) for name, value in zip(out_names, outputs, strict=True) if value
        ]
        graph = helper.make_graph([canonical], "operator", graph_inputs, graph_outputs)
        key = graph.SerializeToString(deterministic=True)
        session = self.sessions.get(key)
        if session is None:
            session = self._session(node, graph)
            self.sessions[key] = session
        feeds = {
            name: _aligned(value[0])
            for name, value in zip(in_names, inputs, strict=True)
            if value is not None
        }
        feeds.update((name, _aligned(array)) for name, (array, _) in outer.items())
        try:
            results = iter(session.run(feeds))
        except Exception as error:
            raise KernelError(
                f"operator {node.name!r} ({node.op_type}) failed: {_first_line(error)}"
            ) from None
        return [None if value is None else next(results) for value in outputs]

    def _session(self, node: onnx.NodeProto, graph: onnx.GraphProto) -> _Session:
        model = helper.make_model(graph, opset_imports=list(self.opsets))
        model.ir_version = self.ir_version
        try:
            return _OrtSession(model)
        except Exception as ort_error:
            try:
                session = _ReferenceSession(model)
            except Exception:
                raise KernelError(
                    f"no kernel for operator {node.name!r} ({node.op_type}): "
                    f"{_first_line(ort_error)}"
                ) from None
            self.fallbacks += 1
            return session


def _aligned(array: np.ndarray) -> np.ndarray:
    """``array``, copied when its address is not a multiple of its element size."""
    return array if array.flags.aligned and array.flags.c_contiguous else array.copy()


def _first_line(error: Any) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
