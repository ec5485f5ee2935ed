"""The ``attention`` rewrite on ONNX's fused ``Attention`` operator (opset 23), proven by running it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper
from tierplan.compiler import compile_model
from tierplan.compiler.execution import run_plan

REST = "schedule,liveness,inplace,tiling,partition,tiers,pack,evaluate"


def _fused_model(path: Path, layout: str = "4d", mask: str = "float", **attributes: int) -> Path:
    """``Attention(Relu(x), k, v, mask)`` with 2 heads, 64 query rows and 48 keys."""
    if layout == "4d":
        shapes = {"x": [1, 2, 64, 16], "k": [1, 2, 48, 16], "v": [1, 2, 48, 8], "y": [1, 2, 64, 8]}
    else:
        shapes = {"x": [1, 64, 32], "k": [1, 48, 32], "v": [1, 48, 16], "y": [1, 64, 16]}
        attributes = {"q_num_heads": 2, "kv_num_heads": 2, **attributes}
    mask_type = TensorProto.BOOL if mask == "bool" else TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shapes[n]) for n in "xkv"]
    inputs.append(helper.make_tensor_value_info("m", mask_type, [64, 48]))
    nodes = [
        helper.make_node("Relu", ["x"], ["q"]),
        helper.make_node("Attention", ["q", "k", "v", "m"], ["y"], **attributes),
    ]
    graph = helper.make_graph(
        nodes, "fused", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, shapes["y"])]
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)]), path)
    return path


def _counts(model: Path, passes: str) -> Counter[str]:
    return Counter(op.op_type for op in compile_model(model, passes=passes).ir.operators())


@pytest.mark.parametrize(("layout", "mask"), [("4d", "float"), ("3d", "bool")])
def test_fused_attention_in_row_chunks_matches_onnxruntime(
    tmp_path: Path, layout: str, mask: str
) -> None:
    model = _fused_model(tmp_path / "fused.onnx", layout, mask)
    passes = f"attention{{chunks=4}},{REST}"
    counts = _counts(model, passes)
    assert counts["Attention"] == 4 and counts["Concat"] == 1
    report = run_plan(model, compile_options={"passes": passes})
    assert report.matches, report.divergence


@pytest.mark.parametrize("mask", ["float", "bool"])
def test_fused_attention_online_is_decomposed_into_key_blocks(tmp_path: Path, mask: str) -> None:
    model = _fused_model(tmp_path / "fused.onnx", mask=mask)
    passes = f"attention{{chunks=3 mode=online}},{REST}"
    counts = _counts(model, passes)
    assert counts["Attention"] == 0 and counts["ReduceMax"] == 3 and counts["Softmax"] == 0
    report = run_plan(model, compile_options={"passes": passes})
    assert report.matches, report.divergence


def test_auto_chunks_split_the_fused_score_block_to_the_budget(tmp_path: Path) -> None:
    model = _fused_model(tmp_path / "fused.onnx")  # scores: 2 x 64 x 48 float32 = 24 KiB
    assert _counts(model, f"attention{{budget=8KiB}},{REST}")["Attention"] == 3
    assert _counts(model, f"attention,{REST}")["Attention"] == 1  # fits L2: left fused


def test_causal_fused_attention_is_left_alone(tmp_path: Path) -> None:
    model = _fused_model(tmp_path / "fused.onnx", is_causal=1)
    result = compile_model(model, passes=f"attention{{chunks=4}},{REST}")
    assert Counter(op.op_type for op in result.ir.operators())["Attention"] == 1
    assert any("0 attentions chunked" in note for r in result.pass_results for note in r.notes)
