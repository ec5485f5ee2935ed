"""A pass defined outside the tierplan package, loaded as a plugin by the tests."""

from __future__ import annotations

from dataclasses import dataclass

from tierplan.compiler import IRGraph, Pass, PassContext, PassResult, register_pass


@register_pass
@dataclass(frozen=True)
class TagLargeTensors(Pass):
    """Count tensors at least `threshold` bytes large (a custom analysis pass)."""

    name = "tag-large-tensors"
    requires = frozenset({"liveness"})
    threshold: int = 1024

    def run(self, ir: IRGraph, context: PassContext) -> PassResult:
        large = sorted(t.name for t in ir.tensors() if t.nbytes >= self.threshold)
        context.results[self.name] = large
        return PassResult(changed=False, notes=[f"{len(large)} tensors >= {self.threshold} bytes"])
