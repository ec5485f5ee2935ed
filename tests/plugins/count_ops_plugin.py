"""A pass defined outside the tierplan package, loaded as a plugin by the tests."""

from __future__ import annotations

from dataclasses import dataclass

from tierplan.compiler import IRGraph, PassContext, PassResult, ResultPass, register_pass


@register_pass
@dataclass(frozen=True)
class TagLargeTensors(ResultPass[list[str]]):
    """Count tensors at least `threshold` bytes large (a custom analysis pass)."""

    name = "tag-large-tensors"
    requires = frozenset({"liveness"})
    threshold: int = 1024

    def run(self, ir: IRGraph, context: PassContext) -> PassResult:
        large = sorted(t.name for t in ir.tensors() if t.nbytes >= self.threshold)
        context.set_result(self, large)
        return PassResult(changed=False, notes=[f"{len(large)} tensors >= {self.threshold} bytes"])
