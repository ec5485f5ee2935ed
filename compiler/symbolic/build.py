"""Compile a model once for a range of dimension values: the symbolic plan (``tierplan-plan/2``).

The schedule, lifetimes and aliasing come from one compile at the top of the range
(they do not depend on the length: :mod:`.sizes` refuses a model whose operators
change with it). Each buffer's bytes are polynomials in the ranged dimensions
(:mod:`.sizes`). Per region, the weights keep their constant offsets and each alias
group of activations is one item, reserving its largest member's bytes rounded up
to the alignment. The offsets come from an *order*: for every two items alive at a
common step, which one sits above the other. An item's offset is then the highest
end among the items directly below it (or the arena's base), which is valid
whatever the sizes are. Orders are taken from placements (the packing heuristics
and exact engines) at several lengths spread geometrically over the range; the
order kept is the one whose worst ratio, over those lengths, to the best peak any
candidate reaches there is lowest (ties: the earlier length).
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
from tierplan.compiler.plan import Plan, alias_groups, region_key
from tierplan.compiler.symbolic.dims import DimSpecs
from tierplan.compiler.symbolic.expressions import Expr, Polynomial
from tierplan.compiler.symbolic.instantiate import SYMBOLIC_FORMAT
from tierplan.compiler.symbolic.sizes import Binding, fit_sizes
from tierplan.compiler.target import Target, load_target

SYMBOLIC_PIPELINE = ("schedule", "liveness", "inplace", "pack", "evaluate")
# Passes whose decisions depend on the sizes: one choice cannot serve every length.
SIZE_DEPENDENT = frozenset({"tiling", "tiers", "partition", "attention"})
CANDIDATE_LENGTHS = 6
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
class SymbolicPlan:
    """The symbolic plan and how its order was chosen: the bindings compared, each
    candidate's peak there, and the index of the one kept."""

    plan: Plan
    lengths: list[Binding]
    candidate_peaks: list[list[int]]
    chosen: int
    longest_chains: list[Polynomial]  # per binding of ``lengths``: the arena's chain, summed

    def order_note(self) -> str:
        """Where the kept address order came from, and how close it stays to the best."""
        source = (
            "the top compile"
            if self.chosen == 0
            else f"placement at {self.lengths[self.chosen - 1]}"
        )
        best = [min(column) for column in zip(*self.candidate_peaks, strict=True)]
        kept = self.candidate_peaks[self.chosen]
        worst = max((p / b for p, b in zip(kept, best, strict=True) if b), default=1.0)
        return (
            f"address order from {source} ({len(self.candidate_peaks)} candidates); its peak is "
            f"within {worst:.4f}x of the best candidate's at each of {len(self.lengths)} lengths"
        )


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
    """One plan for every binding of ``specs.ranges`` (with ``specs.fixed`` bound)."""
    chosen_target = target if isinstance(target, Target) else load_target(target)
    top = {**specs.fixed, **{r.name: r.high for r in specs.ranges}}
    result = compile_model(
        model, chosen_target, dims=top, shapes=shapes, passes=symbolic_pipeline(passes),
        on_status=on_status,
    )  # fmt: skip
    concrete = result.plan
    buffers = concrete["buffers"]

    def sample(binding: Binding) -> tuple[dict[str, int], tuple[str, ...]]:
        loaded = load_model(model, dims={**specs.fixed, **binding}, shapes=shapes)
        sizes = {t.name: t.nbytes for t in loaded.ir.tensors()}
        return sizes, tuple(sorted(op.name for op in loaded.ir.operators()))

    fitted = fit_sizes(specs.ranges, sorted({b["tensor"] for b in buffers}), sample).sizes
    alignment = chosen_target.alignment
    lengths = _candidate_lengths(specs)
    out = [dict(b) for b in buffers]
    for buffer in out:
        buffer["bytes"] = fitted[buffer["tensor"]].expression()
        if buffer["kind"] == "weight" and not fitted[buffer["tensor"]].constant:
            raise InputError(f"weight {buffer['tensor']!r} changes size with the dimensions")
    bases: dict[str, int] = {}
    arenas: dict[str, Expr] = {}
    peaks_per_candidate: list[list[int]] = []
    chosen = 0
    chains: list[Polynomial] = []
    for key, groups, base in _regions(buffers, fitted, alignment):
        bases[key] = base
        if not groups:
            continue
        orders = [_order_of(groups, [_compiled_offset(buffers, g) for g in groups])]
        for binding in lengths:
            orders.append(_order_of(groups, _placed(groups, binding, alignment)))
        peaks = [
            [_peak(groups, order, binding, alignment) for binding in lengths] for order in orders
        ]
        best = [min(column) for column in zip(*peaks, strict=True)]
        worst = [max(p / b if b else 1.0 for p, b in zip(row, best, strict=True)) for row in peaks]
        chosen = min(range(len(orders)), key=lambda i: (worst[i], i))
        peaks_per_candidate = peaks
        arenas[key] = _write_offsets(out, groups, orders[chosen], base, alignment)
        chains = [_longest_chain(groups, orders[chosen], b, alignment) for b in lengths]
    plan: Plan = {
        "format": SYMBOLIC_FORMAT,
        "model": concrete["model"],
        "target": concrete["target"],
    }
    plan["dims"] = dict(specs.fixed)
    plan["dim_ranges"] = {r.name: [r.low, r.high] for r in specs.ranges}
    plan["schedule"] = concrete["schedule"]
    plan["buffers"] = out
    plan["ops"] = [{k: v for k, v in op.items() if k != "cost"} for op in concrete["ops"]]
    plan["summary"] = {"weights_bytes": bases, "arena_bytes": arenas}
    return SymbolicPlan(plan, lengths, peaks_per_candidate, chosen, chains)


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
    roots = alias_groups(buffers)
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
        for j in _bits(below_bits[i]):
            covered |= below_bits[j]
        direct.append(list(_bits(below_bits[i] & ~covered)))
    return direct


def _bits(mask: int) -> list[int]:
    found = []
    while mask:
        low = mask & -mask
        found.append(low.bit_length() - 1)
        mask ^= low
    return found


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
