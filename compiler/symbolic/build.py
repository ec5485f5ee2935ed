"""Compile a model once for a range of dimension values: the symbolic plan (``tierplan-plan/2``).

A *body* is a schedule, lifetimes and aliasing from one compile, with symbolic sizes
and offsets (:mod:`.sizes` refuses a model whose operators change with the length,
so every compile has the same tensors). Each buffer's bytes are polynomials in the
ranged dimensions. Per region, the weights keep their constant offsets and each
alias group of activations is one item, reserving its largest member's bytes
rounded up to the alignment. The offsets come from an *order*: for every two items
alive at a common step, which one sits above the other. An item's offset is then
the highest end among the items directly below it (or the arena's base), which is
valid whatever the sizes are. Orders are taken from the compile's own placement and
from placements (the packing heuristics and exact engines) at candidate lengths
spread geometrically over the range; the order kept is the one whose worst ratio,
over those lengths, to the best peak any candidate reaches there is lowest (ties:
the earlier one).

With one ranged dimension, a body is made from the compile at the top and at each
candidate length (memory-aware schedules differ between short and long sequences);
one body serves the whole range when it stays within :data:`ONE_PIECE_SLACK` of the
best everywhere, else the range is split into ``pieces``, each served by the body
best at its candidate lengths.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

from tierplan.compiler.api import compile_model
from tierplan.compiler.errors import InputError
from tierplan.compiler.frontend import load_model
from tierplan.compiler.packing import Item, place, solve
from tierplan.compiler.packing.exact import region_budget
from tierplan.compiler.pass_manager import parse_pipeline
from tierplan.compiler.plan import Plan, PlanBuffer, alias_groups, region_key
from tierplan.compiler.scheduling import set_bits
from tierplan.compiler.symbolic.dims import DimSpecs
from tierplan.compiler.symbolic.expressions import Expr, Polynomial
from tierplan.compiler.symbolic.instantiate import SYMBOLIC_FORMAT
from tierplan.compiler.symbolic.sizes import Binding, fit_sizes
from tierplan.compiler.target import Target, load_target

SYMBOLIC_PIPELINE = ("schedule", "liveness", "inplace", "pack", "evaluate")
# Passes whose decisions depend on the sizes: one choice cannot serve every length.
SIZE_DEPENDENT = frozenset({"tiling", "tiers", "partition", "attention"})
CANDIDATE_LENGTHS = 8
# One body serves the whole range when its peak stays this close to the best body's at
# every candidate length: fewer pieces, a simpler plan.
ONE_PIECE_SLACK = 1.02
SOLVER_BUDGET = 2.0  # the pack pass's default deterministic budget per 1,000 items


@dataclass(frozen=True, slots=True)
class Group:
    """An alias group of one region: its buffers (root first), steps and bytes per member."""

    members: tuple[int, ...]
    start: int
    end: int
    sizes: tuple[Polynomial, ...]

    def size_at(self, binding: Mapping[str, int], alignment: int) -> int:
        largest = max(size(binding) for size in self.sizes)
        return -(-largest // alignment) * alignment

    def size_expression(self, alignment: int) -> Expr:
        expressions = [size.expression() for size in self.sizes]
        distinct = list(dict.fromkeys(map(repr, expressions)))
        chosen = [expressions[[repr(e) for e in expressions].index(d)] for d in distinct]
        largest = chosen[0] if len(chosen) == 1 else {"max": chosen}
        return {"align": [largest, alignment]}


@dataclass(frozen=True, slots=True)
class Body:
    """A symbolic plan body made from the compile at ``source``: its schedule, ops and
    symbolic buffers, its activation peak at each candidate length, and its arena's
    longest chain at the top of the range."""

    source: Binding
    content: dict[str, Any]
    peaks: list[int]
    top_chain: Polynomial | None


@dataclass(frozen=True, slots=True)
class SymbolicPlan:
    """The symbolic plan, the candidate lengths compared, and which body serves which
    part of the range (``pieces``: low, high, index in ``bodies``)."""

    plan: Plan
    lengths: list[Binding]
    bodies: list[Body]
    pieces: list[tuple[int, int, int]]

    def order_note(self) -> str:
        """Which compiles the plan's pieces come from."""
        parts = [
            f"{low}..{high} from the compile at {_at(self.bodies[body].source)}"
            for low, high, body in self.pieces
        ]
        return f"{len(self.pieces)} piece(s): " + "; ".join(parts)


def symbolic_pipeline(passes: str | Sequence[str] | None) -> tuple[str, ...]:
    """The pipeline of a symbolic compile: ``passes`` without size-dependent passes."""
    pipeline = tuple(p.spelled() for p in parse_pipeline(passes or SYMBOLIC_PIPELINE))
    refused = sorted({p.split("{")[0] for p in pipeline} & SIZE_DEPENDENT)
    if refused:
        raise InputError(
            f"a symbolic plan (--dim NAME=LOW..HIGH) cannot use the {refused[0]!r} pass: it decides "
            f"by sizes, which change over the range (use --passes {','.join(SYMBOLIC_PIPELINE)})"
        )
    return pipeline


def compile_symbolic(
    model: str | Path,
    specs: DimSpecs,
    target: str | Path | Target | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    passes: str | Sequence[str] | None = None,
    on_status: Callable[[str], None] | None = None,
) -> SymbolicPlan:
    """One plan for every binding of ``specs.ranges`` (with ``specs.fixed`` bound).

    With one ranged dimension, the schedule may differ over the range: a compile at each
    candidate length gives a body, and each part of the range takes the body with the
    lowest peak at its candidate length (the plan's ``pieces``).
    """
    chosen_target = target if isinstance(target, Target) else load_target(target)
    pipeline = symbolic_pipeline(passes)
    lengths = _candidate_lengths(specs)
    sources = [lengths[-1], *lengths[:-1]] if len(specs.ranges) == 1 else [lengths[-1]]
    compiled = [
        compile_model(
            model, chosen_target, dims={**specs.fixed, **binding}, shapes=shapes,
            passes=pipeline, on_status=on_status,
        ).plan
        for binding in sources
    ]  # fmt: skip

    def sample(binding: Binding) -> tuple[dict[str, int], tuple[str, ...]]:
        loaded = load_model(model, dims={**specs.fixed, **binding}, shapes=shapes)
        sizes = {t.name: t.nbytes for t in loaded.ir.tensors()}
        return sizes, tuple(sorted(op.name for op in loaded.ir.operators()))

    tensors = sorted({b["tensor"] for plan in compiled for b in plan["buffers"]})
    fitted = fit_sizes(specs.ranges, tensors, sample).sizes
    bodies = [
        _body(plan, source, fitted, lengths, chosen_target.alignment)
        for plan, source in zip(compiled, sources, strict=True)
    ]
    pieces = _pieces(specs, lengths, bodies)
    first = compiled[0]
    plan: Plan = {"format": SYMBOLIC_FORMAT, "model": first["model"], "target": first["target"]}
    plan["dims"] = dict(specs.fixed)
    plan["dim_ranges"] = {r.name: [r.low, r.high] for r in specs.ranges}
    if len(pieces) == 1:
        plan.update(bodies[pieces[0][2]].content)
    else:
        (name,) = plan["dim_ranges"]
        plan["pieces"] = [
            {"dim_ranges": {name: [low, high]}, **bodies[body].content}
            for low, high, body in pieces
        ]
    return SymbolicPlan(plan, lengths, bodies, pieces)


def _at(binding: Mapping[str, int]) -> str:
    return ", ".join(f"{name}={value}" for name, value in binding.items())


def _pieces(
    specs: DimSpecs, lengths: list[Binding], bodies: list[Body]
) -> list[tuple[int, int, int]]:
    """Split the range among the bodies: one body if its peaks stay within
    :data:`ONE_PIECE_SLACK` of the best at every candidate length; else each candidate
    length takes the body with the lowest peak there (ties: the earlier body, the top compile first); the boundary between
    two lengths is their geometric mean. Adjacent parts of one body are merged."""
    if len(specs.ranges) != 1:
        return [(0, 0, 0)]
    (dim,) = specs.ranges
    values = [binding[dim.name] for binding in lengths]
    best_peaks = [min(column) for column in zip(*(b.peaks for b in bodies), strict=True)]
    worst = [
        max(p / low if low else 1.0 for p, low in zip(b.peaks, best_peaks, strict=True))
        for b in bodies
    ]
    single = min(range(len(bodies)), key=lambda b: (worst[b], b))
    if worst[single] <= ONE_PIECE_SLACK:
        return [(dim.low, dim.high, single)]
    best = [
        min(range(len(bodies)), key=lambda b: (bodies[b].peaks[k], b)) for k in range(len(values))
    ]
    pieces: list[tuple[int, int, int]] = []
    low = dim.low
    for k, body in enumerate(best):
        high = (
            dim.high
            if k == len(values) - 1
            else max(values[k], int((values[k] * values[k + 1]) ** 0.5))
        )
        if pieces and pieces[-1][2] == body:
            pieces[-1] = (pieces[-1][0], high, body)
        elif high >= low:
            pieces.append((low, high, body))
        low = high + 1
    return pieces


def _body(
    concrete: Plan, source: Binding, fitted: Mapping[str, Polynomial], lengths: list[Binding],
    alignment: int,
) -> Body:  # fmt: skip
    """The symbolic body of one compile: sizes from ``fitted``, offsets from the address
    order (of the placements at ``lengths`` and the compile's own) with the best worst ratio."""
    buffers = concrete["buffers"]
    out = [dict(b) for b in buffers]
    for buffer in out:
        buffer["bytes"] = fitted[buffer["tensor"]].expression()
        if buffer["kind"] == "weight" and not fitted[buffer["tensor"]].constant:
            raise InputError(f"weight {buffer['tensor']!r} changes size with the dimensions")
    bases: dict[str, int] = {}
    arenas: dict[str, Expr] = {}
    peaks = [0] * len(lengths)
    chain: Polynomial | None = None
    for key, groups, base in _regions(buffers, fitted, alignment):
        bases[key] = base
        if not groups:
            continue
        orders = [_order_of(groups, [_compiled_offset(buffers, g) for g in groups])]
        for binding in lengths:
            orders.append(_order_of(groups, _placed(groups, binding, alignment)))
        candidates = [
            [_peak(groups, order, binding, alignment) for binding in lengths] for order in orders
        ]
        best = [min(column) for column in zip(*candidates, strict=True)]
        worst = [
            max(p / b if b else 1.0 for p, b in zip(row, best, strict=True)) for row in candidates
        ]
        chosen = min(range(len(orders)), key=lambda i: (worst[i], i))
        peaks = [max(a, b) for a, b in zip(peaks, candidates[chosen], strict=True)]
        arenas[key] = _write_offsets(out, groups, orders[chosen], base, alignment)
        chain = _longest_chain(groups, orders[chosen], lengths[-1], alignment)
    content = {
        "schedule": concrete["schedule"],
        "buffers": out,
        "ops": [{k: v for k, v in op.items() if k != "cost"} for op in concrete["ops"]],
        "summary": {"weights_bytes": bases, "arena_bytes": arenas},
    }
    return Body(source, content, peaks, chain)


def _compiled_offset(buffers: list[dict[str, Any]], group: Group) -> int:
    """The offset the top-of-range compile gave a group (its root's)."""
    return int(buffers[group.members[0]]["offset"])


def _candidate_lengths(specs: DimSpecs) -> list[Binding]:
    """Bindings spread geometrically from the bottom of every range to its top."""
    bindings: list[Binding] = []
    for step in range(CANDIDATE_LENGTHS):
        binding = {
            r.name: max(
                r.low,
                min(r.high, round(r.low * (r.high / r.low) ** (step / (CANDIDATE_LENGTHS - 1)))),
            )
            for r in specs.ranges
        }
        if binding not in bindings:
            bindings.append(binding)
    return bindings


def _regions(
    buffers: list[dict[str, Any]], sizes: Mapping[str, Polynomial], alignment: int
) -> list[tuple[str, list[Group], int]]:
    """Per region: its activation groups (in buffer order of their roots) and the weights' end."""
    roots = alias_groups(PlanBuffer.of_entries(buffers))
    members: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    bases: dict[str, int] = defaultdict(int)
    for index, b in enumerate(buffers):
        key = region_key(b["device"], b["tier"])
        if b["kind"] == "weight":
            bases[key] = max(bases[key], b["offset"] + -(-b["bytes"] // alignment) * alignment)
        else:
            members[key][roots[(key, b["tensor"])]].append(index)
    regions = []
    for key in sorted(members):
        groups = []
        for root, indices in members[key].items():
            ordered = sorted(indices, key=lambda i: (buffers[i]["tensor"] != root, i))
            groups.append(
                Group(
                    tuple(ordered),
                    min(buffers[i]["start"] for i in ordered),
                    max(buffers[i]["end"] for i in ordered),
                    tuple(sizes[buffers[i]["tensor"]] for i in ordered),
                )
            )
        regions.append((key, groups, bases[key]))
    return regions


def _placed(groups: list[Group], binding: Binding, alignment: int) -> list[int]:
    """Offsets of the groups packed at ``binding`` as the pack pass packs them."""
    items = [
        Item(str(i), g.start, g.end, g.size_at(binding, alignment)) for i, g in enumerate(groups)
    ]
    placement, _ = solve(items, place(items), "auto", region_budget(SOLVER_BUDGET, len(items)), 1)
    return [placement.offsets[str(i)] for i in range(len(groups))]


def _order_of(groups: list[Group], offsets: list[int]) -> list[list[int]]:
    """For each group, the groups alive at a common step that sit directly below it in the
    placement ``offsets`` (one below another below it is implied, so left out)."""
    rank = sorted(range(len(groups)), key=lambda i: (offsets[i], i))
    position = {g: p for p, g in enumerate(rank)}
    below_bits = [0] * len(groups)
    ordered = sorted(range(len(groups)), key=lambda i: groups[i].start)
    active: list[int] = []
    for i in ordered:
        active = [j for j in active if groups[j].end >= groups[i].start]
        for j in active:
            low, high = (i, j) if position[i] < position[j] else (j, i)
            below_bits[high] |= 1 << low
        active.append(i)
    direct = []
    for i in range(len(groups)):
        covered = 0
        for j in set_bits(below_bits[i]):
            covered |= below_bits[j]
        direct.append(list(set_bits(below_bits[i] & ~covered)))
    return direct


def _evaluate_order(
    groups: list[Group], order: list[list[int]], binding: Binding, alignment: int
) -> tuple[list[int], list[int]]:
    """Offsets (from the arena's base) and sizes of the groups under ``order`` at ``binding``."""
    sizes = [g.size_at(binding, alignment) for g in groups]
    offsets: dict[int, int] = {}
    for i in TopologicalSorter(dict(enumerate(order))).static_order():
        offsets[i] = max((offsets[j] + sizes[j] for j in order[i]), default=0)
    return [offsets[i] for i in range(len(groups))], sizes


def _longest_chain(
    groups: list[Group], order: list[list[int]], binding: Binding, alignment: int
) -> Polynomial:
    """The sizes (unaligned, largest member) of the groups stacked under the arena's top at
    ``binding``, summed: the arena's formula there, up to the alignment of each term."""
    offsets, sizes = _evaluate_order(groups, order, binding, alignment)
    current = max(range(len(groups)), key=lambda i: (offsets[i] + sizes[i], -i))
    total = Polynomial(groups[current].sizes[0].dims, ())
    while True:
        group = groups[current]
        total = total + max(group.sizes, key=lambda size: size(binding))
        below = [j for j in order[current] if offsets[j] + sizes[j] == offsets[current]]
        if not below:
            return total
        current = below[0]


def _peak(groups: list[Group], order: list[list[int]], binding: Binding, alignment: int) -> int:
    offsets, sizes = _evaluate_order(groups, order, binding, alignment)
    return max((o + s for o, s in zip(offsets, sizes, strict=True)), default=0)


def _write_offsets(
    out: list[dict[str, Any]],
    groups: list[Group],
    order: list[list[int]],
    base: int,
    alignment: int,
) -> Expr:
    """Write each group's offset and extent expressions into ``out``; the arena's expression."""
    roots = [g.members[0] for g in groups]
    above = {j for below in order for j in below}
    for group, below in zip(groups, order, strict=True):
        root = group.members[0]
        ends: list[Expr] = [{"end_of": roots[j]} for j in below]
        out[root]["offset"] = {"max": [base, *ends]} if ends else base
        out[root]["extent"] = group.size_expression(alignment)
        for member in group.members[1:]:
            out[member]["offset"] = {"offset_of": root}
    tops: list[Expr] = [{"end_of": roots[i]} for i in range(len(groups)) if i not in above]
    if not tops:
        return 0
    return {"add": [tops[0] if len(tops) == 1 else {"max": tops}, -base]}
