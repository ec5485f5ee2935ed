"""Why nothing fits: one line naming the binding constraint and its bytes.

Read from the compiled plan nearest the budget (the smallest ``excess``), at its
tightest limit, in this order:

1. the weights alone exceed a tier's limit: ``weights need 12.5GiB of DDR on
   device 0, more than the budget of 8.0GiB: use --devices 3``;
2. one operator's own tensors (inputs, outputs and tile scratch, plus the weights
   that stay resident) exceed it: ``operator Conv_3 (Conv) alone needs 9.4MiB of
   device 0 (its inputs and outputs ...) and no rewrite splits it; the budget is 8.0MiB``;
3. otherwise the peak itself: the step and the largest tensors alive then.
"""

from __future__ import annotations

import math
from collections import defaultdict

from tierplan.compiler.api import CompileResult
from tierplan.compiler.fitting.budget import Budget, Limit
from tierplan.compiler.ir import Tensor
from tierplan.compiler.plan import region_key
from tierplan.compiler.report.units import human_bytes

SHOWN_TENSORS = 3


def why_not(closest: CompileResult, budget: Budget, options: str) -> str:
    """The one-line reason (see the module docstring); ``options`` spells the combination."""
    evaluation = closest.evaluation
    assert evaluation is not None  # the search's pipelines end with evaluate
    limits = budget.limits(evaluation.peak_bytes, evaluation.activation_peak_bytes)
    limit = max(limits, key=lambda found: found.ratio)
    device, _, tier = limit.region.partition("/")
    tensors = [
        t
        for t in closest.ir.tensors()
        if t.needs_buffer
        and str(t.device) == device
        and (t.tier == tier if tier else t.kind != "weight")
    ]
    where = f"activation memory on device {device}" if not tier else f"{tier} on device {device}"
    weights = sum(t.nbytes for t in tensors if t.kind == "weight")
    if weights > limit.allowed:
        everywhere = sum(t.nbytes for t in closest.ir.tensors() if t.kind == "weight")
        devices = math.ceil(everywhere / limit.allowed) + 1
        return (
            f"weights need {human_bytes(weights)} of {where}, more than the budget of "
            f"{human_bytes(limit.allowed)}: use --devices {devices}"
        )
    operator = _heaviest_operator(closest, tensors)
    if operator is not None and operator[1] + weights > limit.allowed:
        name, need, parts = operator
        resident = f", plus {human_bytes(weights)} of weights" if weights else ""
        return (
            f"operator {name} alone needs {human_bytes(need + weights)} of {where} "
            f"(its inputs and outputs: {parts}{resident}) and no rewrite splits it; "
            f"the budget is {human_bytes(limit.allowed)}"
        )
    return _peak_line(closest, tensors, limit, where, options)


def _heaviest_operator(result: CompileResult, tensors: list[Tensor]) -> tuple[str, int, str] | None:
    """The operator whose own non-weight tensors take the most bytes (tensors sharing
    bytes, in place or as views, counted once), and those tensors, largest first."""
    here = {t.name: t for t in tensors if t.kind != "weight"}
    roots = result.ir.alias_roots(here.values())
    best: tuple[int, str, str] | None = None
    for op in result.ir.scheduled_operators():
        names = [n for n in dict.fromkeys([*op.read_tensors(), *op.outputs]) if n in here]
        names += [t.name for t in tensors if t.kind == "scratch" and t.start == op.step]
        groups: dict[str, list[str]] = defaultdict(list)
        for name in names:
            groups[roots.get(name, name)].append(name)
        sizes = {root: max(here[n].nbytes for n in members) for root, members in groups.items()}
        need = sum(sizes.values())
        if best is None or need > best[0]:
            parts = []
            for root in sorted(groups, key=lambda r: (-sizes[r], r))[:SHOWN_TENSORS]:
                first, *shared = (result.ir.plan_name(n) for n in groups[root])
                also = f" (shared with {', '.join(shared)})" if shared else ""
                parts.append(f"{first} {human_bytes(sizes[root])}{also}")
            best = (need, f"{op.name} ({op.op_type})", ", ".join(parts))
    return None if best is None else (best[1], best[0], best[2])


def _peak_line(
    result: CompileResult, tensors: list[Tensor], limit: Limit, where: str, options: str
) -> str:
    """The step where the binding region peaks and the largest tensors alive there."""
    by_step: dict[int, int] = defaultdict(int)
    for t in tensors:
        if t.kind != "weight" and t.start is not None and t.end is not None:
            for step in range(t.start, t.end + 1):
                by_step[step] += t.nbytes
    step = max(sorted(by_step), key=lambda s: by_step[s], default=0)
    alive = sorted(
        (t for t in tensors if t.kind != "weight" and (t.start or 0) <= step <= (t.end or 0)),
        key=lambda t: (-t.nbytes, t.name),
    )[:SHOWN_TENSORS]
    names = ", ".join(f"{result.ir.plan_name(t.name)} {human_bytes(t.nbytes)}" for t in alive)
    operator = next((op.name for op in result.ir.operators() if op.step == step), "?")
    regions = {region_key(t.device, t.tier or "") for t in tensors}
    return (
        f"the smallest plan found ({options}) needs {human_bytes(limit.used)} of {where} "
        f"({', '.join(sorted(regions))}); at step {step} ({operator}) its largest live tensors "
        f"are {names}; the budget is {human_bytes(limit.allowed)}"
    )
