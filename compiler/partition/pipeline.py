"""Pipeline partitioning: contiguous stages of the schedule, cut points chosen exactly.

Stage ``d`` runs schedule positions ``[cuts[d], cuts[d + 1])`` on device ``d``. For
every possible stage ``[i, j]`` :func:`stage_tables` computes, with the rules of
:mod:`~tierplan.compiler.partition.costs` (so it equals
:func:`~tierplan.compiler.partition.costs.assignment_cost` of any pipeline
containing that stage):

- ``memory[i, j]``: the device's weights plus the max-live of its activations, the
  tensors homed in the stage (live as without cuts, by the liveness rules) and the
  copies of tensors homed before ``i`` (live from their first to their last reader in the stage);
- ``seconds[i, j]``: its operators' time plus the time to receive its copies;
- ``incoming[i, j]``: the bytes of those copies.

A stage starts at one of :func:`cut_candidates` positions: every position on graphs
up to 2,000 operators (the DP is then exact over all cuts), else about
``CUT_WORK / n`` spread evenly, so that the tables cost O(CUT_WORK) time per
crossing tensor and O((CUT_WORK / n)²) memory, not O(n²).

:func:`best_cuts` then solves, by dynamic programming over (stages, prefix), the
lexicographic problem exactly: first the smallest possible maximum of the primary
measure over stages (memory, or time with ``balance="time"``), then, among cuts
reaching it, the smallest maximum of the other, then the fewest transferred bytes.
Each step is an exact min-max (or min-sum) DP under the thresholds found before,
which is why the three objectives are not folded into one tuple (a lexicographic
min-max does not decompose over prefixes).

Max-live of a stage: with ``H(s)`` the bytes alive at step ``s`` when nothing is
cut, the tensors made before ``i`` are subtracted, then each copy is added at the
steps between its first reader and its last reader up to ``j`` (so a row costs a
few vector operations per tensor crossing ``i``, see :func:`_activation_row`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from tierplan.compiler.intervals import live_bytes_per_step
from tierplan.compiler.partition.costs import PartitionProblem

Balance = Literal["memory", "time"]
INFEASIBLE = np.iinfo(np.int64).max // 4


CUT_WORK = 4_000_000
"""Largest operators x candidate start positions: every stage row costs a pass over
the operators after its start, so on a graph of n operators stages may start at
``CUT_WORK // n`` positions (at least :data:`MIN_CUTS`), spread evenly; graphs up to
2,000 operators keep every position, and the DP is exact over all cuts."""
MIN_CUTS = 64


@dataclass(frozen=True, slots=True)
class StageTables:
    """Cost of every stage ``[a, b]``: from ``starts[a]`` to the position before
    ``starts[b + 1]`` (the last operator for the last ``b``); ``a`` > ``b`` is not a
    stage (memory ``INFEASIBLE``). The DPs work on indices into ``starts``."""

    memory: np.ndarray
    seconds: np.ndarray
    incoming: np.ndarray
    starts: np.ndarray


def cut_candidates(size: int, limit: int | None = None) -> np.ndarray:
    """The positions a stage may start at: all of them up to ``limit`` (default from
    :data:`CUT_WORK`), else ``limit`` spread evenly (position 0 always among them)."""
    if limit is None:
        limit = max(MIN_CUTS, CUT_WORK // max(size, 1))
    if size <= limit:
        return np.arange(size, dtype=np.int64)
    return np.unique(np.arange(limit, dtype=np.int64) * size // limit)


def _live_without_cuts(problem: PartitionProblem) -> np.ndarray:
    ranges = np.column_stack((problem.start, problem.last, problem.tensor_bytes))
    return live_bytes_per_step(ranges, problem.size)


def _weight_rows(problem: PartitionProblem, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """``weights[a, b]``: bytes of the distinct weights read by the stage ``[a, b]``."""
    m = len(starts)
    table = np.zeros((m, m), dtype=np.int64)
    for size, steps in zip(problem.weight_bytes, problem.weight_readers, strict=True):
        if not steps:
            table[0, 0] += size  # read by nobody: kept on the first device
            continue
        # Counted once, in the column of the stage end reaching its first reader at
        # or after the stage's start.
        readers = np.asarray(steps, dtype=np.int64)
        first = np.searchsorted(readers, starts)
        reads = first < len(readers)
        column = np.searchsorted(ends, readers[np.minimum(first, len(readers) - 1)])
        table[np.flatnonzero(reads), column[reads]] += size
    return np.cumsum(table, axis=1)


def _activation_row(
    problem: PartitionProblem,
    start: int,
    live: np.ndarray,
    crossing: list[int],
    early: list[int],
) -> tuple[np.ndarray, np.ndarray]:
    """Max-live and received bytes of the stages ``[start, j]`` for every ``j``.

    At step ``s`` the copy of a crossing tensor counts once ``j`` reaches its next
    reader at or after ``s`` (``next_read``); so each step contributes its own value
    plus the sizes of the ``m`` copies with the nearest next readers from ``j`` =
    the ``m``-th nearest on, and the row is a running max of those contributions.
    An ``early`` tensor, live before its home step (a graph input, a Concat's output
    holding its parts), counts before that step only on its home device: once ``j``
    reaches it, as a copy whose next reader is its home step.
    """
    n = problem.size
    span = n - start
    base = live[start:].copy()
    received = np.zeros(span + 1, dtype=np.int64)
    steps = np.arange(start, n)
    next_reads, sizes = [], []
    for index in crossing:
        size = int(problem.tensor_bytes[index])
        base[: problem.last[index] - start + 1] -= size  # its home is an earlier stage
        readers = np.asarray(problem.readers[index], dtype=np.int64)
        later = readers[readers >= start]
        if not len(later):
            continue
        received[later[0] - start] += size
        position = np.searchsorted(later, steps)
        next_read = np.where(position < len(later), later[np.minimum(position, len(later) - 1)], n)
        next_reads.append(np.where(steps >= later[0], next_read, n) - start)
        sizes.append(size)
    for index in early:
        size = int(problem.tensor_bytes[index])
        home = int(problem.first[index])
        low = max(int(problem.start[index]), start)
        base[low - start : home - start] -= size
        next_reads.append(np.where((steps >= low) & (steps < home), home, n) - start)
        sizes.append(size)
    row = np.maximum.accumulate(base)
    if sizes:
        reads = np.array(next_reads)
        order = np.argsort(reads, axis=0, kind="stable")
        nearest = np.take_along_axis(reads, order, axis=0)
        added = np.cumsum(np.array(sizes, dtype=np.int64)[order], axis=0)
        floor = np.iinfo(np.int64).min
        for m in range(len(sizes)):
            reached = nearest[m] < span
            value = np.full(span, floor, dtype=np.int64)
            np.maximum.at(value, nearest[m][reached], (base + added[m])[reached])
            row = np.maximum(row, np.maximum.accumulate(value))
    return row, np.cumsum(received)[:-1]


def stage_tables(problem: PartitionProblem, limit: int | None = None) -> StageTables:
    """The memory, seconds and received bytes of every stage (see the module docstring),
    for stages starting at :func:`cut_candidates` positions."""
    n = problem.size
    starts = cut_candidates(n, limit)
    ends = np.append(starts[1:], n) - 1
    m = len(starts)
    live = _live_without_cuts(problem)
    memory = np.full((m, m), INFEASIBLE, dtype=np.int64)
    incoming = np.zeros((m, m), dtype=np.int64)
    weights = _weight_rows(problem, starts, ends)
    crossing: list[int] = []
    order = np.argsort(problem.first, kind="stable")
    early_ones = np.flatnonzero(problem.start < problem.first)
    added = 0
    for a, start in enumerate(starts.tolist()):
        # Tensors homed before `start` that are still alive there.
        while added < len(order) and problem.first[order[added]] < start:
            crossing.append(int(order[added]))
            added += 1
        crossing = [t for t in crossing if problem.last[t] >= start]
        early = [int(t) for t in early_ones if problem.first[t] > start]
        row, received = _activation_row(problem, start, live, crossing, early)
        memory[a, a:] = row[ends[a:] - start] + weights[a, a:]
        incoming[a, a:] = received[ends[a:] - start]
    prefix = np.concatenate([[0.0], np.cumsum(problem.op_seconds)])
    seconds = prefix[None, ends + 1] - prefix[starts, None] + incoming / problem.link_bandwidth
    seconds[np.tril_indices(m, -1)] = np.inf
    return StageTables(memory=memory, seconds=seconds, incoming=incoming, starts=starts)


def _min_max(cost: np.ndarray, allowed: np.ndarray, stages: int) -> list[float]:
    """``best[k]``: the smallest max stage cost splitting all operators into at most ``k``."""
    n = cost.shape[0]
    masked = np.where(allowed, cost.astype(np.float64), np.inf)
    prefix = np.full(n + 1, np.inf)
    prefix[0] = 0.0
    best = [np.inf]
    for _ in range(stages):
        reach = np.maximum(prefix[:n, None], masked).min(axis=0)
        prefix = np.minimum(prefix, np.concatenate([[np.inf], reach]))
        prefix[0] = 0.0
        best.append(float(prefix[n]))
    return best


def _min_sum_cuts(cost: np.ndarray, allowed: np.ndarray, stages: int) -> list[int]:
    """Stage starts of a split into at most ``stages`` allowed stages of least total cost."""
    n = cost.shape[0]
    masked = np.where(allowed, cost.astype(np.float64), np.inf)
    prefix = np.full(n + 1, np.inf)
    prefix[0] = 0.0
    choices = []
    for _ in range(stages):
        totals = prefix[:n, None] + masked
        choice = totals.argmin(axis=0)
        reach = totals[choice, np.arange(n)]
        better = reach < prefix[1:]
        prefix[1:] = np.where(better, reach, prefix[1:])
        choices.append(np.where(better, choice, -1))
    starts, end = [], n
    for choice in reversed(choices):
        if end == 0:
            break
        start = int(choice[end - 1])
        if start < 0:
            continue  # this prefix was already best with fewer stages
        starts.append(start)
        end = start
    return sorted(starts)


@dataclass(frozen=True, slots=True)
class PipelineCuts:
    """The chosen stage starts and the optimum of each objective."""

    starts: list[int]
    max_memory: int
    max_seconds: float
    transfer_bytes: int


def fewest_stages(tables: StageTables, capacity: int, limit: int) -> int | None:
    """The smallest number of stages (at most ``limit``) whose every stage fits ``capacity``."""
    limit = min(limit, len(tables.starts))  # more stages than start positions cannot help
    best = _min_max(tables.memory, tables.memory < INFEASIBLE, limit)
    return next((k for k in range(1, limit + 1) if best[k] <= capacity), None)


def best_cuts(
    tables: StageTables, stages: int, balance: Balance = "memory", capacity: int | None = None
) -> PipelineCuts:
    """The exact lexicographic optimum over all splits into at most ``stages`` stages.

    With ``balance="time"`` only stages within ``capacity`` are allowed (when some
    split satisfies it) and time comes first.
    """
    allowed = tables.memory < INFEASIBLE
    if balance == "time" and capacity is not None:
        fits = allowed & (tables.memory <= capacity)
        if _min_max(tables.memory, fits, stages)[stages] < np.inf:
            allowed = fits
    order = [tables.memory, tables.seconds]
    if balance == "time":
        order.reverse()
    for cost in order:
        optimum = _min_max(cost, allowed, stages)[stages]
        allowed = allowed & (cost <= optimum)
    starts = _min_sum_cuts(tables.incoming, allowed, stages)
    ends = [*starts[1:], tables.memory.shape[0]]
    spans = list(zip(starts, [e - 1 for e in ends], strict=True))
    return PipelineCuts(
        starts=[int(tables.starts[a]) for a in starts],
        max_memory=max(int(tables.memory[i, j]) for i, j in spans),
        max_seconds=max(float(tables.seconds[i, j]) for i, j in spans),
        transfer_bytes=sum(int(tables.incoming[i, j]) for i, j in spans),
    )
