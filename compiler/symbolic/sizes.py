"""Buffer sizes as polynomials in the ranged dimensions, found from the model at a few lengths.

The frontend gives exact tensor sizes for one binding of the dimensions. Sizes of
transformer tensors are products of dimensions (``4*seq``, ``48*seq^2``): each
buffer's bytes are interpolated exactly (rational arithmetic, integer coefficients
required) from a grid of bindings, degree up to :data:`DEGREE` per dimension, then
checked at further bindings spread over the range (both ends' neighbours among
them). A size that is not such a polynomial (a strided ``ceil``, a sub-byte type)
or a graph whose operators change with the length is refused with one line.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from tierplan.compiler.errors import InputError
from tierplan.compiler.symbolic.dims import DimRange
from tierplan.compiler.symbolic.expressions import Polynomial

DEGREE = 3  # attention scores grow as seq^2; one more degree is checked, not assumed
CHECKS_PER_DIM = 8

Binding = dict[str, int]
# Sizes of every tensor, and the operator names, of the model at one binding.
Sampler = Callable[[Binding], tuple[dict[str, int], tuple[str, ...]]]


@dataclass(frozen=True, slots=True)
class FittedSizes:
    """Each tensor's bytes as a polynomial, and the bindings they were checked at."""

    sizes: dict[str, Polynomial]
    checked: list[Binding]


def spread(low: int, high: int, count: int) -> list[int]:
    """Up to ``count`` distinct integers evenly spread over ``[low, high]``, both ends included."""
    if high - low + 1 <= count:
        return list(range(low, high + 1))
    return sorted({low + (high - low) * i // (count - 1) for i in range(count)})


def fit_sizes(ranges: Sequence[DimRange], tensors: Sequence[str], sample: Sampler) -> FittedSizes:
    """Polynomials for the bytes of ``tensors`` over ``ranges``, exact at every binding seen."""
    names = tuple(r.name for r in ranges)
    axes = [spread(r.low, r.high, DEGREE + 1) for r in ranges]
    monomials = list(itertools.product(*(range(len(axis)) for axis in axes)))
    fit_points = [dict(zip(names, values, strict=True)) for values in itertools.product(*axes)]
    checks = [
        sorted(
            set(spread(r.low, r.high, CHECKS_PER_DIM))
            | {min(r.low + 1, r.high), max(r.high - 1, r.low)}
        )
        for r in ranges
    ]
    check_points = [
        point
        for values in itertools.product(*checks)
        if (point := dict(zip(names, values, strict=True))) not in fit_points
    ]
    first_sizes, operators = sample(fit_points[0])
    missing = [t for t in tensors if t not in first_sizes]
    if missing:
        raise InputError(
            f"tensor {missing[0]!r} of the plan is not in the model at {_at(fit_points[0])}"
        )

    def sizes_at(point: Binding) -> dict[str, int]:
        sizes, found = sample(point)
        if found != operators:
            raise InputError(
                f"the model's operators differ at {_at(point)} from {_at(fit_points[0])} "
                "(shape-dependent folding?): one plan cannot serve the whole range"
            )
        return sizes

    solve = _interpolation(names, fit_points, monomials)
    columns = [sizes_at(point) if i else first_sizes for i, point in enumerate(fit_points)]
    fitted = {t: solve(t, [c[t] for c in columns]) for t in tensors}
    for point in check_points:
        actual = sizes_at(point)
        for tensor, polynomial in fitted.items():
            if polynomial(point) != actual[tensor]:
                raise InputError(
                    f"the size of {tensor!r} is not a polynomial in {', '.join(names)} of degree "
                    f"<= {DEGREE} (at {_at(point)} it is {actual[tensor]} bytes, not "
                    f"{polynomial(point)}): plan fixed lengths or buckets instead"
                )
    return FittedSizes(fitted, fit_points + check_points)


def _at(point: Mapping[str, int]) -> str:
    return ", ".join(f"{name}={value}" for name, value in point.items())


def _interpolation(
    names: tuple[str, ...], points: list[Binding], monomials: list[tuple[int, ...]]
) -> Callable[[str, list[int]], Polynomial]:
    """A solver for the coefficients of ``monomials`` from values at ``points`` (one per
    monomial: a full grid, so the system is invertible)."""
    rows = [[Fraction(_power_product(point, names, m)) for m in monomials] for point in points]
    inverse = _inverse(rows)

    def solve(tensor: str, values: list[int]) -> Polynomial:
        terms = []
        for monomial, row in zip(monomials, inverse, strict=True):
            coefficient = sum((w * v for w, v in zip(row, values, strict=True)), Fraction(0))
            if coefficient.denominator != 1:
                raise InputError(
                    f"the size of {tensor!r} is not a polynomial with integer coefficients in "
                    f"{', '.join(names)}: plan fixed lengths or buckets instead"
                )
            if coefficient:
                terms.append((monomial, int(coefficient)))
        return Polynomial(names, tuple(terms))

    return solve


def _power_product(point: Binding, names: tuple[str, ...], exponents: tuple[int, ...]) -> int:
    product = 1
    for name, power in zip(names, exponents, strict=True):
        product *= point[name] ** power
    return product


def _inverse(rows: list[list[Fraction]]) -> list[list[Fraction]]:
    """Gauss-Jordan inverse of a square, invertible matrix (exact)."""
    size = len(rows)
    work = [row[:] + [Fraction(int(i == j)) for j in range(size)] for i, row in enumerate(rows)]
    for column in range(size):
        pivot = next(r for r in range(column, size) if work[r][column] != 0)
        work[column], work[pivot] = work[pivot], work[column]
        lead = work[column][column]
        work[column] = [value / lead for value in work[column]]
        for r in range(size):
            if r != column and work[r][column] != 0:
                factor = work[r][column]
                work[r] = [a - factor * b for a, b in zip(work[r], work[column], strict=True)]
    return [row[size:] for row in work]
