"""``tierplan inspect`` on a real model: one tensor's life, one step, one operator."""

from __future__ import annotations

from pathlib import Path

import pytest
from tierplan.compiler.cli import main
from tierplan.compiler.pass_manager import registered_passes
from tierplan.compiler.plan import read_plan
from tierplan.compiler.report.data import PlanView
from tierplan.compiler.report.progress import compile_progress, progress_wanted
from tierplan.compiler.report.source import op_sources

from tests.conftest import MODELS

MODEL = MODELS / "real" / "resnet18.onnx"


@pytest.fixture(scope="module")
def plan_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("inspect")
    assert main(["compile", str(MODEL), "-o", str(out), "-q"]) == 0
    return out / "plan.json"


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["inspect", *args]) == 0
    return " ".join(capsys.readouterr().out.split())


def test_summary_names_every_region_and_its_peak_step(
    plan_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    view = PlanView(read_plan(plan_path))
    out = _run(capsys, str(plan_path))
    for region in view.regions:
        assert region.key in out and f"live at peak step {region.peak_step}" in out


def test_tensor_shows_producer_readers_steps_and_aliases(
    plan_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    view = PlanView(read_plan(plan_path))
    aliased = next(b for b in view.buffers if b.alias_of and view.producer(b))
    out = _run(capsys, str(plan_path), "--tensor", aliased.tensor)
    producer = view.producer(aliased)
    assert producer is not None and producer in out
    assert f"[{aliased.start}, {aliased.end}]" in out and f"{aliased.offset:#x}" in out
    assert aliased.alias_of is not None and aliased.alias_of in out
    for reader in view.readers[aliased.tensor]:
        assert reader in out


def test_step_lists_activations_then_weights_biggest_first(
    plan_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    view = PlanView(read_plan(plan_path))
    step = view.regions[0].peak_step
    live = view.live_at(step)
    assert {b.tensor for b in live} == {b.tensor for b in view.buffers if b.start <= step <= b.end}
    assert [b.nbytes for b in live] == sorted((b.nbytes for b in live), reverse=True)
    out = _run(capsys, str(plan_path), "--step", str(step))
    assert view.ops[step]["node"] in out
    activations = [b for b in live if b.kind != "weight"]
    weights = [b for b in live if b.kind == "weight"]
    assert activations and weights  # resnet18 at a peak: both, weights the bigger ones
    positions = [out.index(f"│ {b.tensor} │") for b in [*activations[:5], *weights[:5]]]
    assert positions == sorted(positions)


def test_op_shows_tensors_and_traffic_with_the_model(
    plan_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    view = PlanView(read_plan(plan_path))
    conv = next(op for op in view.ops if op["op_type"] == "Conv")
    out = _run(capsys, str(plan_path), "--op", conv["node"], "--model", str(MODEL))
    for tensor in conv["inputs"] + conv["outputs"]:
        assert tensor in out
    assert "FLOPs" in out and "traffic" in out
    sources = op_sources(MODEL)
    assert f"source {sources[conv['node']]}" in out  # the exporter's module, from the model


def test_unknown_names_are_input_errors_with_suggestions(
    plan_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    view = PlanView(read_plan(plan_path))
    name = view.ops[0]["node"]
    assert main(["inspect", str(plan_path), "--op", name + "x"]) == 2
    assert f"did you mean '{name}'" in capsys.readouterr().err
    assert main(["inspect", str(plan_path), "--step", str(view.steps)]) == 2
    assert main(["inspect", str(plan_path), "--tensor", "no such tensor"]) == 2


def test_progress_is_off_without_a_terminal_and_runs_when_on() -> None:
    assert not progress_wanted(quiet=False)  # pytest captures stdout and stderr
    with compile_progress(False, 3) as hooks:
        assert hooks.on_pass_start is None and hooks.on_status is None
    with compile_progress(True, 3) as hooks:
        assert hooks.on_pass_start is not None and hooks.on_status is not None
        hooks.on_pass_start(1, registered_passes()["schedule"]())
        hooks.on_status("0/L2 section 1/1")
