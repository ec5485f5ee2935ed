"""Passes that break their promises on purpose, loaded as a plugin by the tests.

``forgetful-pack`` is ``pack`` but forgets one offset: the post-condition it inherits
from ``pack`` (every buffer has an offset) must catch it after every run.
``sloppy-count`` declares a costly post-condition it never meets: only
``--verify-each`` checks it.
"""

from __future__ import annotations

from dataclasses import dataclass

from tierplan.compiler import (
    IRGraph,
    Pass,
    PassContext,
    PassResult,
    PostconditionError,
    register_pass,
)
from tierplan.passes.pack import Pack


@register_pass
@dataclass(frozen=True)
class ForgetfulPack(Pack):
    """Pack, then forget the offset of the largest buffer."""

    name = "forgetful-pack"

    def run(self, ir: IRGraph, context: PassContext) -> PassResult:
        result = super().run(ir, context)
        largest = max((t for t in ir.tensors() if t.needs_buffer), key=lambda t: t.nbytes)
        largest.offset = None
        return result


@register_pass
@dataclass(frozen=True)
class SloppyCount(Pass):
    """Count operators; promise (costly to check) that the graph has none."""

    name = "sloppy-count"

    def run(self, ir: IRGraph, context: PassContext) -> PassResult:
        return PassResult(changed=False, notes=[f"{ir.operator_count()} operators"])

    def ensures_costly(self, ir: IRGraph, context: PassContext) -> None:
        if ir.operator_count():
            raise PostconditionError(f"{ir.operator_count()} operators left, promised none")
