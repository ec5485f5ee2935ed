"""Tests of the synthetic ONNX model builders in ``models/synthetic.py``."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper, shape_inference

from models.synthetic import (
    BUILDERS,
    IR_VERSION,
    OPSET,
    chain,
    check_stripped_model,
    is_external,
    main,
    random_dag,
    transformer_block,
    transformer_stack,
    unet,
)

NAMES = sorted(BUILDERS)
SYNTHETIC_DIR = Path(__file__).resolve().parents[1] / "models" / "synthetic"
MAX_INLINE_ELEMENTS = 64
"""Inline (data-carrying) initializers are small constants: at most this many elements."""

WEIGHT_OPS = {"Conv", "ConvTranspose", "BatchNormalization", "LayerNormalization", "Gemm"}
"""Ops whose non-first initializer inputs are all weights."""


@pytest.fixture(scope="module", params=NAMES)
def built(request: pytest.FixtureRequest) -> tuple[str, onnx.ModelProto]:
    """Build each registry model once per module."""
    name: str = request.param
    return name, BUILDERS[name]()


def _static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...] | None]:
    """Strictly infer shapes; map every node output to its static shape or ``None``."""
    inferred = shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    graph = inferred.graph
    infos = {vi.name: vi for vi in [*graph.input, *graph.value_info, *graph.output]}
    result: dict[str, tuple[int, ...] | None] = {}
    for node in graph.node:
        for out in node.output:
            vi = infos.get(out)
            tensor_type = vi.type.tensor_type if vi is not None else None
            if tensor_type is None or not tensor_type.HasField("shape"):
                result[out] = None
                continue
            dims = tensor_type.shape.dim
            ok = all(d.HasField("dim_value") and d.dim_value > 0 for d in dims)
            result[out] = tuple(d.dim_value for d in dims) if ok else None
    return result


def test_registry_names_are_weight_file_stems() -> None:
    for name, model in ((n, BUILDERS[n]()) for n in NAMES):
        assert model.graph.name == name
        for tensor in model.graph.initializer:
            if is_external(tensor):
                location = {e.key: e.value for e in tensor.external_data}["location"]
                assert location == f"{name}.weights"


def test_opset_and_ir_version(built: tuple[str, onnx.ModelProto]) -> None:
    _, model = built
    assert model.ir_version == IR_VERSION == 10
    assert [(o.domain, o.version) for o in model.opset_import] == [("", OPSET)]
    assert OPSET == 18


def test_checker_on_everything_but_external_bytes(built: tuple[str, onnx.ModelProto]) -> None:
    _, model = built
    check_stripped_model(model)


def test_plain_checker_only_objects_to_missing_weights_file(
    built: tuple[str, onnx.ModelProto],
) -> None:
    """Document why ``check_stripped_model`` exists."""
    _, model = built
    if not any(is_external(t) for t in model.graph.initializer):
        onnx.checker.check_model(model, full_check=True)
        return
    with pytest.raises(onnx.checker.ValidationError, match=r"\.weights"):
        onnx.checker.check_model(model)


def test_every_value_gets_a_static_shape(built: tuple[str, onnx.ModelProto]) -> None:
    _, model = built
    shapes = _static_shapes(model)
    missing = [name for name, shape in shapes.items() if shape is None]
    assert not missing
    assert len(shapes) == sum(len(n.output) for n in model.graph.node)


LARGE = frozenset({"reduction_net"})
"""Models made to exceed L1: pooled channels of 128 B beside planes of 17 MiB."""


def test_tensor_sizes_are_small(built: tuple[str, onnx.ModelProto]) -> None:
    name, model = built
    sizes = [4 * math.prod(shape) for shape in _static_shapes(model).values() if shape]
    assert len(sizes) == sum(len(n.output) for n in model.graph.node)
    if name in LARGE:
        assert max(sizes) > 4 * 2**20  # rows and planes far beyond a 256 KiB L1
    else:
        assert all(1024 <= size <= 8 * 2**20 for size in sizes)


def test_weights_carry_no_data(built: tuple[str, onnx.ModelProto]) -> None:
    _, model = built
    graph = model.graph
    offset = 0
    for tensor in graph.initializer:
        if is_external(tensor):
            assert not tensor.raw_data
            assert not tensor.float_data and not tensor.int64_data and not tensor.int32_data
            entries = {e.key: int(e.value) for e in tensor.external_data if e.key != "location"}
            itemsize = helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
            assert entries == {"offset": offset, "length": math.prod(tensor.dims) * itemsize}
            offset += entries["length"]
        else:
            array = numpy_helper.to_array(tensor)
            assert array.size <= MAX_INLINE_ELEMENTS
            assert tensor.data_type == TensorProto.INT64 or array.ndim == 0, tensor.name
    inits = {t.name: t for t in graph.initializer}
    for node in graph.node:
        weights = node.input[1:] if node.op_type in WEIGHT_OPS else []
        if node.op_type == "MatMul":
            weights = [name for name in node.input if name in inits]
        for name in weights:
            assert name in inits and is_external(inits[name]), (node.name, name)


def test_node_names(built: tuple[str, onnx.ModelProto]) -> None:
    name, model = built
    names = [n.name for n in model.graph.node]
    named = [n for n in names if n]
    assert len(set(named)) == len(named)
    assert len(names) - len(named) == (2 if name == "chain" else 0)


def test_value_names_are_unique_ssa(built: tuple[str, onnx.ModelProto]) -> None:
    _, model = built
    graph = model.graph
    produced = [o for n in graph.node for o in n.output]
    defined = [*produced, *(i.name for i in graph.input), *(t.name for t in graph.initializer)]
    assert len(set(defined)) == len(defined)


def test_builds_are_byte_identical(built: tuple[str, onnx.ModelProto]) -> None:
    name, model = built
    assert BUILDERS[name]().SerializeToString() == model.SerializeToString()


def _op_types(model: onnx.ModelProto) -> set[str]:
    return {n.op_type for n in model.graph.node}


@pytest.mark.parametrize(
    ("name", "required"),
    [
        ("chain", {"Conv", "Relu", "Sigmoid"}),
        ("diamond", {"Conv", "Add"}),
        ("residual_block", {"Conv", "BatchNormalization", "Relu", "Add"}),
        (
            "transformer_block",
            {"MatMul", "Reshape", "Transpose", "Div", "Softmax", "LayerNormalization", "Erf"},
        ),
        ("unet", {"MaxPool", "Resize", "Concat", "Conv"}),
        ("unet_strided", {"ConvTranspose", "Concat", "Conv"}),
        ("wide_branchy", {"Concat", "MaxPool", "Conv"}),
        ("transformer_stack_4", {"MatMul", "Softmax", "LayerNormalization"}),
    ],
)
def test_builders_use_expected_ops(name: str, required: set[str]) -> None:
    assert required <= _op_types(BUILDERS[name]())


def test_reshape_targets_are_inline_int64() -> None:
    model = transformer_block()
    inits = {t.name: t for t in model.graph.initializer}
    reshapes = [n for n in model.graph.node if n.op_type == "Reshape"]
    assert len(reshapes) == 4
    for node in reshapes:
        target = inits[node.input[1]]
        assert target.data_type == TensorProto.INT64 and not is_external(target)
        assert numpy_helper.to_array(target).tolist() in ([1, 64, 4, 32], [1, 64, 128])


def test_chain_length_and_relu_option() -> None:
    assert len(chain(length=20).graph.node) == 20
    assert len(transformer_block(act="relu").graph.node) < len(transformer_block().graph.node)


def test_unet_skip_tensors_feed_concat() -> None:
    model = unet(depth=3)
    concats = [n for n in model.graph.node if n.op_type == "Concat"]
    assert len(concats) == 3
    position = {o: i for i, n in enumerate(model.graph.node) for o in n.output}
    for node in concats:
        skip = node.input[0]
        assert "down" in skip  # produced by the encoder
        assert position[node.output[0]] - position[skip] > 5  # long-lived
    with pytest.raises(ValueError, match="divisible"):
        unet(depth=3, size=36)


def test_transformer_stack_reuses_layer_code() -> None:
    one = len(transformer_block(layers=1).graph.node)
    assert len(transformer_stack(layers=3).graph.node) == 3 * one
    assert len(transformer_block(layers=2).graph.node) == 2 * one


def test_random_dag_scale() -> None:
    model = random_dag(num_ops=10_000)
    assert len(model.graph.node) == 10_000
    assert 1 <= len(model.graph.output) < 100
    check_stripped_model(model)


def test_random_dag_is_seeded() -> None:
    def build(seed: int) -> bytes:
        return bytes(random_dag(num_ops=2000, seed=seed).SerializeToString())

    assert build(3) == build(3)
    assert build(3) != build(4)


def test_random_dag_is_connected_across_shape_classes() -> None:
    model = random_dag(num_ops=1000)
    shapes = _static_shapes(model)
    shapes.update(
        {
            i.name: tuple(d.dim_value for d in i.type.tensor_type.shape.dim)
            for i in model.graph.input
        }
    )
    mixed = [
        n
        for n in model.graph.node
        if len(n.input) == 2 and shapes[n.input[0]] != shapes[n.input[1]]
    ]
    assert mixed
    for node in mixed:
        a, b = shapes[node.input[0]], shapes[node.input[1]]
        assert a is not None and b is not None
        assert tuple(np.broadcast_shapes(a, b)) == a


def test_large_builder_defaults() -> None:
    assert len(random_dag().graph.node) == 1000
    assert len(transformer_stack().graph.node) == 12 * len(transformer_block().graph.node)


def test_main_writes_small_files(tmp_path: Path) -> None:
    assert main([str(tmp_path)]) == 0
    for name in NAMES:
        path = tmp_path / f"{name}.onnx"
        assert path.stat().st_size < 200_000
        loaded = onnx.load(str(path), load_external_data=False)
        assert loaded.SerializeToString() == BUILDERS[name]().SerializeToString()


def test_committed_files_are_up_to_date() -> None:
    if not SYNTHETIC_DIR.is_dir():
        pytest.skip("models/synthetic/ not generated; run python -m models.synthetic")
    for name in NAMES:
        data = (SYNTHETIC_DIR / f"{name}.onnx").read_bytes()
        assert data == BUILDERS[name]().SerializeToString(), name
