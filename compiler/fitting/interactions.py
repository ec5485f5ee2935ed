"""Predicting a combination's cost from the compiled ones, pairs of options included.

Options' effects on the modelled latency do not add up: on GPT-2 at 1024 tokens
``sequence=rows/4`` and ``attention=rows/2`` take 11.0 and 11.7 ms alone (the
default: 11.6) and 9.1 together, because which tensors the fast tier holds changes
with the whole graph. :class:`Interactions` predicts a combination's cost as the
default's, plus each option's change alone, plus, for each two of its options, their
*interaction*: how far the combination of just those two was from the sum of their
changes. A pair never compiled together is credited with the largest interaction
magnitude measured between the same two knobs, as a gain: where two knobs were seen
to interact strongly, their untried pairs are worth a compile (optimism under
uncertainty); between knobs never seen together the prediction is additive.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass

Choice = tuple[int, ...]
Change = tuple[int, int]  # (knob position, option index), the option not the default


@dataclass(frozen=True, slots=True)
class Interactions:
    """What the compiled combinations tell of options alone and in pairs."""

    base: float
    alone: dict[Change, float]
    pairs: dict[tuple[Change, Change], float]
    spread: dict[tuple[int, int], float]

    @classmethod
    def of(cls, base: float, costs: Mapping[Choice, float]) -> Interactions:
        """From the default combination's cost (option 0 of every knob) and the costs
        of compiled combinations (failed compiles left out by the caller)."""
        alone: dict[Change, float] = {}
        for choice, cost in costs.items():
            if len(changed := _changes(choice)) == 1:
                alone[changed[0]] = cost - base
        pairs: dict[tuple[Change, Change], float] = {}
        spread: dict[tuple[int, int], float] = {}
        for choice, cost in sorted(costs.items()):
            changed = _changes(choice)
            if len(changed) != 2 or not all(change in alone for change in changed):
                continue
            first, second = changed
            residual = cost - base - alone[first] - alone[second]
            pairs[first, second] = residual
            knobs = (first[0], second[0])
            spread[knobs] = max(spread.get(knobs, 0.0), abs(residual))
        return cls(base, alone, pairs, spread)

    def optimistic(self, choice: Choice) -> float:
        """The predicted cost of ``choice``, its untried pairs credited as gains
        (``inf`` when one of its options has no measure alone)."""
        changed = _changes(choice)
        cost = self.base + sum(self.alone.get(change, math.inf) for change in changed)
        for first, second in itertools.combinations(changed, 2):
            measured = self.pairs.get((first, second))
            cost += -self.spread.get((first[0], second[0]), 0.0) if measured is None else measured
        return cost


def _changes(choice: Choice) -> list[Change]:
    return [(position, index) for position, index in enumerate(choice) if index]
