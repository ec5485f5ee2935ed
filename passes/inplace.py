"""``inplace``: let outputs reuse their input's bytes (views and in-place writes).

Reads: ``Tensor.start``/``end`` (liveness), shapes, op types. Writes:
``Tensor.alias_of`` (``plan-format.md``); ``pack`` then places an alias group as
one item, at one offset.

Rules:

- **Views** (Reshape, Flatten, Squeeze, Unsqueeze, Identity): the output is the
  bytes of input 0, when both have the same size and input 0 is not a weight.
- **In-place writes** (unary elementwise ops and activations, Cast between
  types of one size, Dropout, inference BatchNormalization, binary elementwise ops):
  the output overwrites one input when
  (a) the input has the output's shape and size (so broadcasting never reads an
  overwritten element),
  (b) the input is an activation: not a graph input, weight or graph output,
  (c) every member of the input's alias group (the input, the views of it, what
  it overwrote) ends at this operator's step: no later reader sees the overwrite,
  (d) the input was not already overwritten by another output, and
  (e) the output is not a graph output (it must then outlive the schedule on its own).
  The first input in slot order that qualifies is reused.
"""

from __future__ import annotations

from dataclasses import dataclass

from tierplan.compiler.ir import IRGraph, Operator, Tensor
from tierplan.compiler.pass_manager import Pass, PassContext, PassResult, register_pass
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
    }
)  # fmt: skip


def _group_end(ir: IRGraph, root: str, ends: dict[str, int]) -> int:
    return ends.get(root, ir.tensor(root).end or 0)


@register_pass
@dataclass(frozen=True)
class InPlace(Pass):
    """Mark views and in-place writes (alias_of) so outputs reuse dying inputs' bytes."""

    name = "inplace"
    requires = frozenset({"liveness"})
    provides = frozenset({"aliasing"})
    invalidates = frozenset({"placement", "evaluation"})

    views: bool = True
    in_place: bool = True

    def run(self, ir: IRGraph, context: PassContext) -> PassResult:
        """Set ``alias_of`` where the rules of the module docstring allow it."""
        root_of: dict[str, str] = {}
        group_end: dict[str, int] = {}
        overwritten: set[str] = set()
        marked = 0
        for tensor in ir.tensors():
            tensor.alias_of = None
        for op in ir.scheduled_operators():
            output = self._output(ir, op)
            if output is None or not output.needs_buffer:
                continue
            source = self._source(ir, op, output, root_of, group_end, overwritten)
            if source is None:
                continue
            output.alias_of = source.name
            root = root_of.get(source.name, source.name)
            root_of[output.name] = root
            group_end[root] = max(_group_end(ir, root, group_end), source.end or 0, output.end or 0)
            if op.op_type not in VIEW_OPS:
                overwritten.add(source.name)
            marked += 1
        return PassResult(changed=marked > 0, notes=[f"{marked} outputs reuse an input's bytes"])

    def _output(self, ir: IRGraph, op: Operator) -> Tensor | None:
        outputs = [name for name in op.outputs if name]
        if not outputs or op.inserted:
            return None
        if op.op_type == "BatchNormalization" and op.attributes.get("training_mode"):
            return None
        if op.op_type == "Dropout" and len([n for n in op.inputs if n]) > 2:
            return None  # a training_mode input may be true at run time
        return ir.tensor(outputs[0])

    def _source(
        self,
        ir: IRGraph,
        op: Operator,
        output: Tensor,
        root_of: dict[str, str],
        group_end: dict[str, int],
        overwritten: set[str],
    ) -> Tensor | None:
        if op.op_type in VIEW_OPS:
            if not self.views or not op.inputs or not op.inputs[0]:
                return None
            source = ir.tensor(op.inputs[0])
            if source.kind == "weight" or source.nbytes != output.nbytes or not source.needs_buffer:
                return None
            return source
        if not self.in_place or op.op_type not in IN_PLACE_OPS or output.graph_output:
            return None
        candidates = [ir.tensor(name) for name in op.inputs[:2] if name]
        for source in candidates:
            if (
                source.kind == "activation"
                and source.shape == output.shape
                and source.nbytes == output.nbytes
                and source.name not in overwritten
                and source.end == op.step
                and _group_end(ir, root_of.get(source.name, source.name), group_end)
                <= (op.step or 0)
            ):
                return source
        return None
