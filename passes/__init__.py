"""The built-in passes, one module each; importing this package registers them.

The default pipeline is :data:`DEFAULT_PIPELINE`, in the order of ``docs/design.md``.
"""

from tierplan.passes import evaluate, liveness, pack, schedule

DEFAULT_PIPELINE: tuple[str, ...] = ("schedule", "liveness", "pack", "evaluate")

__all__ = ["DEFAULT_PIPELINE", "evaluate", "liveness", "pack", "schedule"]
