"""Model-parallel partitioning: which device runs which operator (the ``partition`` pass).

- :mod:`.costs`: the problem (a scheduled IR reduced to op times, weights, tensor
  lifetimes) and the cost of any assignment: per-device peak, time, transfers;
- :mod:`.pipeline`: contiguous stages in schedule order, cut points by exact DP;
- :mod:`.graph`: free (non-contiguous) assignment minimising transferred bytes
  under a memory balance, with OR-Tools CP-SAT;
- :mod:`.transfers`: apply an assignment to the IR (devices, copies, transfers).
"""

from tierplan.compiler.partition.costs import (
    AssignmentCost,
    PartitionProblem,
    assignment_cost,
    build_problem,
)
from tierplan.compiler.partition.pipeline import (
    PipelineCuts,
    StageTables,
    best_cuts,
    fewest_stages,
    stage_tables,
)

__all__ = [
    "AssignmentCost",
    "PartitionProblem",
    "PipelineCuts",
    "StageTables",
    "assignment_cost",
    "best_cuts",
    "build_problem",
    "fewest_stages",
    "stage_tables",
]
