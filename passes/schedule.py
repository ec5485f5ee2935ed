"""``schedule``: choose the execution order of the operators.

Reads: the graph structure. Writes: ``Operator.step`` of every operator
(0..n-1, a topological order).

The reference order is the ONNX order when it is topological, as the ONNX
standard requires; a file whose nodes are out of order is sorted topologically,
breaking ties by the ONNX position so the result is deterministic. With
``order=memory`` (the default), :func:`~tierplan.compiler.scheduling.memory_schedule`
then looks for an order with a lower max-live, expanding at most ``budget``
frontiers and trying at most a number of operators scaled to them and to the graph
(:func:`~tierplan.compiler.scheduling.move_budget`): its cost is bounded by counts,
never by time, and its note says when the budget rather than a proof ended it. The
order is kept only when strictly better than the reference, so the
schedule is never worse than the ONNX order. With ``aliasing=true`` (the default)
max-live counts views and in-place writes as the ``inplace`` pass will make them
for the order (an input's bytes are taken over when it dies at the writer), so the
order is chosen for the memory the plan will need. The
:class:`ScheduleReport` it leaves says which order won
and whether its bound is the exact optimum (``context.result(Schedule)``).

Ensures: every operator has a step, the steps are ``0..n-1``, and every operator
runs after the producers of what it reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from tierplan.compiler.ir import IRGraph
from tierplan.compiler.pass_manager import (
    Bounds,
    PassContext,
    PassResult,
    PostconditionError,
    ResultPass,
    register_pass,
)
from tierplan.compiler.scheduling import MemoryGraph, memory_schedule, model_order


@dataclass(frozen=True, slots=True)
class ScheduleReport:
    """What ``schedule`` chose (``context.result(Schedule)``).

    ``bound`` is the max-live (bytes, weights left out; with ``aliasing``, views
    and in-place writes counted as the ``inplace`` pass makes them) of the chosen order, ``onnx_order_bound``
    that of the ONNX order. ``method`` says how good the
    chosen order is known to be: ``onnx`` (asked for), ``exact`` (the search covered
    every frontier: no order has a lower max-live) or ``beam`` (a heuristic order).
    ``budget_spent``: the search budget ended a ``beam`` search (a wider one might
    find a lower max-live), rather than a search that found nothing lower.
    """

    order: str
    method: str
    bound: int
    onnx_order_bound: int
    frontiers: int
    aliasing: bool
    budget_spent: bool = False


@register_pass
@dataclass(frozen=True)
class Schedule(ResultPass[ScheduleReport]):
    """Order operators for a low max-live (``order=memory``) or as in the model (``onnx``)."""

    name = "schedule"
    provides = frozenset({"schedule"})
    invalidates = frozenset({"liveness", "placement", "evaluation"})

    order: Literal["memory", "onnx"] = "memory"
    budget: Annotated[int, Bounds(0)] = 20_000  # frontiers the search may expand
    aliasing: bool = True

    def ensures(self, ir: IRGraph, context: PassContext) -> None:
        """A topological order: see :func:`ensure_topological`."""
        ensure_topological(ir)

    def run(self, ir: IRGraph, context: PassContext) -> PassResult:
        """Set ``step`` on every operator."""
        reference = model_order(ir)
        graph = MemoryGraph.of(ir, reference, reuse=self.aliasing)
        onnx_bound = graph.max_live(range(len(reference)))
        report = ScheduleReport("onnx", "onnx", onnx_bound, onnx_bound, 0, self.aliasing)
        chosen = reference
        if self.order == "memory" and reference:
            found = memory_schedule(graph, self.budget)
            method = "exact" if found.exact else "beam"
            order = "onnx" if found.order is None else "memory"
            if found.order is not None:
                chosen = [reference[v] for v in found.order]
            report = ScheduleReport(
                order,
                method,
                found.peak,
                onnx_bound,
                found.frontiers,
                self.aliasing,
                found.budget_spent,
            )
        context.set_result(self, report)
        changed = False
        for step, op in enumerate(chosen):
            changed |= op.step != step
            op.step = step
        note = (
            f"{len(chosen)} operators in {report.order} order ({report.method}): max-live "
            f"{report.bound} bytes, ONNX order {report.onnx_order_bound}"
            + (" (with views and in-place writes)" if report.aliasing else "")
            + ("; the search budget ended it, not a proof" if report.budget_spent else "")
        )
        return PassResult(changed=changed, notes=[note])


def ensure_topological(ir: IRGraph) -> None:
    """Raise :class:`PostconditionError` unless the steps are ``0..n-1`` and every operator
    runs after the producers of the tensors it reads (the ``schedule`` fact)."""
    operators = list(ir.operators())
    steps = sorted(op.step if op.step is not None else -1 for op in operators)
    if steps != list(range(len(steps))):
        raise PostconditionError("the operators' steps are not exactly 0..n-1")
    written = {name: op.step or 0 for op in operators for name in op.outputs if name}
    for op in operators:
        for name in op.read_tensors():
            if written.get(name, -1) >= (op.step or 0):
                raise PostconditionError(
                    f"operator {op.name!r} runs before the producer of {name!r}, which it reads"
                )
