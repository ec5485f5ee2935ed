"""Packing and the wall clock: deterministic by default, time-limited only when asked.

Without ``--time-limit`` the deterministic budget decides every result (the wall-clock
cap is a safety net that must not bind); with it, the result is the best found in
time and says so, in the solve report and in plan.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ortools.sat.python import cp_model
from tierplan.compiler.cli import main
from tierplan.compiler.errors import PipelineError
from tierplan.compiler.packing import check_placement, cpsat, exact, max_live, place, search, solve
from tierplan.compiler.packing.clock import Deadline
from tierplan.compiler.packing.exact import stacked_sections
from tierplan.compiler.packing.instances import rectangle_cuts, towers
from tierplan.compiler.packing.problem import Item
from tierplan.compiler.packing.skyline import OutOfTime, by_length, skyline
from tierplan.compiler.pass_manager import parse_pipeline

from tests.conftest import MODELS

UNET = MODELS / "synthetic" / "unet.onnx"


def _trace(tmp_path: Path) -> Path:
    """Interlocking towers as a plain trace: hard enough that no engine proves them fast."""
    trace = tmp_path / "towers.txt"
    trace.write_text("".join(f"{i.size} {i.start} {i.end}\n" for i in towers(6, 8, 3)))
    return trace


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "ten"])
@pytest.mark.parametrize("command", ["compile", "pack"])
def test_bad_time_limit_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, value: str
) -> None:
    source = UNET if command == "compile" else _trace(tmp_path)
    out = tmp_path / "out"
    assert _exit_code([command, str(source), "-o", str(out), f"--time-limit={value}"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1].startswith(("tierplan: error: --time-limit", f"tierplan {command}: error:"))
    assert "--time-limit" in error[-1] and not out.exists()


def _exit_code(args: list[str]) -> int | str | None:
    """``main``'s exit code, also when argparse exits."""
    try:
        return main(args)
    except SystemExit as exit:
        return exit.code


def test_pack_pass_rejects_a_negative_time_limit() -> None:
    with pytest.raises(PipelineError, match="time_limit"):
        parse_pipeline("schedule,liveness,pack{time_limit=-1}")


def test_a_passed_deadline_marks_the_solve_time_limited() -> None:
    items = towers(6, 8, 3)
    known = place(items)
    assert known.peak > max_live(items)
    placement, report = solve(items, known, "auto", 2.0, deadline=Deadline.after(0.0))
    assert report.time_limited and report.status == "FEASIBLE"
    assert not check_placement(items, placement.offsets) and placement.peak <= known.peak


def test_a_time_limited_solve_keeps_working_until_the_deadline() -> None:
    items = rectangle_cuts(100, 3)
    known = place(items)
    assert known.peak > max_live(items)
    placement, report = solve(items, known, "auto", 0.0, deadline=Deadline.after(30.0))
    assert placement.peak == max_live(items) and report.status == "OPTIMAL"
    assert not report.time_limited  # proven before the clock ran out: nothing was cut


def test_a_placement_is_ready_when_the_deadline_has_already_passed() -> None:
    # greedy-size stacks what it had no time to place; the other placers are skipped.
    items = towers(6, 8, 3)
    placement = place(items, deadline=Deadline.after(0.0))
    assert placement.placer == "greedy-size" and not check_placement(items, placement.offsets)
    assert placement.peak == sum(item.size for item in items)


def test_a_skyline_placer_gives_up_at_the_deadline() -> None:
    with pytest.raises(OutOfTime):
        skyline(towers(6, 8, 3), by_length, Deadline.after(0.0))


def test_pack_command_says_when_the_time_limit_cut_it_short(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    trace = _trace(tmp_path)
    monkeypatch.setattr(Deadline, "passed", lambda self: True)  # a clock already run out
    assert main(["pack", str(trace), "--time-limit", "60"]) == 0
    out = capsys.readouterr().out
    assert "time-limited" in out and "depends on the machine" in out


def test_compile_marks_a_time_limited_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain, limited = tmp_path / "plain", tmp_path / "limited"
    assert main(["compile", str(UNET), "-o", str(plain), "-q"]) == 0
    assert "packing" not in json.loads((plain / "plan.json").read_text())
    # A clock that has always run out: every region is cut short, and says so.
    monkeypatch.setattr(Deadline, "passed", lambda self: True)
    assert main(["compile", str(UNET), "-o", str(limited), "-q", "--time-limit", "60"]) == 0
    plan = json.loads((limited / "plan.json").read_text())
    assert plan["packing"] and all(r["time_limited"] for r in plan["packing"].values())
    assert main(["check", str(UNET), str(limited / "plan.json")]) == 0


def test_a_generous_time_limit_that_never_fires_leaves_the_plan_unmarked(tmp_path: Path) -> None:
    # unet's regions are at their bound after the heuristics: no engine, no clock.
    assert main(["compile", str(UNET), "-o", str(tmp_path), "-q", "--time-limit", "60"]) == 0
    assert "packing" not in json.loads((tmp_path / "plan.json").read_text())


@pytest.mark.parametrize("solver", ["search", "cpsat", "auto"])
def test_the_deterministic_budget_binds_not_the_wall_clock(
    monkeypatch: pytest.MonkeyPatch, solver: str
) -> None:
    # The same solve with the safety net as shipped and with one a thousand times
    # longer: if the cap ever decided a result, the two would differ (one worker: the
    # default; several interleave deterministically, but CP-SAT bounds them loosely).
    items = towers(6, 8, 3)
    shipped = solve(items, place(items), solver, 1.0)
    monkeypatch.setattr(cpsat, "SECONDS_PER_UNIT", cpsat.SECONDS_PER_UNIT * 1000)
    monkeypatch.setattr(cpsat, "SECONDS_MARGIN", cpsat.SECONDS_MARGIN * 1000)
    generous = solve(items, place(items), solver, 1.0)
    assert shipped[0].offsets == generous[0].offsets
    assert shipped[1].bound == generous[1].bound
    assert not shipped[1].time_limited and not generous[1].time_limited


def test_only_a_time_limited_cpsat_solve_runs_a_portfolio(monkeypatch: pytest.MonkeyPatch) -> None:
    workers: list[int] = []
    original = cp_model.CpSolver.solve

    def counting(self: cp_model.CpSolver, *args: Any, **kwargs: Any) -> Any:
        workers.append(self.parameters.num_workers)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cp_model.CpSolver, "solve", counting)
    items = towers(6, 8, 3)
    known = dict(place(items).offsets)
    cpsat.minimize(items, known, 0, 0.5, 1)
    assert workers and set(workers) == {1}
    workers.clear()
    cpsat.minimize(items, known, 0, 0.0, 1, Deadline.after(1.0))
    assert workers and set(workers) == {cpsat.DEADLINE_WORKERS}


def test_a_time_limited_auto_solve_gives_the_search_its_share_at_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The decision search at the bound ends interlocking towers in seconds or stalls
    # (heavy-tailed): with a time limit it gets a slice of the section's time, then CP-SAT.
    tries: list[tuple[int, float]] = []
    order: list[str] = []

    def stalled(
        items: list[Item], capacity: int, node_budget: int, deadline: Deadline | None = None
    ) -> search.Decision:
        assert deadline is not None
        order.append("search")
        tries.append((capacity, deadline.left()))
        return search.Decision(None, exhausted=False, nodes=1, timed_out=True)

    def cpsat_minimize(items: list[Item], known: dict[str, int], *args: Any) -> cpsat.Solution:
        order.append("cpsat")
        return cpsat.Solution(known, max(known[i.key] + i.size for i in items), 0, "FEASIBLE")

    monkeypatch.setattr(search, "fits", stalled)
    monkeypatch.setattr(cpsat, "minimize", cpsat_minimize)
    monkeypatch.setattr(exact, "group_equal_lifetimes", lambda items: None)  # the part's own share
    items = towers(6, 8, 3)
    known = place(items)
    assert known.peak > max_live(items) and len(stacked_sections(items)[1]) == 1
    solve(items, known, "auto", 2.0, deadline=Deadline.after(20.0))
    (capacity, seconds), *_ = tries
    assert capacity == max_live(items) and order[0] == "search" and order[-1] == "cpsat"
    share = exact.TIMED_SEARCH_SHARE * search.TIMED_FIRST_TRY
    assert seconds >= 20.0 * share * 0.9


def test_a_time_limited_decision_restarts_with_other_seeds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A decision's run time is heavy-tailed in the seed: short tries with new seeds,
    # each longer, until one settles it; the model takes the items bottom first.
    tries: list[tuple[int | None, float, int, list[str]]] = []

    def third_time_lucky(free: list[Item], fixed: object, known: dict[str, int], *rest: Any) -> Any:
        _, budget, _, capacity, _, seed = rest  # low, budget, workers, capacity, deadline, seed
        tries.append((capacity, budget, seed, [item.key for item in free]))
        top = max(known[item.key] + item.size for item in free)
        status = "FEASIBLE" if seed == 2 else "UNKNOWN"
        return cpsat.Answer(dict(known), top, 0, status, budget)

    monkeypatch.setattr(cpsat, "solve_window", third_time_lucky)
    items = towers(6, 8, 3)
    known = dict(place(items).offsets)
    solved = cpsat.minimize(items, known, 0, 0.0, 1, Deadline.after(60.0))
    assert solved.status == "FEASIBLE" and [seed for _, _, seed, _ in tries] == [0, 1, 2]
    assert all(capacity == max_live(items) for capacity, *_ in tries)
    budgets = [budget for _, budget, _, _ in tries]
    assert budgets == sorted(budgets) and budgets[0] < budgets[-1]
    bottom_first = sorted(items, key=lambda item: (known[item.key], item.start, item.key))
    assert tries[0][3] == [item.key for item in bottom_first]


def test_a_time_limited_search_takes_the_items_bottom_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The value order's ties go by item index: bottom first in the known placement, a
    # time-limited search settles towers it stalls on in (start, end) order. Without a
    # deadline the order stays the caller's, and so do the plans.
    orders: list[list[str]] = []

    def stalled(
        items: list[Item], capacity: int, node_budget: int, deadline: Deadline | None = None
    ) -> search.Decision:
        orders.append([item.key for item in items])
        return search.Decision(None, exhausted=False, nodes=1)

    monkeypatch.setattr(search, "fits", stalled)
    items = sorted(towers(6, 8, 3), key=lambda item: (item.start, item.end, item.key))
    known = dict(place(items).offsets)
    search.minimize(items, known, 0, 100, Deadline.after(60.0))
    bottom_first = sorted(items, key=lambda item: (known[item.key], item.start, item.key))
    assert orders[0] == [item.key for item in bottom_first] != [item.key for item in items]
    orders.clear()
    search.minimize(items, known, 0, 100)
    assert orders[0] == [item.key for item in items]
