"""The command line's side of symbolic plans: ``compile`` with ranges or buckets, and
reading a ``tierplan-plan/2`` file at given ``--dim`` values (``check``, ``inspect``, ``run``)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table
from tierplan.compiler.errors import InputError
from tierplan.compiler.evaluation import ACTIVATION_KINDS
from tierplan.compiler.files import write_atomically
from tierplan.compiler.frontend import load_model
from tierplan.compiler.plan import (
    Plan,
    PlanBuffer,
    memory_summary,
    plan_text,
    read_plan,
    read_plan_document,
)
from tierplan.compiler.report.units import human_bytes
from tierplan.compiler.symbolic.buckets import compile_buckets
from tierplan.compiler.symbolic.build import compile_symbolic
from tierplan.compiler.symbolic.dims import DimSpecs
from tierplan.compiler.symbolic.expressions import formula
from tierplan.compiler.symbolic.instantiate import instantiate, is_symbolic, symbolic_problems
from tierplan.compiler.validate import validate_plan


def read_plan_at(path: Path, dims: Mapping[str, int]) -> tuple[Plan, bool]:
    """The plan in ``path``: a ``tierplan-plan/1`` as read, a symbolic or bucketed one
    instantiated at ``dims``; and whether it was symbolic."""
    document = read_plan_document(path)
    if not is_symbolic(document):
        return read_plan(path), False
    problems = symbolic_problems(document)
    if problems:
        raise InputError(f"plan file {str(path)!r}: {problems[0]}")
    return instantiate(document, dims), True


def check_every_binding(
    model: Path, plan_path: Path, specs: DimSpecs, shapes: Mapping[str, Sequence[int]]
) -> Iterator[tuple[dict[str, int], list[str]]]:
    """For every binding of ``specs.ranges``: the symbolic plan at it and its violations
    (instantiated and validated, nothing recompiled)."""
    document = read_plan_document(plan_path)
    if not is_symbolic(document) or "buckets" in document:
        raise InputError(f"plan file {str(plan_path)!r} is not a symbolic plan: give --dim NAME=N")
    problems = symbolic_problems(document)
    if problems:
        raise InputError(f"plan file {str(plan_path)!r}: {problems[0]}")
    names = [r.name for r in specs.ranges]
    for values in itertools.product(*(range(r.low, r.high + 1) for r in specs.ranges)):
        binding = {**specs.fixed, **dict(zip(names, values, strict=True))}
        plan = instantiate(document, binding)
        ir = load_model(model, dims=plan.get("dims", binding), shapes=shapes).ir
        yield binding, [str(v) for v in validate_plan(plan, ir, model_sha256=ir.model.sha256)]


def activation_arena(plan: Plan) -> int:
    """The largest activation arena (peak above the weights) of a concrete plan's regions."""
    peaks, _ = memory_summary(PlanBuffer.of_plan(plan), set(ACTIVATION_KINDS))
    return max(peaks.values(), default=0)


def compile_ranged(
    model: Path,
    specs: DimSpecs,
    out_dir: Path,
    console: Console | None,
    target: str,
    shapes: Mapping[str, Sequence[int]],
    passes: str | None,
) -> Path:
    """Write ``out_dir/plan.json`` for ranged or bucketed ``--dim`` values; print its arenas."""
    if specs.buckets:
        plan = compile_buckets(model, specs, target, shapes, passes)
        rows = [(bucket["dims"], activation_arena(bucket)) for bucket in plan["buckets"]]
        caption = "one exact plan per bucket; the weights are shared (same offsets in each)"
    else:
        symbolic = compile_symbolic(model, specs, target, shapes, passes)
        plan = symbolic.plan
        rows = [
            ({**specs.fixed, **b}, activation_arena(instantiate(plan, {**specs.fixed, **b})))
            for b in symbolic.lengths
        ]
        names = ", ".join(f"{r.name}={r.low}..{r.high}" for r in specs.ranges)
        top = symbolic.bodies[symbolic.pieces[-1][2]].top_chain
        caption = (
            f"one plan for {names}; arena = the longest address chain of buffers, each rounded "
            f"up to {plan['target']['alignment']} B (summary.arena_bytes); at the top of the "
            f"range: {formula(top.expression()) if top else 0}; {symbolic.order_note()}"
        )
    plan_path = out_dir / "plan.json"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(plan_path, plan_text(plan))
    if console is not None:
        table = Table(title=f"tierplan: {model.name}, activation arena per length")
        table.add_column("dims")
        table.add_column("arena", justify="right")
        table.add_column("bytes", justify="right")
        table.add_column("largest / this", justify="right")
        largest = max(arena for _, arena in rows)
        for dims, arena in rows:
            where = ", ".join(f"{k}={v}" for k, v in dims.items())
            ratio = f"{largest / arena:.1f}x" if arena else "-"
            table.add_row(where, human_bytes(arena), str(arena), ratio)
        console.print(table)
        console.print(caption)
        console.print(f"wrote {plan_path}")
    return plan_path
