"""What the fit search reads of a plan: its peaks and modelled latency, without the plan.

A screening compile stops after ``pack``: building the plan document, its lower
bounds and the ONNX-order bound (what ``evaluate`` adds) took about as long as
packing did, for numbers the search never reads. :func:`measure` computes the
ones it reads from the packed IR, as ``evaluate`` defines them (``peak_bytes``
over every buffer of a region, ``activation_peak_bytes`` over its non-weight
buffers from the lowest one, latency the sum of the operators' modelled times);
the chosen plan is compiled in full and measured by ``evaluate`` itself.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from tierplan.compiler.cost import estimate
from tierplan.compiler.evaluation import ACTIVATION_KINDS, Evaluation, device_times
from tierplan.compiler.ir import IRGraph
from tierplan.compiler.plan import region_key
from tierplan.compiler.target import Target


@dataclass(frozen=True, slots=True)
class Measures:
    """Peak bytes per ``"<device>/<tier>"`` (all buffers; activations only), latency,
    and the slowest device's busy seconds (a pipeline's stage; the latency on one device)."""

    peak_bytes: dict[str, int]
    activation_bytes: dict[str, int]
    latency_s: float
    stage_s: float

    @classmethod
    def of(cls, evaluation: Evaluation) -> Measures:
        """The measures ``evaluate`` computed."""
        return cls(
            dict(evaluation.peak_bytes),
            dict(evaluation.activation_peak_bytes),
            evaluation.latency_s,
            max(evaluation.device_seconds.values(), default=evaluation.latency_s),
        )


def measure(ir: IRGraph, target: Target) -> Measures:
    """The measures of a packed ``ir`` (every buffer has its tier and offset)."""
    ends: dict[str, int] = defaultdict(int)
    activation_ends: dict[str, int] = defaultdict(int)
    activation_floors: dict[str, int] = {}
    for tensor in ir.tensors():
        if not tensor.needs_buffer:
            continue
        assert tensor.tier is not None and tensor.offset is not None  # pack placed it
        key = region_key(tensor.device, tensor.tier)
        end = tensor.offset + tensor.nbytes
        ends[key] = max(ends[key], end)
        if tensor.kind in ACTIVATION_KINDS:
            activation_ends[key] = max(activation_ends[key], end)
            activation_floors[key] = min(activation_floors.get(key, tensor.offset), tensor.offset)
    activations = {key: end - activation_floors[key] for key, end in activation_ends.items()}
    costs = estimate(ir, target)
    latency = sum(cost.seconds for cost in costs)
    stage = max(device_times(ir, costs)[1].values(), default=latency)
    return Measures(dict(sorted(ends.items())), dict(sorted(activations.items())), latency, stage)
