"""Running a plan: the model executed inside the plan's memory, checked against ONNX Runtime.

``run_plan`` (``tierplan run``) is in :mod:`.runner`; the arenas and their poisoning in
:mod:`.arenas`; the one-operator kernels in :mod:`.kernels`; weights and inputs in
:mod:`.feeds`; the whole-model reference in :mod:`.reference`.
"""

from tierplan.compiler.execution.runner import OutputCheck, RunReport, run_plan

__all__ = ["OutputCheck", "RunReport", "run_plan"]
