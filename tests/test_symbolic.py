"""Symbolic plans (``tierplan-plan/2``) and shape buckets: ``--dim NAME=LOW..HIGH`` / ``V1,V2``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from tierplan.compiler.api import compile_model
from tierplan.compiler.cli import main
from tierplan.compiler.errors import InputError
from tierplan.compiler.frontend import load_model
from tierplan.compiler.symbolic.buckets import compile_buckets
from tierplan.compiler.symbolic.build import SYMBOLIC_PIPELINE, Body, _pieces, compile_symbolic
from tierplan.compiler.symbolic.command import activation_arena
from tierplan.compiler.symbolic.dims import parse_dim_specs
from tierplan.compiler.symbolic.expressions import Polynomial, evaluate, expression_problem
from tierplan.compiler.symbolic.instantiate import instantiate, symbolic_problems
from tierplan.compiler.validate import validate_plan

HIDDEN = 8


@pytest.fixture(scope="module")
def attention_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-head attention block over ``x[1, seq, 8]``: sizes grow as seq and seq^2."""
    return _attention(tmp_path_factory.mktemp("symbolic") / "attention.onnx", 1)


def _attention(path: Path, batch: int | str) -> Path:
    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.standard_normal((HIDDEN, HIDDEN)).astype(np.float32), name)
        for name in ("wq", "wk", "wv")
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q"], name="q"),
        helper.make_node("MatMul", ["x", "wk"], ["k"], name="k"),
        helper.make_node("MatMul", ["x", "wv"], ["v"], name="v"),
        helper.make_node("Transpose", ["k"], ["kt"], name="kt", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["scores"], name="scores"),
        helper.make_node("Softmax", ["scores"], ["probs"], name="probs", axis=-1),
        helper.make_node("MatMul", ["probs", "v"], ["context"], name="context"),
        helper.make_node("Add", ["context", "x"], ["sum"], name="residual"),
        helper.make_node("Relu", ["sum"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "attention",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, "seq", HIDDEN])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, "seq", HIDDEN])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)
    return path


def test_expression_grammar_round_trips_through_json() -> None:
    polynomial = Polynomial(("seq", "batch"), (((2, 1), 48), ((1, 0), 3), ((0, 0), -5)))
    expression = json.loads(json.dumps(polynomial.expression()))
    assert expression_problem(expression, buffers=0) is None
    for seq, batch in ((1, 1), (7, 3), (512, 2)):
        values = {"seq": seq, "batch": batch}
        assert evaluate(expression, values, lambda kind, i: 0) == polynomial(values)
    aligned = {"align": [expression, 64]}
    assert evaluate(aligned, {"seq": 3, "batch": 1}, lambda kind, i: 0) == 448


@pytest.mark.parametrize(
    "bad",
    ["seq", {"sub": [1, 2]}, {"add": []}, {"align": [5, 0]}, {"end_of": 3}, {"dim": 5}, 1.5],
)
def test_expression_problems_name_what_is_wrong(bad: object) -> None:
    assert expression_problem(bad, buffers=3)


def test_symbolic_plan_is_valid_at_every_length_and_sizes_are_exact(attention_model: Path) -> None:
    specs = parse_dim_specs(["seq=1..40"])
    symbolic = compile_symbolic(attention_model, specs)
    plan = json.loads(json.dumps(symbolic.plan))
    assert symbolic_problems(plan) == []
    for seq in range(1, 41):
        concrete = instantiate(plan, {"seq": seq})
        ir = load_model(attention_model, dims={"seq": seq}).ir
        assert validate_plan(concrete, ir) == []
        sizes = {t.name: t.nbytes for t in ir.tensors()}
        assert all(b["bytes"] == sizes[b["tensor"]] for b in concrete["buffers"])


def test_two_ranged_dimensions_are_valid_at_every_binding(tmp_path: Path) -> None:
    model = _attention(tmp_path / "batched.onnx", "batch")
    plan = compile_symbolic(model, parse_dim_specs(["batch=1..3", "seq=1..9"])).plan
    assert plan["dim_ranges"] == {"batch": [1, 3], "seq": [1, 9]}
    for batch in (1, 2, 3):
        for seq in range(1, 10):
            dims = {"batch": batch, "seq": seq}
            assert validate_plan(instantiate(plan, dims), load_model(model, dims=dims).ir) == []


def test_symbolic_arena_stays_near_the_exact_plans(attention_model: Path) -> None:
    symbolic = compile_symbolic(attention_model, parse_dim_specs(["seq=1..64"]))
    for seq in (1, 5, 17, 64):
        exact = compile_model(attention_model, dims={"seq": seq}, passes=SYMBOLIC_PIPELINE).plan
        ratio = activation_arena(instantiate(symbolic.plan, {"seq": seq})) / activation_arena(exact)
        assert ratio <= 1.10, (seq, ratio)


def test_symbolic_compile_is_deterministic(attention_model: Path) -> None:
    specs = parse_dim_specs(["seq=2..30"])
    first, second = (compile_symbolic(attention_model, specs).plan for _ in range(2))
    assert json.dumps(first) == json.dumps(second)


def test_buckets_equal_the_exact_plans(attention_model: Path) -> None:
    plan = compile_buckets(attention_model, parse_dim_specs(["seq=4,16,33"]))
    assert [b["dims"] for b in plan["buckets"]] == [{"seq": 4}, {"seq": 16}, {"seq": 33}]
    weights = {
        json.dumps([b for b in bucket["buffers"] if b["kind"] == "weight"])
        for bucket in plan["buckets"]
    }
    assert len(weights) == 1
    for seq in (4, 16, 33):
        exact = compile_model(attention_model, dims={"seq": seq}).plan
        bucket = instantiate(plan, {"seq": seq})
        assert activation_arena(bucket) == activation_arena(exact)
        assert bucket["buffers"] == exact["buffers"]
    with pytest.raises(InputError, match="no bucket"):
        instantiate(plan, {"seq": 5})


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("seq=5..1", "empty or one value"),
        ("seq=4..4", "empty or one value"),
        ("seq=0..4", "LOW of LOW..HIGH"),
        ("seq=1..x", "HIGH of LOW..HIGH"),
        ("seq=1..", "HIGH of LOW..HIGH"),
        ("seq=4,4", "repeated"),
        ("seq=4,", "bucket value"),
    ],
)
def test_bad_ranges_are_one_clear_error(
    attention_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    spec: str,
    message: str,
) -> None:
    out = tmp_path / "out"
    assert main(["compile", str(attention_model), "--dim", spec, "-o", str(out), "-q"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("tierplan: error: ") and message in error
    assert error.count("\n") == 1
    assert not out.exists()


def test_ranges_and_buckets_together_are_refused() -> None:
    with pytest.raises(InputError, match="not both"):
        parse_dim_specs(["seq=1..8", "batch=1,2"])


def test_size_dependent_passes_are_refused(
    attention_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    passes = "schedule,liveness,inplace,tiling,pack,evaluate"
    argv = ["compile", str(attention_model), "--dim", "seq=1..8", "--passes", passes, "-q"]
    assert main([*argv, "-o", str(tmp_path / "out")]) == 2
    assert "'tiling' pass" in capsys.readouterr().err


def test_cli_compiles_checks_and_inspects_a_symbolic_plan(
    attention_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["compile", str(attention_model), "--dim", "seq=1..32", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "seq=1" in printed and "seq=32" in printed and "4*seq^2 + 96*seq" in printed
    plan = str(out / "plan.json")
    assert json.loads((out / "plan.json").read_text())["format"] == "tierplan-plan/2"
    assert main(["check", str(attention_model), plan, "--dim", "seq=9"]) == 0
    assert main(["check", str(attention_model), plan, "--dim", "seq=1..32"]) == 0
    assert "at all 32 bindings" in " ".join(capsys.readouterr().out.split())
    assert main(["inspect", plan, "--dim", "seq=9"]) == 0
    assert main(["run", str(attention_model), plan, "--dim", "seq=9", "-q"]) == 0
    capsys.readouterr()
    assert main(["check", str(attention_model), plan, "--dim", "seq=33"]) == 2
    assert "outside the plan's range 1..32" in capsys.readouterr().err
    assert main(["check", str(attention_model), plan]) == 2
    assert "give --dim seq=N" in capsys.readouterr().err


def test_tampered_symbolic_plan_is_one_clear_error(
    attention_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["compile", str(attention_model), "--dim", "seq=1..8", "-o", str(out), "-q"]) == 0
    data = json.loads((out / "plan.json").read_text())
    data["buffers"][0]["offset"] = {"pow": [2, 3]}
    (out / "plan.json").write_text(json.dumps(data))
    assert main(["check", str(attention_model), str(out / "plan.json"), "--dim", "seq=3"]) == 2
    assert "unknown operator 'pow'" in capsys.readouterr().err


def test_a_size_that_is_no_polynomial_is_refused(tmp_path: Path) -> None:
    pool = helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[2], strides=[2])
    graph = helper.make_graph(
        [pool],
        "pool",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, "seq"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, None])],
    )
    path = tmp_path / "pool.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(InputError, match="'y' is not a polynomial"):
        compile_symbolic(path, parse_dim_specs(["seq=2..100"]))


def test_offsets_that_refer_to_each_other_in_a_cycle_are_refused(attention_model: Path) -> None:
    plan = compile_symbolic(attention_model, parse_dim_specs(["seq=1..8"])).plan
    plan["buffers"][-1]["offset"] = {"end_of": len(plan["buffers"]) - 1}
    with pytest.raises(InputError, match="cycle"):
        instantiate(plan, {"seq": 3})


def test_pieces_split_the_range_where_another_compile_does_better() -> None:
    top = Body({"seq": 64}, {}, [40, 80, 160, 640], None)
    short = Body({"seq": 1}, {}, [20, 60, 170, 700], None)
    lengths = [{"seq": 1}, {"seq": 4}, {"seq": 16}, {"seq": 64}]
    specs = parse_dim_specs(["seq=1..64"])
    assert _pieces(specs, lengths, [top, short]) == [(1, 8, 1), (9, 64, 0)]
    close = Body({"seq": 1}, {}, [40, 80, 161, 640], None)
    assert _pieces(specs, lengths, [top, close]) == [(1, 64, 0)]


def test_a_plan_in_pieces_instantiates_each_from_its_piece(attention_model: Path) -> None:
    low, high = (
        compile_symbolic(attention_model, parse_dim_specs([spec])).plan
        for spec in ("seq=1..8", "seq=9..20")
    )
    keys = ("dim_ranges", "schedule", "buffers", "ops", "summary")
    plan = {**low, "dim_ranges": {"seq": [1, 20]}}
    plan["pieces"] = [{key: part[key] for key in keys} for part in (low, high)]
    for key in keys[1:]:
        del plan[key]
    plan = json.loads(json.dumps(plan))
    assert symbolic_problems(plan) == []
    for seq in (1, 8, 9, 20):
        concrete = instantiate(plan, {"seq": seq})
        part = low if seq <= 8 else high
        assert concrete == instantiate(part, {"seq": seq})
        assert validate_plan(concrete, load_model(attention_model, dims={"seq": seq}).ir) == []
