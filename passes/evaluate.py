"""``evaluate``: validate the plan, then estimate its cost.

Reads: everything (the plan is built from the IR). Writes nothing on the IR; puts
the :class:`~tierplan.compiler.evaluation.Evaluation` in
``context.results["evaluate"]``. An invalid plan gets no cost: the pass fails
with its violations. ``evaluate{validate=false}`` costs the plan without validating
it (the fit search's screening compiles; the plan it chooses is validated).
"""

from __future__ import annotations

from dataclasses import dataclass

from tierplan.compiler.evaluation import evaluate
from tierplan.compiler.ir import IRGraph
from tierplan.compiler.pass_manager import Pass, PassContext, PassResult, register_pass


@register_pass
@dataclass(frozen=True)
class Evaluate(Pass):
    """Validate the plan against every rule, then estimate latency and traffic."""

    name = "evaluate"
    requires = frozenset({"placement"})
    provides = frozenset({"evaluation"})

    validate: bool = True  # false: cost only (the fit search's screening compiles)

    def run(self, ir: IRGraph, context: PassContext) -> PassResult:
        """Store the evaluation in ``context.results["evaluate"]``."""
        evaluation = evaluate(ir, context.target, self.validate)
        context.results[self.name] = evaluation
        return PassResult(
            changed=False,
            notes=[
                f"{'valid' if self.validate else 'not validated'}; estimated latency "
                f"{evaluation.latency_s * 1e3:.3f} ms"
            ],
        )
