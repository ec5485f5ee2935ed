"""Which outputs may reuse an input's bytes: the rules that need no schedule.

An operator's first output may share the bytes of an input in two ways:

- a **view** (Reshape, Flatten, Squeeze, Unsqueeze, Identity): the output *is* the
  bytes of input 0, when both have the same size and input 0 is not a weight;
- an **in-place write** (unary elementwise ops and activations, Cast between types
  of one size, Dropout, inference BatchNormalization, binary elementwise ops, and
  the row-wise operators that read a whole row or channel group before writing it:
  Softmax, LogSoftmax, Hardmax, LayerNormalization, Instance- and GroupNormalization,
  LpNormalization, MeanVarianceNormalization): the output overwrites input 0 or 1
  when that input has the output's shape and size (so broadcasting never reads an
  overwritten element), is an activation (not a graph input, weight or graph
  output) and the output is no graph output. An operator a rewriting pass inserted
  follows the same rules; a device ``Transfer`` never aliases (its copy lives on
  another device).

:func:`reuse_candidates` applies these rules. Whether an in-place write is then
legal depends on the schedule (no later reader may see the overwrite): the
``inplace`` pass decides that from liveness, and the scheduler's memory model
(:class:`~tierplan.compiler.scheduling.MemoryGraph`) from the operators run so far.
"""

from __future__ import annotations

from dataclasses import dataclass

from tierplan.compiler.ir import TRANSFER_OP, IRGraph, Operator, Tensor
from tierplan.compiler.validate import VIEW_OPS

IN_PLACE_OPS = frozenset(
    {
        # unary elementwise and activations
        "Abs", "Ceil", "Clip", "Cos", "Elu", "Erf", "Exp", "Floor", "Gelu", "HardSigmoid",
        "HardSwish", "LeakyRelu", "Log", "Mish", "Neg", "Not", "Reciprocal", "Relu", "Round",
        "Selu", "Sigmoid", "Sign", "Sin", "Softplus", "Softsign", "Sqrt", "Tan", "Tanh",
        "ThresholdedRelu", "Cast", "Dropout", "BatchNormalization",
        # binary elementwise
        "Add", "And", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "Div", "Max", "Min", "Mod",
        "Mul", "Or", "Pow", "PRelu", "Sub", "Sum", "Xor",
        # row-wise: every element of a row (channel group) is read before it is written
        "Softmax", "LogSoftmax", "Hardmax", "LayerNormalization", "InstanceNormalization",
        "GroupNormalization", "LpNormalization", "MeanVarianceNormalization",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ReuseCandidates:
    """An output and the inputs whose bytes it may take, in slot order."""

    output: Tensor
    sources: tuple[Tensor, ...]
    view: bool


def reuse_candidates(
    ir: IRGraph, op: Operator, views: bool = True, in_place: bool = True
) -> ReuseCandidates | None:
    """The inputs ``op``'s output may reuse by the rules above, or ``None``."""
    outputs = [name for name in op.outputs if name]
    if not outputs or op.op_type == TRANSFER_OP:
        return None
    if op.op_type == "BatchNormalization" and op.attributes.get("training_mode"):
        return None
    if op.op_type == "Dropout" and len([n for n in op.inputs if n]) > 2:
        return None  # a training_mode input may be true at run time
    output = ir.tensor(outputs[0])
    if op.op_type in VIEW_OPS:
        if not views or not op.inputs or not op.inputs[0]:
            return None
        source = ir.tensor(op.inputs[0])
        if source.kind == "weight" or source.nbytes != output.nbytes:
            return None
        return ReuseCandidates(output, (source,), view=True)
    if not in_place or op.op_type not in IN_PLACE_OPS or output.graph_output:
        return None
    sources = tuple(
        source
        for source in (ir.tensor(name) for name in op.inputs[:2] if name)
        if source.kind == "activation"
        and source.shape == output.shape
        and source.nbytes == output.nbytes
    )
    return ReuseCandidates(output, sources, view=False) if sources else None


def view_aliases(ir: IRGraph, order: list[Operator]) -> dict[str, str]:
    """Tensor -> the root tensor whose bytes it shares, for the views (legal in any order).

    ``order`` must be topological, so that a view of a view finds its root.
    """
    root_of: dict[str, str] = {}
    for op in order:
        found = reuse_candidates(ir, op, in_place=False)
        if found is not None:
            source = found.sources[0].name
            root_of[found.output.name] = root_of.get(source, source)
    return root_of


def is_view(ir: IRGraph, op: Operator) -> bool:
    """True when ``op``'s output is a view of its input 0 (``alias_of`` set by ``inplace``).

    A view moves and computes nothing: it is neither tiled nor charged traffic.
    """
    outputs = [name for name in op.outputs if name]
    if op.op_type not in VIEW_OPS or not op.inputs or not op.inputs[0] or len(outputs) != 1:
        return False
    source = ir.tensor(outputs[0]).alias_of
    # A device copy of the input (partition) is the same tensor in the plan.
    return source is not None and ir.plan_name(source) == ir.plan_name(op.inputs[0])
