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
  ``target.devices`` becomes that count (the :class:`PartitionReport` carries it;
  the context's target is left as it is); pipeline mode may leave devices idle when
  fewer stages are as good.
- ``mode``: ``pipeline`` (contiguous stages of the schedule, cut points by the
  exact DP of :mod:`tierplan.compiler.partition.pipeline`) or ``graph`` (any
  operator anywhere, fewest transferred bytes under a memory balance, CP-SAT:
  :mod:`tierplan.compiler.partition.graph`; ``solver_time``: its deterministic
  work limit, in CP-SAT's deterministic seconds).
- ``balance``: ``memory`` (minimise the largest device peak, then the slowest
  stage, then transferred bytes) or ``time`` (slowest stage first, within the
  memory capacity).

The result, a :class:`PartitionReport` (``context.result(Partition)``), is left when
the graph was split.

Ensures: every operator and tensor is on a device of the plan.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from tierplan.compiler.errors import PassFailure
from tierplan.compiler.inputs import MAX_DEVICES
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
from tierplan.compiler.pass_manager import (
    Bounds,
    PassContext,
    PassResult,
    PostconditionError,
    ResultPass,
    register_pass,
)
from tierplan.compiler.target import Target


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

    def planned_target(self, target: Target) -> Target:
        """``target`` with the chosen device count: the target the plan is for."""
        return dataclasses.replace(target, devices=self.devices)


@register_pass
@dataclass(frozen=True)
class Partition(ResultPass[PartitionReport]):
    """Split operators over devices: pipeline stages (exact DP) or a min-transfer graph cut."""

    name = "partition"
    requires = frozenset({"schedule", "liveness"})  # and keeps liveness valid: recomputes it
    provides = frozenset({"partition"})
    invalidates = frozenset({"placement", "evaluation"})

    devices: Literal["target", "auto"] | Annotated[int, Bounds(1, MAX_DEVICES)] = "target"
    mode: Literal["pipeline", "graph"] = "pipeline"
    balance: Literal["memory", "time"] = "memory"
    max_devices: Annotated[int, Bounds(1)] = 64
    solver_time: Annotated[float, Bounds(0)] = 1.0

    def ensures(self, ir: IRGraph, context: PassContext) -> None:
        """Every operator and tensor is on a device of the plan's target."""
        devices = context.planned_target().devices
        placed = [(op.name, op.device) for op in ir.operators()]
        placed += [(tensor.name, tensor.device) for tensor in ir.tensors()]
        for name, device in placed:
            if not 0 <= device < devices:
                raise PostconditionError(
                    f"{name!r} is on device {device}, outside 0..{devices - 1}"
                )

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
        context.set_result(
            self, PartitionReport(count, self.mode, estimate, single, len(transfers), optimal)
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
        return self.devices
