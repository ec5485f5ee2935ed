#!/usr/bin/env python3
"""Export small, weight-stripped real-world ONNX models for tierplan's test corpus.

Each network is built from its architecture definition only -- torchvision
models with ``weights=None`` and Hugging Face models from their default
``*Config()``, or defined here (RandWire, a U-Net) -- so parameters are randomly
initialised and nothing is fetched from a model hub. It is exported with the
dynamo-based exporter (``torch.onnx.export(..., dynamo=True)``, the exporter's
default opset, 20 with torch 2.14) -- except ``t5_encoder``, exported with the
TorchScript exporter (``dynamo=False``, opset 17) because its graphs are of
another kind -- and then *stripped*: initializer data goes to an external-data
file ``<stem>.weights`` that is deleted right after saving. The committed
``.onnx`` keeps the whole graph -- nodes, ``value_info`` shapes and dtypes,
initializer names/dims/dtypes, inline ``Constant`` nodes -- but no weight
bytes, and refers to the absent weights file. Load it with
``onnx.load(path, load_external_data=False)``.

Only floating-point initializers of more than one element are stripped: a
single float is a constant of the graph (the 3 of GELU's ``Pow(x, 3)``, a
LayerNorm epsilon, an attention scale, a mask's fill value, Clip's bounds),
and a random stand-in would change what the model computes (``x ** 0.04`` of a
negative ``x`` is NaN). Integer and bool initializers
stay inline: they are model structure, not weights -- Reshape targets and
axes, position ids, gather indices, causal and padding masks that the
exporter folded into constants -- and neither shape inference (for a pass
that drops ``value_info``) nor ``tierplan run``, which fills stripped float
weights with random values, could invent them. They cost a few KB per
model. ``--inline-int-elems`` (default ``1 << 22`` elements, 4 Mi) is only a
guard against a huge integer tensor that would really be data, such as a
quantised weight; any integer/bool initializer above it is stripped and
``--check-only`` reports it. Pass ``--inline-int-elems 0`` to strip every
initializer, which is exactly ``onnx.save_model(...,
save_as_external_data=True, size_threshold=0)``.

The heavy dependencies (torch, torchvision, transformers, onnx, onnxscript)
are the optional extra ``tierplan[export]``. They are only needed to
*regenerate* ``models/real/*.onnx``; tierplan's tests and CI read the
committed files and never import this script. Use a separate virtual
environment (torch alone is several GB), for example::

    python3 -m venv /tmp/exportvenv
    /tmp/exportvenv/bin/pip install torch==2.14.1 torchvision==0.29.1 \
        transformers==5.24.0 onnx==1.23.2 onnxscript==0.7.2
    /tmp/exportvenv/bin/python models/export_real_models.py              # all
    /tmp/exportvenv/bin/python models/export_real_models.py resnet18 gpt2
    /tmp/exportvenv/bin/python models/export_real_models.py --out-dir /tmp/x
    /tmp/exportvenv/bin/python models/export_real_models.py --check-only

``--check-only`` only loads and summarises existing files (needs only
``onnx``). Exporting everything takes about five minutes on 2 CPU cores and a
few GB of RAM.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import logging
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx

if TYPE_CHECKING:
    import torch

#: Fixed seed so re-exports are reproducible.
SEED = 0
#: Static sequence length of the transformer models.
SEQ_LEN = 128
#: GPT-2's full context (``n_positions``), for the long-sequence decoder.
GPT2_CONTEXT = 1024
#: Whisper's 30 s log-mel window: 80 mel bins x 3000 frames (1500 positions
#: after the encoder's stride-2 convolution).
WHISPER_MEL_BINS = 80
WHISPER_FRAMES = 3000
#: Attention implementation for the Hugging Face models. ``"eager"`` gives the
#: classic MatMul -> scale -> mask Add -> Softmax -> MatMul pattern whose
#: shapes stay expressible in the symbolic ``batch``/``seq`` dims. The
#: transformers default, ``"sdpa"``, is decomposed by the exporter into extra
#: IsNaN/Where nodes and (with dynamic shapes) 3-D ``batch*heads`` reshapes
#: that ONNX shape inference can only name ``unk__N``.
ATTN_IMPLEMENTATION = "eager"
#: T5 keeps transformers' default, whose decomposed attention (with fixed shapes,
#: so nothing is left unnamed) is what a user exporting T5 gets, and whose L2
#: region the placement heuristics alone leave about 10% above its bound.
T5_ATTN_IMPLEMENTATION = "sdpa"
#: Opset of the TorchScript exports (that exporter's default is older than dynamo's).
TORCHSCRIPT_OPSET = 17
#: Default for ``--inline-int-elems``: integer/bool initializers up to this
#: many elements stay inline (see the module docstring).
INLINE_INT_ELEMS = 1 << 22
#: A stripped model should be tiny; warn above these sizes.
WARN_BYTES = 1 << 20
MAX_BYTES = 2 << 20

BERT_VOCAB = 30522
T5_VOCAB = 32128
#: The U-Net: 4 levels from 32 channels (512 at the bottleneck), 256x256 RGB in.
UNET_BASE = 32
UNET_LEVELS = 4
UNET_SIZE = 256
UNET_CLASSES = 2
GPT2_VOCAB = 50257


@dataclasses.dataclass(frozen=True)
class Export:
    """Everything ``torch.onnx.export`` needs for one network."""

    module: torch.nn.Module
    args: tuple[Any, ...]
    input_names: list[str]
    output_names: list[str]
    dynamic_shapes: dict[str, Any] | None = None
    #: False: the TorchScript exporter (``dynamo=False``), whose graphs differ from
    #: dynamo's -- no ``value_info``, ``Identity`` for shared weights, shapes computed
    #: in-graph -- and which tierplan must read as well.
    dynamo: bool = True


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A named network and how to build its :class:`Export`."""

    name: str
    description: str
    build: Callable[[], Export]


def _torchvision(arch: str) -> Callable[[], Export]:
    """Return a builder for a randomly initialised torchvision classifier."""

    def build() -> Export:
        import torch
        import torchvision

        module = getattr(torchvision.models, arch)(weights=None).eval()
        image = torch.randn(1, 3, 224, 224)
        return Export(module, (image,), ["input"], ["logits"])

    return build


# The Hugging Face wrappers take positional tensors and return plain tuples,
# so the ONNX graph gets stable input/output names instead of names of
# flattened ModelOutput fields. They are built inside functions because
# torch is an optional dependency of this module.


def _bert_module() -> torch.nn.Module:
    """``BertModel(BertConfig())`` (bert-base: 12 layers, 768 hidden) in eval mode."""
    import torch
    from transformers import BertConfig, BertModel

    class BertWrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = BertModel(BertConfig())
            self.bert.set_attn_implementation(ATTN_IMPLEMENTATION)

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
            return out.last_hidden_state, out.pooler_output

    return BertWrapper().eval()


def _gpt2_module() -> torch.nn.Module:
    """``GPT2Model(GPT2Config())`` (gpt2-small) without KV cache, in eval mode."""
    import torch
    from transformers import GPT2Config, GPT2Model

    class GPT2Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gpt2 = GPT2Model(GPT2Config(use_cache=False))
            self.gpt2.set_attn_implementation(ATTN_IMPLEMENTATION)

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            out = self.gpt2(input_ids=input_ids, use_cache=False, return_dict=True)
            hidden: torch.Tensor = out.last_hidden_state
            return hidden

    return GPT2Wrapper().eval()


def _whisper_tiny_encoder_module() -> torch.nn.Module:
    """The encoder of ``WhisperModel`` at whisper-tiny's sizes, in eval mode."""
    import torch
    from transformers import WhisperConfig, WhisperModel

    config = WhisperConfig(
        d_model=384,
        encoder_layers=4,
        encoder_attention_heads=6,
        encoder_ffn_dim=1536,
        decoder_layers=4,
        decoder_attention_heads=6,
        decoder_ffn_dim=1536,
        num_mel_bins=WHISPER_MEL_BINS,
        max_source_positions=WHISPER_FRAMES // 2,
    )

    class WhisperEncoderWrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            whisper = WhisperModel(config)
            whisper.set_attn_implementation(ATTN_IMPLEMENTATION)
            self.encoder = whisper.get_encoder()

        def forward(self, input_features: torch.Tensor) -> torch.Tensor:
            out = self.encoder(input_features=input_features, return_dict=True)
            hidden: torch.Tensor = out.last_hidden_state
            return hidden

    return WhisperEncoderWrapper().eval()


def _token_inputs(batch: int, seq: int, vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ``input_ids`` and an all-ones ``attention_mask``."""
    import torch

    input_ids = torch.randint(0, vocab, (batch, seq), dtype=torch.long)
    attention_mask = torch.ones(batch, seq, dtype=torch.long)
    return input_ids, attention_mask


def _bert_static() -> Export:
    return Export(
        _bert_module(),
        _token_inputs(1, SEQ_LEN, BERT_VOCAB),
        ["input_ids", "attention_mask"],
        ["last_hidden_state", "pooler_output"],
    )


def _bert_dynamic() -> Export:
    from torch.export import Dim

    batch = Dim("batch", min=1, max=1024)
    seq = Dim("seq", min=2, max=512)  # BERT has 512 position embeddings.
    dims = {0: batch, 1: seq}
    return Export(
        _bert_module(),
        # Example sizes must not be 0 or 1, or torch.export specialises them.
        _token_inputs(2, SEQ_LEN, BERT_VOCAB),
        ["input_ids", "attention_mask"],
        ["last_hidden_state", "pooler_output"],
        dynamic_shapes={"input_ids": dims, "attention_mask": dims},
    )


def _gpt2_static() -> Export:
    input_ids, _ = _token_inputs(1, SEQ_LEN, GPT2_VOCAB)
    return Export(_gpt2_module(), (input_ids,), ["input_ids"], ["last_hidden_state"])


def _gpt2_long() -> Export:
    input_ids, _ = _token_inputs(1, GPT2_CONTEXT, GPT2_VOCAB)
    return Export(_gpt2_module(), (input_ids,), ["input_ids"], ["last_hidden_state"])


def _gpt2_dynamic() -> Export:
    """GPT-2 small with a symbolic ``seq`` (1..1024), for symbolic plans (issue 19)."""
    from torch.export import Dim

    seq = Dim("seq", min=2, max=GPT2_CONTEXT)
    # The example length must not be 0 or 1, or torch.export specialises it.
    input_ids, _ = _token_inputs(1, SEQ_LEN, GPT2_VOCAB)
    return Export(
        _gpt2_module(),
        (input_ids,),
        ["input_ids"],
        ["last_hidden_state"],
        dynamic_shapes={"input_ids": {1: seq}},
    )


def _whisper_tiny_encoder() -> Export:
    import torch

    features = torch.randn(1, WHISPER_MEL_BINS, WHISPER_FRAMES)
    return Export(
        _whisper_tiny_encoder_module(), (features,), ["input_features"], ["last_hidden_state"]
    )


def _randwire_module(channels: int = 109, nodes: int = 32, seed: int = SEED) -> torch.nn.Module:
    """RandWire-WS(4, 0.75), regular regime (Xie et al., ICCV 2019), built from the paper.

    A 3x3 stride-2 convolution, then four stages of random graphs (16, 32, 32, 32
    nodes; channels C, 2C, 4C, 8C), a 1x1 convolution to 1280 channels, global
    pooling and a classifier. Each stage's graph is a Watts-Strogatz graph oriented
    from lower to higher node index; a node sums its inputs weighted by
    sigmoid(w), then runs ReLU, a separable 3x3 convolution and BatchNorm; input
    nodes read the stage input with stride 2 and the stage output averages the
    output nodes. The forward pass runs nodes in index order, as the paper's code
    does: a valid order, but not one chosen for memory, which is what makes it a
    scheduling benchmark (Serenity, Ahn et al., MLSys 2020).
    """
    import networkx as nx
    import torch
    from torch import nn

    class NodeOp(nn.Module):
        def __init__(self, inputs: int, in_channels: int, out_channels: int, stride: int) -> None:
            super().__init__()
            self.weights = nn.Parameter(torch.zeros(inputs))
            self.depthwise = nn.Conv2d(
                in_channels, in_channels, 3, stride, 1, groups=in_channels, bias=False
            )
            self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)
            self.norm = nn.BatchNorm2d(out_channels)

        def forward(self, *xs: torch.Tensor) -> torch.Tensor:
            gates = torch.sigmoid(self.weights)
            total = xs[0] * gates[0]
            for i in range(1, len(xs)):
                total = total + xs[i] * gates[i]
            return self.norm(self.pointwise(self.depthwise(torch.relu(total))))

    class Stage(nn.Module):
        def __init__(self, count: int, in_channels: int, out_channels: int, seed: int) -> None:
            super().__init__()
            graph = nx.watts_strogatz_graph(count, 4, 0.75, seed=seed)
            self.parents = [sorted(u for u in graph.neighbors(v) if u < v) for v in range(count)]
            self.outputs = [v for v in range(count) if not any(u > v for u in graph.neighbors(v))]
            self.ops = nn.ModuleList(
                NodeOp(len(p) or 1, out_channels if p else in_channels, out_channels, 1 if p else 2)
                for p in self.parents
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            states: list[torch.Tensor] = []
            for op, parents in zip(self.ops, self.parents, strict=True):
                states.append(op(*[states[u] for u in parents]) if parents else op(x))
            total = states[self.outputs[0]]
            for v in self.outputs[1:]:
                total = total + states[v]
            return total / len(self.outputs)

    class RandWire(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            c = channels
            self.stem = nn.Sequential(
                nn.Conv2d(3, c // 2, 3, 2, 1, bias=False), nn.BatchNorm2d(c // 2)
            )
            sizes = [(nodes // 2, c // 2, c), (nodes, c, 2 * c), (nodes, 2 * c, 4 * c)]
            sizes.append((nodes, 4 * c, 8 * c))
            self.stages = nn.Sequential(
                *(Stage(n, i, o, seed + k) for k, (n, i, o) in enumerate(sizes))
            )
            self.head = nn.Sequential(
                nn.ReLU(), nn.Conv2d(8 * c, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU()
            )
            self.classifier = nn.Linear(1280, 1000)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            features = self.head(self.stages(self.stem(x)))
            return self.classifier(features.mean(dim=(2, 3)))

    torch.manual_seed(seed)
    return RandWire().eval()


def _randwire() -> Export:
    import torch

    return Export(_randwire_module(), (torch.randn(1, 3, 224, 224),), ["input"], ["logits"])


def _t5_encoder_module() -> torch.nn.Module:
    """``T5EncoderModel(T5Config())`` (t5-small's encoder: 6 layers, 512 hidden), eval mode."""
    import torch
    from transformers import T5Config, T5EncoderModel

    class T5EncoderWrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.t5 = T5EncoderModel(T5Config())
            self.t5.set_attn_implementation(T5_ATTN_IMPLEMENTATION)

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            out = self.t5(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
            hidden: torch.Tensor = out.last_hidden_state
            return hidden

    return T5EncoderWrapper().eval()


def _t5_encoder() -> Export:
    return Export(
        _t5_encoder_module(),
        _token_inputs(1, SEQ_LEN, T5_VOCAB),
        ["input_ids", "attention_mask"],
        ["last_hidden_state"],
        dynamo=False,
    )


def _unet_module(base: int = UNET_BASE, levels: int = UNET_LEVELS) -> torch.nn.Module:
    """The classic U-Net (Ronneberger et al., 2015), scaled down: ``levels`` encoder
    levels of two 3x3 convolutions (BatchNorm, ReLU) doubling the channels from
    ``base``, a bottleneck, and a decoder that upsamples with a 2x2 transposed
    convolution and concatenates the encoder's output of the same level (the skip)
    before its two convolutions; a 1x1 convolution gives the class map. The skips
    live from the encoder to the decoder: what recomputation is for."""
    from torch import nn

    def double_conv(inputs: int, outputs: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(inputs, outputs, 3, padding=1, bias=False),
            nn.BatchNorm2d(outputs),
            nn.ReLU(inplace=True),
            nn.Conv2d(outputs, outputs, 3, padding=1, bias=False),
            nn.BatchNorm2d(outputs),
            nn.ReLU(inplace=True),
        )

    class UNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            widths = [base * 2**level for level in range(levels + 1)]
            self.down = nn.ModuleList(
                double_conv(i, o) for i, o in zip([3, *widths[:-2]], widths[:-1], strict=True)
            )
            self.pool = nn.MaxPool2d(2)
            self.bottleneck = double_conv(widths[-2], widths[-1])
            self.up = nn.ModuleList(
                nn.ConvTranspose2d(widths[level + 1], widths[level], 2, stride=2)
                for level in reversed(range(levels))
            )
            self.merge = nn.ModuleList(
                double_conv(2 * widths[level], widths[level]) for level in reversed(range(levels))
            )
            self.head = nn.Conv2d(base, UNET_CLASSES, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            import torch

            skips = []
            for block in self.down:
                x = block(x)
                skips.append(x)
                x = self.pool(x)
            x = self.bottleneck(x)
            for up, merge, skip in zip(self.up, self.merge, reversed(skips), strict=True):
                x = merge(torch.cat([skip, up(x)], dim=1))
            out: torch.Tensor = self.head(x)
            return out

    return UNet().eval()


def _unet() -> Export:
    import torch

    image = torch.randn(1, 3, UNET_SIZE, UNET_SIZE)
    return Export(_unet_module(), (image,), ["input"], ["logits"])


SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("resnet18", "torchvision resnet18, 1x3x224x224", _torchvision("resnet18")),
        ModelSpec("resnet50", "torchvision resnet50, 1x3x224x224", _torchvision("resnet50")),
        ModelSpec(
            "mobilenet_v2",
            "torchvision mobilenet_v2, 1x3x224x224",
            _torchvision("mobilenet_v2"),
        ),
        ModelSpec("googlenet", "torchvision googlenet, 1x3x224x224", _torchvision("googlenet")),
        ModelSpec(
            "densenet121", "torchvision densenet121, 1x3x224x224", _torchvision("densenet121")
        ),
        ModelSpec("randwire_ws", "RandWire-WS(4, 0.75) regular C=109, 1x3x224x224", _randwire),
        ModelSpec("bert_base", f"HF BertModel(BertConfig()), 1x{SEQ_LEN}", _bert_static),
        ModelSpec("gpt2", f"HF GPT2Model(GPT2Config()), 1x{SEQ_LEN}", _gpt2_static),
        ModelSpec(
            "bert_base_dynamic",
            "HF BertModel(BertConfig()), symbolic batch x seq",
            _bert_dynamic,
        ),
        ModelSpec(
            "whisper_tiny_encoder",
            f"HF Whisper encoder at whisper-tiny sizes, 1x{WHISPER_MEL_BINS}x{WHISPER_FRAMES}",
            _whisper_tiny_encoder,
        ),
        ModelSpec("gpt2_seq1024", f"HF GPT2Model(GPT2Config()), 1x{GPT2_CONTEXT}", _gpt2_long),
        ModelSpec("gpt2_dynamic", "HF GPT2Model(GPT2Config()), 1 x symbolic seq", _gpt2_dynamic),
        ModelSpec("vit_b_16", "torchvision vit_b_16, 1x3x224x224", _torchvision("vit_b_16")),
        ModelSpec(
            "t5_encoder",
            f"HF T5EncoderModel(T5Config()) (t5-small), TorchScript exporter, 1x{SEQ_LEN}",
            _t5_encoder,
        ),
        ModelSpec(
            "unet_classic",
            f"U-Net, {UNET_LEVELS} levels from {UNET_BASE} channels, 1x3x{UNET_SIZE}x{UNET_SIZE}",
            _unet,
        ),
    )
}


def export_model(
    spec: ModelSpec,
    out_dir: Path,
    opset: int | None = None,
    inline_int_elems: int = INLINE_INT_ELEMS,
) -> Path:
    """Export ``spec`` to ``out_dir/<name>.onnx`` with its weights stripped."""
    import torch

    # Benign noise: failed constant-folding attempts, and the note that the two
    # inputs share the "batch"/"seq" dims (the names are kept regardless).
    logging.getLogger("onnxscript.optimizer._constant_folding").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r".*The axis name: .* will not be used")

    torch.manual_seed(SEED)
    job = spec.build()
    _perturb_state(job.module)
    with torch.no_grad():
        model = _dynamo_export(job, opset) if job.dynamo else _torchscript_export(job, opset)
    _strip_metadata(model)
    model.doc_string = f"tierplan test model (weights stripped): {spec.description}"
    path = out_dir / f"{spec.name}.onnx"
    save_stripped(model, path, inline_int_elems)
    return path


def _dynamo_export(job: Export, opset: int | None) -> onnx.ModelProto:
    import torch

    program = torch.onnx.export(
        job.module,
        job.args,
        dynamo=True,
        input_names=job.input_names,
        output_names=job.output_names,
        dynamic_shapes=job.dynamic_shapes,
        opset_version=opset,
        optimize=True,
        verbose=False,
    )
    if program is None:  # pragma: no cover - only for the legacy exporter
        raise RuntimeError("the dynamo exporter returned no program")
    return program.model_proto


def _torchscript_export(job: Export, opset: int | None) -> onnx.ModelProto:
    """Export with the TorchScript exporter (fixed shapes, constant folding on)."""
    import io

    import torch

    if job.dynamic_shapes is not None:
        raise ValueError("the TorchScript exports here have fixed shapes")
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # Its deprecation notice and tracer warnings about Python control flow on
        # shapes: the shapes are fixed, so the traced branch is the one taken.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            job.module,
            job.args,
            buffer,
            dynamo=False,
            input_names=job.input_names,
            output_names=job.output_names,
            opset_version=opset or TORCHSCRIPT_OPSET,
            do_constant_folding=True,
        )
    return onnx.load_model_from_string(buffer.getvalue())


def _perturb_state(module: torch.nn.Module) -> None:
    """Nudge every floating-point parameter and buffer by small random noise.

    Fresh initialisations are full of exact zeros and ones (BatchNorm and
    LayerNorm affine terms, running statistics, biases). The exporter's
    optimizer would fold those away -- e.g. a Conv with BatchNorm fused in
    loses its all-zero bias -- giving graphs that a trained checkpoint would
    never produce. Noise keeps the graph structure value-independent.
    """
    import torch

    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            if not tensor.is_floating_point():
                continue
            # Strictly positive noise: moves exact 0/1 away, keeps variances > 0.
            tensor.add_(torch.rand_like(tensor) * 0.01 + 0.001)


#: Node metadata worth keeping: the module path a node came from. Stack
#: traces, FX node dumps and rewrite-rule names only bloat the file and embed
#: the exporting machine's paths.
_KEPT_NODE_METADATA = frozenset({"namespace"})


def _strip_metadata(model: onnx.ModelProto) -> None:
    """Drop bulky, machine-specific per-node metadata in place."""
    for container in (model.graph, *model.functions):
        for node in container.node:
            kept = [p for p in node.metadata_props if p.key in _KEPT_NODE_METADATA]
            del node.metadata_props[:]
            node.metadata_props.extend(kept)
            node.doc_string = ""


#: Integer and boolean element types: shape constants, indices and masks.
_INDEX_TYPES = frozenset(
    {
        onnx.TensorProto.INT8,
        onnx.TensorProto.INT16,
        onnx.TensorProto.INT32,
        onnx.TensorProto.INT64,
        onnx.TensorProto.UINT8,
        onnx.TensorProto.UINT16,
        onnx.TensorProto.UINT32,
        onnx.TensorProto.UINT64,
        onnx.TensorProto.BOOL,
    }
)


def _keep_inline(tensor: onnx.TensorProto, inline_int_elems: int) -> bool:
    """Whether ``tensor`` is a constant (structure, not a weight) to keep in the file:
    an integer/bool tensor, or a single float (an exponent, epsilon, scale or fill value)."""
    elems = 1
    for dim in tensor.dims:
        elems *= dim
    if inline_int_elems <= 0:
        return False
    return (tensor.data_type in _INDEX_TYPES and elems <= inline_int_elems) or elems <= 1


def save_stripped(
    model: onnx.ModelProto, path: Path, inline_int_elems: int = INLINE_INT_ELEMS
) -> None:
    """Save ``model`` with initializer data external, then delete that data.

    Every initializer is written to ``<stem>.weights`` -- the equivalent of
    ``onnx.save_model(..., save_as_external_data=True, size_threshold=0)`` --
    except integer/bool initializers with at most ``inline_int_elems``
    elements, which stay inline when ``inline_int_elems > 0``: shape
    constants, position ids, indices and masks that neither shape inference
    nor a runner filling random weights could re-create. ``Constant`` nodes
    are always left inline. The weights file is deleted afterwards, so the
    saved model refers to an absent file.
    """
    from onnx import external_data_helper, numpy_helper

    weights = path.with_suffix(".weights")
    for stale in (path, weights):
        stale.unlink(missing_ok=True)
    for index, tensor in enumerate(model.graph.initializer):
        if _keep_inline(tensor, inline_int_elems):
            continue
        if not tensor.HasField("raw_data"):
            # Typed fields (float_data, int64_data, ...) -> raw_data, which is
            # the only form ONNX can move to an external file.
            tensor = numpy_helper.from_array(numpy_helper.to_array(tensor), tensor.name)
            model.graph.initializer[index].CopyFrom(tensor)
            tensor = model.graph.initializer[index]
        external_data_helper.set_external_data(tensor, weights.name)
    onnx.save_model(model, str(path))  # writes the marked tensors to `weights`
    weights.unlink(missing_ok=True)


@dataclasses.dataclass(frozen=True)
class Stats:
    """Summary of one stripped model, as checked by :func:`inspect_model`."""

    name: str
    size_bytes: int
    opset: int
    nodes: int
    initializers: int
    external_initializers: int
    external_non_float: list[str]
    value_infos: int
    non_static_value_infos: int
    non_static_outputs: int
    non_static_outputs_from_scratch: int
    unknown_outputs: int
    dim_params: list[str]
    graph_inputs: list[str]
    graph_outputs: list[str]
    op_types: dict[str, int]


def _dim_str(dim: onnx.TensorShapeProto.Dimension) -> str:
    if dim.HasField("dim_value"):
        return str(dim.dim_value)
    return dim.dim_param or "?"


def _shape_str(value: onnx.ValueInfoProto) -> str:
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        return f"{value.name}[?]"
    return f"{value.name}[{','.join(_dim_str(d) for d in tensor.shape.dim)}]"


def _is_static(value: onnx.ValueInfoProto) -> bool:
    tensor = value.type.tensor_type
    return tensor.HasField("shape") and all(d.HasField("dim_value") for d in tensor.shape.dim)


def _non_static_outputs(graph: onnx.GraphProto) -> int:
    """Count node outputs whose shape is missing or not fully static."""
    known = {v.name: v for v in (*graph.input, *graph.value_info, *graph.output)}
    outputs = [o for node in graph.node for o in node.output if o]
    return sum(1 for o in outputs if o not in known or not _is_static(known[o]))


def _has_unknown_dim(value: onnx.ValueInfoProto | None) -> bool:
    """Whether ``value`` lacks a shape or has a dim that is neither value nor name."""
    if value is None or not value.type.tensor_type.HasField("shape"):
        return True
    dims = value.type.tensor_type.shape.dim
    return any(not (d.HasField("dim_value") or d.dim_param) for d in dims)


def _unknown_outputs(graph: onnx.GraphProto) -> int:
    """Count node outputs whose shape is missing or has an unknown dim."""
    known = {v.name: v for v in (*graph.input, *graph.value_info, *graph.output)}
    outputs = [o for node in graph.node for o in node.output if o]
    return sum(1 for o in outputs if _has_unknown_dim(known.get(o)))


def _dim_params(graph: onnx.GraphProto) -> list[str]:
    """All symbolic dimension names used by the graph's values."""
    values = (*graph.input, *graph.value_info, *graph.output)
    return sorted(
        {d.dim_param for v in values for d in v.type.tensor_type.shape.dim if d.dim_param}
    )


def inspect_model(path: Path) -> Stats:
    """Load ``path`` without external data, run shape inference, summarise.

    Besides inference on the file as saved (which keeps the exporter's own
    ``value_info``), inference is rerun "from scratch" on a copy without any
    ``value_info`` to see what ONNX derives on its own from the inputs and
    whatever constants kept their data.
    """
    if path.with_suffix(".weights").exists():
        raise RuntimeError(f"{path}: weights file still present")
    model = onnx.load(str(path), load_external_data=False)
    graph = onnx.shape_inference.infer_shapes(model, data_prop=True).graph
    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    del bare.graph.value_info[:]
    bare_graph = onnx.shape_inference.infer_shapes(bare, data_prop=True).graph
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    external = [t for t in graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    return Stats(
        name=path.stem,
        size_bytes=path.stat().st_size,
        opset=opset,
        nodes=len(graph.node),
        initializers=len(graph.initializer),
        external_initializers=len(external),
        external_non_float=[t.name for t in external if t.data_type in _INDEX_TYPES],
        value_infos=len(graph.value_info),
        non_static_value_infos=sum(1 for v in graph.value_info if not _is_static(v)),
        non_static_outputs=_non_static_outputs(graph),
        non_static_outputs_from_scratch=_non_static_outputs(bare_graph),
        unknown_outputs=_unknown_outputs(graph),
        dim_params=_dim_params(graph),
        graph_inputs=[_shape_str(v) for v in graph.input],
        graph_outputs=[_shape_str(v) for v in graph.output],
        op_types=dict(sorted(collections.Counter(n.op_type for n in graph.node).items())),
    )


def _report(stats: Stats) -> None:
    size_note = ""
    if stats.size_bytes > MAX_BYTES:
        size_note = "  (WARNING: over 2 MB)"
    elif stats.size_bytes > WARN_BYTES:
        size_note = "  (note: over 1 MB)"
    print(f"== {stats.name}.onnx  {stats.size_bytes / 1024:.1f} KiB{size_note}")
    print(
        f"   opset {stats.opset}, {stats.nodes} nodes, {stats.initializers} initializers "
        f"({stats.external_initializers} external)"
    )
    if stats.external_non_float:
        # A runner can fill stripped float weights at random, not these.
        print(
            f"   WARNING: integer/bool initializers stripped: {', '.join(stats.external_non_float)}"
        )
    print(f"   inputs: {', '.join(stats.graph_inputs)}")
    print(f"   outputs: {', '.join(stats.graph_outputs)}")
    print(
        f"   value_info: {stats.value_infos}, not fully static: "
        f"{stats.non_static_value_infos}; node outputs not static: "
        f"{stats.non_static_outputs} (from scratch: {stats.non_static_outputs_from_scratch})"
    )
    if stats.dim_params:
        print(
            f"   symbolic dims: {', '.join(stats.dim_params)}; node outputs with an "
            f"unknown dim or rank: {stats.unknown_outputs}"
        )
    print(f"   ops: {', '.join(f'{k}x{v}' for k, v in stats.op_types.items())}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "models",
        nargs="*",
        metavar="MODEL",
        help=f"models to export (default: all of {', '.join(SPECS)})",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=Path(__file__).resolve().parent / "real",
        help="output directory (default: models/real next to this script)",
    )
    parser.add_argument(
        "--opset",
        type=int,
        default=None,
        help="ONNX opset to target (default: the exporter's default)",
    )
    parser.add_argument(
        "--inline-int-elems",
        type=int,
        default=INLINE_INT_ELEMS,
        metavar="N",
        help="keep integer/bool initializers with at most N elements inline "
        f"(model structure, not weights; default {INLINE_INT_ELEMS}); "
        "0 strips every initializer",
    )
    parser.add_argument(
        "--check-only",
        action="store_true",
        help="only load and summarise existing files; do not export",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    names: list[str] = list(args.models) or list(SPECS)
    unknown = sorted(set(names) - set(SPECS))
    if unknown:
        print(
            f"unknown model(s): {', '.join(unknown)}; choose from {', '.join(SPECS)}",
            file=sys.stderr,
        )
        return 2
    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    failed: list[str] = []
    for name in names:
        path = out_dir / f"{name}.onnx"
        if not args.check_only:
            print(f"-- exporting {name} ...", flush=True)
            try:
                export_model(SPECS[name], out_dir, args.opset, args.inline_int_elems)
            except Exception as exc:  # report it and go on with the others
                print(f"!! {name}: export failed: {type(exc).__name__}: {exc}")
                failed.append(name)
                continue
        _report(inspect_model(path))
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
