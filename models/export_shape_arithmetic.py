"""Build the two models whose Reshape/Expand/Tile/Slice targets are computed in the graph.

* ``models/shape_arithmetic/paddle_style.onnx``: the opset-11 patterns paddle2onnx
  writes (``Shape -> Gather -> Unsqueeze -> Concat -> Reshape``, shape arithmetic
  through ``Cast``/``Mul``/``Div``, ``ConstantOfShape``, ``Expand``, ``Tile``,
  ``Slice`` with computed ends, ``Range``), built with ``onnx.helper`` because
  paddle is not installable here. Needs only onnx and numpy.
* ``models/shape_arithmetic/torchscript_style.onnx``: a small attention block
  exported by the legacy TorchScript exporter (``dynamo=False``) with dynamic batch
  and sequence axes, so every ``view``/``expand`` target is ``Shape`` arithmetic.
  Needs torch (the export virtual environment); weights stripped with
  :func:`export_real_models.save_stripped`.

Usage: ``python models/export_shape_arithmetic.py [paddle] [torchscript]`` (both by default).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Run as a script: this folder is on sys.path (synthetic.py, export_real_models.py).
from synthetic import check_stripped_model, weight

OUT = Path(__file__).resolve().parent / "shape_arithmetic"


def _ints(name: str, values: list[int]) -> TensorProto:
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def paddle_style() -> onnx.ModelProto:
    """Conv, then flatten, mask and tile with targets computed from ``Shape`` (opset 11)."""
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "conv.w"], ["y"], pads=[1, 1, 1, 1]),
        n("Shape", ["y"], ["y_shape"]),
        n("Gather", ["y_shape", "i0"], ["batch"], axis=0),
        n("Gather", ["y_shape", "i1"], ["channels"], axis=0),
        n("Gather", ["y_shape", "i2"], ["height"], axis=0),
        n("Gather", ["y_shape", "i3"], ["width"], axis=0),
        # paddle2onnx does arithmetic on shapes in float, then casts back.
        n("Cast", ["height"], ["height_f"], to=TensorProto.FLOAT),
        n("Cast", ["width"], ["width_f"], to=TensorProto.FLOAT),
        n("Mul", ["height_f", "width_f"], ["area_f"]),
        n("Cast", ["area_f"], ["area"], to=TensorProto.INT64),
        n("Mul", ["channels", "area"], ["features"]),
        n("Unsqueeze", ["batch"], ["batch_1d"], axes=[0]),
        n("Unsqueeze", ["features"], ["features_1d"], axes=[0]),
        n("Concat", ["batch_1d", "features_1d"], ["flat_shape"], axis=0),
        n("Reshape", ["y", "flat_shape"], ["flat"]),
        n("MatMul", ["flat", "fc.w"], ["logits"]),
        # A mask of ones shaped like the logits: ConstantOfShape, then Expand to Shape.
        n("Concat", ["one_1d", "ten_1d"], ["row_shape"], axis=0),
        n(
            "ConstantOfShape",
            ["row_shape"],
            ["ones"],
            value=numpy_helper.from_array(np.ones(1, np.float32)),
        ),
        n("Shape", ["logits"], ["logits_shape"]),
        n("Expand", ["ones", "logits_shape"], ["mask"]),
        n("Unsqueeze", ["mask"], ["mask_3d"], axes=[1]),
        n("Squeeze", ["mask_3d"], ["mask_2d"], axes=[1]),
        n("Mul", ["logits", "mask_2d"], ["masked"]),
        # Tile repeats and Slice ends computed from the batch size.
        n("Concat", ["one_1d", "batch_1d"], ["repeats"], axis=0),
        n("Tile", ["masked", "repeats"], ["tiled"]),
        n("Div", ["features_1d", "two_1d"], ["half"]),
        n("Slice", ["flat", "zero_1d", "half", "one_1d"], ["first_half"]),
        # Positions 0..batch-1, as a Range over a computed limit.
        n("Range", ["zero", "batch", "one"], ["positions"]),
    ]
    model = helper.make_model(
        helper.make_graph(
            nodes,
            "paddle_style",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
            [
                helper.make_tensor_value_info(name, elem, shape)
                for name, elem, shape in [
                    ("tiled", TensorProto.FLOAT, ["tiled_rows", "tiled_cols"]),
                    ("first_half", TensorProto.FLOAT, ["half_rows", "half_cols"]),
                    ("positions", TensorProto.INT64, ["positions"]),
                ]
            ],
            initializer=[
                *(numpy_helper.from_array(np.array(k, np.int64), f"i{k}") for k in range(4)),
                _ints("zero_1d", [0]),
                _ints("one_1d", [1]),
                _ints("two_1d", [2]),
                _ints("ten_1d", [10]),
                numpy_helper.from_array(np.array(0, np.int64), "zero"),
                numpy_helper.from_array(np.array(1, np.int64), "one"),
                # Weights: external and absent (never read).
                weight("conv.w", [8, 3, 3, 3], location="paddle_style.weights"),
                weight("fc.w", [8 * 16 * 16, 10], location="paddle_style.weights"),
            ],
        ),
        opset_imports=[helper.make_opsetid("", 11)],
        producer_name="paddle2onnx-style (tierplan models/export_shape_arithmetic.py)",
    )
    model.ir_version = 6
    check_stripped_model(model)
    return model


def torchscript_style() -> None:
    """Export a small attention block with the TorchScript exporter; dynamic batch and seq."""
    import torch
    from export_real_models import save_stripped

    class Block(torch.nn.Module):
        def __init__(self, width: int = 64, heads: int = 4) -> None:
            super().__init__()
            self.heads = heads
            self.qkv = torch.nn.Linear(width, 3 * width)
            self.out = torch.nn.Linear(width, width)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            batch, seq, width = x.shape
            q, k, v = self.qkv(x).chunk(3, dim=-1)
            shape = (batch, seq, self.heads, width // self.heads)
            q, k, v = (t.view(shape).transpose(1, 2) for t in (q, k, v))
            causal = torch.ones(seq, seq, dtype=torch.bool, device=x.device).tril()
            mask = causal.expand(batch, self.heads, seq, seq)
            scores = (q @ k.transpose(-1, -2)).masked_fill(~mask, -1e4).softmax(-1)
            y = (scores @ v).transpose(1, 2).reshape(batch, seq, width)
            return self.out(y)

    torch.manual_seed(0)
    OUT.mkdir(exist_ok=True)
    path = OUT / "torchscript_style.onnx"
    torch.onnx.export(
        Block().eval(),
        (torch.randn(2, 16, 64),),
        str(path),
        dynamo=False,
        opset_version=14,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch", 1: "seq"}, "y": {0: "batch", 1: "seq"}},
    )
    save_stripped(onnx.load(str(path)), path)


def main(argv: list[str]) -> int:
    which = set(argv) or {"paddle", "torchscript"}
    OUT.mkdir(exist_ok=True)
    if "paddle" in which:
        onnx.save(paddle_style(), str(OUT / "paddle_style.onnx"))
    if "torchscript" in which:
        torchscript_style()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
