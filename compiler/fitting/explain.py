"""Why nothing fits: one line naming the binding constraint and its bytes.

Read from the compiled plan nearest the budget (the smallest ``excess``), at its
tightest limit, and, for an operator, from every compiled combination, in this order:

1. the weights alone exceed a tier's limit: ``weights need 12.5GiB of DDR on
   device 0, more than the budget of 8.0GiB: use --devices 3``;
2. one operator's own tensors (inputs, outputs and tile scratch; for a tier's
   limit, plus the weights that stay resident) exceed it in every compiled
   combination: ``operator Conv_3 (Conv) alone needs 9.4MiB of activation memory
   on device 0 (its inputs and outputs ...) with the options that shrink it most
   (...), and no option splits it further; the budget is 8.0MiB``;
3. otherwise the peak itself: the step and the largest tensors alive then.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from tierplan.compiler.api import CompileResult
from tierplan.compiler.fitting.budget import Budget, Limit
from tierplan.compiler.fitting.measure import Measures, measure
from tierplan.compiler.ir import Tensor
from tierplan.compiler.plan import region_key
from tierplan.compiler.report.units import human_bytes

SHOWN_TENSORS = 3


def why_not(
    closest: CompileResult,
    budget: Budget,
    options: str,
    heaviest: Sequence[tuple[Heaviest, str]] = (),
) -> str:
    """The one-line reason (see the module docstring); ``options`` spells the combination
    of ``closest``; ``heaviest``: each compiled combination's heaviest operator and options."""
    evaluation = closest.evaluation
    found = Measures.of(evaluation) if evaluation else measure(closest.ir, closest.target)
    limits = budget.limits(found.peak_bytes, found.activation_bytes)
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
    if limit.activations and heaviest:
        # The operator no combination shrinks below the budget: the smallest of the
        # heaviest operators over every compiled combination.
        least, least_options = min(heaviest, key=lambda found: (found[0].need, found[1]))
        if least.need > limit.allowed:
            return (
                f"operator {least.operator} alone needs {human_bytes(least.need)} of {where} "
                f"(its inputs and outputs: {least.parts}) with the options that shrink it most "
                f"({least_options}), and no option splits it further; the budget is "
                f"{human_bytes(limit.allowed)}"
            )
    operator = heaviest_operator(closest, tensors)
    if not limit.activations and operator is not None and operator.need + weights > limit.allowed:
        resident = f", plus {human_bytes(weights)} of weights" if weights else ""
        return (
            f"operator {operator.operator} alone needs {human_bytes(operator.need + weights)} of "
            f"{where} (its inputs and outputs: {operator.parts}{resident}) and no rewrite "
            f"splits it; the budget is {human_bytes(limit.allowed)}"
        )
    return _peak_line(closest, tensors, limit, where, options)


@dataclass(frozen=True, slots=True)
class Heaviest:
    """The operator whose own non-weight tensors take the most bytes in one plan."""

    need: int
    operator: str
    parts: str


def heaviest_operator(
    result: CompileResult, tensors: list[Tensor] | None = None
) -> Heaviest | None:
    """The operator whose own non-weight tensors (of ``tensors``; default: all) take the
    most bytes, tensors sharing bytes (in place, views) counted once; its largest tensors."""
    chosen = [t for t in result.ir.tensors() if t.needs_buffer] if tensors is None else tensors
    here = {t.name: t for t in chosen if t.kind != "weight"}
    roots = result.ir.alias_roots(here.values())
    scratch: dict[str, list[str]] = defaultdict(list)  # tile buffers by their operator
    for t in chosen:
        if t.scratch_of is not None:
            scratch[t.scratch_of].append(t.name)
    best: Heaviest | None = None
    for op in result.ir.scheduled_operators():
        names = [n for n in dict.fromkeys([*op.read_tensors(), *op.outputs]) if n in here]
        names += scratch.get(op.name, [])
        groups: dict[str, list[str]] = defaultdict(list)
        for name in names:
            groups[roots.get(name, name)].append(name)
        sizes = {root: max(here[n].nbytes for n in members) for root, members in groups.items()}
        need = sum(sizes.values())
        if best is None or need > best.need:
            parts = []
            for root in sorted(groups, key=lambda r: (-sizes[r], r))[:SHOWN_TENSORS]:
                first, *shared = (result.ir.plan_name(n) for n in groups[root])
                also = f" (shared with {', '.join(shared)})" if shared else ""
                parts.append(f"{first} {human_bytes(sizes[root])}{also}")
            best = Heaviest(need, f"{op.name} ({op.op_type})", ", ".join(parts))
    return best


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
