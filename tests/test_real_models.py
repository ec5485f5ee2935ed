"""The bundled exported models keep all their structure inline, only float weights stripped."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto

from tests.conftest import MODELS

EXPORTED = sorted(MODELS.glob("real/*.onnx")) + sorted(MODELS.glob("shape_arithmetic/*.onnx"))
FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE}


@pytest.mark.parametrize("path", EXPORTED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_only_float_weights_are_stripped(path: Path) -> None:
    # Integer/bool initializers (position ids, masks, indices) cannot be
    # invented by a runner that fills stripped weights at random.
    model = onnx.load(str(path), load_external_data=False)
    external = [t for t in model.graph.initializer if t.data_location == TensorProto.EXTERNAL]
    assert external, "expected stripped weights"
    assert [t.name for t in external if t.data_type not in FLOAT_TYPES] == []
    # A single float is a constant (an exponent, epsilon, scale, fill value), not a weight.
    assert [t.name for t in external if len(t.dims) == 0 or list(t.dims) == [1]] == []
