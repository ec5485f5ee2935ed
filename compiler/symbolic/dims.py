"""``--dim`` values beyond one number: a range (``seq=1..2048``) or buckets (``seq=128,512``).

A range asks for one symbolic plan valid for every value in it; buckets ask for one
concrete plan per value. Several dimensions may be ranged, or bucketed (every
combination), not both at once; plain ``NAME=VALUE`` binds a dimension as before.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from tierplan.compiler.errors import InputError
from tierplan.compiler.frontend import parse_dims
from tierplan.compiler.inputs import MAX_BYTES, integer_text, shown

MAX_BUCKETS = 64


@dataclass(frozen=True, slots=True)
class DimRange:
    """A dimension that takes every value in ``[low, high]``."""

    name: str
    low: int
    high: int


@dataclass(frozen=True, slots=True)
class DimSpecs:
    """What the ``--dim`` options asked for: fixed values, ranges and bucket values."""

    fixed: dict[str, int]
    ranges: tuple[DimRange, ...]
    buckets: dict[str, tuple[int, ...]]

    def bucket_bindings(self) -> list[dict[str, int]]:
        """Every combination of bucket values, each with the fixed dimensions."""
        names = sorted(self.buckets)
        return [
            {**self.fixed, **dict(zip(names, values, strict=True))}
            for values in itertools.product(*(self.buckets[n] for n in names))
        ]


def parse_dim_specs(specs: Iterable[str]) -> DimSpecs:
    """Read ``NAME=VALUE``, ``NAME=LOW..HIGH`` and ``NAME=V1,V2,...`` specs."""
    plain: list[str] = []
    ranges: list[DimRange] = []
    buckets: dict[str, tuple[int, ...]] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        name = name.strip()
        what = f"cannot read dimension {shown(spec)}"
        if ".." in value and sep and name:
            low_text, _, high_text = value.partition("..")
            low = integer_text(low_text, f"{what}: LOW of LOW..HIGH", 1, MAX_BYTES)
            high = integer_text(high_text, f"{what}: HIGH of LOW..HIGH", 1, MAX_BYTES)
            if high <= low:
                raise InputError(
                    f"{what}: the range {low}..{high} is empty or one value (LOW < HIGH)"
                )
            ranges.append(DimRange(name, low, high))
        elif "," in value and sep and name:
            values = [
                integer_text(v, f"{what}: a bucket value", 1, MAX_BYTES) for v in value.split(",")
            ]
            if len(set(values)) != len(values):
                raise InputError(f"{what}: a bucket value is repeated")
            buckets[name] = tuple(sorted(values))
        else:
            plain.append(spec)
    fixed = parse_dims(plain)
    named = [r.name for r in ranges] + list(buckets) + list(fixed)
    repeated = sorted({n for n in named if named.count(n) > 1})
    if repeated:
        raise InputError(f"--dim {repeated[0]} is given more than once")
    if ranges and buckets:
        raise InputError("--dim: give ranges (LOW..HIGH) or buckets (V1,V2,...), not both")
    count = 1
    for offered in buckets.values():
        count *= len(offered)
    if count > MAX_BUCKETS:
        raise InputError(f"--dim: {count} bucket combinations, more than the limit {MAX_BUCKETS}")
    return DimSpecs(fixed, tuple(ranges), buckets)
