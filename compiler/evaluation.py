"""The evaluator: validate a planned IR, then cost it.

:func:`evaluate` builds the plan from the IR, runs the validator (an invalid plan
gets no cost, only its violations), and returns an :class:`Evaluation` with the
memory summary, the naive no-reuse baseline and the latency estimate.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from tierplan.compiler.cost import OpCost, estimate
from tierplan.compiler.errors import PassFailure
from tierplan.compiler.ir import IRGraph
from tierplan.compiler.plan import Plan, build_plan, memory_summary, region_key
from tierplan.compiler.target import Target
from tierplan.compiler.validate import validate_plan

ACTIVATION_KINDS = frozenset({"input", "output", "activation", "scratch"})


@dataclass(slots=True)
class Evaluation:
    """The evaluator's verdict on a valid plan.

    ``peak_bytes`` and ``lower_bound_bytes`` are those of the plan summary, per
    ``"<device>/<tier>"``; the ``activation_*`` ones count only non-weight buffers
    (the region that packing decides); ``activation_bound_without_aliasing`` is
    that region's max-live when no tensor reuses another's bytes (the bound that
    in-place reuse goes below); ``no_reuse_bytes`` is the naive arena that gives
    every activation its own aligned bytes.
    """

    plan: Plan
    peak_bytes: dict[str, int]
    lower_bound_bytes: dict[str, int]
    activation_peak_bytes: dict[str, int]
    activation_lower_bound_bytes: dict[str, int]
    activation_bound_without_aliasing: dict[str, int]
    no_reuse_bytes: dict[str, int]
    latency_s: float
    op_costs: list[OpCost] = field(default_factory=list)

    def seconds_by_op_type(self) -> dict[str, float]:
        """Estimated time per op type, largest first."""
        totals: dict[str, float] = defaultdict(float)
        for cost in self.op_costs:
            totals[cost.op_type] += cost.seconds
        return dict(sorted(totals.items(), key=lambda item: (-item[1], item[0])))


def evaluate(ir: IRGraph, target: Target) -> Evaluation:
    """Validate and cost the plan of ``ir``; raise :class:`PassFailure` if it is invalid."""
    plan = build_plan(ir, target)
    violations = validate_plan(plan, ir)
    if violations:
        shown = "; ".join(str(v) for v in violations[:3])
        more = f" (and {len(violations) - 3} more)" if len(violations) > 3 else ""
        raise PassFailure(f"the plan is invalid: {shown}{more}")
    costs = estimate(ir, target)
    latency = sum(cost.seconds for cost in costs)
    plan["summary"]["latency_s"] = latency
    activation_peak, activation_bound = memory_summary(plan["buffers"], set(ACTIVATION_KINDS))
    unaliased = [{**buffer, "alias_of": None} for buffer in plan["buffers"]]
    _, bound_without_aliasing = memory_summary(unaliased, set(ACTIVATION_KINDS))
    no_reuse: dict[str, int] = defaultdict(int)
    for buffer in plan["buffers"]:
        if buffer["kind"] in ACTIVATION_KINDS:
            no_reuse[region_key(buffer["device"], buffer["tier"])] += target.align_up(
                buffer["bytes"]
            )
    return Evaluation(
        plan=plan,
        peak_bytes=plan["summary"]["peak_bytes"],
        lower_bound_bytes=plan["summary"]["lower_bound_bytes"],
        activation_peak_bytes=activation_peak,
        activation_lower_bound_bytes=activation_bound,
        activation_bound_without_aliasing=bound_without_aliasing,
        no_reuse_bytes=dict(sorted(no_reuse.items())),
        latency_s=latency,
        op_costs=costs,
    )
