"""Two plans side by side (``tierplan report A/plan.json --compare B/plan.json``).

How users judge a rewrite or a change of target: per region, the peak and lower
bound of each plan and their difference; and per tensor, which ones moved (another
region or offset), which vanished (in the first plan only) and which appeared (in
the second only). Tensors are matched by name; a tensor's place is the set of its
buffers' ``(region, offset)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from tierplan.compiler.plan import PlanBuffer
from tierplan.compiler.report.data import PlanView
from tierplan.compiler.report.html import render_html
from tierplan.compiler.report.units import human_bytes, percent

LISTED = 200  # rows shown per tensor list (the counts are always whole)


@dataclass(frozen=True, slots=True)
class RegionDelta:
    """One region in both plans (0 where a plan has no buffer there)."""

    key: str
    peak_a: int
    peak_b: int
    bound_a: int
    bound_b: int

    @property
    def change(self) -> int:
        """Peak of the second plan minus the first's."""
        return self.peak_b - self.peak_a


@dataclass(frozen=True, slots=True)
class Moved:
    """A tensor placed differently: where it was and where it is; ``tiers`` when it
    changed region (device or tier), not only offset."""

    tensor: str
    bytes: int
    before: str
    after: str
    tiers: bool


@dataclass(frozen=True, slots=True)
class PlanDiff:
    """What changed from plan A to plan B."""

    regions: list[RegionDelta]
    moved: list[Moved]
    vanished: list[PlanBuffer]
    appeared: list[PlanBuffer]


def _places(view: PlanView) -> dict[str, list[PlanBuffer]]:
    places: dict[str, list[PlanBuffer]] = {}
    for buffer in view.buffers:
        places.setdefault(buffer.tensor, []).append(buffer)
    return places


def _where(buffers: list[PlanBuffer]) -> str:
    return ", ".join(sorted(f"{b.region_key} @{b.offset:#x}" for b in buffers))


def compare(a: PlanView, b: PlanView) -> PlanDiff:
    """The difference from ``a`` to ``b``; lists biggest first, then by name (moves of
    tier before moves of offset)."""
    regions_a = {r.key: r for r in a.regions}
    regions_b = {r.key: r for r in b.regions}
    keys = [r.key for r in a.regions] + [r.key for r in b.regions if r.key not in regions_a]
    deltas = [
        RegionDelta(
            key,
            regions_a[key].peak if key in regions_a else 0,
            regions_b[key].peak if key in regions_b else 0,
            regions_a[key].bound if key in regions_a else 0,
            regions_b[key].bound if key in regions_b else 0,
        )
        for key in keys
    ]
    places_a, places_b = _places(a), _places(b)
    moved = [
        Moved(
            name,
            max(x.nbytes for x in places_b[name]),
            _where(before),
            _where(places_b[name]),
            {x.region for x in before} != {x.region for x in places_b[name]},
        )
        for name, before in places_a.items()
        if name in places_b and _where(before) != _where(places_b[name])
    ]
    vanished = [x[0] for name, x in places_a.items() if name not in places_b]
    appeared = [x[0] for name, x in places_b.items() if name not in places_a]

    def biggest(item: Moved | PlanBuffer) -> tuple[int, str]:
        return -(item.bytes if isinstance(item, Moved) else item.nbytes), item.tensor

    return PlanDiff(
        deltas,
        # Changes of tier first: they change traffic, an offset alone does not.
        sorted(moved, key=lambda m: (not m.tiers, *biggest(m))),
        sorted(vanished, key=biggest),
        sorted(appeared, key=biggest),
    )


def _rows(header: list[str], rows: list[list[str]], total: int, what: str) -> str:
    shown = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    head = "".join(f"<th>{h}</th>" for h in header)
    more = f" (the {LISTED} biggest)" if total > LISTED else ""
    return f"<h3>{total} tensors {what}{more}</h3><table><tr>{head}</tr>{shown}</table>"


def comparison_html(diff: PlanDiff, title_a: str, title_b: str) -> str:
    """The comparison section (markup; every name escaped)."""
    regions = [
        [
            escape(d.key),
            human_bytes(d.peak_a),
            human_bytes(d.peak_b),
            ("+" if d.change > 0 else "-" if d.change < 0 else "") + human_bytes(abs(d.change)),
            ("+" if d.change > 0 else "") + percent(d.change / d.peak_a) if d.peak_a else "-",
            human_bytes(d.bound_a),
            human_bytes(d.bound_b),
        ]
        for d in diff.regions
    ]
    header = ["device/tier", "peak A", "peak B", "B - A", "change", "bound A", "bound B"]
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in regions)
    moved = [
        [
            escape(m.tensor),
            human_bytes(m.bytes),
            "tier" if m.tiers else "offset",
            escape(m.before),
            escape(m.after),
        ]
        for m in diff.moved[:LISTED]
    ]

    def listed(buffers: list[PlanBuffer]) -> list[list[str]]:
        return [
            [escape(x.tensor), escape(x.kind), human_bytes(x.nbytes), escape(x.region_key)]
            for x in buffers[:LISTED]
        ]

    return (
        f'<section id="comparison"><h2>Comparison: A {escape(title_a)} vs B {escape(title_b)}</h2>'
        f"<p>A is the plan this report shows below; B the one given with --compare.</p>"
        f"<table><tr>{head}</tr>{body}</table>"
        + _rows(["tensor", "bytes", "change", "A", "B"], moved, len(diff.moved), "moved")
        + _rows(
            ["tensor", "kind", "bytes", "A"],
            listed(diff.vanished),
            len(diff.vanished),
            "only in A (vanished)",
        )
        + _rows(
            ["tensor", "kind", "bytes", "B"],
            listed(diff.appeared),
            len(diff.appeared),
            "only in B (appeared)",
        )
        + "</section>"
    )


def render_comparison(a: PlanView, title_a: str, b: PlanView, title_b: str) -> str:
    """The report of ``a`` with the comparison against ``b`` at its top."""
    return render_html(a, title_a, preface=comparison_html(compare(a, b), title_a, title_b))
