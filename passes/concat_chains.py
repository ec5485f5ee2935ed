"""``concat-chains``: make a Concat that repeats an earlier Concat's inputs read its output.

Reads: operators, shapes (before ``schedule``). Writes: the graph. A DenseNet block
concatenates its features again before every layer: ``Concat(x, f1)``, then
``Concat(x, f1, f2)``, ``Concat(x, f1, f2, f3)`` ... each a copy of everything so far.
When a Concat's inputs begin with all the inputs of another Concat along the same
axis, this pass replaces it by a Concat of that Concat's output and the rest
(``Concat(Concat(x, f1), f2)``), which computes the same bytes. The block becomes one
chain of nested concatenations, and the ``inplace`` pass can then write every
feature once, in its slice of the block's last Concat, with no copy at all (the
concat-part rule of :mod:`tierplan.compiler.aliasing` admits chain links that other
operators read too). The longest earlier prefix is chosen; each rewritten Concat is
``inserted`` and keeps its output's name, so the plan and the ``.planned.onnx``
describe the chained graph, which ``tierplan run`` executes against the original.
"""

from __future__ import annotations

from dataclasses import dataclass

from tierplan.compiler.alias_layout import operator_axis
from tierplan.compiler.ir import IRGraph, Operator
from tierplan.compiler.pass_manager import GRAPH_FACTS, Pass, PassContext, PassResult, register_pass
from tierplan.compiler.rewriting import Emitter


def chain_links(ir: IRGraph) -> dict[str, Operator]:
    """Concat to rewrite -> the earlier Concat whose inputs start its own (the longest)."""
    concats = [
        op
        for op in ir.operators()
        if op.op_type == "Concat" and op.outputs and op.outputs[0] and all(op.inputs)
    ]
    # Concats that may be prefixes of one another: the same first input, the same axis.
    key = {
        op.name: (op.inputs[0], operator_axis(op, len(ir.tensor(op.outputs[0]).shape)))
        for op in concats
    }
    by_first: dict[tuple[str, int | None], list[Operator]] = {}
    for op in concats:
        by_first.setdefault(key[op.name], []).append(op)
    links: dict[str, Operator] = {}
    for op in concats:
        prefixes = [
            earlier
            for earlier in by_first[key[op.name]]
            if len(earlier.inputs) < len(op.inputs)
            and op.inputs[: len(earlier.inputs)] == earlier.inputs
        ]
        if prefixes:
            links[op.name] = max(prefixes, key=lambda earlier: (len(earlier.inputs), earlier.name))
    return links


@register_pass
@dataclass(frozen=True)
class ChainConcats(Pass):
    """Let a Concat that repeats an earlier Concat's inputs read that Concat's output."""

    name = "concat-chains"
    invalidates = GRAPH_FACTS

    def run(self, ir: IRGraph, context: PassContext) -> PassResult:
        links = chain_links(ir)
        for name, prefix in sorted(links.items()):
            concat = ir.remove_operator(name)
            output = ir.tensor(concat.outputs[0])
            inputs = [prefix.outputs[0], *concat.inputs[len(prefix.inputs) :]]
            Emitter(ir, name).op(
                "Concat", inputs, output, output.shape, dict(concat.attributes), out=output.name
            )
        inputs_read = sum(len(prefix.inputs) for prefix in links.values())
        return PassResult(
            changed=bool(links),
            notes=[
                f"{len(links)} Concats read an earlier Concat's output instead of "
                f"{inputs_read} of their inputs"
            ],
        )
