"""``partition``: split the graph over several devices (model parallelism).

Reads: ``Operator.step`` (schedule), the graph, ``alias_of``, the target's device
count, link bandwidth and memory-tier capacity. Writes: ``Operator.device`` and
``Tensor.device`` of everything; at each cut a copy tensor (``copy_of``) and an
inserted ``Transfer`` operator (weights get a replica instead); new ``step``
numbers; ``start``/``end`` of every tensor (liveness is recomputed, tile buffers
follow their operator). With one device it changes nothing.

Options:

- ``devices``: a count, ``auto`` (the fewest devices, up to ``max_devices``, whose
  every device fits its memory tier, weights included, by the pipeline DP's
  estimate), or ``target`` (the target's ``devices``). The plan's
  ``target.devices`` becomes that count; pipeline mode may leave devices idle when
  fewer stages are as good.
- ``mode``: ``pipeline`` (contiguous stages of the schedule, cut points by the
  exact DP of :mod:`tierplan.compiler.partition.pipeline`) or ``graph`` (any
  operator anywhere, fewest transferred bytes under a memory balance, CP-SAT:
  :mod:`tierplan.compiler.partition.graph`; ``solver_time``: its deterministic
  work limit, in CP-SAT's deterministic seconds).
- ``balance``: ``memory`` (minimise the largest device peak, then the slowest
  stage, then transferred bytes) or ``time`` (slowest stage first, within the
  memory capacity).

The result, a :class:`PartitionReport`, goes in ``context.results["partition"]``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from tierplan.compiler.errors import PassFailure, PipelineError
from tierplan.compiler.inputs import MAX_DEVICES, integer_text
from tierplan.compiler.ir import IRGraph
from tierplan.compiler.liveness import live_range
from tierplan.compiler.partition import (
    AssignmentCost,
    assignment_cost,
    best_cuts,
    build_problem,
    fewest_stages,
    stage_tables,
)
from tierplan.compiler.partition.graph import balance_load, graph_split
from tierplan.compiler.partition.transfers import apply_assignment
from tierplan.compiler.pass_manager import Pass, PassContext, PassResult, register_pass

MODES = ("pipeline", "graph")
BALANCES = ("memory", "time")


@dataclass(frozen=True, slots=True)
class PartitionReport:
    """What the pass chose: device count, mode, estimated costs, the one-device baseline."""

    devices: int
    mode: str
    estimate: AssignmentCost
    single_device: AssignmentCost
    transfers: int
    proven_optimal: bool

    @property
    def ideal_peak(self) -> float:
        """The one-device peak divided by the device count: no split does better."""
        return self.single_device.max_peak / self.devices


@register_pass
@dataclass(frozen=True)
class Partition(Pass):
    """Split operators over devices: pipeline stages (exact DP) or a min-transfer graph cut."""

    name = "partition"
    requires = frozenset({"schedule", "liveness"})  # and keeps liveness valid: recomputes it
    provides = frozenset({"partition"})
    invalidates = frozenset({"placement", "evaluation"})

    devices: str = "target"
    mode: str = "pipeline"
    balance: str = "memory"
    max_devices: int = 64
    solver_time: float = 1.0

    def __post_init__(self) -> None:
        """Options are checked when the pipeline is built, before any pass runs."""
        if self.mode not in MODES or self.balance not in BALANCES:
            raise PipelineError(
                f"partition: mode must be one of {', '.join(MODES)} and balance one of "
                f"{', '.join(BALANCES)}, got mode={self.mode} balance={self.balance}"
            )
        if self.devices not in ("target", "auto"):
            self._count(1, True)

    def run(self, ir: IRGraph, context: PassContext) -> PassResult:
        """Assign devices, insert transfers, recompute live ranges."""
        target = context.target
        if self.devices == "target" and target.devices == 1:
            return PassResult(changed=False, notes=["one device: nothing to split"])
        problem = build_problem(ir, target)
        single = assignment_cost(problem, np.zeros(problem.size, dtype=np.int64), 1)
        capacity = target.memory_tier.capacity
        count = self._count(target.devices, single.max_peak <= capacity)
        if count == 1:
            return PassResult(changed=False, notes=["fits one device: nothing to split"])
        tables = stage_tables(problem)
        if count == 0:
            limit = min(self.max_devices, problem.size, MAX_DEVICES)
            fewest = fewest_stages(tables, capacity, limit)
            if fewest is None:
                raise PassFailure(
                    f"does not fit on {limit} devices: even split into {limit} pipeline stages "
                    f"a device needs more than its {target.memory_tier.name} capacity {capacity}"
                )
            count = fewest
        cuts = best_cuts(tables, count, "time" if self.balance == "time" else "memory", capacity)
        devices = np.zeros(problem.size, dtype=np.int64)
        for stage, start in enumerate(cuts.starts):
            devices[start:] = stage
        optimal = True
        if self.mode == "graph":
            capacity = balance_load(problem, devices, count)
            split = graph_split(problem, count, capacity, devices, self.solver_time)
            devices, optimal = split.devices, split.optimal
        estimate = assignment_cost(problem, devices, count)
        transfers = apply_assignment(ir, [int(d) for d in devices])
        last_step = ir.operator_count() - 1
        for tensor in ir.tensors():
            tensor.start, tensor.end = live_range(ir, tensor, last_step) or (None, None)
        context.target = dataclasses.replace(target, devices=count)
        context.results[self.name] = PartitionReport(
            count, self.mode, estimate, single, len(transfers), optimal
        )
        peaks = ", ".join(f"{peak / 2**30:.2f}" for peak in estimate.peak_bytes)
        return PassResult(
            changed=True,
            notes=[
                f"{count} devices ({self.mode}): estimated peaks [{peaks}] GiB "
                f"(ideal {single.max_peak / count / 2**30:.2f} GiB each), "
                f"{len(transfers)} transfers, {estimate.total_transfer} bytes"
            ],
        )

    def _count(self, target_devices: int, fits_one: bool) -> int:
        """The requested device count; 0 for ``auto`` when one device does not fit."""
        if self.devices == "target":
            return target_devices
        if self.devices == "auto":
            return 1 if fits_one else 0
        if not self.devices.isdigit():
            raise PipelineError(
                f"partition: devices must be a positive count, auto or target, got {self.devices!r}"
            )
        return integer_text(self.devices, "partition devices", 1, MAX_DEVICES)
