"""The command line's side of symbolic plans: ``compile`` with ranges or buckets, and
reading a ``tierplan-plan/2`` file at given ``--dim`` values (``check``, ``inspect``, ``run``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table
from tierplan.compiler.errors import InputError
from tierplan.compiler.evaluation import ACTIVATION_KINDS
from tierplan.compiler.files import write_atomically
from tierplan.compiler.plan import Plan, memory_summary, plan_text, read_plan, read_plan_document
from tierplan.compiler.report.units import human_bytes
from tierplan.compiler.symbolic.buckets import compile_buckets
from tierplan.compiler.symbolic.build import compile_symbolic
from tierplan.compiler.symbolic.dims import DimSpecs
from tierplan.compiler.symbolic.expressions import formula
from tierplan.compiler.symbolic.instantiate import instantiate, is_symbolic, symbolic_problems


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


def activation_arena(plan: Plan) -> int:
    """The largest activation arena (peak above the weights) of a concrete plan's regions."""
    peaks, _ = memory_summary(plan["buffers"], set(ACTIVATION_KINDS))
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
        top = symbolic.longest_chains[-1]
        caption = (
            f"one plan for {names}; arena = max over address chains of the buffers' sizes, "
            f"each rounded up to {plan['target']['alignment']} B (summary.arena_bytes);\n"
            f"its longest chain at the top: {formula(top.expression())}"
        )
    plan_path = out_dir / "plan.json"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(plan_path, plan_text(plan))
    if console is not None:
        table = Table(title=f"tierplan: {model.name}, activation arena per length")
        table.add_column("dims")
        table.add_column("arena", justify="right")
        table.add_column("bytes", justify="right")
        for dims, arena in rows:
            table.add_row(
                ", ".join(f"{k}={v}" for k, v in dims.items()), human_bytes(arena), str(arena)
            )
        table.caption = caption
        console.print(table)
        console.print(f"wrote {plan_path}")
    return plan_path
