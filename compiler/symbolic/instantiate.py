"""The reference evaluator of ``tierplan-plan/2``: a symbolic plan at given dimension values.

:func:`instantiate` turns a symbolic plan (``docs/plan-format-symbolic.md``) into the
``tierplan-plan/1`` plan for one binding of its ranged dimensions, with integer
arithmetic only: every buffer's ``bytes`` and ``extent`` from the dimensions, then
every ``offset`` in an order where each buffer it refers to comes first. The result
is an ordinary plan: the validator, ``run`` and the views read it unchanged. A
bucketed plan gives the bucket of that binding.
"""

from __future__ import annotations

from collections.abc import Mapping
from graphlib import CycleError, TopologicalSorter
from typing import Any

from tierplan.compiler.errors import InputError
from tierplan.compiler.inputs import shown
from tierplan.compiler.plan import PLAN_FORMAT, Plan, PlanBuffer, memory_summary
from tierplan.compiler.plan_schema import plan_problems
from tierplan.compiler.symbolic.expressions import evaluate, expression_problem, references

SYMBOLIC_FORMAT = "tierplan-plan/2"
# What an instantiated plan keeps of the symbolic one, besides its buffers and summary.
KEPT = ("model", "target")


def is_symbolic(plan: Mapping[str, Any]) -> bool:
    """True for a ``tierplan-plan/2`` document."""
    return plan.get("format") == SYMBOLIC_FORMAT


def symbolic_problems(plan: Mapping[str, Any]) -> list[str]:
    """What keeps ``plan`` from having a symbolic plan's structure (first problems only)."""
    ranges = plan.get("dim_ranges")
    buckets = plan.get("buckets")
    if buckets is not None:
        if not isinstance(buckets, list) or not buckets:
            return [f"buckets: expected a non-empty list, got {shown(buckets)}"]
        return [
            f"buckets[{i}]: {problem}"
            for i, bucket in enumerate(buckets)
            for problem in plan_problems({**bucket, "format": PLAN_FORMAT}, limit=1)
        ][:1]
    pieces = plan.get("pieces")
    if pieces is not None:
        if (
            not isinstance(pieces, list)
            or not pieces
            or not all(isinstance(p, dict) for p in pieces)
        ):
            return [f"pieces: expected a non-empty list of objects, got {shown(pieces)}"]
        found = [
            f"pieces[{i}]: {problem}"
            for i, piece in enumerate(pieces)
            for problem in symbolic_problems(piece)
        ]
        return found[:1]
    if (
        not isinstance(ranges, dict)
        or not ranges
        or not all(
            isinstance(v, list)
            and len(v) == 2
            and all(type(x) is int and x > 0 for x in v)
            and v[0] <= v[1]
            for v in ranges.values()
        )
    ):
        return [f"dim_ranges: expected an object of [low, high] pairs, got {shown(ranges)}"]
    buffers = plan.get("buffers")
    if not isinstance(buffers, list):
        return [f"buffers: expected a list, got {shown(buffers)}"]
    for index, buffer in enumerate(buffers):
        if not isinstance(buffer, dict):
            return [f"buffers[{index}]: expected an object, got {shown(buffer)}"]
        for key in ("bytes", "offset", "extent"):
            if key in buffer or key != "extent":
                problem = expression_problem(buffer.get(key), len(buffers))
                if problem:
                    return [f"buffers[{index}].{key}: {problem}"]
    return []


def binding_of(plan: Mapping[str, Any], dims: Mapping[str, int]) -> dict[str, int]:
    """The values of the plan's ranged dimensions taken from ``dims``, each checked to be in
    its range."""
    binding = {}
    for name, (low, high) in sorted(plan["dim_ranges"].items()):
        if name not in dims:
            raise InputError(
                f"the plan is symbolic in {name!r}: give --dim {name}=N ({low}..{high})"
            )
        if not low <= dims[name] <= high:
            raise InputError(f"--dim {name}={dims[name]} is outside the plan's range {low}..{high}")
        binding[name] = dims[name]
    return binding


def instantiate(plan: Mapping[str, Any], dims: Mapping[str, int]) -> Plan:
    """The ``tierplan-plan/1`` plan of a checked symbolic plan at ``dims``."""
    if "buckets" in plan:
        return _bucket(plan, dims)
    if "pieces" not in plan:
        return _instantiate_body(plan, plan, dims)
    binding = binding_of(plan, dims)
    for piece in plan["pieces"]:
        if all(low <= binding[n] <= high for n, (low, high) in piece["dim_ranges"].items()):
            return _instantiate_body(plan, piece, dims)
    raise InputError(f"no piece of the plan covers {binding}")


def _instantiate_body(
    plan: Mapping[str, Any], body: Mapping[str, Any], dims: Mapping[str, int]
) -> Plan:
    """The plan of one symbolic body (the whole plan, or one of its pieces) at ``dims``."""
    binding = binding_of(plan, dims)
    values = {**plan.get("dims", {}), **binding}
    buffers = body["buffers"]
    sizes = [evaluate(b["bytes"], values, _no_reference) for b in buffers]
    extents = [
        evaluate(b["extent"], values, _no_reference) if "extent" in b else size
        for b, size in zip(buffers, sizes, strict=True)
    ]
    offsets: dict[int, int] = {}

    def reference(kind: str, index: int) -> int:
        return offsets[index] + (extents[index] if kind == "end_of" else 0)

    order = TopologicalSorter({i: references(b["offset"]) for i, b in enumerate(buffers)})
    try:
        for index in order.static_order():
            offsets[index] = evaluate(buffers[index]["offset"], values, reference)
    except CycleError as error:
        raise InputError(
            f"the plan's offsets refer to each other in a cycle ({error.args[1]})"
        ) from None
    concrete = [
        {**{k: v for k, v in b.items() if k != "extent"}, "bytes": sizes[i], "offset": offsets[i]}
        for i, b in enumerate(buffers)
    ]
    return _concrete(plan, values, body["schedule"], body["ops"], concrete)


def _no_reference(kind: str, index: int) -> int:
    raise InputError(f"a buffer's bytes or extent refers to buffer {index} ({kind})")


def _bucket(plan: Mapping[str, Any], dims: Mapping[str, int]) -> Plan:
    buckets = plan["buckets"]
    for bucket in buckets:
        if all(dims.get(name) == value for name, value in bucket["dims"].items()):
            return _concrete(
                plan, bucket["dims"], bucket["schedule"], bucket["ops"], bucket["buffers"]
            )
    offered = "; ".join(", ".join(f"{k}={v}" for k, v in b["dims"].items()) for b in buckets)
    raise InputError(f"no bucket of the plan matches the --dim values (its buckets: {offered})")


def _concrete(
    plan: Mapping[str, Any],
    dims: Mapping[str, int],
    schedule: list[str],
    ops: list[dict[str, Any]],
    buffers: list[dict[str, Any]],
) -> Plan:
    peaks, bounds = memory_summary(PlanBuffer.of_entries(buffers))
    concrete: Plan = {"format": PLAN_FORMAT, **{key: plan[key] for key in KEPT}}
    concrete.update(dims=dict(dims), schedule=schedule, buffers=buffers, ops=ops)
    concrete["summary"] = {"peak_bytes": peaks, "lower_bound_bytes": bounds}
    problems = plan_problems(concrete, limit=1)
    if problems:
        raise InputError(f"the plan at {dict(dims)} is not a plan: {problems[0]}")
    return concrete
