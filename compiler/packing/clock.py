"""The wall clock of a time-limited solve: the only clock allowed to decide a placement.

Without a :class:`Deadline` every engine is bounded by deterministic work alone (search
nodes, CP-SAT's deterministic time and conflicts), so the same input gives the same
placement on any machine, loaded or not; CP-SAT's wall-clock cap is then only a safety
net, and a solve it stops is reported as time-limited. With a deadline (``--time-limit``)
the engines work until it passes and the placement is the best found by then: it
depends on the machine's speed, and the solve report says so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Deadline:
    """A point in time (``time.perf_counter``) at which a time-limited solve stops."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        """The deadline ``seconds`` from now."""
        return cls(time.perf_counter() + seconds)

    def left(self) -> float:
        """Seconds until the deadline (0 once it has passed)."""
        return max(self.at - time.perf_counter(), 0.0)

    def passed(self) -> bool:
        """Whether the deadline has come."""
        return time.perf_counter() >= self.at

    def within(self, seconds: float) -> Deadline:
        """This deadline, or ``seconds`` from now if that comes first."""
        return Deadline(min(self.at, time.perf_counter() + seconds))
