"""End to end: every bundled model compiles to a valid, deterministic plan."""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from rich.console import Console
from tierplan.compiler import compile_model, validate_plan
from tierplan.compiler.cli import _passes, main
from tierplan.compiler.frontend import load_model
from tierplan.compiler.intervals import max_live_bytes

from tests.conftest import MODELS, large_model_files, model_files

EVERY_MODEL = [
    *model_files(),
    *(pytest.param(path, marks=pytest.mark.slow) for path in large_model_files()),
]


@pytest.mark.parametrize("path", EVERY_MODEL, ids=lambda p: p.stem)
def test_model_compiles_to_a_valid_plan_near_the_bound(path: Path, tmp_path: Path) -> None:
    result = compile_model(path, verify_each=True)
    evaluation = result.evaluation
    assert evaluation is not None
    # Independent check: a fresh frontend IR, the plan as JSON written to disk and read back.
    plan_path, _ = result.write(tmp_path)
    assert main(["check", str(path), str(plan_path)]) == 0
    for key, peak in evaluation.activation_peak_bytes.items():
        bound = evaluation.activation_lower_bound_bytes[key]
        assert peak <= 1.10 * bound, f"{key}: activation peak {peak} > 1.10 x bound {bound}"
        assert peak <= evaluation.no_reuse_bytes[key]
    assert evaluation.latency_s > 0


def test_lower_bound_is_max_live_of_the_schedule() -> None:
    # Without inplace no alias groups: the bound is plain max-live, region by region.
    result = compile_model(
        MODELS / "synthetic" / "diamond.onnx", passes="schedule,liveness,tiling,tiers,pack,evaluate"
    )
    summary = result.plan["summary"]
    regions = {f"{b['device']}/{b['tier']}" for b in result.plan["buffers"]}
    assert regions == set(summary["lower_bound_bytes"]) == set(summary["peak_bytes"])
    for region in regions:
        buffers = [b for b in result.plan["buffers"] if f"{b['device']}/{b['tier']}" == region]
        expected = max_live_bytes((b["start"], b["end"], b["bytes"]) for b in buffers)
        assert summary["lower_bound_bytes"][region] == expected
        assert summary["peak_bytes"][region] == max(b["offset"] + b["bytes"] for b in buffers)


def test_same_compile_twice_gives_identical_bytes(tmp_path: Path) -> None:
    model = MODELS / "synthetic" / "unet.onnx"
    assert main(["compile", str(model), "-o", str(tmp_path / "a"), "-q"]) == 0
    assert main(["compile", str(model), "-o", str(tmp_path / "b"), "-q"]) == 0
    for name in ("plan.json", "unet.planned.onnx"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_plans_do_not_depend_on_the_hash_seed(tmp_path: Path) -> None:
    model = MODELS / "synthetic" / "wide_branchy.onnx"
    outputs = []
    for seed in ("1", "2"):
        out = tmp_path / seed
        subprocess.run(
            [
                sys.executable,
                "-m",
                "tierplan.compiler.cli",
                "compile",
                str(model),
                "-o",
                str(out),
                "-q",
            ],
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
        )
        outputs.append((out / "plan.json").read_bytes())
    assert outputs[0] == outputs[1]


def test_annotated_model_round_trips_with_the_plan_facts(tmp_path: Path) -> None:
    result = compile_model(MODELS / "synthetic" / "residual_block.onnx")
    _, model_path = result.write(tmp_path)
    annotated = onnx.load(str(model_path), load_external_data=False)
    for node in annotated.graph.node:
        facts = {e.key: e.value for e in node.metadata_props}
        assert facts["tierplan.step"] == str(result.ir.operator(node.name).step)
        assert node.doc_string.startswith("tierplan: step=")
    described = {v.name: v.doc_string for v in annotated.graph.value_info}
    for tensor in result.ir.tensors():
        if tensor.kind == "activation":
            assert f"offset={tensor.offset:#x}" in described[tensor.name]
    weights = {
        t.name: {e.key: e.value for e in t.metadata_props} for t in annotated.graph.initializer
    }
    for name, facts in weights.items():
        assert facts["tierplan.tier"] == "DDR"
        assert int(facts["tierplan.offset"]) == result.ir.tensor(name).offset


def test_unnamed_nodes_get_deterministic_names_written_back(tmp_path: Path) -> None:
    model = MODELS / "synthetic" / "chain.onnx"
    raw = onnx.load(str(model), load_external_data=False)
    unnamed = [(i, n.op_type) for i, n in enumerate(raw.graph.node) if not n.name]
    assert unnamed, "the chain model leaves nodes unnamed on purpose"
    result = compile_model(model)
    _, model_path = result.write(tmp_path)
    annotated = onnx.load(str(model_path), load_external_data=False)
    for index, op_type in unnamed:
        assert annotated.graph.node[index].name == f"{op_type}_{index}"
        assert f"{op_type}_{index}" in result.plan["schedule"]


def test_duplicate_node_names_get_the_index_appended(tmp_path: Path) -> None:
    graph = onnx.parser.parse_graph(
        """g (float[4] x) => (float[4] z) { y = Relu(x) z = Relu(y) }"""
    )
    graph.node[0].name = graph.node[1].name = "act"
    path = tmp_path / "dup.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)]), path)
    assert [op.name for op in load_model(path).ir.operators()] == ["act", "act__1"]


def test_validator_accepts_the_plan_it_was_given_for_the_model() -> None:
    path = MODELS / "synthetic" / "transformer_block.onnx"
    result = compile_model(path)
    fresh = load_model(path).ir
    assert validate_plan(result.plan, fresh, model_sha256=fresh.model.sha256) == []


def test_symbolic_dimensions_must_be_bound(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = MODELS / "real" / "bert_base_dynamic.onnx"
    out = tmp_path / "out"
    assert main(["compile", str(model), "-o", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    # Both of them at once, not one per failed run.
    assert (
        "symbolic dimensions 'batch', 'seq'" in err and "--dim batch=VALUE --dim seq=VALUE" in err
    )
    assert not out.exists()
    assert (
        main(["compile", str(model), "-o", str(out), "-q", "--dim", "batch=2", "--dim", "seq=32"])
        == 0
    )
    plan = (out / "plan.json").read_text()
    assert '"dims": {\n    "batch": 2,\n    "seq": 32\n  }' in plan
    assert main(["check", str(model), str(out / "plan.json")]) == 0


def test_verbose_compile_shows_every_pass_notes_including_a_plugins(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plugin = Path(__file__).resolve().parent / "plugins" / "count_ops_plugin.py"
    passes = "schedule,liveness,tag-large-tensors{threshold=4096},inplace,pack,evaluate"
    model = MODELS / "synthetic" / "diamond.onnx"
    argv = ["compile", str(model), "-o", str(tmp_path), "--plugin", str(plugin), "--passes", passes]
    assert main([*argv, "-v"]) == 0
    out = capsys.readouterr().out
    assert "notes of each pass" in out and "tensors >= 4096 bytes" in out
    assert main(argv) == 0
    assert "tensors >= 4096 bytes" not in capsys.readouterr().out


def test_verbose_compile_within_a_budget_shows_the_chosen_plans_notes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = MODELS / "synthetic" / "diamond.onnx"
    assert main(["compile", str(model), "-o", str(tmp_path), "--budget", "1GiB", "-v"]) == 0
    out = capsys.readouterr().out
    assert "notes of each pass" in out and "estimated latency" in out


def test_passes_lists_each_pass_options_with_types_and_defaults(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["passes"]) == 0
    assert "registered passes" in capsys.readouterr().out
    wide = io.StringIO()  # wide enough that no cell wraps, whatever other tests registered
    assert _passes(argparse.Namespace(plugin=[]), Console(file=wide, width=400)) == 0
    for option in (
        "chunks: auto|int >= 1 = auto",
        "mode: rows|online = rows",
        "order: memory|onnx = memory",
        "devices: target|auto|int 1..1024 = target",
        "views: bool = true",
        "keep: str = ''",
    ):
        assert option in wide.getvalue()
