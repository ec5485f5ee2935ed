"""Which outputs may reuse an input's bytes: the rules that need no schedule.

An operator's first output may share the bytes of an input in two ways:

- a **view** (Reshape, Flatten, Squeeze, Unsqueeze, Identity): the output *is* the
  bytes of input 0, when both have the same size and input 0 is not a weight (chains
  of them, e.g. Squeeze after Unsqueeze, are views of the first one's input);
- a **slice view** (:func:`slice_views`): an output of Split, Slice or Gather with a
  constant scalar index that selects a contiguous range of the outermost non-unit
  axis of input 0 (every axis before it has size 1; Slice steps of 1, one axis cut)
  *is* those bytes of input 0, when input 0 is not a weight. The input then stays
  whole until every slice's last reader has run;
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

A Concat's input may also be a **concat part**: its producer writes it straight
into its slice of the Concat's output, which then copies nothing
(:func:`concat_parts`), when

- the Concat joins along its outermost non-unit axis (every axis before it has
  size 1), so that the part's slice is contiguous bytes of the output;
- the part is an activation (not a graph input, weight or graph output) that the
  Concat reads once, written by an operator that computes it (not a view or a
  slice view, whose bytes are another tensor's, nor a device ``Transfer``);
- the Concat is the part's only reader, unless the Concat is a link of a chain of
  nested concatenations (it reads another Concat's output, or a Concat reads its
  output: what ``concat-chains`` makes of a DenseNet block) and the part's other
  readers are operators the Concat depends on, so that they run before it in every
  order (a DenseNet layer reads the features so far, then adds its own). A part read by other
  operators too (DenseNet's features, read by every later Concat of their block;
  U-Net's skip connections, read by the next level down) lives long before the
  Concat runs, and the placers would reserve the Concat's output (one item) from
  then on, the slots of parts not yet computed included: measured on DenseNet-121
  and a U-Net (before ``pack`` placed groups as shapes), that cost more at the peak
  than the copy it saves. In a chain the last Concat holds the
  whole block, every link and feature is written once inside it, and every copy
  the chain would make is saved;
- every input of the Concat is such a part (all or none): an input it copied
  would hold its own bytes and, from the first part on, its slot in the output
  too; when all are in place the Concat does nothing at run time.

Parts take precedence over in-place writes: a part that an activation could have
written over its input gets its own slice instead. Before the Concat runs, each
part holds only its own slice (the Concat's output, the group's root, lives from
the Concat's step to its last reader, and ``pack`` places the group as the shape
its live members make); a part may in turn be the output of a Concat whose parts
lie inside it (nested concatenations).

:func:`reuse_candidates` applies the view and in-place rules. Whether an in-place write is then
legal depends on the schedule (no later reader may see the overwrite): the
``inplace`` pass decides that from liveness, and the scheduler's memory model
(:class:`~tierplan.compiler.scheduling.MemoryGraph`) from the operators run so far.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
from tierplan.compiler.alias_layout import (
    SLICE_VIEW_OPS,
    concat_part_positions,
    slice_view_position,
)
from tierplan.compiler.ir import TRANSFER_OP, IRGraph, Operator, Tensor, alias_roots, op_key
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


def slice_views(ir: IRGraph, op: Operator) -> list[tuple[Tensor, Tensor]]:
    """``(output, source)`` for each output of ``op`` that is a slice view of its input 0."""
    if op.op_type not in SLICE_VIEW_OPS or not op.inputs or not op.inputs[0]:
        return []
    source = ir.tensor(op.inputs[0])
    if source.kind == "weight":
        return []
    return [
        (ir.tensor(name), source)
        for name in op.outputs
        if name and slice_view_position(ir, op, name) is not None
    ]


def concat_parts(ir: IRGraph) -> dict[str, Operator]:
    """Part -> the Concat that it is written into, by the concat-part rule above."""
    parts: dict[str, Operator] = {}
    for concat in ir.operators():
        whole = concat.op_type == "Concat" and bool(concat.outputs) and bool(concat.outputs[0])
        if not whole:
            continue
        # In a chain, a part's other readers must run before the Concat in every order
        # (the Concat depends on them): the Concat is where the part's bytes are
        # declared written, and nothing may read them as that part afterwards.
        before = _ancestors(ir, concat) if _in_chain(ir, concat) else frozenset()
        if all(_is_concat_part(ir, concat, name, before) for name in concat.inputs):
            parts.update((name, concat) for name in concat.inputs)
    return parts


def _ancestors(ir: IRGraph, concat: Operator) -> frozenset[str]:
    """Names of the operators ``concat`` depends on."""
    return frozenset(
        key[1] for key in nx.ancestors(ir.graph, op_key(concat.name)) if key[0] == "op"
    )


def _in_chain(ir: IRGraph, concat: Operator) -> bool:
    """True when ``concat`` reads another Concat's output or is read by a Concat: a link
    of a chain of nested concatenations (``concat-chains``)."""
    reads_concat = any(
        name and ir.has_producer(name) and ir.producer(name).op_type == "Concat"
        for name in concat.inputs
    )
    return reads_concat or any(op.op_type == "Concat" for op in ir.consumers(concat.outputs[0]))


def _is_concat_part(ir: IRGraph, concat: Operator, name: str, before: frozenset[str]) -> bool:
    if not name or len(concat_part_positions(ir, concat, name)) != 1:
        return False
    if ir.tensor(name).kind != "activation" or not ir.has_producer(name):
        return False
    made = ir.producer(name)
    if made.op_type in VIEW_OPS or made.op_type == TRANSFER_OP:
        return False
    if any(view.name == name for view, _ in slice_views(ir, made)):
        return False
    return all(op is concat or op.name in before for op in ir.consumers(name))


def shared_bytes(ir: IRGraph, order: list[Operator]) -> dict[str, str]:
    """Tensor -> the root tensor whose bytes it shares, for the views and the concat parts
    (the reuse that is legal in any order); ``order`` must be topological."""
    parent = {part: concat.outputs[0] for part, concat in concat_parts(ir).items()}
    for tensor, source in view_aliases(ir, order).items():
        parent.setdefault(tensor, source)
    return {name: root for name, root in alias_roots(parent, parent.get).items() if name != root}


def view_aliases(ir: IRGraph, order: list[Operator]) -> dict[str, str]:
    """Tensor -> the root tensor whose bytes it shares, for the views and slice views
    (legal in any order).

    ``order`` must be topological, so that a view of a view finds its root.
    """
    root_of: dict[str, str] = {}
    for op in order:
        found = reuse_candidates(ir, op, in_place=False)
        pairs = [(found.output, found.sources[0])] if found is not None else []
        for output, source in pairs or slice_views(ir, op):
            root_of[output.name] = root_of.get(source.name, source.name)
    return root_of


def is_view(ir: IRGraph, op: Operator) -> bool:
    """True when ``op``'s outputs are views or slice views of its input 0 (``alias_of`` set
    by ``inplace``).

    A view moves and computes nothing: it is neither tiled nor charged traffic.
    """
    outputs = [name for name in op.outputs if name]
    single = op.op_type in VIEW_OPS and len(outputs) == 1
    if not (single or op.op_type in SLICE_VIEW_OPS) or not op.inputs or not op.inputs[0]:
        return False
    sources = [ir.tensor(name).alias_of for name in outputs]
    # A device copy of the input (partition) is the same tensor in the plan.
    return bool(outputs) and all(
        source is not None and ir.plan_name(source) == ir.plan_name(op.inputs[0])
        for source in sources
    )


def moves_nothing(ir: IRGraph, op: Operator) -> bool:
    """True when ``op`` neither computes nor copies a byte: a view (:func:`is_view`), or
    a Concat whose every input already lies in its output (concat parts).

    It is neither tiled nor charged traffic.
    """
    if is_view(ir, op):
        return True
    outputs = [name for name in op.outputs if name]
    return (
        op.op_type == "Concat"
        and len(outputs) == 1
        and all(name and ir.tensor(name).alias_of == outputs[0] for name in op.inputs)
    )
