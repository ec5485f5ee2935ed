"""``liveness``: the range of steps during which each tensor's bytes must stay intact.

Reads: ``Operator.step``.
Writes: ``Tensor.start`` and ``Tensor.end`` (inclusive).

The rules are :func:`~tierplan.compiler.liveness.live_range`'s (``plan-format.md``);
a tensor that needs no buffer (a graph input nobody reads) keeps ``start`` and
``end`` ``None``.

Ensures: every tensor an operator writes or reads (and every weight) has a range
within the schedule, its start no later than its end.
"""

from __future__ import annotations

from dataclasses import dataclass

from tierplan.compiler.ir import IRGraph
from tierplan.compiler.liveness import live_range
from tierplan.compiler.pass_manager import (
    Pass,
    PassContext,
    PassResult,
    PostconditionError,
    register_pass,
)


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
