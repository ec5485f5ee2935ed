"""Graph partitioning: any operator on any device, fewest transferred bytes, memory-balanced.

For branchy graphs a contiguous cut of the schedule may cut many branches at once;
a free assignment can keep each branch on one device. The model:

- above ``EXACT_OPS`` operators, operators are first merged along chains (an
  operator whose outputs are all read by one single operator joins it, unless the
  hint separates them): a heuristic that shrinks the model, not an exact step;
- a tensor is a hyperedge over the clusters of its home operator and its readers;
  it costs ``bytes x (devices it touches - 1)``, exactly the transfers of
  :mod:`~tierplan.compiler.partition.costs`;
- each cluster weighs its weights plus its outputs' bytes, and every device's
  total must stay within ``capacity`` (the caller passes the pipeline split's
  largest total, so that split is always feasible and given as the solver's hint:
  the result never transfers more than the pipeline).

OR-Tools CP-SAT solves it: exactly when it proves optimality within its
deterministic time limit (small graphs), otherwise it returns the best assignment
it found, or the hint when that transfers no more. One worker and a deterministic time limit keep it reproducible.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass

import networkx as nx
import numpy as np
from ortools.sat.python import cp_model
from tierplan.compiler.partition.costs import PartitionProblem, assignment_cost

EXACT_OPS = 200
log = logging.getLogger(__name__)

# A safety cap only; the deterministic limit decides (CP-SAT's deterministic time runs
# many times slower than the clock on a loaded machine). Logged if it fires.
SOLVER_WALL_SECONDS = 900.0


@dataclass(frozen=True, slots=True)
class GraphSplit:
    """A free assignment of operators to devices and whether CP-SAT proved it optimal."""

    devices: np.ndarray
    optimal: bool
    clusters: int


def _clusters(problem: PartitionProblem, hint: np.ndarray) -> list[int]:
    """Cluster id of each operator: chains of single-successor operators, merged where
    the hint keeps them on one device (so the hint stays expressible)."""
    successors: dict[int, set[int]] = defaultdict(set)
    for first, readers in zip(problem.first, problem.readers, strict=True):
        successors[int(first)].update(r for r in readers if r != first)
    chains = nx.utils.UnionFind(range(problem.size))
    for op in range(problem.size):
        if len(successors[op]) == 1 and problem.size > EXACT_OPS:
            (successor,) = successors[op]
            if hint[op] == hint[successor]:
                chains.union(op, successor)
    roots: dict[int, int] = {}
    return [roots.setdefault(chains[op], len(roots)) for op in range(problem.size)]


def cluster_weights(problem: PartitionProblem, cluster: list[int]) -> list[int]:
    """Balance weight of each cluster: its weights' bytes plus its outputs' bytes."""
    weights = [0] * (max(cluster) + 1)
    for size, readers in zip(problem.weight_bytes, problem.weight_readers, strict=True):
        for reader in readers:
            weights[cluster[reader]] += size
    for size, first in zip(problem.tensor_bytes, problem.first, strict=True):
        weights[cluster[int(first)]] += int(size)
    return weights


def balance_load(problem: PartitionProblem, devices: np.ndarray, count: int) -> int:
    """The largest per-device total of :func:`cluster_weights` (per operator) under ``devices``."""
    loads = np.zeros(count, dtype=np.int64)
    single = list(range(problem.size))
    np.add.at(loads, devices, np.array(cluster_weights(problem, single), dtype=np.int64))
    return int(loads.max())


def graph_split(
    problem: PartitionProblem,
    count: int,
    capacity: int,
    hint: np.ndarray,
    deterministic_seconds: float = 1.0,
) -> GraphSplit:
    """Assign operators to ``count`` devices (see the module docstring).

    ``deterministic_seconds`` is CP-SAT's work limit, in its deterministic time.
    """
    cluster = _clusters(problem, hint)
    size = max(cluster) + 1
    weights = cluster_weights(problem, cluster)
    model = cp_model.CpModel()
    place = [[model.new_bool_var(f"x{c}_{d}") for d in range(count)] for c in range(size)]
    for c in range(size):
        model.add_exactly_one(place[c])
    model.add(place[cluster[0]][0] == 1)  # devices are interchangeable
    for d in range(count):
        model.add(sum(weights[c] * place[c][d] for c in range(size)) <= capacity)
    objective = []
    for nbytes, first, readers in zip(
        problem.tensor_bytes, problem.first, problem.readers, strict=True
    ):
        pins = sorted({cluster[int(first)], *(cluster[r] for r in readers)})
        if len(pins) < 2:
            continue
        for d in range(count):
            touched = model.new_bool_var("")
            for c in pins:
                model.add_implication(place[c][d], touched)
            objective.append(int(nbytes) * touched)
    model.minimize(sum(objective))
    hinted = {cluster[op]: int(hint[op]) for op in range(problem.size)}
    for c, d in hinted.items():
        for other in range(count):
            model.add_hint(place[c][other], other == d)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = 0
    solver.parameters.max_deterministic_time = deterministic_seconds
    solver.parameters.max_time_in_seconds = SOLVER_WALL_SECONDS
    status = solver.solve(model)
    if solver.wall_time >= SOLVER_WALL_SECONDS:
        log.warning(
            "CP-SAT hit its wall-clock safety cap (%.0f s): the result depends on the machine",
            SOLVER_WALL_SECONDS,
        )
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return GraphSplit(devices=hint.copy(), optimal=False, clusters=size)
    chosen = [next(d for d in range(count) if solver.value(place[c][d])) for c in range(size)]
    devices = np.array([chosen[cluster[op]] for op in range(problem.size)], dtype=np.int64)
    if status != cp_model.OPTIMAL and _moved(problem, devices, count) >= _moved(
        problem, hint, count
    ):
        # Out of time before it even reached the hint: the hint is the better answer.
        return GraphSplit(devices=hint.copy(), optimal=False, clusters=size)
    return GraphSplit(devices=devices, optimal=status == cp_model.OPTIMAL, clusters=size)


def _moved(problem: PartitionProblem, devices: np.ndarray, count: int) -> int:
    return assignment_cost(problem, devices, count).total_transfer
