"""Size expressions of symbolic plans (``tierplan-plan/2``): a JSON syntax tree, never text to eval.

An expression is a JSON integer, ``{"dim": NAME}``, ``{"add": [E, ...]}``,
``{"mul": [E, ...]}``, ``{"max": [E, ...]}``, ``{"align": [E, K]}`` (``E`` rounded up
to a multiple of the positive integer ``K``), or a reference to another buffer of the
same plan: ``{"offset_of": I}`` (buffer ``I``'s offset) or ``{"end_of": I}`` (its offset
plus its ``extent``). Evaluation uses integer arithmetic only. Polynomials in the
dimensions (:class:`Polynomial`) are how sizes are found and written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tierplan.compiler.errors import InputError
from tierplan.compiler.inputs import shown

Expr = int | dict[str, Any]
LISTS = ("add", "mul", "max")
REFERENCES = ("offset_of", "end_of")
MAX_DEPTH = 64  # polynomials and offsets nest a few levels; deeper is not a plan's


def expression_problem(value: Any, buffers: int, depth: int = 0) -> str | None:
    """What keeps ``value`` from being an expression over a plan of ``buffers`` buffers,
    or None when it is one."""
    if isinstance(value, int) and not isinstance(value, bool):
        return None
    if depth > MAX_DEPTH:
        return f"nested deeper than {MAX_DEPTH}"
    if not isinstance(value, dict) or len(value) != 1:
        return f"expected an integer or an object of one key, got {shown(value)}"
    ((key, argument),) = value.items()
    if key == "dim":
        return (
            None if isinstance(argument, str) else f"'dim' names a dimension, got {shown(argument)}"
        )
    if key in REFERENCES:
        ok = isinstance(argument, int) and not isinstance(argument, bool)
        return (
            None
            if ok and 0 <= argument < buffers
            else f"{key!r} needs a buffer index, got {shown(argument)}"
        )
    if key == "align":
        if not (isinstance(argument, list) and len(argument) == 2 and _positive(argument[1])):
            return f"'align' takes [expression, positive integer], got {shown(argument)}"
        return expression_problem(argument[0], buffers, depth + 1)
    if key in LISTS:
        if not isinstance(argument, list) or not argument:
            return f"{key!r} takes a non-empty list, got {shown(argument)}"
        return next(
            (p for p in (expression_problem(a, buffers, depth + 1) for a in argument) if p), None
        )
    return f"unknown operator {shown(key)} (known: add, mul, max, align, dim, offset_of, end_of)"


def _positive(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def evaluate(expr: Expr, dims: Mapping[str, int], reference: Callable[[str, int], int]) -> int:
    """The value of a checked expression; ``reference(kind, index)`` gives ``offset_of`` and
    ``end_of`` values. A dimension missing from ``dims`` is an :class:`InputError`."""
    if isinstance(expr, int):
        return expr
    ((key, argument),) = expr.items()
    if key == "dim":
        if argument not in dims:
            raise InputError(f"the plan's sizes need --dim {argument}=N")
        return int(dims[argument])
    if key in REFERENCES:
        return reference(key, int(argument))
    if key == "align":
        value, multiple = evaluate(argument[0], dims, reference), int(argument[1])
        return -(-value // multiple) * multiple
    values = [evaluate(a, dims, reference) for a in argument]
    if key == "add":
        return sum(values)
    if key == "max":
        return max(values)
    product = 1
    for value in values:
        product *= value
    return product


def references(expr: Expr) -> set[int]:
    """Indices of the buffers ``expr`` refers to."""
    if isinstance(expr, int):
        return set()
    ((key, argument),) = expr.items()
    if key in REFERENCES:
        return {argument}
    if key == "align":
        return references(argument[0])
    if key in LISTS:
        return set().union(*(references(a) for a in argument))
    return set()


def formula(expr: Expr) -> str:
    """Readable infix text of an expression (for terminals; the plan keeps the tree)."""
    if isinstance(expr, int):
        return str(expr)
    ((key, argument),) = expr.items()
    if key == "dim":
        return str(argument)
    if key in REFERENCES:
        return f"{key}({argument})"
    if key == "align":
        return f"align{argument[1]}({formula(argument[0])})"
    if key == "max":
        return f"max({', '.join(formula(a) for a in argument)})"
    if key == "mul":
        factors = [f"({formula(a)})" if _is_sum(a) else formula(a) for a in argument]
        powers = {f: factors.count(f) for f in factors}  # seq*seq reads as seq^2
        return "*".join(f if n == 1 else f"{f}^{n}" for f, n in powers.items())
    return " + ".join(formula(a) for a in argument).replace("+ -", "- ")


def _is_sum(expr: Expr) -> bool:
    return isinstance(expr, dict) and "add" in expr


@dataclass(frozen=True, slots=True)
class Polynomial:
    """Integer coefficients of monomials in named dimensions: ``terms`` maps each monomial's
    exponents (in the order of ``dims``) to its coefficient; zero terms are left out."""

    dims: tuple[str, ...]
    terms: tuple[tuple[tuple[int, ...], int], ...]

    def __call__(self, values: Mapping[str, int]) -> int:
        total = 0
        for exponents, coefficient in self.terms:
            term = coefficient
            for name, power in zip(self.dims, exponents, strict=True):
                term *= values[name] ** power
            total += term
        return total

    def __add__(self, other: Polynomial) -> Polynomial:
        total: dict[tuple[int, ...], int] = dict(self.terms)
        for exponents, coefficient in other.terms:
            total[exponents] = total.get(exponents, 0) + coefficient
        return Polynomial(self.dims, tuple(sorted((e, c) for e, c in total.items() if c)))

    @property
    def constant(self) -> bool:
        """True when no term has a dimension."""
        return all(not any(exponents) for exponents, _ in self.terms)

    def expression(self) -> Expr:
        """The polynomial as an expression: a sum of coefficient x dimension products,
        highest degree first."""
        terms: list[Expr] = []
        for exponents, coefficient in sorted(self.terms, key=lambda t: (-sum(t[0]), t[0])):
            factors: list[Expr] = [] if coefficient == 1 and any(exponents) else [coefficient]
            for name, power in zip(self.dims, exponents, strict=True):
                factors.extend({"dim": name} for _ in range(power))
            terms.append(factors[0] if len(factors) == 1 else {"mul": factors})
        if not terms:
            return 0
        return terms[0] if len(terms) == 1 else {"add": terms}
