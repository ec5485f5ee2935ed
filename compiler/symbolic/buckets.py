"""Shape buckets: one concrete plan per ``--dim NAME=V1,V2,...`` value, in one file.

Each bucket is the plan an exact compile gives for its values (so its arena is the
exact-length plan's); the file is a ``tierplan-plan/2`` document with ``buckets``.
The weights sit at the same offsets in every bucket (``pack`` lays them out first,
in model order, whatever the lengths), so a runtime loads them once; the compile
checks that this holds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tierplan.compiler.api import compile_model
from tierplan.compiler.errors import InvariantError
from tierplan.compiler.plan import Plan
from tierplan.compiler.symbolic.dims import DimSpecs
from tierplan.compiler.symbolic.instantiate import SYMBOLIC_FORMAT
from tierplan.compiler.target import Target

BUCKET_KEYS = ("dims", "schedule", "buffers", "ops", "summary")


def compile_buckets(
    model: str | Path,
    specs: DimSpecs,
    target: str | Path | Target | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    passes: str | Sequence[str] | None = None,
    on_status: Callable[[str], None] | None = None,
) -> Plan:
    """The bucketed plan: an exact plan per combination of bucket values."""
    buckets: list[dict[str, Any]] = []
    first: Plan | None = None
    for binding in specs.bucket_bindings():
        plan = compile_model(
            model, target, dims=binding, shapes=shapes, passes=passes, on_status=on_status
        ).plan
        if first is None:
            first = plan
        elif _weights(plan) != _weights(first):
            raise InvariantError(
                f"the weights of the bucket {binding} are not where the first bucket's are"
            )
        buckets.append({key: plan[key] for key in BUCKET_KEYS if key in plan})
    assert first is not None  # parse_dim_specs gives at least one binding
    return {
        "format": SYMBOLIC_FORMAT,
        "model": first["model"],
        "target": first["target"],
        "buckets": buckets,
    }


def _weights(plan: Plan) -> list[tuple[Any, ...]]:
    return [
        (b["tensor"], b["device"], b["tier"], b["offset"], b["bytes"])
        for b in plan["buffers"]
        if b["kind"] == "weight"
    ]
