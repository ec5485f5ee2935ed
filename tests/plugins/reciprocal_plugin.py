"""A rewriting pass defined outside tierplan: ``Div(x, c)`` -> ``Mul(x, Reciprocal(c))``."""

from __future__ import annotations

from dataclasses import dataclass

from tierplan.compiler import IRGraph, Operator, Pass, PassContext, PassResult, register_pass


@register_pass
@dataclass(frozen=True)
class DivideByReciprocal(Pass):
    """Replace each division by a weight with a multiplication by its reciprocal."""

    name = "div-to-mul"

    def run(self, ir: IRGraph, context: PassContext) -> PassResult:
        divisions = [
            op for op in ir.operators()
            if op.op_type == "Div" and ir.tensor(op.inputs[1]).kind == "weight"
        ]  # fmt: skip
        for div in divisions:
            x, c = div.inputs
            weight = ir.tensor(c)
            inverse = ir.add_value(f"{c}_reciprocal", weight.dtype, weight.shape, weight.nbytes)
            ir.remove_operator(div.name)
            ir.add_operator(Operator(ir.unique_name(f"{div.name}_reciprocal"), "Reciprocal",
                                     inputs=[c], outputs=[inverse.name]))  # fmt: skip
            ir.add_operator(Operator(div.name, "Mul", inputs=[x, inverse.name],
                                     outputs=div.outputs))  # fmt: skip
        return PassResult(changed=bool(divisions), notes=[f"{len(divisions)} divisions"])
