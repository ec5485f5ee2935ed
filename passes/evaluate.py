"""``evaluate``: validate the plan, then estimate its cost.

Reads: everything (the plan is built from the IR, for the target as ``partition``
left it: ``context.planned_target()``). Writes nothing on the IR; leaves the
:class:`~tierplan.compiler.evaluation.Evaluation` (``context.result(Evaluate)``). An invalid plan gets no cost: the pass fails
with its violations. ``evaluate{validate=false}`` costs the plan without validating
it (the fit search's screening compiles; the plan it chooses is validated).
"""

from __future__ import annotations

from dataclasses import dataclass

from tierplan.compiler.evaluation import Evaluation, evaluate
from tierplan.compiler.ir import IRGraph
from tierplan.compiler.pass_manager import PassContext, PassResult, ResultPass, register_pass


@register_pass
@dataclass(frozen=True)
class Evaluate(ResultPass[Evaluation]):
    """Validate the plan against every rule, then estimate latency and traffic."""

    name = "evaluate"
    requires = frozenset({"placement"})
    provides = frozenset({"evaluation"})

    validate: bool = True  # false: cost only (the fit search's screening compiles)

    def run(self, ir: IRGraph, context: PassContext) -> PassResult:
        """Leave the evaluation in the context."""
        evaluation = evaluate(ir, context.planned_target(), self.validate)
        context.set_result(self, evaluation)
        return PassResult(
            changed=False,
            notes=[
                f"{'valid' if self.validate else 'not validated'}; estimated latency "
                f"{evaluation.latency_s * 1e3:.3f} ms"
            ],
        )
