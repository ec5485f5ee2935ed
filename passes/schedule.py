"""``schedule``: choose the execution order of the operators.

Reads: the graph structure. Writes: ``Operator.step`` of every operator
(0..n-1, a topological order).

This first version keeps the ONNX order when it is topological, as the ONNX
standard requires; a file whose nodes are out of order is sorted topologically,
breaking ties by the ONNX position so the result is deterministic.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import networkx as nx
from tierplan.compiler.ir import IRGraph, Operator
from tierplan.compiler.pass_manager import Pass, PassContext, PassResult, register_pass

log = logging.getLogger(__name__)


def model_order(ir: IRGraph) -> list[Operator]:
    """Operators in ONNX order if that order is topological, else a stable topological order."""
    ops = sorted(ir.operators(), key=lambda op: (op.index is None, op.index or 0, op.name))
    position = {op.name: i for i, op in enumerate(ops)}
    for op in ops:
        for name in op.read_tensors():
            if ir.has_producer(name) and position[ir.producer(name).name] > position[op.name]:
                log.warning("the ONNX node order is not topological; sorting it")
                return _stable_topological(ir, position)
    return ops


def _stable_topological(ir: IRGraph, position: dict[str, int]) -> list[Operator]:
    def key(node: tuple[str, str]) -> tuple[int, str]:
        return (position.get(node[1], -1) if node[0] == "op" else -1, node[1])

    order = nx.lexicographical_topological_sort(ir.graph, key=key)
    return [ir.operator(node[1]) for node in order if node[0] == "op"]


@register_pass
@dataclass(frozen=True)
class Schedule(Pass):
    """Order operators: the ONNX order, verified topological."""

    name = "schedule"
    provides = frozenset({"schedule"})
    invalidates = frozenset({"liveness", "placement", "evaluation"})

    def run(self, ir: IRGraph, context: PassContext) -> PassResult:
        """Set ``step`` on every operator."""
        changed = False
        for step, op in enumerate(model_order(ir)):
            changed |= op.step != step
            op.step = step
        return PassResult(changed=changed, notes=[f"{ir.operator_count()} operators scheduled"])
