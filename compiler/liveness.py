"""The liveness rules: the inclusive range of steps during which a tensor's bytes must stay intact.

Rules (``plan-format.md``): an operator output lives from its producing step to
its last reader, or to the last step if it is a graph output. Weights live from
step 0 to the last step; graph inputs from step 0 to their last reader. An output
nobody reads still needs bytes at the step that writes it. A graph input nobody
reads needs no buffer. A Concat's output whose inputs are written straight into it
(concat parts, ``alias_of`` the output) also lives from its own step: before it, its
bytes are its parts', each live from its own start (``pack`` places the group as the
shape its live members make). A tile buffer (``scratch_of`` its operator) lives at its
operator's step.

The one definition: the ``liveness`` pass writes it on the IR, and ``partition``
prices device assignments and recomputes ranges after its transfers with it.
"""

from __future__ import annotations

from tierplan.compiler.ir import IRGraph, Tensor


def live_range(ir: IRGraph, tensor: Tensor, last_step: int) -> tuple[int, int] | None:
    """Inclusive ``(start, end)`` steps of ``tensor``, or ``None`` if it needs no buffer."""
    if tensor.scratch_of is not None:  # a tile buffer: its operator's step
        step = ir.operator(tensor.scratch_of).step
        return None if step is None else (step, step)
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
