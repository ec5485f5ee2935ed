"""The view commands (report, plot, inspect, simulate, check) as a new user meets them:
what they accept, and the one line they print when they cannot go on."""

from __future__ import annotations

import re
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper
from tierplan.compiler.allocators import simulate
from tierplan.compiler.cli import main
from tierplan.compiler.packing import Item

from tests.conftest import MODELS

DIAMOND = MODELS / "synthetic" / "diamond.onnx"
TILED = MODELS / "synthetic" / "transformer_block.onnx"  # its tiles fill 0/L1


def symbolic_model(path: Path) -> Path:
    """Relu -> Relu over a [batch, seq, 64] input."""
    nodes = [
        helper.make_node("Relu", ["x"], ["h"], name="first"),
        helper.make_node("Relu", ["h"], ["y"], name="second"),
    ]
    shape = ["batch", "seq", 64]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.fixture(scope="module")
def diamond_plan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("diamond")
    assert main(["compile", str(DIAMOND), "-o", str(out), "-q"]) == 0
    return out / "plan.json"


def _error_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


def test_report_of_a_plan_with_symbolic_dims_needs_no_dim(tmp_path: Path) -> None:
    model = symbolic_model(tmp_path / "sym.onnx")
    out = tmp_path / "out"
    assert (
        main(["compile", str(model), "--dim", "batch=2", "--dim", "seq=8", "-o", str(out), "-q"])
        == 0
    )
    # The plan's model is found as the annotated copy, whose dims are already bound.
    assert main(["report", str(out / "plan.json"), "-q"]) == 0
    assert "Latency by op type" in (out / "report.html").read_text()


def test_every_unbound_dimension_is_named_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = symbolic_model(tmp_path / "sym.onnx")
    assert main(["compile", str(model), "-o", str(tmp_path / "out"), "-q"]) == 2
    (line,) = _error_lines(capsys)
    assert "'batch'" in line and "'seq'" in line and "--dim batch=VALUE --dim seq=VALUE" in line


def test_check_with_another_model_says_so_in_one_line(
    diamond_plan: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", str(TILED), str(diamond_plan)]) == 1
    (line,) = _error_lines(capsys)
    assert "another model" in line and "sha256" in line


@pytest.mark.parametrize("command", ["inspect", "plot", "simulate"])
def test_view_commands_accept_a_model(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = ["-o", str(tmp_path / "t.png"), "-q"] if command == "plot" else []
    assert main([command, str(DIAMOND), *extra]) == 0
    if command == "plot":
        assert (tmp_path / "t.png").read_bytes().startswith(b"\x89PNG")
    else:
        assert "0/L2" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["inspect", "plot", "simulate"])
def test_view_commands_accept_a_plan(
    command: str, diamond_plan: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = ["-o", str(tmp_path / "t.png"), "-q"] if command == "plot" else []
    assert main([command, str(diamond_plan), *extra]) == 0
    if command != "plot":
        assert "0/L2" in capsys.readouterr().out


def test_simulate_of_a_plan_matches_simulate_of_its_model(
    diamond_plan: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", str(DIAMOND)]) == 0
    of_model = capsys.readouterr().out.split("┏", 1)[1]
    assert main(["simulate", str(diamond_plan)]) == 0
    assert capsys.readouterr().out.split("┏", 1)[1] == of_model


def test_a_pipeline_without_evaluate_says_there_is_no_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert (
        main(["compile", str(DIAMOND), "--passes", "schedule,liveness,pack", "-o", str(out)]) == 0
    )
    printed = capsys.readouterr().out
    assert "no 'evaluate' pass" in printed and "peak/bound" not in printed
    assert (out / "plan.json").is_file()


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["compile", str(DIAMOND), "--taget", "x"], "did you mean --target?"),
        (["report", str(DIAMOND), "--comapre", "x"], "did you mean --compare?"),
        (["inspect", str(DIAMOND), "--tensr=a"], "did you mean --tensor?"),
    ],
)
def test_a_misspelled_flag_gets_a_suggestion_and_its_command_usage(
    args: list[str], hint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert hint in err and f"usage: tierplan {args[0]}" in err


@pytest.mark.parametrize(
    "command", ["compile", "check", "report", "plot", "inspect", "simulate", "pack"]
)
def test_help_shows_each_default_once(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text and "(default: False)" not in text
    assert not re.search(r"\(default[^()]*\)\s*\(default", text)


def test_simulate_capacity_leaves_tile_regions_at_their_tier(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", str(TILED), "--capacity", "4KiB"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "│ 0/" in line]
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in lines]
    capacities = {key: {row[2] for row in rows if row[0] == key} for key, *_ in rows}
    assert capacities == {"0/L1": {"256.0KiB"}, "0/L2": {"4.0KiB"}, "0/DDR": {"4.0KiB"}}
    # Under 4 KiB allocations fail: their fragmentation is not given, never negative.
    fragmentation = [row[5] for row in rows]
    assert "-" in fragmentation and not any(f.startswith("-") and f != "-" for f in fragmentation)


def test_fragmentation_is_undefined_once_an_allocation_failed() -> None:
    requests = [Item("a", 0, 1, 4096), Item("b", 1, 2, 4096)]
    failing = simulate("pool", requests, 4096)
    assert failing.failed == 1 and failing.footprint < failing.requested_peak
    assert failing.fragmentation is None
    assert simulate("pool", requests, 8192).fragmentation == 0.0
