"""One cost model everywhere: ``compile``, ``report`` and ``inspect`` show the same figures.

The plan carries each operator's cost (``ops[*].cost``); ``report`` and ``inspect``
read it instead of costing the plan again, so their latency and per-tier traffic
equal the compile's, on every bundled model. Views are neither tiled nor charged.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tierplan.compiler import compile_model
from tierplan.compiler.aliasing import is_view
from tierplan.compiler.cli import main
from tierplan.compiler.cost import OpCost
from tierplan.compiler.plan import read_plan
from tierplan.compiler.report.data import PlanView
from tierplan.compiler.report.source import view_of_plan_file
from tierplan.compiler.report.units import human_bytes

from tests.conftest import MODELS, model_files

FAST = {"diamond", "resnet18"}
FIGURES = re.compile(
    r"estimated latency ([0-9.]+ ms; traffic (?:[\w.-]+ [0-9.]+(?:B|KiB|MiB|GiB)(?:, )?)+)"
)


def _models() -> list[object]:
    return [
        pytest.param(path, id=path.stem, marks=() if path.stem in FAST else pytest.mark.slow)
        for path in model_files()
    ]


def _figures(costs: list[OpCost]) -> list[tuple[str, int, dict[str, int], float]]:
    return [(c.name, c.flops, c.bytes_by_tier, c.seconds) for c in costs]


def _printed(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main([*args]) == 0
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("model", _models())
def test_compile_report_and_inspect_agree(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    compiled = FIGURES.findall(_printed(capsys, "compile", str(model), "-o", str(out)))
    plan_path = out / "plan.json"
    plan = read_plan(plan_path)
    carried = PlanView(plan).costs
    assert carried is not None
    reported = view_of_plan_file(plan_path).costs  # what `report PLAN.json` shows
    assert reported is not None and _figures(reported) == _figures(carried)
    assert sum(c.seconds for c in carried) == pytest.approx(plan["summary"]["latency_s"])
    inspected = FIGURES.findall(_printed(capsys, "inspect", str(plan_path)))
    html = tmp_path / "r.html"
    assert main(["report", str(plan_path), "-o", str(html), "-q"]) == 0
    assert compiled and inspected == compiled  # latency and traffic per tier
    assert f"estimated latency {compiled[0]}" in " ".join(html.read_text().split())
    busiest = max(carried, key=lambda c: (sum(c.bytes_by_tier.values()), c.name))
    printed = _printed(capsys, "inspect", str(plan_path), "--op", busiest.name)
    traffic = ", ".join(f"{t} {human_bytes(n)}" for t, n in busiest.bytes_by_tier.items())
    assert f"traffic {traffic};" in printed


def test_the_plan_carries_the_compiles_costs() -> None:
    result = compile_model(MODELS / "real" / "resnet18.onnx")
    evaluation = result.evaluation
    assert evaluation is not None
    carried = PlanView(result.plan).costs
    assert carried is not None and _figures(carried) == _figures(evaluation.op_costs)
    for op, cost in zip(result.plan["ops"], evaluation.op_costs, strict=True):
        per_tensor = op["cost"]["traffic"]
        assert sum(n for tiers in per_tensor.values() for n in tiers.values()) == sum(
            cost.bytes_by_tier.values()
        )


@pytest.mark.parametrize(
    "model",
    [
        MODELS / "real" / "bert_base.onnx",
        MODELS / "synthetic" / "transformer_block.onnx",
        MODELS / "synthetic" / "transformer_stack_4.onnx",
    ],
    ids=lambda p: p.stem,
)
def test_no_view_is_tiled_or_charged(model: Path) -> None:
    result = compile_model(model)
    evaluation = result.evaluation
    assert evaluation is not None
    costs = {c.name: c for c in evaluation.op_costs}
    views = [op for op in result.ir.scheduled_operators() if is_view(result.ir, op)]
    assert views
    entries = {op["node"]: op for op in result.plan["ops"]}
    for op in views:
        assert op.tiles is None and entries[op.name]["tiles"] is None
        assert costs[op.name].bytes_by_tier == {} and costs[op.name].seconds == 0
        assert entries[op.name]["cost"]["traffic"] == {}
    scratch_steps = {t.start for t in result.ir.tensors() if t.kind == "scratch"}
    assert not scratch_steps & {op.step for op in views}
