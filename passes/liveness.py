"""``liveness``: the range of steps during which each tensor's bytes must stay intact.

Reads: ``Operator.step``, ``Tensor.alias_of`` (concat parts, once ``inplace`` ran).
Writes: ``Tensor.start`` and ``Tensor.end`` (inclusive).

Rules (``plan-format.md``): an operator output lives from its producing step to
its last reader, or to the last step if it is a graph output. Weights live from
step 0 to the last step; graph inputs from step 0 to their last reader. An output
nobody reads still needs bytes at the step that writes it. A graph input nobody
reads needs no buffer (``start`` and ``end`` stay ``None``). A Concat's output whose
inputs are written straight into it (concat parts, ``alias_of`` the output) lives
from its first part's start: its bytes hold the parts from then on.

Ensures: every tensor an operator writes or reads (and every weight) has a range
within the schedule, its start no later than its end.
"""

from __future__ import annotations

from dataclasses import dataclass

from tierplan.compiler.ir import IRGraph, Operator, Tensor
from tierplan.compiler.pass_manager import (
    Pass,
    PassContext,
    PassResult,
    PostconditionError,
    register_pass,
)


def live_range(ir: IRGraph, tensor: Tensor, last_step: int) -> tuple[int, int] | None:
    """Inclusive ``(start, end)`` steps of ``tensor``, or ``None`` if it needs no buffer."""
    readers = [op.step for op in ir.consumers(tensor.name) if op.step is not None]
    if tensor.kind == "weight":
        return (0, last_step)
    if ir.has_producer(tensor.name):
        made = ir.producer(tensor.name)
        start = made.step
        assert start is not None
        if made.op_type == "Concat":
            start = min([start, *_part_starts(ir, made, tensor.name, last_step)])
    elif readers or tensor.graph_output:
        start = 0
    else:
        return None
    end = max(readers, default=start)
    if tensor.graph_output:
        end = last_step
    return (start, end)


def _part_starts(ir: IRGraph, concat: Operator, output: str, last_step: int) -> list[int]:
    """Where the concat parts of ``output`` (inputs that alias it) start: the Concat's
    output holds their bytes from the first one on."""
    spans = [
        live_range(ir, ir.tensor(name), last_step)
        for name in concat.inputs
        if name and ir.tensor(name).alias_of == output
    ]
    return [span[0] for span in spans if span is not None]


@register_pass
@dataclass(frozen=True)
class Liveness(Pass):
    """Compute each tensor's live range [start, end] from the schedule."""

    name = "liveness"
    requires = frozenset({"schedule"})
    provides = frozenset({"liveness"})
    invalidates = frozenset({"placement", "evaluation"})

    def run(self, ir: IRGraph, context: PassContext) -> PassResult:
        """Set ``start`` and ``end`` on every tensor."""
        last_step = ir.operator_count() - 1
        changed = False
        for tensor in ir.tensors():
            span = live_range(ir, tensor, last_step)
            start, end = span if span else (None, None)
            changed |= (tensor.start, tensor.end) != (start, end)
            tensor.start, tensor.end = start, end
        return PassResult(changed=changed)

    def ensures(self, ir: IRGraph, context: PassContext) -> None:
        """Every tensor that is written, read or a weight has a range within the schedule."""
        last_step = ir.operator_count() - 1
        for tensor in ir.tensors():
            used = tensor.kind == "weight" or ir.has_producer(tensor.name)
            if not (used or ir.consumers(tensor.name)):
                continue
            if tensor.start is None or tensor.end is None:
                raise PostconditionError(f"tensor {tensor.name!r} has no live range")
            if not 0 <= tensor.start <= tensor.end <= last_step:
                raise PostconditionError(
                    f"tensor {tensor.name!r} lives [{tensor.start}, {tensor.end}], "
                    f"not within steps 0..{last_step}"
                )
