"""Fitting a budget: compile --budget, tierplan fit, its frontier, its errors, pool sizing."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
from tierplan.compiler import compile_model, validate_plan
from tierplan.compiler.cli import main
from tierplan.compiler.execution import run_plan
from tierplan.compiler.fitting import Budget, FitResult, Search, frontier, parse_budget
from tierplan.compiler.fitting.budget import device_totals
from tierplan.compiler.fitting.knobs import Knob, Option, assemble, available_knobs
from tierplan.compiler.frontend import load_model
from tierplan.compiler.ir import IRGraph
from tierplan.compiler.pass_manager import (
    Pass,
    PassContext,
    PassResult,
    parse_pipeline,
    register_pass,
)
from tierplan.compiler.target import load_target

from tests.cli_checks import fails_cleanly, listing
from tests.conftest import MODELS

BLOCK = MODELS / "synthetic" / "transformer_block.onnx"


def _activation_peak(plan: dict[str, object]) -> int:
    from tierplan.compiler.evaluation import ACTIVATION_KINDS
    from tierplan.compiler.plan import PlanBuffer, memory_summary

    peaks, _ = memory_summary(PlanBuffer.of_plan(plan), set(ACTIVATION_KINDS))
    return max(device_totals(peaks).values())


@pytest.fixture(scope="module")
def default_peak() -> int:
    return _activation_peak(compile_model(BLOCK).plan)


def test_a_budget_below_the_default_peak_is_met_and_the_plan_runs(
    tmp_path: Path, default_peak: int, capsys: pytest.CaptureFixture[str]
) -> None:
    budget = int(default_peak * 0.75)
    out = tmp_path / "out"
    assert main(["compile", str(BLOCK), "-o", str(out), "--budget", str(budget)]) == 0
    printed = capsys.readouterr().out
    assert "within --budget" in printed and "pools to preallocate" in printed
    plan = json.loads((out / "plan.json").read_text())
    assert _activation_peak(plan) <= budget < default_peak
    assert plan["summary"]["fit"]["chosen"] != "defaults"
    chosen = next(entry for entry in plan["summary"]["fit"]["frontier"] if entry["chosen"])
    assert chosen["numerics"] == "exact"  # 16-bit only when no exact plan fits
    assert run_plan(BLOCK, out / "plan.json").matches


@pytest.mark.parametrize("command", ["compile", "fit"])
def test_nothing_fits_one_line_exit_1_no_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    if command == "compile":
        line = fails_cleanly(tmp_path, capsys, BLOCK, "--budget", "1KiB", code=1)
    else:
        before = listing(tmp_path)
        plot = tmp_path / "frontier.png"
        argv = ["fit", str(BLOCK), "-o", str(tmp_path / "out"), "--budget", "1KiB"]
        assert main([*argv, "--plot", str(plot)]) == 1
        captured = capsys.readouterr()
        assert captured.out == "" and len(captured.err.splitlines()) == 1
        assert listing(tmp_path) == before
        line = captured.err.strip()
    assert line.startswith("tierplan: error: does not fit: operator ")
    assert "alone needs" in line and "the budget is 1.0KiB" in line


def test_weights_over_a_tier_budget_name_the_device_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = compile_model(BLOCK).plan
    ddr = plan["summary"]["peak_bytes"]["0/DDR"]
    line = fails_cleanly(
        tmp_path, capsys, BLOCK, "--budget", f"DDR={ddr // 4}", "--devices", "1", code=1
    )
    assert "weights need" in line and "use --devices " in line


@pytest.fixture(scope="module")
def searched(default_peak: int) -> tuple[Search, FitResult]:
    search = Search(load_model(BLOCK), load_target(None), Budget(device=default_peak * 3 // 4))
    return search, search.run()


def test_the_chosen_plan_is_valid_for_its_graph(searched: tuple[Search, FitResult]) -> None:
    found = searched[1]
    assert found.result is not None and found.chosen is not None and found.chosen.fits
    assert not validate_plan(found.result.plan, found.result.ir)


def test_the_frontier_is_not_dominated_and_holds_the_fastest_fit(
    searched: tuple[Search, FitResult],
) -> None:
    points = list(searched[0].points.values())
    front = frontier(points)
    assert front
    for point in front:
        own = (point.activation_peak, point.latency_s, point.flops, point.device_peak)
        for other in points:
            theirs = (other.activation_peak, other.latency_s, other.flops, other.device_peak)
            if not other.error and theirs != own:
                assert not all(a <= b for a, b in zip(theirs, own, strict=True))
    fitting = [p for p in points if p.fits]
    fastest = min(fitting, key=lambda p: p.latency_s)
    assert any(p.latency_s == fastest.latency_s for p in front)


def test_fit_prints_the_frontier_and_draws_it(
    tmp_path: Path, default_peak: int, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    plot = tmp_path / "frontier.png"
    argv = ["fit", str(BLOCK), "-o", str(tmp_path / "out"), "--budget", str(default_peak * 3 // 4)]
    assert main([*argv, "--plot", str(plot)]) == 0
    printed = capsys.readouterr().out
    assert "Pareto frontier" in printed and "chosen:" in printed
    assert plot.read_bytes().startswith(b"\x89PNG")
    report = tmp_path / "report.html"
    assert main(["report", str(tmp_path / "out" / "plan.json"), "-o", str(report), "-q"]) == 0
    assert "Pareto frontier" in report.read_text()


def test_the_search_is_deterministic(tmp_path: Path, default_peak: int) -> None:
    texts = []
    for run in range(2):
        out = tmp_path / f"out{run}"
        argv = ["compile", str(BLOCK), "-o", str(out), "-q", "--budget", str(default_peak * 3 // 4)]
        assert main(argv) == 0
        texts.append((out / "plan.json").read_bytes())
    assert texts[0] == texts[1]


@pytest.mark.parametrize(
    "spelling",
    ["", "abc", "L2=", "=5MiB", "5MiB,6MiB", "L2=1MiB,L2=2MiB", "L9=1MiB", "-5MiB", "0", "5MiB,"],
)
def test_bad_budget_spellings_are_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spelling: str
) -> None:
    line = fails_cleanly(tmp_path, capsys, BLOCK, f"--budget={spelling}")
    assert line.startswith("tierplan: error: --budget")


def test_budget_spellings() -> None:
    assert parse_budget("48MiB") == Budget(device=48 * 2**20)
    assert parse_budget("L2=6MiB, DDR=2GiB") == Budget(tiers={"L2": 6 * 2**20, "DDR": 2 * 2**30})
    assert parse_budget("1GiB,L2=4MiB") == Budget(2**30, {"L2": 4 * 2**20})


def test_knobs_of_unregistered_passes_are_left_out() -> None:
    base = parse_pipeline("schedule,liveness,inplace,tiling,partition,tiers,pack,evaluate")
    knobs = [
        Knob("future", (Option("off"), Option("on", rewrites=("no-such-pass",))), "no-such-pass"),
        Knob("attention", (Option("off"), Option("rows/2", rewrites=("attention{chunks=2}",)))),
        Knob("bad", (Option("off"), Option("x", rewrites=("attention{chunks=zero}",)))),
    ]
    found = available_knobs(knobs, base, load_model(BLOCK).ir)
    assert [(k.name, len(k.options)) for k in found] == [("attention", 2), ("bad", 1)]


def test_pools_are_the_peak_plus_headroom_with_a_warning_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = ["compile", str(BLOCK), "-o", str(out), "-q", "--headroom", "0.5", "--warn-at", "0.9"]
    assert main(argv) == 0
    summary = json.loads((out / "plan.json").read_text())["summary"]
    pools = summary["pools"]
    assert (pools["headroom"], pools["warn_at"]) == (0.5, 0.9)
    for key, peak in summary["peak_bytes"].items():
        capacity = load_target(None).tier(key.split("/")[1]).capacity
        arena = pools["arena_bytes"][key]
        assert arena == min(capacity, -(-math.ceil(peak * 1.5) // 64) * 64)
        assert pools["warn_bytes"][key] == math.floor(arena * 0.9)


@pytest.mark.parametrize("flags", [["--headroom", "-1"], ["--warn-at", "0"], ["--warn-at", "nan"]])
def test_bad_pool_margins_are_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str]
) -> None:
    assert fails_cleanly(tmp_path, capsys, BLOCK, *flags).startswith(f"tierplan: error: {flags[0]}")


@register_pass
@dataclass(frozen=True)
class _LateRewrite(Pass):
    """A rewrite that needs the schedule and invalidates liveness (as rematerialization would)."""

    name = "fit-test-late-rewrite"
    requires = frozenset({"schedule", "liveness"})
    invalidates = frozenset({"liveness", "placement", "evaluation"})

    def run(self, ir: IRGraph, context: PassContext) -> PassResult:
        return PassResult(changed=False)


def test_a_registered_rewrite_joins_where_its_requirements_hold() -> None:
    base = parse_pipeline("schedule,liveness,inplace,tiling,partition,tiers,pack,evaluate")
    late = Option("on", rewrites=("fit-test-late-rewrite",))
    knob = Knob("late", (Option("off"), late), "fit-test-late-rewrite")
    assert available_knobs([knob], base, load_model(BLOCK).ir) == [knob]
    names = [item.name for item in assemble(base, [late])]
    assert names[:5] == ["schedule", "liveness", "fit-test-late-rewrite", "liveness", "inplace"]


def test_a_budget_with_a_range_of_lengths_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = MODELS / "real" / "bert_base_dynamic.onnx"
    options = ("--dim", "batch=1", "--dim", "seq=1..8", "--budget", "10MiB")
    line = fails_cleanly(tmp_path, capsys, model, *options)
    assert "--budget plans one binding" in line


def test_screening_measures_are_those_evaluate_computes() -> None:
    from tierplan.compiler.fitting.measure import Measures, measure

    for model in (BLOCK, MODELS / "synthetic" / "residual_block.onnx"):
        result = compile_model(model)
        assert result.evaluation is not None
        assert measure(result.ir, result.target) == Measures.of(result.evaluation)


def test_prefixes_kept_between_runs_do_not_change_a_result() -> None:
    from tierplan.compiler.fitting.runner import PipelineRunner

    model = load_model(BLOCK)
    target = load_target(None)
    passes = [
        parse_pipeline(
            f"attention{{chunks={n}}},schedule,liveness,inplace,tiling,partition,tiers,pack,evaluate"
        )
        for n in (2, 2, 4)
    ]
    shared = PipelineRunner(model)
    shared.expect([(p, target) for p in passes])
    kept = [shared.run(p, target).plan for p in passes]
    assert shared.kept  # the first run kept its prefix for the second
    assert kept == [PipelineRunner(model).run(p, target).plan for p in passes]


def test_the_throughput_objective_chooses_pipeline_stages(tmp_path: Path) -> None:
    stack = MODELS / "synthetic" / "transformer_stack_4.onnx"
    out = tmp_path / "out"
    assert main(["fit", str(stack), "-o", str(out), "--objective", "throughput", "-q"]) == 0
    plan = json.loads((out / "plan.json").read_text())
    fit = plan["summary"]["fit"]
    chosen = next(entry for entry in fit["frontier"] if entry["chosen"])
    assert fit["objective"] == "throughput"
    assert len(plan["summary"]["device_seconds"]) > 1
    assert chosen["slowest_stage_s"] < chosen["latency_s"]
    latency = Search(load_model(stack), load_target(None), Budget()).run()
    assert latency.chosen is not None and latency.chosen.latency_s < chosen["latency_s"]
