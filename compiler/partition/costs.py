"""What a device assignment costs: per-device peak memory, busy time and transfers.

:class:`PartitionProblem` is the scheduled IR reduced to what partitioning needs:
per operator (in schedule order) its estimated seconds and the weights it reads;
per non-weight tensor its bytes, its live range (:func:`~tierplan.compiler.liveness.live_range`,
the liveness pass's definition), its home step, its readers and whether it is a
graph output. Sizes are rounded up to the target's alignment, as ``pack`` places them.

:func:`assignment_cost` prices any assignment of operators to devices with the
rules the ``partition`` pass then applies to the IR:

- a tensor lives on its *home* device: its producer's, or for a graph input its
  first reader's; the home copy is live from the start of its live range until its
  last home reader, until the step before the first reader on each other device
  (where the transfer happens), or to the end for a graph output;
- each other device that reads it gets a copy by a transfer just before its first
  reader there, live until its last reader there; the bytes cross the link once
  per receiving device;
- a weight is stored on every device that reads it (a replica, loaded before the
  inference, never transferred).

The peak of a device is its weights plus the max-live of its activations (the
lower bound ``pack`` approaches; in-place reuse can go below it).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from tierplan.compiler.cost import operator_cost
from tierplan.compiler.intervals import max_live_bytes
from tierplan.compiler.ir import IRGraph
from tierplan.compiler.liveness import live_range
from tierplan.compiler.target import Target


@dataclass(frozen=True, slots=True)
class PartitionProblem:
    """The scheduled graph as partitioning sees it (indices are schedule positions).

    ``first[t]`` is the home step: the producer's, or a graph input's first reader
    (the step whose device holds the tensor); ``readers[t]`` the sorted distinct steps
    reading tensor ``t``; ``start[t]`` and ``last[t]`` its live range when nothing
    is cut (``start`` <= ``first``: a graph input is live from step 0).
    """

    op_names: list[str]
    op_seconds: np.ndarray
    weight_bytes: list[int]
    weight_readers: list[list[int]]
    tensor_names: list[str]
    tensor_bytes: np.ndarray
    first: np.ndarray
    start: np.ndarray
    last: np.ndarray
    readers: list[list[int]]
    graph_output: np.ndarray
    is_input: np.ndarray
    link_bandwidth: float

    @property
    def size(self) -> int:
        """Number of operators."""
        return len(self.op_names)


def build_problem(ir: IRGraph, target: Target) -> PartitionProblem:
    """Reduce a scheduled IR to a :class:`PartitionProblem`."""
    ops = ir.scheduled_operators()
    n = len(ops)
    step = {op.name: index for index, op in enumerate(ops)}
    seconds = np.array([operator_cost(ir, op, target).seconds for op in ops], dtype=np.float64)
    weight_bytes, weight_readers = [], []
    names, sizes, firsts, starts, lasts, readers, outputs, inputs = ([] for _ in range(8))
    for tensor in ir.tensors():
        steps = sorted({step[op.name] for op in ir.consumers(tensor.name)})
        size = target.align_up(tensor.nbytes)
        if tensor.kind == "weight":
            weight_bytes.append(size)
            weight_readers.append(steps)
            continue
        span = live_range(ir, tensor, n - 1)
        if span is None or tensor.scratch_of is not None:
            continue  # needs no buffer (an unread graph input), or moves with its operator
        produced = ir.has_producer(tensor.name)
        home = step[ir.producer(tensor.name).name] if produced else (steps or [0])[0]
        names.append(tensor.name)
        sizes.append(size)
        firsts.append(home)
        starts.append(span[0])
        lasts.append(span[1])
        readers.append(steps)
        outputs.append(tensor.graph_output)
        inputs.append(not produced)
    return PartitionProblem(
        op_names=[op.name for op in ops],
        op_seconds=seconds,
        weight_bytes=weight_bytes,
        weight_readers=weight_readers,
        tensor_names=names,
        tensor_bytes=np.array(sizes, dtype=np.int64),
        first=np.array(firsts, dtype=np.int64),
        start=np.array(starts, dtype=np.int64),
        last=np.array(lasts, dtype=np.int64),
        readers=readers,
        graph_output=np.array(outputs, dtype=bool),
        is_input=np.array(inputs, dtype=bool),
        link_bandwidth=target.link_bandwidth,
    )


@dataclass(frozen=True, slots=True)
class AssignmentCost:
    """Estimated cost of one assignment of operators to ``devices`` devices."""

    peak_bytes: list[int]
    weight_bytes: list[int]
    seconds: list[float]
    transfer_bytes: dict[tuple[int, int], int] = field(default_factory=dict)

    @property
    def max_peak(self) -> int:
        """The largest per-device peak."""
        return max(self.peak_bytes)

    @property
    def max_seconds(self) -> float:
        """The slowest device's busy time: the pipeline's time per inference."""
        return max(self.seconds)

    @property
    def total_transfer(self) -> int:
        """Bytes sent over all links per inference."""
        return sum(self.transfer_bytes.values())


def assignment_cost(problem: PartitionProblem, device: np.ndarray, devices: int) -> AssignmentCost:
    """Price the assignment ``device[step]`` (see the module docstring for the rules)."""
    n = problem.size
    spans: dict[int, list[tuple[int, int, int]]] = defaultdict(list)  # per device
    incoming = np.zeros(devices, dtype=np.int64)
    transfers: dict[tuple[int, int], int] = defaultdict(int)
    for index, steps in enumerate(problem.readers):
        size = int(problem.tensor_bytes[index])
        first = int(problem.first[index])
        home = int(device[first])
        by_device: dict[int, list[int]] = defaultdict(list)
        for reader in steps:
            by_device[int(device[reader])].append(reader)
        # The live range's rules on the home device once the other devices' readers
        # read copies: the transfers become its readers.
        end = max([first, *by_device.pop(home, [])])
        if problem.graph_output[index]:
            end = n - 1
        for other, reads in by_device.items():
            end = max(end, reads[0] - 1)
            spans[other].append((reads[0], reads[-1], size))
            incoming[other] += size
            transfers[(home, other)] += size
        spans[home].append((int(problem.start[index]), end, size))
    activation = [max_live_bytes(spans[d]) for d in range(devices)]
    weights = [0] * devices
    for size, steps in zip(problem.weight_bytes, problem.weight_readers, strict=True):
        for owner in {int(device[s]) for s in steps} or {0}:
            weights[owner] += size
    busy = np.bincount(device, weights=problem.op_seconds, minlength=devices)
    return AssignmentCost(
        peak_bytes=[int(weights[d] + activation[d]) for d in range(devices)],
        weight_bytes=weights,
        seconds=[float(busy[d] + incoming[d] / problem.link_bandwidth) for d in range(devices)],
        transfer_bytes=dict(sorted(transfers.items())),
    )
