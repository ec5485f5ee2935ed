"""The tiling pass: hand-computed tilings, scratch buffers, diagnostics, validator rules."""

from __future__ import annotations

import copy
from pathlib import Path

import onnx
import pytest
from tierplan.compiler import CompileResult, PassFailure, compile_model, validate_plan
from tierplan.compiler.target import Target, parse_target
from tierplan.compiler.tiling import loop_nest
from tierplan.compiler.tiling.nest import measure

HEADER = '<ir_version: 10, opset_import: ["" : 18]>'
PIPELINE = "schedule,liveness,tiling,pack,evaluate"


def small_target(l1: str, reserve: str = "") -> Target:
    """A three-tier target with the given L1 (and optional L1 reserve)."""
    reserve_line = f'reserve = "{reserve}"' if reserve else ""
    return parse_target(
        f"""
        name = "small"
        [[tiers]]
        name = "L1"
        capacity = "{l1}"
        {reserve_line}
        bandwidth = 1e13
        [[tiers]]
        name = "L2"
        capacity = "8MiB"
        bandwidth = 2e12
        [[tiers]]
        name = "DDR"
        capacity = "1GiB"
        bandwidth = 1e12
        """,
        "small",
    )


def compile_text(tmp_path: Path, text: str, target: Target) -> CompileResult:
    path = tmp_path / "m.onnx"
    onnx.save(onnx.parser.parse_model(f"{HEADER}\n{text}"), path)
    return compile_model(path, target=target, passes=PIPELINE, verify_each=True)


def scratch_of(result: CompileResult, step: int | None) -> list[int]:
    return [
        t.nbytes
        for t in result.ir.tensors()
        if t.kind == "scratch" and t.start == step and t.end == step and t.tier == "L1"
    ]


def test_gemm_keeps_the_weight_resident_and_streams_row_panels(tmp_path: Path) -> None:
    # B (64x64 fp32, 16 KiB) stays resident; A and Y stream in row panels of t rows,
    # double-buffered: 16384 + 2*(t*64*4) + 2*(t*64*4) <= 65536  =>  t <= 48 = 384/8.
    result = compile_text(
        tmp_path,
        "g (float[384,64] a, float[64,64] b) => (float[384,64] y) { y = MatMul(a, b) }",
        small_target("64KiB"),
    )
    op = result.ir.operator("MatMul_0")
    assert op.tiles is not None
    assert op.tiles.axes == {"m": 48, "n": 64, "k": 64}
    assert op.tiles.count == 8
    assert op.tiles.l1_bytes == 24576 + 16384 + 24576
    # Every operand moves exactly once: the compulsory traffic.
    assert op.tiles.traffic_bytes == (384 * 64 + 64 * 64 + 384 * 64) * 4
    assert sorted(scratch_of(result, op.step)) == [16384, 24576, 24576]


def test_conv_spatial_tile_reloads_its_halo(tmp_path: Path) -> None:
    result = compile_text(
        tmp_path,
        "g (float[1,4,32,32] x, float[4,4,3,3] w) => (float[1,4,32,32] y) "
        "{ y = Conv <pads = [1, 1, 1, 1]> (x, w) }",
        small_target("24KiB"),
    )
    op = result.ir.operator("Conv_0")
    nest = loop_nest(result.ir, op)
    assert nest is not None
    # Tiles of 8 output rows read 10 input rows: 4 tiles * 10 rows * 32 * 4 ch * 4 B.
    rows = measure(nest, {"s0": 8}, ("n", "g", "s0", "s1", "co", "ci"), 64)
    assert rows.traffic == {"X": 4 * 10 * 32 * 4 * 4, "W": 4 * 4 * 9 * 4, "Y": 32 * 32 * 4 * 4}
    assert dict(rows.buffers) == {"X": 2 * 5120, "W": 576, "Y": 2 * 4096}
    assert op.tiles is not None
    assert op.tiles.l1_bytes <= 24 * 1024
    assert op.tiles.traffic_bytes <= sum(rows.traffic.values()), "the search finds no worse"
    assert op.tiles.traffic_by_tensor["x"] > 4 * 32 * 32 * 4, "spatial tiles re-read halos"


def test_depthwise_conv_splits_channels_without_halo(tmp_path: Path) -> None:
    # Per channel: x and y planes of 1 KiB, 36 B of weights. Groups of 13 channels:
    # 2*13 KiB + 2*aligned(468 B) + 2*13 KiB = 54272 B; 16 channels would not fit.
    result = compile_text(
        tmp_path,
        "g (float[1,64,16,16] x, float[64,1,3,3] w) => (float[1,64,16,16] y) "
        "{ y = Conv <group = 64, pads = [1, 1, 1, 1]> (x, w) }",
        small_target("64KiB"),
    )
    op = result.ir.operator("Conv_0")
    assert op.tiles is not None
    assert op.tiles.axes == {"g": 13, "s0": 16, "s1": 16}
    assert op.tiles.count == 5
    assert op.tiles.l1_bytes == 2 * 13 * 1024 + 2 * 512 + 2 * 13 * 1024
    assert op.tiles.traffic_bytes == 65536 + 64 * 9 * 4 + 65536


def test_softmax_tiles_rows_and_never_splits_the_reduced_axis(tmp_path: Path) -> None:
    # A row is 256 floats (1 KiB); x and y rows double-buffered: 4 KiB per row.
    result = compile_text(
        tmp_path,
        "g (float[512,256] x) => (float[512,256] y) { y = Softmax <axis = -1> (x) }",
        small_target("64KiB"),
    )
    op = result.ir.operator("Softmax_0")
    assert op.tiles is not None
    assert op.tiles.axes == {"d0": 16, "d1": 256}
    assert op.tiles.count == 32
    assert op.tiles.traffic_bytes == 2 * 512 * 256 * 4


def test_a_row_too_large_for_l1_is_a_clear_diagnostic(tmp_path: Path) -> None:
    with pytest.raises(PassFailure) as caught:
        compile_text(
            tmp_path,
            "g (float[4,65536] x) => (float[4,65536] y) { y = Softmax <axis = -1> (x) }",
            small_target("64KiB"),
        )
    message = str(caught.value)
    assert "\n" not in message
    assert "Softmax_0" in message and "d1 (size 65536)" in message


def test_reserve_shrinks_the_tiles(tmp_path: Path) -> None:
    text = "g (float[512,256] x) => (float[512,256] y) { y = Softmax <axis = -1> (x) }"
    full = compile_text(tmp_path, text, small_target("64KiB"))
    reserved = compile_text(tmp_path, text, small_target("64KiB", reserve="32KiB"))
    tiles, smaller = full.ir.operator("Softmax_0").tiles, reserved.ir.operator("Softmax_0").tiles
    assert tiles is not None and smaller is not None
    assert smaller.l1_bytes <= 32 * 1024 < tiles.l1_bytes


def test_small_operators_are_not_tiled(tmp_path: Path) -> None:
    result = compile_text(
        tmp_path, "g (float[64] x) => (float[64] y) { y = Relu(x) }", small_target("64KiB")
    )
    assert result.ir.operator("Relu_0").tiles is None
    assert not [t for t in result.ir.tensors() if t.kind == "scratch"]


def test_validator_checks_l1_bytes_against_the_scratch_buffers(tmp_path: Path) -> None:
    result = compile_text(
        tmp_path,
        "g (float[512,256] x) => (float[512,256] y) { y = Softmax <axis = -1> (x) }",
        small_target("64KiB"),
    )
    assert not validate_plan(result.plan, result.ir)
    broken = copy.deepcopy(result.plan)
    broken["ops"][0]["tiles"]["l1_bytes"] += 64
    assert any(v.rule == "tiles" for v in validate_plan(broken, result.ir))
    missing = copy.deepcopy(result.plan)
    missing["buffers"] = [b for b in missing["buffers"] if b["kind"] != "scratch"]
    assert any(v.rule == "tiles" for v in validate_plan(missing, result.ir))


@pytest.mark.parametrize("model", ["resnet18", "bert_base"])
def test_real_models_tile_within_l1_and_stay_valid(model: str) -> None:
    path = Path(__file__).resolve().parent.parent / "models" / "real" / f"{model}.onnx"
    result = compile_model(path, passes=PIPELINE)
    capacity = result.target.tiers[0].capacity
    tiled = [op for op in result.ir.operators() if op.tiles is not None]
    assert tiled
    for op in tiled:
        assert op.tiles is not None and op.tiles.l1_bytes <= capacity
        assert sum(scratch_of(result, op.step)) == op.tiles.l1_bytes
        assert sum(op.tiles.traffic_by_tensor.values()) == op.tiles.traffic_bytes
