"""``liveness``: the range of steps during which each tensor's bytes must stay intact.

Reads: ``Operator.step``.
Writes: ``Tensor.start`` and ``Tensor.end`` (inclusive).

Rules (``plan-format.md``): an operator output lives from its producing step to
its last reader, or to the last step if it is a graph output. Weights live from
step 0 to the last step; graph inputs from step 0 to their last reader. An output
nobody reads still needs bytes at the step that writes it. A graph input nobody
reads needs no buffer (``start`` and ``end`` stay ``None``). A Concat's output whose
inputs are written straight into it (concat parts, ``alias_of`` the output) also
lives from its own step: before it, its bytes are its parts', each live from its own
start (``pack`` places the group as the shape its live members make).
"""

from __future__ import annotations

from dataclasses import dataclass

from tierplan.compiler.ir import IRGraph, Tensor
from tierplan.compiler.pass_manager import Pass, PassContext, PassResult, register_pass


def live_range(ir: IRGraph, tensor: Tensor, last_step: int) -> tuple[int, int] | None:
    """Inclusive ``(start, end)`` steps of ``tensor``, or ``None`` if it needs no buffer."""
    readers = [op.step for op in ir.consumers(tensor.name) if op.step is not None]
    if tensor.kind == "weight":
        return (0, last_step)
    if ir.has_producer(tensor.name):
        made = ir.producer(tensor.name)
        start = made.step
        assert start is not None
    elif readers or tensor.graph_output:
        start = 0
    else:
        return None
    end = max(readers, default=start)
    if tensor.graph_output:
        end = last_step
    return (start, end)


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
