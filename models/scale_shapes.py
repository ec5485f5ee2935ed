"""Graphs of one shape at any size, for the scale benchmark: chains, fan-outs, many
outputs, deep nests and wide layers.

Each builder takes ``n``, about the number of operators, and returns a model of
small activations (``[1, 16, 8, 8]`` float32, 4 KiB, so that no operator needs
tiling and the shape alone sets the work): the compiler's cost on them shows which
of its steps grows faster than the graph. Weight-free, so the models are complete.
"""

from __future__ import annotations

from collections.abc import Callable

import onnx

from models.synthetic import GraphBuilder, binary, unary

SHAPE = (1, 16, 8, 8)


def relu_chain(n: int, every_output: bool = False) -> onnx.ModelProto:
    """``n`` Relus in a row: every one may write in place, one alias group of ``n``.
    With ``every_output``, each Relu's output is a graph output (all alive to the end)."""
    gb = GraphBuilder("many_outputs" if every_output else "relu_chain")
    x = gb.input("input", SHAPE)
    for step in range(n):
        x = unary(gb, "Relu", x)
        if every_output or step == n - 1:
            gb.output(x)
    return gb.model(f"chain of {n} Relus" + (", each a graph output" if every_output else ""))


def fan_out(n: int) -> onnx.ModelProto:
    """One tensor read by about ``n / 2`` Sigmoids, whose outputs a chain of Adds sums."""
    gb = GraphBuilder("fan_out")
    x = unary(gb, "Relu", gb.input("input", SHAPE))
    total = unary(gb, "Sigmoid", x)
    for _ in range((n - 2) // 2):
        total = binary(gb, "Add", total, unary(gb, "Sigmoid", x))
    gb.output(total)
    return gb.model(f"fan-out of {n // 2} readers of one tensor")


def many_outputs(n: int) -> onnx.ModelProto:
    """A chain of ``n`` Relus whose every output is a graph output."""
    return relu_chain(n, every_output=True)


def deep_nest(n: int) -> onnx.ModelProto:
    """``n / 2`` Relus down, then ``n / 2`` Adds back up, each joining the Relu output
    of its depth: skip connections nested ``n / 2`` deep (a U-Net without convolutions)."""
    gb = GraphBuilder("deep_nest")
    x = gb.input("input", SHAPE)
    down = []
    for _ in range(max(n // 2, 1)):
        x = unary(gb, "Relu", x)
        down.append(x)
    y = down.pop()
    for skip in reversed(down):
        y = binary(gb, "Add", y, skip)
    gb.output(y)
    return gb.model(f"skip connections nested {n // 2} deep")


def wide_layers(n: int, width: int = 100) -> onnx.ModelProto:
    """``n / width`` layers of ``width`` operators, each adding two neighbours of the
    layer before (every layer's outputs are the next one's inputs)."""
    gb = GraphBuilder("wide_layers")
    x = gb.input("input", SHAPE)
    layer = [unary(gb, "Relu", x) for _ in range(width)]
    for _ in range(max(n // width - 1, 0)):
        layer = [binary(gb, "Add", layer[j], layer[(j + 1) % width]) for j in range(width)]
    for y in layer:
        gb.output(y)
    return gb.model(f"{n // width} layers of {width} operators")


SHAPES: dict[str, Callable[[int], onnx.ModelProto]] = {
    "chain": relu_chain,
    "fan_out": fan_out,
    "many_outputs": many_outputs,
    "deep_nest": deep_nest,
    "wide_layers": wide_layers,
}
