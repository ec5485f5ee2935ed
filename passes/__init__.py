"""The built-in passes, one module each; importing this package registers them.

The default pipeline is :data:`DEFAULT_PIPELINE`, in the order of ``docs/design.md``.
"""

from tierplan.passes import (
    attention,
    concat_chains,
    evaluate,
    inplace,
    liveness,
    pack,
    partition,
    precision,
    recompute,
    schedule,
    sequence,
    tiers,
    tiling,
)

DEFAULT_PIPELINE: tuple[str, ...] = (
    "schedule",
    "liveness",
    "inplace",
    "tiling",
    "partition",
    "tiers",
    "pack",
    "evaluate",
)

__all__ = [
    "DEFAULT_PIPELINE",
    "attention",
    "concat_chains",
    "evaluate",
    "inplace",
    "liveness",
    "pack",
    "partition",
    "precision",
    "recompute",
    "schedule",
    "sequence",
    "tiers",
    "tiling",
]
