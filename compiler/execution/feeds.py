"""The values a model runs on: its weights and its graph inputs.

Weights are the real bytes when the file holds them (inline, or an external data
file that is present). When a float weight was stripped (its external file is
absent, as for every bundled model) it gets deterministic pseudo-random values
seeded by the run's seed and the tensor's name, scaled like a fresh network's
initialisation so that activations stay finite: ``U(-1, 1) / sqrt(fan_in)`` for
matrices and kernels, small values for vectors, and values in ``[0.5, 1.5]`` where
an operator needs them positive (a variance, a divisor, a normalisation scale).
Integer and bool weights are indices, shapes and masks: they cannot be invented,
so a stripped one is an error unless ``--inputs`` gives it.

Graph inputs come from an ``.npz`` file by name, or are seeded random values of
the right dtype: floats in ``[-1, 1)``, integers that index a table (``Gather``
indices, embedding lookups) inside that table, other integers 1, bools random.
"""

from __future__ import annotations

import hashlib
import math
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import external_data_helper, numpy_helper
from tierplan.compiler.errors import InputError

# (op_type, input slot) whose value must be positive for a finite result.
_POSITIVE_SLOTS = {
    ("BatchNormalization", 1),
    ("BatchNormalization", 4),
    ("InstanceNormalization", 1),
    ("LayerNormalization", 1),
    ("GroupNormalization", 1),
    ("SimplifiedLayerNormalization", 1),
    ("RMSNormalization", 1),
    ("Div", 1),
    ("Sqrt", 0),
    ("Log", 0),
    ("Reciprocal", 0),
    ("Pow", 0),
}
# (op_type, input slot) reading indices into input 0 along the operator's axis.
_INDEX_SLOTS = {("Gather", 1), ("GatherElements", 1)}


def element_type(proto: onnx.TensorProto | onnx.ValueInfoProto) -> np.dtype[np.generic]:
    """The numpy dtype of an initializer or a typed value."""
    code = (
        proto.data_type if isinstance(proto, onnx.TensorProto) else proto.type.tensor_type.elem_type
    )
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(code))


def _rng(seed: int, name: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _consumer_slots(graph: onnx.GraphProto) -> dict[str, list[tuple[onnx.NodeProto, int]]]:
    slots: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for node in graph.node:
        for slot, name in enumerate(node.input):
            if name:
                slots.setdefault(name, []).append((node, slot))
    return slots


def _random_float(
    name: str, shape: tuple[int, ...], dtype: np.dtype[np.generic], positive: bool, seed: int
) -> np.ndarray:
    rng = _rng(seed, name)
    if positive:
        values = rng.uniform(0.5, 1.5, size=shape)
    elif len(shape) >= 2:
        fan_in = max(1, math.prod(shape[1:]))
        values = rng.uniform(-1.0, 1.0, size=shape) / math.sqrt(fan_in)
    else:
        values = rng.uniform(-0.1, 0.1, size=shape)
    return values.astype(dtype)


def _stored_weight(tensor: onnx.TensorProto, model_dir: Path) -> np.ndarray | None:
    """The initializer's real values, or None when its external data file is absent."""
    if external_data_helper.uses_external_data(tensor):
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        if not location or not (model_dir / location).is_file():
            return None
        loaded = onnx.TensorProto()
        loaded.CopyFrom(tensor)
        try:
            external_data_helper.load_external_data_for_tensor(loaded, str(model_dir))
        except (OSError, ValueError) as error:
            raise InputError(
                f"cannot read the external data of weight {tensor.name!r}: {error}"
            ) from None
        tensor = loaded
    return numpy_helper.to_array(tensor)


def weight_values(
    graph: onnx.GraphProto, model_dir: Path, seed: int, given: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Every initializer's values: given, stored, or invented (floats only)."""
    consumers = _consumer_slots(graph)
    values: dict[str, np.ndarray] = {}
    for tensor in graph.initializer:
        dtype = element_type(tensor)
        shape = tuple(int(d) for d in tensor.dims)
        if tensor.name in given:
            values[tensor.name] = _conformed(tensor.name, given[tensor.name], dtype, shape)
            continue
        stored = _stored_weight(tensor, model_dir)
        if stored is not None:
            values[tensor.name] = stored
        elif dtype.kind == "f" or dtype.name in ("bfloat16",):
            positive = any(
                (node.op_type, slot) in _POSITIVE_SLOTS
                for node, slot in consumers.get(tensor.name, [])
            )
            values[tensor.name] = _random_float(tensor.name, shape, dtype, positive, seed)
        else:
            raise InputError(
                f"weight {tensor.name!r} ({dtype.name}{list(shape)}) was stripped from the "
                "model and integer or bool values cannot be invented: give them with --inputs"
            )
    return values


def input_values(
    graph: onnx.GraphProto,
    shapes: Mapping[str, tuple[int, ...]],
    weights: Mapping[str, np.ndarray],
    seed: int,
    given: Mapping[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Every graph input's values (initializers excluded), given or seeded random."""
    consumers = _consumer_slots(graph)
    initializers = {t.name for t in graph.initializer}
    values: dict[str, np.ndarray] = {}
    for value in graph.input:
        if value.name in initializers:
            continue
        dtype, shape = element_type(value), shapes[value.name]
        if value.name in given:
            values[value.name] = _conformed(value.name, given[value.name], dtype, shape)
            continue
        rng = _rng(seed, value.name)
        if dtype.kind == "f":
            values[value.name] = rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
        elif dtype.kind == "b":
            values[value.name] = rng.integers(0, 2, size=shape).astype(dtype)
        else:
            high = _table_size(consumers.get(value.name, []), shapes, weights)
            values[value.name] = (
                rng.integers(0, high, size=shape).astype(dtype)
                if high
                else np.ones(shape, dtype=dtype)
            )
    return values


def _table_size(
    readers: list[tuple[onnx.NodeProto, int]],
    shapes: Mapping[str, tuple[int, ...]],
    weights: Mapping[str, np.ndarray],
) -> int:
    """The smallest table an input indexes (0 when it indexes none)."""
    sizes = []
    for node, slot in readers:
        if (node.op_type, slot) not in _INDEX_SLOTS:
            continue
        table = node.input[0]
        shape = weights[table].shape if table in weights else shapes.get(table)
        if not shape:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        sizes.append(int(shape[axis]))
    return min(sizes, default=0)


def _conformed(
    name: str, array: np.ndarray, dtype: np.dtype[np.generic], shape: tuple[int, ...]
) -> np.ndarray:
    if tuple(array.shape) != shape:
        raise InputError(
            f"--inputs gives {name!r} the shape {list(array.shape)}; the model needs {list(shape)}"
        )
    return np.ascontiguousarray(array, dtype=dtype)


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Arrays of an ``.npz`` file by name; one-line errors for a missing or bad file."""
    if not path.is_file():
        raise InputError(f"inputs file {str(path)!r} does not exist or is not a file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise InputError(f"cannot read inputs file {str(path)!r} as .npz: {error}") from None
