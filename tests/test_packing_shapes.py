"""Alias groups placed as the shapes their live members make (compiler/packing/shapes.py)."""

from __future__ import annotations

from pathlib import Path

import onnx
from tierplan.compiler import compile_model, validate_plan
from tierplan.compiler.execution import run_plan
from tierplan.compiler.frontend import load_model
from tierplan.compiler.packing.shapes import Piece, Shape, settle, shapes_peak

REUSE = "schedule,liveness,inplace,pack,evaluate"
NO_POSITIONS = "schedule,liveness,inplace{concat=false views=false},pack,evaluate"

CHUNKS = """<ir_version: 10, opset_import: ["" : 18]>
g (float[1,4,256] x) => (float[1,4,256] z) {
    s = Neg(x)
    s0, s1, s2, s3 = Split<axis=1, num_outputs=4>(s)
    w0 = Exp(s0) y0 = Neg(w0)
    w1 = Exp(s1) y1 = Neg(w1)
    w2 = Exp(s2) y2 = Neg(w2)
    w3 = Exp(s3) y3 = Neg(w3)
    c = Concat<axis=1>(y0, y1, y2, y3)
    z = Sigmoid(c) }"""
"""A row-chunked operator: slices of ``s`` (slice views) die one by one while the
Concat's parts appear one by one, as the 16-bit Softmax's chunks do."""


def test_pieces_over_one_byte_range_merge_when_their_steps_touch() -> None:
    shape = Shape.of(
        "a", [Piece(0, 0, 2, 8), Piece(0, 3, 5, 8), Piece(0, 9, 9, 8), Piece(8, 0, 1, 8)]
    )
    assert shape.pieces == (Piece(0, 0, 5, 8), Piece(0, 9, 9, 8), Piece(8, 0, 1, 8))
    assert shape.height == 16 and not shape.rectangular
    assert Shape.of("b", [Piece(0, 0, 4, 16), Piece(8, 2, 3, 8)]).rectangular


def test_a_growing_group_settles_into_the_bytes_a_shrinking_one_leaves() -> None:
    # "split": 4 slices of 8 bytes dying at steps 1..4, lowest first; "concat": parts
    # written at steps 2..5, lowest first. As rectangles they overlap on steps 2..4.
    split = Shape.of("split", [Piece(8 * k, 0, 1 + k, 8) for k in range(4)])
    concat = Shape.of("concat", [Piece(8 * k, 2 + k, 6, 8) for k in range(4)])
    offsets = settle([split, concat], ["split", "concat"], alignment=8)
    assert offsets == {"split": 0, "concat": 0}
    assert shapes_peak([split, concat], offsets) == 32


def test_slices_and_parts_pack_at_the_bound(tmp_path: Path) -> None:
    """Regression: slice views and concat parts as rectangles put this plan 1.375x above
    its bound (and above the plan without them); as shapes it is at the bound."""
    path = tmp_path / "chunks.onnx"
    onnx.save(onnx.parser.parse_model(CHUNKS), path)
    result = compile_model(path, passes=REUSE)
    assert validate_plan(result.plan, load_model(path).ir) == []
    evaluation = result.evaluation
    assert evaluation is not None
    buffers = {b["tensor"]: b for b in result.plan["buffers"]}
    assert buffers["s3"]["alias_of"] == "s" and buffers["y0"]["alias_of"] == "c"
    assert evaluation.activation_peak_bytes == evaluation.activation_lower_bound_bytes
    without = compile_model(path, passes=NO_POSITIONS).evaluation
    assert without is not None
    assert evaluation.activation_peak_bytes["0/DDR"] <= without.activation_peak_bytes["0/DDR"]
    assert run_plan(path, compile_options={"passes": REUSE}).matches
