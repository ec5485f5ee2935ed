"""Shapes computed inside the graph (``compiler/shape_folding.py``).

Two exported-style models (``models/shape_arithmetic/``, built by
``models/export_shape_arithmetic.py``) compile with full static shapes and valid
plans for more than one binding of their symbolic dimensions, and small inline
models pin down what is folded and what is left to the user.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from tierplan.compiler import InputError, compile_model, validate_plan
from tierplan.compiler.frontend import load_model

from models.synthetic import weight

MODELS = Path(__file__).resolve().parents[1] / "models" / "shape_arithmetic"


def _compiles_with_static_shapes(path: Path, dims: dict[str, int]) -> dict[str, tuple[int, ...]]:
    result = compile_model(path, dims=dims)
    assert result.evaluation is not None
    assert validate_plan(result.plan, load_model(path, dims=dims).ir) == []
    shapes = {t.name: t.shape for t in result.ir.tensors()}
    # Every value the model computes has a planned buffer of the right size.
    assert all(t.nbytes >= 0 for t in result.ir.tensors())
    return shapes


@pytest.mark.parametrize("batch", [2, 5])
def test_paddle_style_model(batch: int) -> None:
    shapes = _compiles_with_static_shapes(MODELS / "paddle_style.onnx", {"N": batch})
    features = 8 * 16 * 16
    assert shapes["flat"] == (batch, features)  # Reshape to Concat(Gather(Shape), Mul(...))
    assert shapes["mask"] == (batch, 10)  # Expand of ConstantOfShape to Shape(logits)
    assert shapes["tiled"] == (batch, 10 * batch)  # Tile with repeats Concat(1, batch)
    assert shapes["first_half"] == (batch, features // 2)  # Slice with computed ends
    assert shapes["positions"] == (batch,)  # Range(0, batch, 1)


@pytest.mark.parametrize(("batch", "seq"), [(2, 16), (1, 7)])
def test_torchscript_style_model(batch: int, seq: int) -> None:
    path = MODELS / "torchscript_style.onnx"
    model = onnx.load(str(path), load_external_data=False)
    assert {"Shape", "Gather", "Concat", "Reshape", "Expand"} <= {
        n.op_type for n in model.graph.node
    }
    shapes = _compiles_with_static_shapes(path, {"batch": batch, "seq": seq})
    assert shapes["y"] == (batch, seq, 64)
    reshaped = [s for name, s in shapes.items() if name.startswith("/Reshape") and len(s) == 4]
    assert reshaped and all(s == (batch, seq, 4, 16) for s in reshaped)


def _parse(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.onnx"
    onnx.save(onnx.parser.parse_model(text), str(path))
    return path


def test_large_constant_of_shape_gets_its_shape_without_being_evaluated(tmp_path: Path) -> None:
    # 2**24 elements: far above what is evaluated, so only its shape is derived.
    path = _parse(
        tmp_path,
        """<ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 4096, 4096] x) => (float[?, ?, ?] y) {
            s = Shape (x)
            z = ConstantOfShape <value = float[1] {1.0}> (s)
            y = Add (x, z)
        }""",
    )
    ir = load_model(path, dims={"N": 1}).ir
    assert ir.tensor("z").shape == (1, 4096, 4096)
    assert ir.tensor("y").shape == (1, 4096, 4096)


def test_outer_scope_constants_reach_subgraphs(tmp_path: Path) -> None:
    path = _parse(
        tmp_path,
        """<ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 8] x, bool c) => (float[?, ?, ?] y) {
            s = Shape (x)
            shape3 = Concat <axis = 0> (s, one)
            one = Constant <value = int64[1] {1}> ()
            y = If (c) <
                then_branch = t () => (float[?, ?, ?] a) { a = Reshape (x, shape3) },
                else_branch = e () => (float[?, ?, ?] b) { b = Reshape (x, shape3) }
            >
        }""",
    )
    assert load_model(path, dims={"N": 3}).ir.tensor("y").shape == (3, 8, 1)


def test_data_dependent_shape_is_left_to_the_user(tmp_path: Path) -> None:
    path = _parse(
        tmp_path,
        """<ir_version: 8, opset_import: ["" : 17]>
        g (float[4] x) => (int64[?, ?] y) { y = NonZero (x) }""",
    )
    with pytest.raises(InputError, match="--input-shape y:"):
        load_model(path)
    assert load_model(path, shapes={"y": (1, 4)}).ir.tensor("y").shape == (1, 4)


def test_external_shape_constant_is_never_read(tmp_path: Path) -> None:
    model = onnx.parser.parse_model(
        """<ir_version: 8, opset_import: ["" : 17]>
        g (float[2, 8] x, int64[2] target) => (float[?, ?] y) { y = Reshape (x, target) }"""
    )
    model.graph.initializer.append(weight("target", [2], onnx.TensorProto.INT64, location="absent"))
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    with pytest.raises(InputError, match="external tensors"):
        load_model(path)
