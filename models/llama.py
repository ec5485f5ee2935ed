"""A Llama-style decoder as a graph-only ONNX model (weights stripped), for scale work.

:func:`llama` builds token embedding, ``layers`` pre-norm decoder layers and the
LM head at Llama-7B widths by default (hidden 4096, 32 heads, SwiGLU MLP 11008,
vocabulary 32000, fp16): about 202M parameters per layer, 6.7B for 32 layers.
Weights are external-data initializers whose file never exists (the
:meth:`models.synthetic.GraphBuilder.weight` helper), so a 13 GB model is a few
hundred KiB on disk and builds in well under a second.

Per layer: RMSNorm (``Mul``, ``ReduceMean``, ``Add`` eps, ``Sqrt``, ``Div``,
``Mul`` by the weight), Q/K/V projections, a simplified RoPE
(``q * cos + q * sin`` before the heads are transposed; ``cos``/``sin`` are
graph inputs shared by every layer), scaled scores plus the causal ``mask``
input, ``Softmax``, context, output projection, residual ``Add``; RMSNorm, SwiGLU
(``down(silu(gate(x)) * up(x))`` with SiLU as ``x * Sigmoid(x)``), residual ``Add``.

Run ``python -m models.llama [LAYERS] [OUT.onnx]`` to write one; the committed
``models/scale/llama_7b_48l.onnx`` has 48 layers (7B widths, 10.0B parameters,
20.0 GB = 18.6 GiB of fp16 weights): more than the 16 GiB DDR of the
``inference-card`` target, so it needs several devices. (32 layers, the real
7B depth, make 13.5 GB = 12.6 GiB: that fits one 16 GiB device.) It lives in
``models/scale/``, outside the folders every end-to-end test compiles.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path

import onnx
from onnx import TensorProto

from models.synthetic import GraphBuilder, binary, reshape, transpose, unary

FLOAT16 = TensorProto.FLOAT16
INT64 = TensorProto.INT64


def _linear(gb: GraphBuilder, x: str, out_features: int, name: str) -> str:
    """Bias-free ``MatMul`` with a stripped fp16 ``[in, out]`` weight."""
    shape = gb.shapes[x]
    with gb.module(name):
        w = gb.weight("weight", (shape[-1], out_features), FLOAT16)
        return gb.op("MatMul", [x, w], (*shape[:-1], out_features))


def _rms_norm(gb: GraphBuilder, x: str, eps: float, name: str) -> str:
    """RMSNorm over the last axis, decomposed into opset-18 operators."""
    shape = gb.shapes[x]
    with gb.module(name):
        square = binary(gb, "Mul", x, x)
        axes = gb.shape_constant([-1])
        mean = gb.op("ReduceMean", [square, axes], (*shape[:-1], 1), keepdims=1)
        rms = unary(gb, "Sqrt", binary(gb, "Add", mean, gb.scalar(eps, FLOAT16)))
        normed = binary(gb, "Div", x, rms)
        return binary(gb, "Mul", normed, gb.weight("weight", (shape[-1],), FLOAT16))


def _attention(gb: GraphBuilder, x: str, rope: tuple[str, str], mask: str, heads: int) -> str:
    batch, seq, hidden = gb.shapes[x]
    head_dim = hidden // heads
    cos, sin = rope

    def heads_of(y: str, perm: Sequence[int], rotate: bool) -> str:
        y = reshape(gb, y, (batch, seq, heads, head_dim))
        if rotate:
            y = binary(gb, "Add", binary(gb, "Mul", y, cos), binary(gb, "Mul", y, sin))
        return transpose(gb, y, perm)

    with gb.module("attn"):
        q = heads_of(_linear(gb, x, hidden, "q_proj"), (0, 2, 1, 3), rotate=True)
        k = heads_of(_linear(gb, x, hidden, "k_proj"), (0, 2, 3, 1), rotate=True)
        v = heads_of(_linear(gb, x, hidden, "v_proj"), (0, 2, 1, 3), rotate=False)
        scores = gb.op("MatMul", [q, k], (batch, heads, seq, seq))
        scores = binary(gb, "Div", scores, gb.scalar(math.sqrt(head_dim), FLOAT16))
        probs = gb.op("Softmax", [binary(gb, "Add", scores, mask)], axis=-1)
        ctx = gb.op("MatMul", [probs, v], (batch, heads, seq, head_dim))
        ctx = reshape(gb, transpose(gb, ctx, (0, 2, 1, 3)), (batch, seq, hidden))
        return _linear(gb, ctx, hidden, "o_proj")


def _mlp(gb: GraphBuilder, x: str, ffn: int) -> str:
    hidden = gb.shapes[x][-1]
    with gb.module("mlp"):
        gate = _linear(gb, x, ffn, "gate_proj")
        silu = binary(gb, "Mul", gate, unary(gb, "Sigmoid", gate))
        up = _linear(gb, x, ffn, "up_proj")
        return _linear(gb, binary(gb, "Mul", silu, up), hidden, "down_proj")


def llama(
    layers: int = 32,
    seq: int = 128,
    *,
    hidden: int = 4096,
    heads: int = 32,
    ffn: int = 11008,
    vocab: int = 32000,
    batch: int = 1,
    eps: float = 1e-6,
    name: str | None = None,
) -> onnx.ModelProto:
    """Build a Llama-style decoder (defaults: Llama-7B widths, 32 layers, seq 128).

    Parameters
    ----------
    layers
        Number of decoder layers.
    seq, batch
        Tokens per sequence and sequences per batch (the inputs' static shapes).
    hidden, heads, ffn, vocab
        Model widths; ``hidden`` must be divisible by ``heads``.
    eps
        RMSNorm epsilon.
    name
        Graph name and weights-file stem (default ``llama_<layers>l``).

    Returns
    -------
    onnx.ModelProto
        Inputs ``input_ids`` (int64 ``[batch, seq]``), ``cos``/``sin`` (fp16
        ``[seq, 1, head_dim]``) and ``mask`` (fp16 ``[1, 1, seq, seq]``); output
        the fp16 logits ``[batch, seq, vocab]``.
    """
    if hidden % heads:
        raise ValueError(f"hidden {hidden} is not divisible by heads {heads}")
    gb = GraphBuilder(name or f"llama_{layers}l")
    ids = gb.input("input_ids", (batch, seq), INT64)
    rope = (
        gb.input("cos", (seq, 1, hidden // heads), FLOAT16),
        gb.input("sin", (seq, 1, hidden // heads), FLOAT16),
    )
    mask = gb.input("mask", (1, 1, seq, seq), FLOAT16)
    with gb.module("embed_tokens"):
        table = gb.weight("weight", (vocab, hidden), FLOAT16)
        x = gb.node("Gather", [table, ids], [(batch, seq, hidden)], out_dtype=FLOAT16)[0]
    for index in range(layers):
        with gb.module(f"layers.{index}"):
            attn = _attention(gb, _rms_norm(gb, x, eps, "input_norm"), rope, mask, heads)
            x = binary(gb, "Add", x, attn)
            x = binary(gb, "Add", x, _mlp(gb, _rms_norm(gb, x, eps, "post_attn_norm"), ffn))
    logits = _linear(gb, _rms_norm(gb, x, eps, "norm"), vocab, "lm_head")
    gb.output(logits)
    return gb.model(f"Llama-style decoder: {layers} layers, hidden {hidden}, seq {seq}, fp16")


def main(argv: Sequence[str] | None = None) -> int:
    """Write ``llama(LAYERS)`` to ``OUT.onnx`` (defaults: 48, models/scale/llama_7b_48l.onnx)."""
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) > 2 or any(a.startswith("-") for a in args):
        print("usage: python -m models.llama [LAYERS] [OUT.onnx]", file=sys.stderr)
        return 2
    layers = int(args[0]) if args else 48
    default = Path(__file__).resolve().with_name("scale") / f"llama_7b_{layers}l.onnx"
    path = Path(args[1]) if len(args) > 1 else default
    path.write_bytes(llama(layers, name=path.stem).SerializeToString())
    print(f"{path}: {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
