"""The liveness rules: the inclusive range of steps during which a tensor's bytes must stay intact.

Rules (``plan-format.md``): an operator output lives from its producing step to
its last reader, or to the last step if it is a graph output. Weights live from
step 0 to the last step; graph inputs from step 0 to their last reader. An output
nobody reads still needs bytes at the step that writes it. A graph input nobody
reads needs no buffer. A Concat's output whose inputs are written straight into it
(concat parts, ``alias_of`` the output) lives from its first part's start: its bytes
hold the parts from then on. A tile buffer (``scratch_of`` its operator) lives at its
operator's step.

The one definition: the ``liveness`` pass writes it on the IR, and ``partition``
prices device assignments and recomputes ranges after its transfers with it.
"""

from __future__ import annotations

from tierplan.compiler.ir import IRGraph, Operator, Tensor


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
        written = made.step
        assert written is not None
        start = written
        if made.op_type == "Concat":
            start = min([start, *_part_starts(ir, made, tensor.name, last_step)])
    elif readers or tensor.graph_output:
        start = written = 0
    else:
        return None
    end = max(readers, default=written)
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
