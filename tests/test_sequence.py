"""The ``sequence`` rewrite: a transformer in chunks of sequence rows, proven by running it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from tierplan.compiler import compile_model
from tierplan.compiler.execution import run_plan

from tests.conftest import MODELS

STACK = MODELS / "synthetic" / "transformer_stack_4.onnx"
REST = "schedule,liveness,inplace,tiling,partition,tiers,pack,evaluate"


def _activation_peak(plan: dict[str, Any]) -> int:
    """Largest total of activation bytes (not weights, not L1 tiles) alive at one step."""
    buffers = [
        b
        for b in plan["buffers"]
        if b["kind"] not in ("weight", "scratch") and b["alias_of"] is None
    ]
    steps = range(len(plan["schedule"]))
    return max(sum(b["bytes"] for b in buffers if b["start"] <= s <= b["end"]) for s in steps)


@pytest.mark.parametrize("chunks", [2, 3])
def test_chunked_stack_matches_onnxruntime(chunks: int) -> None:
    passes = f"sequence{{chunks={chunks}}},{REST}"
    report = run_plan(STACK, compile_options={"passes": passes})
    assert report.matches, report.divergence
    result = compile_model(STACK, passes=passes)
    counts = Counter(op.op_type for op in result.ir.operators())
    assert counts["Softmax"] == 4 * chunks  # 4 layers
    assert counts["LayerNormalization"] % chunks == 0 and counts["LayerNormalization"] >= chunks


def _wide_mlp_layer(path: Path) -> Path:
    """Self-attention over x [1, 32, 8] and a residual MLP 8 -> 256 -> 8: the MLP's
    [1, 32, 256] hidden value is the peak, which chunking attention cannot touch."""
    rng = np.random.default_rng(0)
    up = numpy_helper.from_array(rng.standard_normal((8, 256), dtype=np.float32), "up")
    down = numpy_helper.from_array(rng.standard_normal((256, 8), dtype=np.float32), "down")
    nodes = [
        helper.make_node("Transpose", ["x"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["x", "kt"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["probs"], axis=-1),
        helper.make_node("MatMul", ["probs", "x"], ["attended"]),
        helper.make_node("Add", ["attended", "x"], ["residual"]),
        helper.make_node("MatMul", ["residual", "up"], ["hidden"]),
        helper.make_node("Relu", ["hidden"], ["active"]),
        helper.make_node("MatMul", ["active", "down"], ["mlp"]),
        helper.make_node("Add", ["mlp", "residual"], ["z"]),
    ]
    graph = helper.make_graph(
        nodes,
        "layer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32, 8])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 32, 8])],
        initializer=[up, down],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_the_mlp_is_chunked_too(tmp_path: Path) -> None:
    """Chunking the whole layer lowers the peak that chunking attention alone leaves."""
    model = _wide_mlp_layer(tmp_path / "layer.onnx")
    plain = compile_model(model, passes=REST).plan
    attention = compile_model(model, passes=f"attention{{chunks=8}},{REST}").plan
    sequence = compile_model(model, passes=f"sequence{{chunks=8}},{REST}").plan
    assert _activation_peak(attention) == _activation_peak(plain)
    assert _activation_peak(sequence) * 2 < _activation_peak(plain)
    assert run_plan(model, compile_options={"passes": f"sequence{{chunks=8}},{REST}"}).matches


def _model(path: Path, tail: list[onnx.NodeProto], out_shape: list[int]) -> Path:
    """Self-attention over x [1, 8, 4] (rows: axis 1), then ``tail`` from ``y`` to ``z``."""
    bias = numpy_helper.from_array(np.linspace(-1, 1, 8 * 4, dtype=np.float32).reshape(8, 4), "b")
    nodes = [
        helper.make_node("Transpose", ["x"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["x", "kt"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["probs"], axis=-1),
        helper.make_node("MatMul", ["probs", "x"], ["attended"]),
        helper.make_node("Add", ["attended", "b"], ["y"]),
        *tail,
    ]
    graph = helper.make_graph(
        nodes,
        "sequence",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 4])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, out_shape)],
        initializer=[bias],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize(
    ("tail", "out_shape", "chunked_tail"),
    [
        ([helper.make_node("Relu", ["y"], ["z"])], [1, 8, 4], True),
        ([helper.make_node("ReduceSum", ["y"], ["z"], keepdims=1)], [1, 1, 1], False),
        ([helper.make_node("Flatten", ["y"], ["z"], axis=1)], [1, 32], False),
        ([helper.make_node("Flatten", ["y"], ["z"], axis=2)], [8, 4], True),
        ([helper.make_node("Transpose", ["y"], ["z"], perm=[0, 2, 1])], [1, 4, 8], True),
    ],
    ids=[
        "elementwise",
        "reduction-over-rows",
        "flatten-rows-away",
        "flatten-keeps-rows",
        "transpose",
    ],
)
def test_what_is_chunked_and_what_ends_the_chunks(
    tmp_path: Path, tail: list[onnx.NodeProto], out_shape: list[int], chunked_tail: bool
) -> None:
    model = _model(tmp_path / "model.onnx", tail, out_shape)
    passes = f"sequence{{chunks=3}},{REST}"  # 8 rows: blocks of 3, 3 and 2
    result = compile_model(model, passes=passes)
    tail_type = tail[0].op_type
    copies = sum(
        op.op_type == tail_type and op.outputs[0] in ("z", *(f"z/rows{i}" for i in range(3)))
        for op in result.ir.operators()
    )
    assert copies == (3 if chunked_tail else 1)
    # the bias (an initializer with rows) is split on the way in alike
    assert any(op.op_type == "Split" and op.inputs[0] == "b" for op in result.ir.operators())
    report = run_plan(model, compile_options={"passes": passes})
    assert report.matches, report.divergence


def test_one_row_per_chunk(tmp_path: Path) -> None:
    model = _model(tmp_path / "model.onnx", [helper.make_node("Relu", ["y"], ["z"])], [1, 8, 4])
    report = run_plan(model, compile_options={"passes": f"sequence{{chunks=99}},{REST}"})
    assert report.matches, report.divergence
    result = compile_model(model, passes=f"sequence{{chunks=99}},{REST}")
    assert sum(op.op_type == "Softmax" for op in result.ir.operators()) == 8  # capped at rows


def test_graph_without_attention_is_left_as_it_is() -> None:
    model = MODELS / "synthetic" / "chain.onnx"
    plain = compile_model(model, passes=REST)
    result = compile_model(model, passes=f"sequence{{chunks=4}},{REST}")
    assert result.ir.operator_count() == plain.ir.operator_count()
    notes = [note for r in result.pass_results for note in r.notes]
    assert "no attention found: nothing chunked" in notes


def test_check_validates_a_rewritten_plan_against_its_rewritten_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tierplan.compiler.cli import main

    out = tmp_path / "out"
    passes = f"sequence{{chunks=2}},{REST}"
    assert main(["compile", str(STACK), "-o", str(out), "-q", "--passes", passes]) == 0
    plan_path = out / "plan.json"
    assert main(["check", str(STACK), str(plan_path)]) == 0
    plan = json.loads(plan_path.read_text())
    activations = [b for b in plan["buffers"] if b["kind"] == "activation" and b["bytes"] > 64]
    activations[1].update(offset=activations[0]["offset"], tier=activations[0]["tier"])
    activations[1].update(start=activations[0]["start"], end=activations[0]["end"])
    plan_path.write_text(json.dumps(plan))
    assert main(["check", str(STACK), str(plan_path)]) == 1
    assert "overlap" in capsys.readouterr().err
    (out / f"{STACK.stem}.planned.onnx").unlink()
    assert main(["check", str(STACK), str(plan_path)]) == 2
    assert "--planned-model" in capsys.readouterr().err


def test_a_mask_built_from_constants_is_computed_again_for_each_reader(tmp_path: Path) -> None:
    """Two attentions read one causal mask built from index tables (as GPT-2's export
    does): each block of each reader gets its own mask block, no block is kept."""
    rows = np.arange(8, dtype=np.int64)
    tables = [
        numpy_helper.from_array(rows.reshape(1, 8, 1), "row_index"),
        numpy_helper.from_array(rows.reshape(1, 1, 8), "column_index"),
        numpy_helper.from_array(np.array(0, dtype=np.float32), "zero"),
        numpy_helper.from_array(np.array(-1e9, dtype=np.float32), "minus"),
    ]
    nodes = [
        helper.make_node("LessOrEqual", ["column_index", "row_index"], ["visible"]),
        helper.make_node("Where", ["visible", "zero", "minus"], ["mask"]),
    ]
    value = "x"
    for layer in range(2):
        nodes += [
            helper.make_node("Transpose", [value], [f"kt{layer}"], perm=[0, 2, 1]),
            helper.make_node("MatMul", [value, f"kt{layer}"], [f"scores{layer}"]),
            helper.make_node("Add", [f"scores{layer}", "mask"], [f"masked{layer}"]),
            helper.make_node("Softmax", [f"masked{layer}"], [f"probs{layer}"], axis=-1),
            helper.make_node("MatMul", [f"probs{layer}", value], [f"y{layer}"]),
        ]
        value = f"y{layer}"
    graph = helper.make_graph(
        nodes,
        "masked",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 4])],
        [helper.make_tensor_value_info(value, TensorProto.FLOAT, [1, 8, 4])],
        initializer=tables,
    )
    model = tmp_path / "masked.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    passes = f"sequence{{chunks=4}},{REST}"
    result = compile_model(model, passes=passes)
    counts = Counter(op.op_type for op in result.ir.operators())
    assert counts["Where"] == 2 * 4 and counts["LessOrEqual"] == 2 * 4
    assert not result.ir.has_tensor("mask")  # never whole
    report = run_plan(model, compile_options={"passes": passes})
    assert report.matches, report.divergence
