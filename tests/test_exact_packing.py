"""Exact packing: the decision search, CP-SAT and their orchestration.

Every result goes through :func:`check_placement`; optima are known by construction
(instances cut from a full rectangle fit at max-live) or by a proof written below.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tierplan.compiler.cli import main
from tierplan.compiler.errors import PipelineError
from tierplan.compiler.packing import (
    Item,
    Placement,
    check_placement,
    cpsat,
    exact,
    max_live,
    peaks,
    place,
    search,
    solve,
)
from tierplan.compiler.packing.exact import Part, section_count, sections, stacked_sections
from tierplan.compiler.packing.instances import cut_blocks, rectangle_cuts, staircases, towers
from tierplan.compiler.pass_manager import parse_pipeline

from tests.conftest import MODELS

UNIT = 64


def forced_gap() -> list[Item]:
    """Max-live 4 units, optimum 5. With 4: A and B sit at an end (0 or 3: each
    shares a step with a 3-unit item), and M is then forced to {1, 3} by step 1 and
    to {0, 2} by step 3 (or the mirror), a contradiction."""
    spec = {
        "A": (0, 2, 1),
        "X": (0, 0, 3),
        "M": (1, 3, 1),
        "W": (1, 1, 2),
        "B": (2, 4, 1),
        "Z": (4, 4, 3),
        "V": (3, 3, 2),
        "U": (2, 2, 1),
    }
    return [Item(key, first, last, size * UNIT) for key, (first, last, size) in spec.items()]


def small_cuts() -> list[list[Item]]:
    """Small cut rectangles: they fit exactly at max-live."""
    return [rectangle_cuts(30, seed, steps=8, height=16) for seed in (5, 9)]


def stacked_placement(items: list[Item]) -> Placement:
    """A valid but poor warm start (every item on top of the previous one), so the
    engines have a gap to close whatever the heuristics reach."""
    offsets, top = {}, 0
    for item in items:
        offsets[item.key] = top
        top += item.size
    return Placement.of(items, offsets, "stacked")


@pytest.mark.parametrize("items", small_cuts(), ids=lambda items: f"{len(items)} items")
@pytest.mark.parametrize("solver", ["search", "cpsat", "auto"])
def test_cut_rectangles_reach_max_live_proven(items: list[Item], solver: str) -> None:
    start = stacked_placement(items)
    assert start.peak > max_live(items)
    placement, report = solve(items, start, solver, budget=2.0)
    assert not check_placement(items, placement.offsets)
    assert placement.peak == max_live(items) == report.bound
    assert report.status == "OPTIMAL" and report.gap == 0


@pytest.mark.parametrize("solver", ["search", "cpsat", "auto"])
def test_optimum_above_max_live_is_proven(solver: str) -> None:
    items = forced_gap()
    assert search.fits(items, max_live(items), node_budget=10_000) == search.Decision(
        None, exhausted=True, nodes=search.fits(items, max_live(items), 10_000).nodes
    )
    placement, report = solve(items, place(items), solver, budget=2.0)
    assert not check_placement(items, placement.offsets)
    assert max_live(items) == 4 * UNIT
    assert placement.peak == report.bound == 5 * UNIT
    assert report.status == "OPTIMAL"


def test_search_agrees_with_cpsat_on_random_instances() -> None:
    rng = random.Random(7)
    for _ in range(25):
        items = [
            Item(f"i{k}", start, start + rng.randint(0, 3), UNIT * rng.choice([1, 2, 3, 5]))
            for k, start in enumerate(rng.randint(0, 5) for _ in range(rng.randint(3, 9)))
        ]
        known = dict(place(items).offsets)
        found = search.minimize(items, known, floor=0, node_budget=50_000)
        solved = cpsat.minimize(items, known, floor=0, budget=5.0, workers=1)
        assert not check_placement(items, found.offsets)
        assert solved.status == "OPTIMAL"
        assert found.peak == found.bound == solved.peak


@pytest.mark.parametrize("seed", range(3))
def test_search_finds_staircases_at_max_live_within_a_small_budget(seed: int) -> None:
    # They fit at max-live only if each band's level is continued across its cuts:
    # the value order (tops flush with the skyline beside them first) finds that.
    items = staircases(12, seed)
    decision = search.fits(items, max_live(items), node_budget=2_000)
    assert decision.offsets is not None and decision.nodes < 2_000
    assert not check_placement(items, decision.offsets)
    assert max(decision.offsets[item.key] + item.size for item in items) == max_live(items)


def test_search_lowers_the_peak_when_max_live_is_out_of_reach() -> None:
    # The try at max-live runs out of nodes; the rest of the budget still finds a
    # placement below the heuristic's, and max-live stays the (unrefuted) bound.
    items = rectangle_cuts(150, 4)
    heuristic = place(items)
    found = search.minimize(items, dict(heuristic.offsets), floor=0, node_budget=2_000)
    assert not check_placement(items, found.offsets)
    assert max_live(items) < found.peak < heuristic.peak
    assert found.bound == max_live(items)


def test_decider_resumes_where_it_stopped() -> None:
    items = rectangle_cuts(100, 3)
    decider = search.Decider(items, max_live(items))
    first = decider.run(8)
    assert first.offsets is None and not first.exhausted and first.nodes <= 8
    spent = first.nodes
    while (decision := decider.run(200)).offsets is None:
        assert not decision.exhausted  # it fits: no refutation can be proven
        spent += decision.nodes
    spent += decision.nodes
    assert not check_placement(items, decision.offsets)
    assert max(decision.offsets[i.key] + i.size for i in items) <= max_live(items)
    assert decider.run(200) == decision  # a proven answer is final
    # Resuming costs no more than one search given all the nodes at once, beyond the
    # dives each short call cut off.
    assert spent <= 2 * search.fits(items, max_live(items), 10**6).nodes + 200


def test_rounds_share_the_budget_between_many_hard_sections() -> None:
    # Cut blocks on a shared baseline: stacked and split, dozens of parts remain
    # above the bound; rounds of doubling node limits prove every one at max-live.
    items = cut_blocks(2000, seed=2000)
    known = place(items)
    assert known.peak > max_live(items)
    placement, report = solve(items, known, "search", exact.region_budget(2.0, len(items)))
    assert not check_placement(items, placement.offsets)
    assert report.status == "OPTIMAL" and placement.peak == max_live(items)
    assert report.exact_sections >= 3


def test_hard_instances_fit_at_max_live_by_construction() -> None:
    # Each generator tiles its rectangle exactly: the cut is a placement at max-live.
    for items in (
        rectangle_cuts(40, 3, steps=16),
        towers(4, 4, 1, steps=16),
        staircases(8, 1, steps=16),
    ):
        area = sum(item.size * (item.end - item.start + 1) for item in items)
        assert area == 16 * max_live(items)
        assert len({item.key for item in items}) == len(items)


def test_cut_blocks_fit_at_max_live_by_construction() -> None:
    # Blocks tile their own rectangles on the baseline: per block, the area of its
    # pieces equals its span times its height, the tallest block reaching max-live.
    items = cut_blocks(400, 3, block=50, steps=8, height=32, baseline=2, unit=1)
    base = [item for item in items if item.end - item.start + 1 > 8]
    assert len(base) == 2 and len(items) == 402
    blocks: dict[int, list[Item]] = {}
    for item in items:
        if item not in base:
            assert item.start // 8 == item.end // 8  # no piece leaves its block
            blocks.setdefault(item.start // 8, []).append(item)
    heights = []
    for pieces in blocks.values():
        area = sum(item.size * (item.end - item.start + 1) for item in pieces)
        assert area % 8 == 0 and len(pieces) == 50
        heights.append(area // 8)
        assert max_live(pieces) == heights[-1]  # no step of a block is left partly empty
    assert max_live(items) == 2 + max(heights) == 2 + 32


def test_sections_split_where_no_item_crosses() -> None:
    items = [
        Item("a", 0, 2, UNIT),
        Item("b", 2, 3, UNIT),
        Item("c", 4, 4, UNIT),
        Item("d", 6, 9, UNIT),
    ]
    assert [[item.key for item in part] for part in exact.sections(items)] == [
        ["a", "b"],
        ["c"],
        ["d"],
    ]


@pytest.mark.parametrize("solver", ["search", "cpsat", "auto"])
def test_solves_are_deterministic(solver: str) -> None:
    items = [*rectangle_cuts(30, 9, steps=8, height=16), Item("late", 7, 12, 3 * UNIT)]
    runs = [solve(items, place(items), solver, budget=0.5, workers=2) for _ in range(2)]
    assert runs[0][0].offsets == runs[1][0].offsets
    assert runs[0][1].bound == runs[1][1].bound


def test_engine_failure_keeps_the_heuristic_plan(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("solver crashed")

    monkeypatch.setattr(cpsat, "minimize", broken)
    items = rectangle_cuts(30, 5, steps=8, height=16)
    heuristic = stacked_placement(items)
    with caplog.at_level(logging.WARNING):
        placement, report = solve(items, heuristic, "cpsat", budget=1.0)
    assert placement.peak == heuristic.peak and not check_placement(items, placement.offsets)
    assert "RuntimeError: solver crashed" in caplog.text and report.warnings


def test_invalid_engine_result_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    items = rectangle_cuts(30, 5, steps=8, height=16)
    heuristic = stacked_placement(items)
    assert heuristic.peak > max_live(items)
    monkeypatch.setattr(exact, "group_equal_lifetimes", lambda items: None)  # items' own keys
    everything_at_zero = {item.key: 0 for item in items}
    overlapping = search.Minimum(everything_at_zero, peak=1, bound=1, nodes=1)
    monkeypatch.setattr(search, "minimize", lambda *args, **kwargs: overlapping)
    decided = search.Decision(everything_at_zero, exhausted=True, nodes=1)
    monkeypatch.setattr(search.Decider, "run", lambda *args, **kwargs: decided)
    placement, report = solve(items, heuristic, "search", budget=1.0)
    assert placement.offsets == heuristic.offsets
    assert any("invalid" in warning for warning in report.warnings)


def test_wall_clock_safety_net_keeps_the_known_placement(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(cpsat, "SECONDS_PER_UNIT", 0.0)
    monkeypatch.setattr(cpsat, "SECONDS_MARGIN", 1e-9)
    items = rectangle_cuts(100, 3)
    known = place(items)
    assert known.peak > max_live(items)
    with caplog.at_level(logging.WARNING):
        solved = cpsat.minimize(items, dict(known.offsets), 0, 5.0, 1)
    assert solved.offsets == dict(known.offsets) and solved.status == "FEASIBLE"
    assert "wall-clock" in caplog.text


def test_greedy_solver_changes_nothing() -> None:
    items = rectangle_cuts(30, 2, steps=8, height=16)
    heuristic = place(items)
    placement, report = solve(items, heuristic, "greedy", budget=1.0)
    assert placement.offsets == heuristic.offsets and report.exact_items == 0


def test_empty_problem() -> None:
    placement, report = solve([], Placement.of([], {}, "none"), "auto", budget=1.0)
    assert placement.peak == 0 and report.status == "OPTIMAL"


def test_pack_pass_rejects_bad_solver_options() -> None:
    with pytest.raises(PipelineError, match=r"pack\{solver=magic\}: expected 'greedy', "):
        parse_pipeline("schedule,liveness,pack{solver=magic}")
    with pytest.raises(PipelineError, match=r"pack\{workers=0\}: expected int >= 1"):
        parse_pipeline("schedule,liveness,pack{workers=0}")


def test_compile_solver_flags_set_the_pack_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = MODELS / "synthetic" / "unet.onnx"
    args = ["compile", str(model), "-o", str(tmp_path), "--solver", "auto", "--workers", "2"]
    assert main([*args, "--solver-budget", "0.5", "--solver-report"]) == 0
    assert "exact packing" in capsys.readouterr().out
    assert main(["check", str(model), str(tmp_path / "plan.json")]) == 0
    no_pack = ["--passes", "schedule,liveness,evaluate", "--solver", "auto"]
    assert main(["compile", str(model), "-o", str(tmp_path), *no_pack]) == 2


def test_items_alive_through_a_section_are_stacked_and_the_rest_split() -> None:
    items = [
        Item("a", 0, 9, 128),
        Item("b", 0, 4, 64),
        Item("c", 5, 9, 64),
        Item("d", 0, 9, 64),
        Item("e", 5, 7, 64),
        Item("g", 6, 9, 64),
        Item("f", 12, 13, 64),  # a section of its own
    ]
    stacked, parts = exact.stacked_sections(items)
    # a and d span 0-9 (larger first); then b spans 0-4 and c spans 5-9 on their own.
    assert stacked == {"a": 0, "d": 128, "b": 192, "c": 192, "f": 0}
    assert parts == [exact.Part(256, [items[4], items[5]])]  # e and g overlap in time
    placement, report = solve(items, stacked_placement(items), "search", budget=1.0)
    assert not check_placement(items, placement.offsets)
    assert placement.peak == max_live(items) == 384 and report.status == "OPTIMAL"


@settings(max_examples=25)
@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 3), st.integers(1, 4)), min_size=1, max_size=9
    )
)
def test_stacking_never_loses_the_optimum(spec: list[tuple[int, int, int]]) -> None:
    # CP-SAT on the whole problem (no reduction) proves the optimum; solve, which
    # stacks and splits first, must reach the same peak and never claim a higher bound.
    items = [
        Item(f"i{index}", first, first + length, size * UNIT)
        for index, (first, length, size) in enumerate(spec)
    ]
    whole = cpsat.minimize(items, dict(place(items, "greedy-size").offsets), 0, 5.0, 1)
    assert whole.peak == whole.bound  # proven
    placement, report = solve(items, stacked_placement(items), "search", budget=5.0)
    assert not check_placement(items, placement.offsets)
    assert placement.peak == whole.peak and report.bound <= whole.peak


def test_windows_lower_a_section_too_large_for_one_model(monkeypatch: pytest.MonkeyPatch) -> None:
    # The windows alone: the peak moves reach max-live here by themselves (tests/test_peaks.py).
    monkeypatch.setattr(
        peaks, "lower_peak", lambda items, known, *_: peaks.Lowered(dict(known), 0, 0, 0, False)
    )
    monkeypatch.setattr(exact, "CPSAT_LIMIT", 20)
    monkeypatch.setattr(exact, "SEARCH_LIMIT", 20)
    monkeypatch.setattr(cpsat, "WINDOW_ITEMS", 10)
    items = rectangle_cuts(60, 1, steps=8, height=16)
    # One section, and no item alive through all of it to stack and split it by.
    assert exact.stacked_sections(items) == ({}, [exact.Part(0, exact.sections(items)[0])])
    heuristic = stacked_placement(items)
    runs = [solve(items, heuristic, solver, budget=2.0) for solver in ("cpsat", "cpsat", "auto")]
    placement, report = runs[0]
    assert not check_placement(items, placement.offsets)
    assert placement.peak < heuristic.peak and report.windows > 0 and report.window_items > 0
    assert report.exact_items == 0 and report.bound == max_live(items)
    assert runs[1][0].offsets == placement.offsets  # deterministic
    assert runs[2][0].offsets == placement.offsets  # auto uses the windows there too
    searched = solve(items, heuristic, "search", budget=1.0)
    assert searched[0].offsets == heuristic.offsets and searched[1].warnings


def test_windows_never_worsen_the_known_placement() -> None:
    items = rectangle_cuts(80, 2, steps=16, height=64)
    known = place(items)
    solved = cpsat.minimize_windows(items, dict(known.offsets), 0, 0.5, 1)
    assert not check_placement(items, solved.offsets)
    assert max_live(items) <= solved.peak <= known.peak and solved.bound == max_live(items)


def test_solve_reports_progress_per_section() -> None:
    # Two cut rectangles one after the other in time: two sections, each above max-live
    # (seeds where no item lives through its whole section, so nothing is stacked).
    items = [
        Item(f"{index}", item.start + shift, item.end + shift, item.size)
        for shift, seed in ((0, 5), (8, 7))
        for index, item in enumerate(rectangle_cuts(30, seed, steps=8, height=16), start=shift * 30)
    ]
    start = stacked_placement(items)
    above = [
        part
        for part in exact.sections(items)
        if max(start.offsets[item.key] + item.size for item in part) > max_live(items)
    ]
    steps: list[exact.Progress] = []
    placement, _ = solve(items, start, "auto", budget=1.0, progress=steps.append)
    assert len(above) >= 2 and {step.sections for step in steps} == {len(above)}
    assert {step.section for step in steps} == set(range(1, len(above) + 1))
    assert [step.items for step in steps if step.engine == "done"] == [len(p) for p in above]
    assert {step.engine for step in steps} >= {"search", "done"}
    assert all(step.bound == max_live(items) for step in steps)
    assert steps[-1].peak == max(placement.offsets[item.key] + item.size for item in above[-1])


def test_pack_pass_sends_progress_to_the_front_end(monkeypatch: pytest.MonkeyPatch) -> None:
    # The pass hands solve a callback that names the region to compile_model's on_status.
    from tierplan.compiler import compile_model
    from tierplan.passes import pack

    def solve_and_report(*args: object, **kwargs: object) -> object:
        items, known, solver, budget, workers, progress = args
        assert callable(progress)
        progress(exact.Progress(1, 1, 0, "cpsat", 2, 1))
        return solve(items, known, solver, budget, workers)  # type: ignore[arg-type]

    monkeypatch.setattr(pack, "solve", solve_and_report)
    seen: list[str] = []
    compile_model(MODELS / "synthetic" / "unet.onnx", on_status=seen.append)
    step = exact.Progress(1, 1, 0, "cpsat", 2, 1).describe()
    assert seen and all(line.split(" ", 1)[0].count("/") == 1 for line in seen)
    assert {line.split(" ", 1)[1] for line in seen} == {step}


def _stacked_sections_by_rescanning(items: list[Item]) -> tuple[dict[str, int], list[Part]]:
    """stacked_sections as first written: every peel re-sections the whole part."""
    stacked: dict[str, int] = {}
    parts: list[Part] = []
    work = [Part(0, section) for section in reversed(sections(items))]
    while work:
        part = work.pop()
        first = min(item.start for item in part.items)
        last = max(item.end for item in part.items)
        spanning = [item for item in part.items if (item.start, item.end) == (first, last)]
        if not spanning:
            parts.append(part)
            continue
        base = part.base
        for item in sorted(spanning, key=lambda item: (-item.size, item.key)):
            stacked[item.key] = base
            base += item.size
        rest = [item for item in part.items if (item.start, item.end) != (first, last)]
        work.extend(Part(base, section) for section in reversed(sections(rest)) if rest)
    return stacked, parts


@pytest.mark.parametrize("seed", range(30))
def test_stacked_sections_equal_rescanning_each_part(seed: int) -> None:
    rng = random.Random(seed)
    steps = rng.randint(1, 40)
    items = []
    for index in range(rng.randint(0, 80)):
        if rng.random() < 0.4:  # nests and repeats, where peeling goes deep
            start = rng.randint(0, steps // 3)
            end = rng.randint(max(start, steps - steps // 3 - 1), steps - 1)
        else:
            start = rng.randrange(steps)
            end = rng.randint(start, min(steps - 1, start + rng.choice([0, 1, 4])))
        items.append(Item(f"i{index}", start, end, rng.choice([64, 128, 256])))
    assert stacked_sections(items) == _stacked_sections_by_rescanning(items)


@pytest.mark.parametrize("seed", range(20))
def test_section_count_counts_the_sections(seed: int) -> None:
    rng = random.Random(seed)
    items = []
    for index in range(rng.randint(0, 40)):
        start = rng.randrange(50)
        items.append(Item(f"i{index}", start, start + rng.randrange(8), 64))
    assert section_count(items) == len(sections(items))
