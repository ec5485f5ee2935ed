"""The ``attention`` rewrite: attention in row chunks, exact, proven by running it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from tierplan.compiler import CompileResult, PipelineError, compile_model
from tierplan.compiler.cost import operator_flops
from tierplan.compiler.execution import run_plan

from tests.conftest import MODELS

STACK = MODELS / "synthetic" / "transformer_stack_4.onnx"
REST = "schedule,liveness,inplace,tiling,partition,tiers,pack,evaluate"


def _score_bytes_alive(plan: dict[str, object], marker: str) -> int:
    """Largest total of bytes of buffers named like score blocks alive at one step."""
    buffers = [b for b in plan["buffers"] if marker in b["tensor"]]  # type: ignore[attr-defined]
    steps = range(len(plan["schedule"]))  # type: ignore[arg-type]
    return max(sum(b["bytes"] for b in buffers if b["start"] <= s <= b["end"]) for s in steps)


@pytest.mark.parametrize("chunks", [2, 5, 64])
def test_chunked_attention_matches_onnxruntime(chunks: int) -> None:
    passes = f"attention{{chunks={chunks}}},{REST}"
    report = run_plan(STACK, compile_options={"passes": passes})
    assert report.matches, report.divergence
    result = compile_model(STACK, passes=passes)
    counts = Counter(op.op_type for op in result.ir.operators())
    assert counts["Softmax"] == 4 * chunks and counts["Concat"] == 4  # 64 query rows
    assert any("4 attentions chunked" in note for r in result.pass_results for note in r.notes)


@pytest.mark.parametrize("blocks", [2, 3, 64])
def test_online_attention_matches_onnxruntime(blocks: int) -> None:
    passes = f"attention{{chunks={blocks} mode=online}},{REST}"
    report = run_plan(STACK, compile_options={"passes": passes})
    assert report.matches, report.divergence
    result = compile_model(STACK, passes=passes)
    counts = Counter(op.op_type for op in result.ir.operators())
    assert counts["Softmax"] == 0 and counts["ReduceMax"] == 4 * blocks
    plain = compile_model(STACK)
    extra = _flops(result) / _flops(plain) - 1
    assert 0 < extra < 0.05  # a few elementwise operations per score, against 2 MatMuls


def _flops(result: CompileResult) -> int:
    return sum(operator_flops(result.ir, op) for op in result.ir.operators())


def test_one_chunk_of_scores_alive_at_a_time() -> None:
    plain = compile_model(STACK).plan
    chunked = compile_model(STACK, passes=f"attention{{chunks=8}},{REST}").plan
    before = _score_bytes_alive(plain, "Softmax_output")
    after = _score_bytes_alive(chunked, "Softmax_output")
    assert after * 8 <= before


def test_auto_chunks_fit_the_budget() -> None:
    # Each layer's scores are [1, 4, 64, 64] fp32 = 64 KiB; a 16 KiB budget needs 4 chunks.
    result = compile_model(STACK, passes=f"attention{{budget=16KiB}},{REST}")
    softmaxes = [op for op in result.ir.operators() if op.op_type == "Softmax"]
    assert len(softmaxes) == 16
    assert max(result.ir.tensor(op.outputs[0]).nbytes for op in softmaxes) <= 16 * 1024
    untouched = compile_model(STACK, passes=f"attention,{REST}")  # 64 KiB fits L2: no rewrite
    assert sum(op.op_type == "Softmax" for op in untouched.ir.operators()) == 4


def _attention_model(path: Path, softmax_axis: int, extra_reader: bool) -> Path:
    q = numpy_helper.from_array(np.zeros((1, 8, 4), dtype=np.float32), "q")
    nodes = [
        helper.make_node("Transpose", ["x"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["x", "kt"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["probs"], axis=softmax_axis),
        helper.make_node("MatMul", ["probs", "x"], ["y"]),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 4])]
    if extra_reader:
        nodes.append(helper.make_node("Relu", ["scores"], ["also"]))
        outputs.append(helper.make_tensor_value_info("also", TensorProto.FLOAT, [1, 8, 8]))
    graph = helper.make_graph(
        nodes,
        "attention",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 4])],
        outputs,
        initializer=[q],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.mark.parametrize(
    ("axis", "extra_reader", "rewritten"),
    [(-1, False, True), (2, False, True), (1, False, False), (-1, True, False)],
    ids=["last-axis", "last-axis-positive", "other-axis", "scores-read-twice"],
)
def test_what_is_matched_and_what_is_refused(
    tmp_path: Path, axis: int, extra_reader: bool, rewritten: bool
) -> None:
    model = _attention_model(tmp_path / "attention.onnx", axis, extra_reader)
    passes = f"attention{{chunks=3}},{REST}"
    result = compile_model(model, passes=passes)
    assert any(op.op_type == "Concat" for op in result.ir.operators()) == rewritten
    assert run_plan(model, compile_options={"passes": passes}).matches


def test_attention_after_schedule_is_refused() -> None:
    with pytest.raises(PipelineError, match="'liveness' requires 'schedule'"):
        compile_model(STACK, passes="schedule,attention,liveness,pack,evaluate")


@pytest.mark.parametrize(
    "rewrite",
    [
        "attention{chunks=0}",
        "attention{chunks=many}",
        "attention{mode=flash}",
        "sequence{chunks=0}",
        "sequence{chunks=many}",
        "sequence{budget=-1}",
    ],
)
def test_bad_options_fail_before_any_pass_runs(rewrite: str) -> None:
    with pytest.raises(PipelineError, match=rewrite.split("{")[0]):
        compile_model(STACK, passes=f"{rewrite},{REST}")


@pytest.mark.slow
@pytest.mark.parametrize("rewrite", ["attention{chunks=4}", "sequence{chunks=4}"])
def test_gpt2_rewrite_with_its_causal_mask_runs(rewrite: str) -> None:
    model = MODELS / "real" / "gpt2.onnx"
    report = run_plan(model, compile_options={"passes": f"{rewrite},{REST}"})
    assert report.matches, report.divergence


def test_report_compares_a_plan_with_its_rewrite(tmp_path: Path) -> None:
    """``report A --compare B``: the rewrite's score tensors vanish and its blocks appear."""
    from tierplan.compiler.cli import main

    before, after = tmp_path / "before", tmp_path / "after"
    assert main(["compile", str(STACK), "-o", str(before), "-q"]) == 0
    passes = f"attention{{chunks=4}},{REST}"
    assert main(["compile", str(STACK), "-o", str(after), "-q", "--passes", passes]) == 0
    out = tmp_path / "compare.html"
    plans = [str(before / "plan.json"), "--compare", str(after / "plan.json")]
    assert main(["report", *plans, "-o", str(out)]) == 0
    text = out.read_text()
    assert "12 tensors only in A (vanished)" in text
    assert "/layer0/attn/Softmax_output_0" in text and "/layer0/attn/Softmax/scores_1" in text
