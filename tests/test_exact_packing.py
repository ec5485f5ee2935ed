"""Exact packing: the decision search, CP-SAT and their orchestration.

Every result goes through :func:`check_placement`; optima are known by construction
(instances cut from a full rectangle fit at max-live) or by a proof written below.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest
from tierplan.compiler.cli import main
from tierplan.compiler.errors import PipelineError
from tierplan.compiler.packing import (
    Item,
    Placement,
    check_placement,
    cpsat,
    exact,
    max_live,
    place,
    search,
    solve,
)
from tierplan.compiler.packing.instances import rectangle_cuts, staircases, towers
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


def stacked(items: list[Item]) -> Placement:
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
    start = stacked(items)
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
    heuristic = stacked(items)
    with caplog.at_level(logging.WARNING):
        placement, report = solve(items, heuristic, "cpsat", budget=1.0)
    assert placement.peak == heuristic.peak and not check_placement(items, placement.offsets)
    assert "RuntimeError: solver crashed" in caplog.text and report.warnings


def test_invalid_engine_result_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    items = rectangle_cuts(30, 5, steps=8, height=16)
    heuristic = stacked(items)
    assert heuristic.peak > max_live(items)
    overlapping = search.Minimum({item.key: 0 for item in items}, peak=1, bound=1, nodes=1)
    monkeypatch.setattr(search, "minimize", lambda *args, **kwargs: overlapping)
    placement, report = solve(items, heuristic, "search", budget=1.0)
    assert placement.offsets == heuristic.offsets
    assert any("invalid" in warning for warning in report.warnings)


def test_wall_clock_safety_net_keeps_the_known_placement(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(cpsat, "SECONDS_PER_UNIT", 0.0)
    monkeypatch.setattr(cpsat, "SECONDS_MARGIN", 1e-9)
    items = rectangle_cuts(100, 1)
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
    with pytest.raises(PipelineError, match="unknown solver"):
        parse_pipeline("schedule,liveness,pack{solver=magic}")
    with pytest.raises(PipelineError, match="workers"):
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
