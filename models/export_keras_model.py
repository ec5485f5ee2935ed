#!/usr/bin/env python3
"""Export a Keras MobileNetV2 through tf2onnx, weights stripped: models/real/keras_mobilenet_v2.onnx.

tf2onnx graphs differ from torch's: the input is NHWC and transposed once to NCHW,
ReLU6 is ``Clip`` with scalar bounds, BatchNormalization is folded into the
convolutions or left as ``Mul``/``Add``, padding is an explicit ``Pad``, and names
are TensorFlow's. The network is ``tf.keras.applications.MobileNetV2(weights=None)``
(randomly initialised, nothing fetched), traced as a ``tf.function`` with a fixed
1x224x224x3 input (``tf2onnx.convert.from_keras`` does not take Keras 3 models)
and converted at opset 17. Weights are stripped as in ``export_real_models.py``
(:func:`export_real_models.save_stripped`: float tensors of more than one element
go to a deleted external file; integer tensors and single floats stay inline).

TensorFlow conflicts with the torch export environment, so it has its own, which
the project never needs::

    python3 -m venv /tmp/tfvenv
    /tmp/tfvenv/bin/pip install tensorflow-cpu==2.21.0 tf2onnx==1.17.0 onnx==1.23.2
    /tmp/tfvenv/bin/python models/export_keras_model.py [--out-dir DIR]

It takes about a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Sequence
from pathlib import Path

import onnx

# Run as a script: this folder is on sys.path.
from export_real_models import SEED, inspect_model, save_stripped

NAME = "keras_mobilenet_v2"
OPSET = 17
IMAGE = (1, 224, 224, 3)


#: tf2onnx's generated names end in a counter (``Relu6_min__57``, ``Conv__236:0``).
_COUNTER = re.compile(r"__\d+(?=(:\d+)?$)")


def canonical_names(model: onnx.ModelProto) -> None:
    """Rename, in place, what tf2onnx names differently from one run to the next.

    Its counters, and which of several equal constants survives deduplication (the
    0 and 6 of every ReLU6), vary between runs. A constant read by several nodes
    becomes ``shared__K`` and a value's counter ``__K``, K numbering them in order
    of first use (a node's counter: its index); initializers are sorted by first
    use. The graph is otherwise unchanged.
    """
    graph = model.graph
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    constants = {t.name for t in graph.initializer}
    kept = {v.name for v in (*graph.input, *graph.output)}
    renamed: dict[str, str] = {}
    for name in (n for node in graph.node for n in (*node.input, *node.output)):
        if name in renamed or name in kept or not name:
            continue
        if name in constants and readers[name] > 1:
            renamed[name] = f"shared__{len(renamed)}"
        elif _COUNTER.search(name):
            renamed[name] = _COUNTER.sub(f"__{len(renamed)}", name)
    for index, node in enumerate(graph.node):
        node.input[:] = [renamed.get(n, n) for n in node.input]
        node.output[:] = [renamed.get(n, n) for n in node.output]
        node.name = _COUNTER.sub(f"__{index}", node.name)
    for value in (*graph.initializer, *graph.value_info):
        value.name = renamed.get(value.name, value.name)
    order = {n: i for i, n in enumerate(n for node in graph.node for n in node.input)}
    ordered = sorted(graph.initializer, key=lambda t: order.get(t.name, len(order)))
    copies = [onnx.TensorProto.FromString(t.SerializeToString()) for t in ordered]
    del graph.initializer[:]
    graph.initializer.extend(copies)


def export(out_dir: Path) -> Path:
    """Build, convert and save the stripped model; return its path."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import tf2onnx

    tf.keras.utils.set_random_seed(SEED)
    model = tf.keras.applications.MobileNetV2(weights=None, input_shape=IMAGE[1:])
    # Fresh BatchNorm statistics are exact zeros and ones, which the converter folds
    # away in ways a trained checkpoint would not; nudge every weight, as the torch
    # exports do.
    for variable in model.weights:
        noise = tf.random.uniform(variable.shape, 0.001, 0.011, dtype=variable.dtype)
        variable.assign(variable + noise)
    spec = (tf.TensorSpec(IMAGE, tf.float32, name="input"),)

    @tf.function(input_signature=spec)  # type: ignore[misc]
    def forward(image: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"logits": model(image, training=False)}

    proto, _ = tf2onnx.convert.from_function(forward, input_signature=spec, opset=OPSET)
    canonical_names(proto)
    proto.doc_string = (
        "tierplan test model (weights stripped): tf.keras.applications.MobileNetV2"
        f"(weights=None) through tf2onnx {tf2onnx.__version__}, 1x224x224x3 NHWC"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{NAME}.onnx"
    save_stripped(proto, path)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=Path(__file__).resolve().parent / "real",
        help="output directory (default: models/real next to this script)",
    )
    path = export(parser.parse_args(argv).out_dir)
    stats = inspect_model(path)
    print(f"{path}: {stats.size_bytes / 1024:.1f} KiB, opset {stats.opset}, {stats.nodes} nodes")
    print(f"ops: {', '.join(f'{k}x{v}' for k, v in stats.op_types.items())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
