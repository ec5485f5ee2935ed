"""Builders of small synthetic ONNX graphs for tierplan's tests, demo and benchmarks.

Every builder returns an :class:`onnx.ModelProto` (default-domain opset 18, IR
version 10) whose intermediate tensors all get static shapes from
``onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)``.

Weights (Conv/MatMul weights, biases, BatchNormalization and LayerNormalization
parameters) are *stripped*, exactly like the exported models under
``models/real/``: each is an initializer with ``data_location = EXTERNAL`` and
``external_data`` entries ``location=<model name>.weights``, ``offset`` and
``length``, but the ``.weights`` file never exists. Only small constants that
shapes depend on (``Reshape`` targets, ``Resize`` sizes) and a few scalar
constants are stored inline with real data.

Because the external file is absent, :func:`onnx.checker.check_model` rejects
these models ("... should be stored in <stem>.weights, but it is not regular
file"). :func:`check_stripped_model` validates everything else instead: it
checks the external-data entries itself and runs the ONNX checker (with
``full_check``, i.e. strict shape inference) on a copy in which every external
initializer is replaced by a graph input of the same name, type and shape.

Run ``python -m models.synthetic [OUTDIR]`` to write every model of
:data:`BUILDERS` to ``OUTDIR/<name>.onnx`` (default: ``models/synthetic/``).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = [
    "BUILDERS",
    "IR_VERSION",
    "OPSET",
    "GraphBuilder",
    "chain",
    "check_stripped_model",
    "diamond",
    "is_external",
    "main",
    "random_dag",
    "reduction_net",
    "residual_block",
    "transformer_block",
    "transformer_stack",
    "unet",
    "weight",
    "wide_branchy",
]

OPSET = 18
"""Opset version of the default ONNX domain used by every builder."""

IR_VERSION = 10
"""IR version stamped on every model."""

FLOAT = TensorProto.FLOAT
INT64 = TensorProto.INT64

Shape = tuple[int, ...]
"""A static tensor shape."""

Activation = Literal["gelu", "relu"]


# --------------------------------------------------------------------------- weights


def weight(
    name: str,
    shape: Sequence[int],
    dtype: int = FLOAT,
    *,
    location: str,
    offset: int = 0,
) -> TensorProto:
    """Make a data-less initializer that refers to an (absent) external file.

    Parameters
    ----------
    name
        Initializer name.
    shape
        Static tensor shape.
    dtype
        ``TensorProto`` element type (default float32).
    location
        ``external_data`` location, e.g. ``"resnet.weights"``. The file is
        never created.
    offset
        Byte offset of the tensor inside the external file.

    Returns
    -------
    TensorProto
        A tensor with ``data_location = EXTERNAL`` and ``location``,
        ``offset`` and ``length`` entries, carrying no data fields.
    """
    itemsize = helper.tensor_dtype_to_np_dtype(dtype).itemsize
    tensor = TensorProto()
    tensor.name = name
    tensor.data_type = dtype
    tensor.dims.extend(int(d) for d in shape)
    tensor.data_location = TensorProto.EXTERNAL
    length = math.prod(shape) * itemsize
    for key, value in (("location", location), ("offset", offset), ("length", length)):
        entry = tensor.external_data.add()
        entry.key = key
        entry.value = str(value)
    return tensor


def is_external(tensor: TensorProto) -> bool:
    """Return whether ``tensor`` stores its data in an external file."""
    return bool(tensor.data_location == TensorProto.EXTERNAL)


_DATA_FIELDS = (
    "raw_data",
    "float_data",
    "int32_data",
    "string_data",
    "int64_data",
    "double_data",
    "uint64_data",
)


def _has_inline_data(tensor: TensorProto) -> bool:
    """Return whether ``tensor`` carries data in any of its data fields."""
    return any(len(getattr(tensor, field)) > 0 for field in _DATA_FIELDS)


def check_stripped_model(model: onnx.ModelProto, *, full_check: bool = True) -> None:
    """Validate a model whose external weight file does not exist.

    The ONNX checker refuses external initializers whose file is missing, so
    this function checks

    * every external initializer: no inline data, a relative ``location``
      without ``..``, integer ``offset`` and a ``length`` equal to the tensor's
      byte size; and
    * everything else with :func:`onnx.checker.check_model` (``full_check``
      adds strict shape inference) on a copy in which each external
      initializer is replaced by a graph input of the same name, type and
      shape.

    Parameters
    ----------
    model
        The model to validate; it is not modified.
    full_check
        Forwarded to :func:`onnx.checker.check_model`.

    Raises
    ------
    ValueError
        If an external initializer is malformed.
    onnx.checker.ValidationError
        If the ONNX checker rejects the rest of the model.
    """
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    inline: list[TensorProto] = []
    for tensor in graph.initializer:
        if not is_external(tensor):
            inline.append(tensor)
            continue
        entries = {entry.key: entry.value for entry in tensor.external_data}
        location = entries.get("location", "")
        if not location or Path(location).is_absolute() or ".." in Path(location).parts:
            raise ValueError(f"{tensor.name}: bad external location {location!r}")
        if _has_inline_data(tensor):
            raise ValueError(f"{tensor.name}: external tensor also carries inline data")
        itemsize = helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        expected = math.prod(tensor.dims) * itemsize
        if int(entries.get("offset", "0")) < 0 or int(entries.get("length", "-1")) != expected:
            raise ValueError(f"{tensor.name}: bad external offset/length {entries}")
        graph.input.append(
            helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims))
        )
    del graph.initializer[:]
    graph.initializer.extend(inline)
    onnx.checker.check_model(copy, full_check=full_check)


# --------------------------------------------------------------------------- builder


class _Namer:
    """Hand out unique names: ``base``, then ``base_1``, ``base_2``, ... (amortised O(1))."""

    def __init__(self) -> None:
        self._used: set[str] = set()
        self._next: dict[str, int] = {}

    def __call__(self, base: str) -> str:
        name = base
        count = self._next.get(base, 0)
        if count:
            name = f"{base}_{count}"
        while name in self._used:
            count += 1
            name = f"{base}_{count}"
        self._next[base] = count + 1
        self._used.add(name)
        return name

    def reserve(self, name: str) -> None:
        """Mark ``name`` as used; raise ``ValueError`` if it already is."""
        if name in self._used:
            raise ValueError(f"duplicate name {name!r}")
        self._used.add(name)


class GraphBuilder:
    """Accumulate nodes, initializers and value shapes of one ONNX graph.

    Names follow the PyTorch exporter's conventions: a module scope
    ``layer0.attn`` (see :meth:`module`) yields node names such as
    ``/layer0/attn/MatMul``, value names ``/layer0/attn/MatMul_output_0`` and
    weight names ``layer0.attn.weight``. All names are made unique.

    Parameters
    ----------
    name
        Graph name; also the stem of the external weights file
        (``<name>.weights``).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.weights_location = f"{name}.weights"
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self.shapes: dict[str, Shape] = {}
        self.dtypes: dict[str, int] = {}
        self._scope: list[str] = []
        self._modules = _Namer()
        self._node_names = _Namer()
        self._values = _Namer()
        self._consts: dict[tuple[int, Shape, bytes], str] = {}
        self._offset = 0

    # ----------------------------------------------------------------- names

    @contextmanager
    def module(self, name: str) -> Iterator[str]:
        """Open a uniquely named module scope; yield its dotted path."""
        path = self._modules(".".join([*self._scope, name]))
        self._scope.append(path.rsplit(".", 1)[-1])
        try:
            yield path
        finally:
            self._scope.pop()

    def _path(self, leaf: str, sep: str) -> str:
        return sep.join([*self._scope, leaf])

    def _new_value(self, base: str, shape: Shape, dtype: int) -> str:
        name = self._values(base)
        self.shapes[name] = shape
        self.dtypes[name] = dtype
        return name

    # ----------------------------------------------------------------- values

    def input(self, name: str, shape: Sequence[int], dtype: int = FLOAT) -> str:
        """Declare a graph input with a static shape; return its name."""
        self._values.reserve(name)
        self.shapes[name] = tuple(shape)
        self.dtypes[name] = dtype
        self.inputs.append(helper.make_tensor_value_info(name, dtype, list(shape)))
        return name

    def output(self, value: str) -> None:
        """Declare ``value`` a graph output (type and shape as tracked)."""
        self.outputs.append(
            helper.make_tensor_value_info(value, self.dtypes[value], list(self.shapes[value]))
        )

    def weight(self, name: str, shape: Sequence[int], dtype: int = FLOAT) -> str:
        """Add a stripped external-data weight ``<scope>.<name>``; return its name.

        Offsets are laid out contiguously in ``<graph name>.weights``.
        """
        full = self._new_value(self._path(name, "."), tuple(shape), dtype)
        tensor = weight(full, shape, dtype, location=self.weights_location, offset=self._offset)
        self._offset += math.prod(shape) * helper.tensor_dtype_to_np_dtype(dtype).itemsize
        self.initializers.append(tensor)
        return full

    def constant(self, name: str, array: np.ndarray) -> str:
        """Add a small inline initializer (deduplicated by value); return its name."""
        dtype = helper.np_dtype_to_tensor_dtype(array.dtype)
        key = (dtype, tuple(array.shape), array.tobytes())
        if key in self._consts:
            return self._consts[key]
        full = self._new_value(name, tuple(array.shape), dtype)
        self.initializers.append(numpy_helper.from_array(array, full))
        self._consts[key] = full
        return full

    def shape_constant(self, values: Sequence[int]) -> str:
        """Add an inline int64 vector such as a ``Reshape`` target; return its name."""
        return self.constant("shape_" + "_".join(map(str, values)), np.array(values, np.int64))

    def scalar(self, value: float, dtype: int = FLOAT) -> str:
        """Add an inline 0-d constant; return its name."""
        np_dtype = helper.tensor_dtype_to_np_dtype(dtype)
        return self.constant(f"const_{value:g}".replace(".", "p"), np.array(value, np_dtype))

    # ----------------------------------------------------------------- nodes

    def node(
        self,
        op_type: str,
        inputs: Sequence[str],
        out_shapes: Sequence[Sequence[int]],
        *,
        out_dtype: int | None = None,
        unnamed: bool = False,
        **attrs: Any,
    ) -> list[str]:
        """Append a node and return its output names.

        Parameters
        ----------
        op_type
            Default-domain operator type.
        inputs
            Input value names (``""`` for an omitted optional input).
        out_shapes
            Static shape of each output, as the builder computed it.
        out_dtype
            Output element type; defaults to that of the first input.
        unnamed
            Leave ``NodeProto.name`` empty (to exercise auto-naming downstream).
        **attrs
            Node attributes, passed to :func:`onnx.helper.make_node`.
        """
        node_name = self._node_names("/" + self._path(op_type, "/"))
        dtype = self.dtypes[inputs[0]] if out_dtype is None else out_dtype
        outputs = [
            self._new_value(f"{node_name}_output_{i}", tuple(shape), dtype)
            for i, shape in enumerate(out_shapes)
        ]
        self.nodes.append(
            helper.make_node(op_type, inputs, outputs, name=None if unnamed else node_name, **attrs)
        )
        return outputs

    def op(
        self,
        op_type: str,
        inputs: Sequence[str],
        out_shape: Sequence[int] | None = None,
        *,
        unnamed: bool = False,
        **attrs: Any,
    ) -> str:
        """Append a single-output node; ``out_shape`` defaults to the first input's."""
        shape = self.shapes[inputs[0]] if out_shape is None else out_shape
        return self.node(op_type, inputs, [shape], unnamed=unnamed, **attrs)[0]

    def model(self, doc: str = "") -> onnx.ModelProto:
        """Assemble the accumulated graph into a ``ModelProto``."""
        graph = helper.make_graph(
            self.nodes, self.name, self.inputs, self.outputs, self.initializers
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            ir_version=IR_VERSION,
            producer_name="tierplan.models.synthetic",
            doc_string=doc,
        )
        return model


# --------------------------------------------------------------------------- layers


def unary(gb: GraphBuilder, op_type: str, x: str, *, unnamed: bool = False) -> str:
    """Apply a shape-preserving unary operator."""
    return gb.op(op_type, [x], unnamed=unnamed)


def binary(gb: GraphBuilder, op_type: str, a: str, b: str) -> str:
    """Apply a broadcasting elementwise binary operator."""
    shape = tuple(np.broadcast_shapes(gb.shapes[a], gb.shapes[b]))
    return gb.op(op_type, [a, b], shape)


def conv(
    gb: GraphBuilder,
    x: str,
    out_channels: int,
    kernel: int = 3,
    stride: int = 1,
    *,
    bias: bool = True,
    name: str = "conv",
) -> str:
    """2-D convolution with "same"-style padding ``kernel // 2``."""
    n, c, h, w = gb.shapes[x]
    pad = kernel // 2
    oh, ow = ((d + 2 * pad - kernel) // stride + 1 for d in (h, w))
    with gb.module(name):
        inputs = [x, gb.weight("weight", (out_channels, c, kernel, kernel))]
        if bias:
            inputs.append(gb.weight("bias", (out_channels,)))
        return gb.op(
            "Conv",
            inputs,
            (n, out_channels, oh, ow),
            kernel_shape=[kernel, kernel],
            pads=[pad] * 4,
            strides=[stride, stride],
        )


def conv_transpose(
    gb: GraphBuilder, x: str, out_channels: int, factor: int = 2, *, name: str = "up"
) -> str:
    """Transposed convolution upsampling by ``factor`` (kernel = stride = factor)."""
    n, c, h, w = gb.shapes[x]
    with gb.module(name):
        inputs = [
            x,
            gb.weight("weight", (c, out_channels, factor, factor)),
            gb.weight("bias", (out_channels,)),
        ]
        return gb.op(
            "ConvTranspose",
            inputs,
            (n, out_channels, h * factor, w * factor),
            kernel_shape=[factor, factor],
            strides=[factor, factor],
        )


def batch_norm(gb: GraphBuilder, x: str, *, name: str = "bn") -> str:
    """Inference-mode BatchNormalization with stripped scale/bias/mean/var."""
    channels = gb.shapes[x][1]
    with gb.module(name):
        params = [
            gb.weight(p, (channels,)) for p in ("weight", "bias", "running_mean", "running_var")
        ]
        return gb.op("BatchNormalization", [x, *params], epsilon=1e-5)


def max_pool(gb: GraphBuilder, x: str, kernel: int = 2, stride: int = 2, pad: int = 0) -> str:
    """2-D max pooling."""
    n, c, h, w = gb.shapes[x]
    oh, ow = ((d + 2 * pad - kernel) // stride + 1 for d in (h, w))
    return gb.op(
        "MaxPool",
        [x],
        (n, c, oh, ow),
        kernel_shape=[kernel, kernel],
        strides=[stride, stride],
        pads=[pad] * 4,
    )


def resize_nearest(gb: GraphBuilder, x: str, factor: int = 2) -> str:
    """Nearest-neighbour ``Resize`` by an integer factor (inline int64 ``sizes``)."""
    n, c, h, w = gb.shapes[x]
    out = (n, c, h * factor, w * factor)
    return gb.op("Resize", [x, "", "", gb.shape_constant(out)], out, mode="nearest")


def concat(gb: GraphBuilder, xs: Sequence[str], axis: int = 1) -> str:
    """Concatenate along ``axis``."""
    shape = list(gb.shapes[xs[0]])
    shape[axis] = sum(gb.shapes[x][axis] for x in xs)
    return gb.op("Concat", list(xs), shape, axis=axis)


def reshape(gb: GraphBuilder, x: str, shape: Sequence[int]) -> str:
    """Reshape to an explicit static shape (inline int64 target)."""
    if math.prod(shape) != math.prod(gb.shapes[x]):
        raise ValueError(f"cannot reshape {gb.shapes[x]} to {tuple(shape)}")
    return gb.op("Reshape", [x, gb.shape_constant(shape)], shape)


def transpose(gb: GraphBuilder, x: str, perm: Sequence[int]) -> str:
    """Permute axes."""
    shape = gb.shapes[x]
    return gb.op("Transpose", [x], [shape[p] for p in perm], perm=list(perm))


def linear(
    gb: GraphBuilder, x: str, out_features: int, *, bias: bool = True, name: str = "linear"
) -> str:
    """``MatMul`` with a stripped ``[in, out]`` weight, plus an optional bias ``Add``."""
    shape = gb.shapes[x]
    with gb.module(name):
        y = gb.op(
            "MatMul",
            [x, gb.weight("weight", (shape[-1], out_features))],
            (*shape[:-1], out_features),
        )
        if bias:
            y = binary(gb, "Add", y, gb.weight("bias", (out_features,)))
        return y


def layer_norm(gb: GraphBuilder, x: str, *, eps: float = 1e-5, name: str = "norm") -> str:
    """LayerNormalization over the last axis with stripped scale and bias."""
    features = gb.shapes[x][-1]
    with gb.module(name):
        scale = gb.weight("weight", (features,))
        bias = gb.weight("bias", (features,))
        return gb.op("LayerNormalization", [x, scale, bias], axis=-1, epsilon=eps)


def gelu(gb: GraphBuilder, x: str) -> str:
    """Exact GELU decomposed as ``x * 0.5 * (1 + erf(x / sqrt(2)))``.

    ``Gelu`` is an opset-20 operator, so opset-18 exporters emit this pattern.
    """
    y = binary(gb, "Div", x, gb.scalar(math.sqrt(2.0)))
    y = unary(gb, "Erf", y)
    y = binary(gb, "Add", y, gb.scalar(1.0))
    y = binary(gb, "Mul", x, y)
    return binary(gb, "Mul", y, gb.scalar(0.5))


def activation(gb: GraphBuilder, x: str, kind: Activation) -> str:
    """Apply ``"gelu"`` (decomposed, see :func:`gelu`) or ``"relu"``."""
    return gelu(gb, x) if kind == "gelu" else unary(gb, "Relu", x)


def conv_relu(gb: GraphBuilder, x: str, out_channels: int, kernel: int = 3, *, name: str) -> str:
    """``Conv`` followed by ``Relu``."""
    return unary(gb, "Relu", conv(gb, x, out_channels, kernel, name=name))


def _image_input(gb: GraphBuilder, batch: int, channels: int, size: int) -> str:
    return gb.input("input", (batch, channels, size, size))


# --------------------------------------------------------------------------- builders


def chain(
    length: int = 8,
    *,
    channels: int = 16,
    size: int = 32,
    batch: int = 1,
    conv_every: int = 4,
    unnamed: int = 2,
    name: str = "chain",
) -> onnx.ModelProto:
    """A linear chain of ``length`` nodes: 3x3 Convs interleaved with unary ops.

    Parameters
    ----------
    length
        Number of nodes.
    channels, size, batch
        Every activation is ``[batch, channels, size, size]`` float32
        (default 64 KiB).
    conv_every
        Node ``i`` is a Conv when ``i % conv_every == 0``, else a unary op
        cycling through Relu, Sigmoid, Tanh, Abs, Neg.
    unnamed
        How many unary nodes, spread over the chain, get no name (fewer if
        the chain has fewer unary nodes).
    name
        Graph name and weights-file stem.

    Returns
    -------
    onnx.ModelProto
        The model; the last node's output is the graph output.
    """
    if length < 1 or conv_every < 1:
        raise ValueError("length and conv_every must be positive")
    unary_ops = ("Relu", "Sigmoid", "Tanh", "Abs", "Neg")
    unary_at = [i for i in range(length) if i % conv_every]
    skip_names = {
        unary_at[(j + 1) * len(unary_at) // (unnamed + 1)] for j in range(unnamed) if unary_at
    }
    gb = GraphBuilder(name)
    x = _image_input(gb, batch, channels, size)
    for i in range(length):
        if i % conv_every == 0:
            x = conv(gb, x, channels, name=f"conv{i // conv_every}")
        else:
            x = unary(gb, unary_ops[(i - 1) % len(unary_ops)], x, unnamed=i in skip_names)
    gb.output(x)
    return gb.model(f"chain of {length} nodes")


def diamond(
    *,
    channels: int = 16,
    size: int = 32,
    batch: int = 1,
    left_depth: int = 2,
    right_depth: int = 1,
    name: str = "diamond",
) -> onnx.ModelProto:
    """A stem Conv forking into two Conv branches that join with ``Add``.

    Parameters
    ----------
    channels, size, batch
        Activations are ``[batch, channels, size, size]`` float32 (64 KiB).
    left_depth, right_depth
        Number of Conv+activation pairs in each branch (3x3/Relu on the left,
        1x1/Sigmoid on the right).
    name
        Graph name and weights-file stem.

    Returns
    -------
    onnx.ModelProto
        The model.
    """
    gb = GraphBuilder(name)
    stem = conv_relu(gb, _image_input(gb, batch, channels, size), channels, name="stem")
    left = right = stem
    for i in range(left_depth):
        left = conv_relu(gb, left, channels, 3, name=f"left{i}")
    for i in range(right_depth):
        right = unary(gb, "Sigmoid", conv(gb, right, channels, 1, name=f"right{i}"))
    out = unary(gb, "Relu", binary(gb, "Add", left, right))
    gb.output(out)
    return gb.model("fork into two branches joined by Add")


def residual_block(
    blocks: int = 3,
    *,
    channels: int = 16,
    size: int = 32,
    batch: int = 1,
    name: str = "residual_block",
) -> onnx.ModelProto:
    """ResNet basic blocks: Conv-BN-Relu-Conv-BN, skip ``Add``, Relu; stacked.

    Parameters
    ----------
    blocks
        Number of stacked basic blocks after a Conv-BN-Relu stem.
    channels, size, batch
        Activations are ``[batch, channels, size, size]`` float32 (64 KiB).
    name
        Graph name and weights-file stem.

    Returns
    -------
    onnx.ModelProto
        The model.
    """
    gb = GraphBuilder(name)
    x = _image_input(gb, batch, 3, size)
    x = unary(
        gb, "Relu", batch_norm(gb, conv(gb, x, channels, bias=False, name="conv1"), name="bn1")
    )
    for i in range(blocks):
        with gb.module(f"layer{i}"):
            y = conv(gb, x, channels, bias=False, name="conv1")
            y = unary(gb, "Relu", batch_norm(gb, y, name="bn1"))
            y = batch_norm(gb, conv(gb, y, channels, bias=False, name="conv2"), name="bn2")
            x = unary(gb, "Relu", binary(gb, "Add", y, x))
    gb.output(x)
    return gb.model(f"{blocks} ResNet basic blocks")


def unet(
    depth: int = 3,
    *,
    base_channels: int = 8,
    size: int = 64,
    in_channels: int = 3,
    out_channels: int = 2,
    batch: int = 1,
    downsample: Literal["maxpool", "conv"] = "maxpool",
    upsample: Literal["resize", "convtranspose"] = "resize",
    name: str = "unet",
) -> onnx.ModelProto:
    """A U-Net: encoder, bottleneck, decoder with ``Concat`` skip connections.

    Each encoder level applies two Conv+Relu and keeps the result as a skip
    tensor (alive until the matching decoder level), then halves the
    resolution; each decoder level doubles it, concatenates the skip tensor and
    applies two Conv+Relu.

    Parameters
    ----------
    depth
        Number of down/up-sampling levels; ``size`` must be divisible by
        ``2**depth``.
    base_channels
        Channels at the first level; doubled at every level.
    size, in_channels, out_channels, batch
        Input ``[batch, in_channels, size, size]``; output has
        ``out_channels``. Largest default tensor: 256 KiB.
    downsample
        ``"maxpool"`` (2x2 MaxPool) or ``"conv"`` (3x3 Conv, stride 2).
    upsample
        ``"resize"`` (nearest Resize then 1x1 Conv) or ``"convtranspose"``
        (2x2 ConvTranspose, stride 2).
    name
        Graph name and weights-file stem.

    Returns
    -------
    onnx.ModelProto
        The model.
    """
    if size % (2**depth):
        raise ValueError(f"size {size} is not divisible by 2**depth = {2**depth}")
    gb = GraphBuilder(name)
    x = _image_input(gb, batch, in_channels, size)

    def double_conv(x: str, channels: int) -> str:
        x = conv_relu(gb, x, channels, name="conv1")
        return conv_relu(gb, x, channels, name="conv2")

    skips: list[str] = []
    channels = base_channels
    for level in range(depth):
        with gb.module(f"down{level}"):
            x = double_conv(x, channels)
            skips.append(x)
            if downsample == "maxpool":
                x = max_pool(gb, x)
            else:
                x = conv(gb, x, channels, 3, stride=2, name="downsample")
        channels *= 2
    with gb.module("bottleneck"):
        x = double_conv(x, channels)
    for level in reversed(range(depth)):
        channels //= 2
        with gb.module(f"up{level}"):
            if upsample == "resize":
                x = conv(gb, resize_nearest(gb, x), channels, 1, name="proj")
            else:
                x = conv_transpose(gb, x, channels)
            x = double_conv(concat(gb, [skips[level], x]), channels)
    gb.output(conv(gb, x, out_channels, 1, name="head"))
    return gb.model(f"U-Net of depth {depth} ({downsample} down, {upsample} up)")


def wide_branchy(
    branches: int = 8,
    *,
    channels: int = 16,
    size: int = 32,
    batch: int = 1,
    name: str = "wide_branchy",
) -> onnx.ModelProto:
    """An Inception-like block: one tensor fans out to parallel branches.

    Branch ``i`` has ``1 + i % 4`` Conv+Relu layers (1x1 first, then
    alternating 3x3/5x5) producing ``channels * (1 + i % 3) // 2`` channels;
    every fourth branch starts with a 3x3 stride-1 MaxPool instead of its
    first convolution. The branches join by ``Concat`` and a 1x1 projection.

    Parameters
    ----------
    branches
        Number of parallel branches.
    channels, size, batch
        The fan-out tensor is ``[batch, channels, size, size]`` float32
        (64 KiB); the concatenation is up to ``branches`` times as wide.
    name
        Graph name and weights-file stem.

    Returns
    -------
    onnx.ModelProto
        The model.
    """
    gb = GraphBuilder(name)
    stem = conv_relu(gb, _image_input(gb, batch, 3, size), channels, name="stem")
    outs: list[str] = []
    for i in range(branches):
        width = max(1, channels * (1 + i % 3) // 2)
        with gb.module(f"branch{i}"):
            y = stem
            for layer in range(1 + i % 4):
                if layer == 0 and i % 4 == 3:
                    y = max_pool(gb, y, kernel=3, stride=1, pad=1)
                    continue
                kernel = 1 if layer == 0 else (3, 5)[layer % 2]
                y = conv_relu(gb, y, width, kernel, name=f"conv{layer}")
            if y == stem:  # a lone pooling layer still needs a projection
                y = conv_relu(gb, y, width, 1, name="proj")
        outs.append(y)
    out = conv_relu(gb, concat(gb, outs), channels, 1, name="project")
    gb.output(out)
    return gb.model(f"{branches} parallel branches joined by Concat")


DEFAULT_DAG_SHAPES: tuple[Shape, ...] = (
    (1, 16, 64, 64),
    (1, 16, 32, 32),
    (1, 1, 64, 64),
    (1, 16, 1, 32),
)
"""Tensor shapes of :func:`random_dag` (256, 64, 16 and 2 KiB float32).

The last two broadcast onto the first two, which links the classes.
"""

_DAG_UNARY = ("Relu", "Sigmoid", "Tanh", "Abs", "Neg", "Softsign")
_DAG_BINARY = ("Add", "Mul", "Sub", "Max", "Min")


class _OpenSet:
    """Values without a consumer yet; O(1) add, discard and random pop."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self._index: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.items)

    def add(self, value: str) -> None:
        self._index[value] = len(self.items)
        self.items.append(value)

    def discard(self, value: str) -> None:
        i = self._index.pop(value, None)
        if i is None:
            return
        last = self.items.pop()
        if i < len(self.items):
            self.items[i] = last
            self._index[last] = i

    def pop_at(self, u: float) -> str:
        """Remove and return the item at relative position ``u`` in ``[0, 1)``."""
        value = self.items[int(u * len(self.items))]
        self.discard(value)
        return value


def random_dag(
    num_ops: int = 1000,
    seed: int = 0,
    *,
    shapes: Sequence[Sequence[int]] = DEFAULT_DAG_SHAPES,
    max_width: int = 6,
    fork_prob: float = 0.15,
    binary_prob: float = 0.5,
    cross_prob: float = 0.3,
    long_range_prob: float = 0.03,
    window: int = 32,
    name: str = "random_dag",
) -> onnx.ModelProto:
    """A seeded random DAG of shape-preserving elementwise ops, for scale tests.

    There is one graph input per shape class. Each op picks a class, then its
    first operand among that class's values without a consumer yet (or, with
    probability ``fork_prob`` while fewer than ``max_width`` are open, any
    recent value, which widens the DAG). Binary ops take a second operand from
    the last ``window`` values of the class, or with ``cross_prob`` from a
    smaller class that broadcasts onto it, or with ``long_range_prob`` from
    anywhere in the history (long-lived tensors). Values left without a
    consumer become graph outputs. Runs in O(num_ops).

    Parameters
    ----------
    num_ops
        Exact number of nodes.
    seed
        Seed of the :func:`numpy.random.default_rng` generator; equal
        arguments give byte-identical models.
    shapes
        Tensor shape classes.
    max_width, fork_prob, binary_prob, cross_prob, long_range_prob, window
        Shape of the random structure, see above.
    name
        Graph name.

    Returns
    -------
    onnx.ModelProto
        The model with ``num_ops`` nodes.
    """
    if num_ops < 1:
        raise ValueError("num_ops must be positive")
    classes = [tuple(int(d) for d in s) for s in shapes]
    onto = [
        [j for j, small in enumerate(classes) if j != k and _broadcasts_onto(small, big)]
        for k, big in enumerate(classes)
    ]
    gb = GraphBuilder(name)
    history: list[list[str]] = []
    open_sets: list[_OpenSet] = []
    for k, shape in enumerate(classes):
        x = gb.input(f"input_{k}", shape)
        history.append([x])
        open_sets.append(_OpenSet())
        open_sets[-1].add(x)

    def pick(k: int, u_far: float, u_idx: float) -> str:
        values = history[k]
        if u_far < long_range_prob:
            value = values[int(u_idx * len(values))]
        else:
            value = values[len(values) - 1 - int(u_idx * min(window, len(values)))]
        open_sets[k].discard(value)
        return value

    draws = np.random.default_rng(seed).random((num_ops, 9)).tolist()
    for u in draws:
        k = int(u[0] * len(classes))
        opened = open_sets[k]
        if len(opened) and (len(opened) >= max_width or u[1] >= fork_prob):
            a = opened.pop_at(u[2])
        else:
            a = pick(k, u[3], u[2])
        if u[4] < binary_prob:
            op_type = _DAG_BINARY[int(u[5] * len(_DAG_BINARY))]
            j = k
            if onto[k] and u[6] < cross_prob:
                j = onto[k][int(u[6] / cross_prob * len(onto[k]))]
            y = gb.op(op_type, [a, pick(j, u[7], u[8])], classes[k])
        else:
            y = gb.op(_DAG_UNARY[int(u[5] * len(_DAG_UNARY))], [a])
        history[k].append(y)
        opened.add(y)
    inputs = {vi.name for vi in gb.inputs}
    for opened in open_sets:
        for value in opened.items:
            if value not in inputs:
                gb.output(value)
    return gb.model(f"random DAG of {num_ops} elementwise ops (seed {seed})")


def _broadcasts_onto(small: Shape, big: Shape) -> bool:
    """Return whether ``small`` broadcasts to exactly ``big``."""
    try:
        return tuple(np.broadcast_shapes(small, big)) == big
    except ValueError:
        return False


def _transformer_layer(
    gb: GraphBuilder, x: str, *, heads: int, ffn: int, act: Activation, eps: float
) -> str:
    """One post-LN encoder layer: self-attention and MLP, each with residual + LayerNorm."""
    batch, seq, hidden = gb.shapes[x]
    head_dim = hidden // heads

    def split_heads(y: str, perm: Sequence[int]) -> str:
        return transpose(gb, reshape(gb, y, (batch, seq, heads, head_dim)), perm)

    with gb.module("attn"):
        q = split_heads(linear(gb, x, hidden, name="q_proj"), (0, 2, 1, 3))
        k = split_heads(linear(gb, x, hidden, name="k_proj"), (0, 2, 3, 1))
        v = split_heads(linear(gb, x, hidden, name="v_proj"), (0, 2, 1, 3))
        scores = gb.op("MatMul", [q, k], (batch, heads, seq, seq))
        scores = binary(gb, "Div", scores, gb.scalar(math.sqrt(head_dim)))
        probs = gb.op("Softmax", [scores], axis=-1)
        ctx = gb.op("MatMul", [probs, v], (batch, heads, seq, head_dim))
        ctx = reshape(gb, transpose(gb, ctx, (0, 2, 1, 3)), (batch, seq, hidden))
        attn = linear(gb, ctx, hidden, name="out_proj")
    x = layer_norm(gb, binary(gb, "Add", x, attn), eps=eps, name="norm1")
    with gb.module("mlp"):
        y = activation(gb, linear(gb, x, ffn, name="fc1"), act)
        y = linear(gb, y, hidden, name="fc2")
    return layer_norm(gb, binary(gb, "Add", x, y), eps=eps, name="norm2")


def _transformer(
    name: str,
    layers: int,
    *,
    seq: int,
    hidden: int,
    heads: int,
    ffn: int | None,
    batch: int,
    act: Activation,
    eps: float,
) -> onnx.ModelProto:
    """Build ``layers`` stacked :func:`_transformer_layer` on a ``[batch, seq, hidden]`` input."""
    if hidden % heads:
        raise ValueError(f"hidden {hidden} is not divisible by heads {heads}")
    gb = GraphBuilder(name)
    x = gb.input("hidden_states", (batch, seq, hidden))
    for i in range(layers):
        with gb.module(f"layer{i}"):
            x = _transformer_layer(gb, x, heads=heads, ffn=ffn or 4 * hidden, act=act, eps=eps)
    gb.output(x)
    return gb.model(f"{layers} transformer encoder layers (seq {seq}, hidden {hidden})")


def transformer_block(
    layers: int = 1,
    seq: int = 64,
    hidden: int = 128,
    heads: int = 4,
    *,
    ffn: int | None = None,
    batch: int = 1,
    act: Activation = "gelu",
    eps: float = 1e-5,
    name: str = "transformer_block",
) -> onnx.ModelProto:
    """Post-LN transformer encoder layer(s) (BERT style).

    Per layer: Q/K/V ``MatMul`` projections, ``Reshape``/``Transpose`` to
    heads, score ``MatMul``, ``Div`` by sqrt(head_dim), ``Softmax``, ``MatMul``
    with V, ``Transpose``/``Reshape`` back, output projection, residual ``Add``,
    ``LayerNormalization``, MLP (``MatMul``, GELU or Relu, ``MatMul``),
    residual ``Add``, ``LayerNormalization``. Reshape targets are inline int64
    initializers.

    Parameters
    ----------
    layers
        Number of stacked layers.
    seq, hidden, heads, batch
        Hidden states are ``[batch, seq, hidden]`` (default 32 KiB); scores are
        ``[batch, heads, seq, seq]`` (64 KiB).
    ffn
        MLP width (default ``4 * hidden``; 128 KiB activations).
    act
        MLP activation: ``"gelu"`` (decomposed with ``Erf``) or ``"relu"``.
    eps
        LayerNormalization epsilon.
    name
        Graph name and weights-file stem.

    Returns
    -------
    onnx.ModelProto
        The model.
    """
    return _transformer(
        name, layers, seq=seq, hidden=hidden, heads=heads, ffn=ffn, batch=batch, act=act, eps=eps
    )


def transformer_stack(
    layers: int = 12,
    seq: int = 64,
    hidden: int = 128,
    heads: int = 4,
    *,
    ffn: int | None = None,
    batch: int = 1,
    act: Activation = "gelu",
    eps: float = 1e-5,
    name: str = "transformer_stack",
) -> onnx.ModelProto:
    """``layers`` stacked :func:`transformer_block` layers, for scale tests.

    Parameters are those of :func:`transformer_block`; only the defaults of
    ``layers`` and ``name`` differ.

    Returns
    -------
    onnx.ModelProto
        The model.
    """
    return _transformer(
        name, layers, seq=seq, hidden=hidden, heads=heads, ffn=ffn, batch=batch, act=act, eps=eps
    )


def reduction_net(
    size: int = 368, channels: int = 32, *, batch: int = 1, name: str = "reduction_net"
) -> onnx.ModelProto:
    """A PP-OCR-style detector whose reductions and rows exceed a 256 KiB L1.

    A stride-2 ``Conv`` stem to ``[batch, channels, size / 2, size / 2]`` (184 x 184
    by default), then squeeze-excitation (``GlobalAveragePool``, 1x1 ``Conv``,
    ``Sigmoid``, ``Mul``), ``InstanceNormalization`` of whole planes, ``ReduceSum`` / ``ReduceMax`` / ``ReduceMean`` / ``ArgMax`` over
    planes and channels, ``GlobalMaxPool``, and ``Softmax``, ``LogSoftmax`` and
    ``LayerNormalization`` over rows of ``channels / 4`` planes (1 MiB each by
    default), with ``Reshape`` views around them.

    Parameters
    ----------
    size
        Input height and width (even).
    channels
        Channels after the stem (a multiple of 4).
    batch
        Batch size.
    name
        Graph name and weights-file stem.

    Returns
    -------
    onnx.ModelProto
        The model.
    """
    gb = GraphBuilder(name)
    x = conv_relu(gb, _image_input(gb, batch, 3, size), channels, name="stem")
    n, c, h, w = gb.shapes[x]
    x = gb.op("Conv", [x, gb.weight("down.weight", (c, c, 3, 3))], (n, c, h // 2, w // 2),
              kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2])  # fmt: skip
    h, w = h // 2, w // 2
    with gb.module("se"):
        pooled = gb.op("GlobalAveragePool", [x], (n, c, 1, 1))
        gate = unary(gb, "Sigmoid", conv(gb, pooled, c, kernel=1, name="fc"))
        x = binary(gb, "Mul", x, gate)
    with gb.module("instance_norm"):
        x = gb.op("InstanceNormalization", [x, gb.weight("weight", (c,)), gb.weight("bias", (c,))])
    sums = gb.op("ReduceSum", [x, gb.shape_constant([2, 3])], (n, c, 1, 1))
    peaks = gb.op("ReduceMax", [x, gb.shape_constant([1])], (n, 1, h, w))
    means = gb.op("ReduceMean", [x, gb.shape_constant([1])], (n, h, w), keepdims=0)
    best = gb.node("ArgMax", [x], [(n, 1, h, w)], out_dtype=TensorProto.INT64, axis=1)[0]
    maxima = gb.op("GlobalMaxPool", [x], (n, c, 1, 1))
    rows = reshape(gb, x, (n, 4, c // 4 * h * w))
    probabilities = gb.op("Softmax", [rows], axis=-1)
    logs = gb.op("LogSoftmax", [rows], axis=-1)
    with gb.module("row_norm"):
        features = gb.shapes[rows][-1]
        normed = gb.op(
            "LayerNormalization",
            [rows, gb.weight("weight", (features,)), gb.weight("bias", (features,))],
            axis=-1,
        )
    mixed = binary(gb, "Add", binary(gb, "Add", probabilities, logs), normed)
    out = reshape(gb, mixed, (n, c, h, w))
    out = binary(gb, "Add", binary(gb, "Add", out, sums), maxima)
    out = binary(gb, "Add", binary(gb, "Add", out, peaks), reshape(gb, means, (n, 1, h, w)))
    gb.output(out)
    gb.output(best)
    return gb.model("reduction_net: reductions, pooling and rows larger than L1")


# --------------------------------------------------------------------------- registry

BUILDERS: dict[str, Callable[[], onnx.ModelProto]] = {
    "chain": chain,
    "diamond": diamond,
    "residual_block": residual_block,
    "transformer_block": transformer_block,
    "unet": unet,
    "unet_strided": partial(unet, downsample="conv", upsample="convtranspose", name="unet_strided"),
    "wide_branchy": wide_branchy,
    "random_dag_1k": partial(random_dag, num_ops=1000, name="random_dag_1k"),
    "transformer_stack_4": partial(transformer_stack, layers=4, name="transformer_stack_4"),
    "reduction_net": reduction_net,
}
"""Default-size models by name; each name is also the model's weights-file stem."""


def main(argv: Sequence[str] | None = None) -> int:
    """Write every :data:`BUILDERS` model to ``OUTDIR/<name>.onnx``.

    Parameters
    ----------
    argv
        ``[OUTDIR]``; defaults to ``sys.argv[1:]``. ``OUTDIR`` defaults to the
        ``synthetic/`` folder beside this module.

    Returns
    -------
    int
        Process exit status.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) > 1 or any(a.startswith("-") for a in args):
        print("usage: python -m models.synthetic [OUTDIR]", file=sys.stderr)
        return 2
    outdir = Path(args[0]) if args else Path(__file__).resolve().with_name("synthetic")
    outdir.mkdir(parents=True, exist_ok=True)
    for name, build in BUILDERS.items():
        path = outdir / f"{name}.onnx"
        data = build().SerializeToString()
        path.write_bytes(data)
        print(f"{path}: {len(data)} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
