"""The fit search: the fastest plan within a memory budget, over the knobs' combinations.

Every point is a real compile of one combination of options (screening: greedy L2
assignment, one packing heuristic, and no plan built: :mod:`.measure` reads the
peaks and latency from the packed IR, so that a point costs a fraction of a full
compile; the chosen plan is compiled in full). The search, deterministic and
bounded by a count of compiles:

1. the default combination, and each knob's options one at a time from it: each
   option's measured effect on modelled latency and on the budget's tightest
   limit (``excess``: used / allowed, at most 1 fits);
2. within a knob, options that another option beats on both are dropped, and
   those that measured as the default did;
3. the combination predicted to save the most memory (the product of the
   options' excess ratios) is compiled, to anchor the frontier and tell early
   whether anything can fit;
4. the remaining combinations in order of predicted latency (the sum of the
   options' latency changes), skipping those predicted far over the budget, and
   16-bit ones once an exact plan fits (they could not be chosen), until the
   compile count runs out (without a budget: until the next prediction is no
   faster than the best plan); when nothing fits yet, in order of predicted excess;
5. under a budget, the last quarter of the compile count goes around the best plan
   that fits, one compile at a time: of the combinations one or two knobs away from
   it (step 2's dropped options included, but not those that failed or measured as
   the default did alone; predicted within the budget from the compiled combination
   fewest knobs away), the one :class:`~.interactions.Interactions` predicts
   fastest, its pairs of options never compiled together credited with the largest
   interaction measured between the same knobs. Latencies do not add up (GPT-2 at
   1024 tokens: ``sequence=rows/4`` and ``attention=rows/2``, 11.0 and 11.7 ms
   alone, take 9.1 together, while ``attention=rows/8`` alone takes 9.9), so two
   knobs seen to interact have their untried pairs compiled before additive
   guesses. One option dropped back to its default comes before any other move
   (allowed the predictions' slack): memory-saving options overlap, so a plan that
   fits may hold one that only costs time (GPT-2 at 0.25x: with the sequence in 16
   chunks and 16-bit activations, ``attention=rows/8`` adds 3.4 ms and saves 7%).
   Then each knob that no compiled combination changes alone from the best gets one
   look (its option predicted fastest), before the predictions choose among the
   rest: they only add up what was measured elsewhere (GPT-2 at 0.25x:
   ``tiles=L1/2``, 0.8 ms slower than the default alone, makes the sequence in 16
   chunks with 16-bit activations 1.3 ms faster). When every combination around the
   best is compiled, around the next.

The compiles of steps 1 and 4 are announced to the runner, which keeps the states
their pipelines share (the rewritten graph of a sequence or attention option).
The chosen combination is the fastest that fits with exact numerics, or, when
none does, the fastest that fits with 16-bit activations. It is then compiled
with the full pipeline (exact L2 assignment and packing), kept when it still fits
(else its screened plan is, validated). When no screened plan fits, the few
nearest the budget are compiled in full, since exact packing may bring one under
it. ``benchmarks/fit.py`` compares the choice with an enumeration of the
combinations.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from tierplan.compiler.api import CompileResult, default_pipeline
from tierplan.compiler.cost import operator_flops
from tierplan.compiler.errors import TierplanError
from tierplan.compiler.fitting.budget import Budget, device_totals
from tierplan.compiler.fitting.explain import Heaviest, heaviest_operator
from tierplan.compiler.fitting.interactions import Interactions
from tierplan.compiler.fitting.knobs import (
    Knob,
    Option,
    all_knobs,
    assemble,
    available_knobs,
    planning_target,
)
from tierplan.compiler.fitting.measure import Measures, measure
from tierplan.compiler.fitting.runner import PipelineRunner
from tierplan.compiler.frontend import LoadedModel
from tierplan.compiler.inputs import MAX_DEVICES
from tierplan.compiler.pass_manager import Pass, parse_pipeline
from tierplan.compiler.target import Target

log = logging.getLogger(__name__)

# Screening: greedy L2 assignment, one packing heuristic (the one that packed GPT-2's
# and ResNet-50's regions lowest), no plan built (``measure`` reads the packed IR).
SCREENING_SOLVERS = {
    "tiers": "tiers{solver=greedy}",
    "pack": "pack{solver=greedy strategy=greedy-size}",
}
SCREENING = {**SCREENING_SOLVERS, "evaluate": ""}
MAX_COMPILES = 40
# What the search minimizes: the modelled latency, or the slowest pipeline stage's time.
OBJECTIVES = ("latency", "throughput")
# A combination predicted this far over the budget is still compiled: effects overlap.
PREDICTION_SLACK = 0.15
RESCUES = 3

Choice = tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Point:
    """One compiled combination: ``choice`` holds an option index per knob.

    ``device_peak``: the largest device total (all its tiers, weights included);
    ``activation_peak``: the largest device's activations (every region's activation
    peak summed over the device, as ``benchmarks/rewrites.py`` sums them);
    ``stage_s``: the slowest device's busy time (pipeline stages); ``cost_s``: the time
    the search minimizes (``latency_s``, or ``stage_s`` for throughput); ``error``:
    why it has no plan.
    """

    choice: Choice
    labels: tuple[str, ...]
    excess: float
    device_peak: int
    activation_peak: int
    latency_s: float
    flops: int
    exact: bool
    error: str = ""
    stage_s: float = math.inf
    cost_s: float = math.inf
    peak_bytes: dict[str, int] = field(default_factory=dict, compare=False)
    activation_bytes: dict[str, int] = field(default_factory=dict, compare=False)
    heaviest: Heaviest | None = field(default=None, compare=False)

    @property
    def fits(self) -> bool:
        """Within every limit of the budget."""
        return not self.error and self.excess <= 1.0

    def key(self) -> tuple[float, bool, int, Choice]:
        """The search's order: fastest, then exact numerics, then least memory."""
        return (self.cost_s, not self.exact, self.activation_peak, self.choice)


@dataclass
class FitResult:
    """What the search found: every point, the chosen one and its plan; ``closest``
    is the compiled plan nearest the budget, when nothing fits (to say why)."""

    knobs: list[Knob]
    budget: Budget
    points: list[Point]
    chosen: Point | None
    result: CompileResult | None
    closest: CompileResult | None
    baseline_flops: int
    objective: str = "latency"

    def extra_flops(self, point: Point) -> int:
        """FLOPs ``point`` adds to the default combination's."""
        return point.flops - self.baseline_flops

    def heaviest(self) -> list[tuple[Heaviest, str]]:
        """Each compiled combination's heaviest operator, with its options."""
        return [(p.heaviest, self.options(p)) for p in self.points if p.heaviest is not None]

    def options(self, point: Point) -> str:
        """``attention=rows/8, fast tier=off`` (the options that are not defaults)."""
        changed = [
            f"{knob.name}={label}"
            for knob, index, label in zip(self.knobs, point.choice, point.labels, strict=True)
            if index
        ]
        return ", ".join(changed) or "defaults"


@dataclass
class Search:
    """One model, target and budget; compiles combinations and remembers them."""

    model: LoadedModel
    target: Target
    budget: Budget
    devices: Sequence[int] | None = None
    max_compiles: int = MAX_COMPILES
    on_status: Callable[[str], None] | None = None
    objective: str = "latency"
    knobs: list[Knob] = field(default_factory=list)
    points: dict[Choice, Point] = field(default_factory=dict)
    runner: PipelineRunner = field(init=False)
    closest: tuple[float, CompileResult] | None = None

    def __post_init__(self) -> None:
        self.budget.check_target(self.target)
        self.runner = PipelineRunner(self.model)
        self.planning = self.budget.planning_target(self.target)
        self.screening = _base(SCREENING)
        self.full = _base({})
        counts = self.devices or _device_counts(self.model, self.budget, self.target)
        self.knobs = available_knobs(
            all_knobs(self.planning, counts), self.screening, self.model.ir
        )
        self.default: Choice = tuple(0 for _ in self.knobs)

    def options(self, choice: Choice) -> list[Option]:
        """The options of a combination."""
        return [knob.options[index] for knob, index in zip(self.knobs, choice, strict=True)]

    def compile(
        self, choice: Choice, pipeline: Sequence[Pass] | None = None
    ) -> tuple[Point, CompileResult | None]:
        """Compile one combination with ``pipeline``'s passes (default: screening)."""
        options = self.options(choice)
        passes = assemble(self.screening if pipeline is None else pipeline, options)
        target = planning_target(self.planning, options)
        labels = tuple(o.label for o in options)
        exact = all(o.exact for o in options)
        if self.on_status:
            self.on_status(f"fit: compile {self.runner.runs + 1}: {', '.join(labels)}")
        try:
            result = self.runner.run(passes, target)
        except TierplanError as error:
            if error.exit_code == 3:  # a bug, in one combination: the others still count
                log.warning("fit: %s failed: %s", ", ".join(labels), error)
            point = Point(choice, labels, math.inf, 0, 0, math.inf, 0, exact, str(error))
            return point, None
        evaluation = result.evaluation
        found = Measures.of(evaluation) if evaluation else measure(result.ir, result.target)
        peaks, activations = found.peak_bytes, found.activation_bytes
        point = Point(
            choice,
            labels,
            self.budget.excess(peaks, activations),
            max(device_totals(peaks).values(), default=0),
            max(device_totals(activations).values(), default=0),
            found.latency_s,
            sum(operator_flops(result.ir, op) for op in result.ir.operators()),
            exact,
            peak_bytes=dict(peaks),
            activation_bytes=dict(activations),
            heaviest=heaviest_operator(result) if self.budget.device is not None else None,
            stage_s=found.stage_s,
            cost_s=found.stage_s if self.objective == "throughput" else found.latency_s,
        )
        if self.closest is None or point.excess < self.closest[0]:
            self.closest = (point.excess, result)
        return point, result

    def point(self, choice: Choice) -> Point:
        """The screened point of ``choice``, compiled once."""
        if choice not in self.points:
            self.points[choice] = self.compile(choice)[0]
        return self.points[choice]

    def best(self) -> Point | None:
        """The fastest point that fits so far, exact numerics first: 16-bit activations
        are chosen only when no exact plan fits, however fast they are."""
        fitting = [p for p in self.points.values() if p.fits]
        exact = [p for p in fitting if p.exact]
        return min(exact or fitting, key=Point.key) if fitting else None

    def run(self) -> FitResult:
        """Search (module docstring), then compile the chosen combination in full."""
        singles = [
            tuple(index if k == position else 0 for k in range(len(self.knobs)))
            for position, knob in enumerate(self.knobs)
            for index in range(1, len(knob.options))
        ]
        self.expect([self.default, *singles])
        base = self.point(self.default)
        for choice in singles:
            self.point(choice)
        kept = self._undominated(base)
        latency, excess = self._predictions(base)
        combos = [c for c in itertools.product(*kept) if c not in self.points]
        if combos and self.budget.limited:
            self._compile_within(sorted(combos, key=lambda c: (excess(c), latency(c), c))[:1])
        by_latency = sorted(combos, key=lambda c: (latency(c), c))
        wanted = [c for c in by_latency if excess(c) <= 1 + PREDICTION_SLACK]
        # Under a budget a quarter of the compiles is kept for the best plan's neighbours.
        limit = self.max_compiles - (self.max_compiles // 4 if self.budget.limited else 0)
        self.expect(wanted[: max(0, limit - len(self.points))])
        for choice in wanted:
            best = self.best()
            if len(self.points) >= limit:
                break
            # Without a budget, a prediction no faster than the best ends the search; under
            # one, the compile count does: combined options' latencies are not additive
            # (GPT-2: sequence=rows/4 and attention=rows/2 take 11.0 and 11.7 ms alone,
            # 9.1 ms together), so predictions are an order, not a bound.
            if not self.budget.limited and best and latency(choice) >= best.cost_s:
                break
            # An exact plan that fits is chosen before any 16-bit one (``best``).
            if best and best.exact and not self._exact(choice):
                continue
            self.point(choice)
        if self.best() is None:
            self._compile_within(sorted(combos, key=lambda c: (excess(c), latency(c), c)))
        if self.budget.limited:
            self._neighbours()
        return self._finish(base)

    def _neighbours(self) -> None:
        """Compile, one at a time, the combination one or two knobs away from the best
        plan that fits that :class:`Interactions` finds most promising (options whose
        compile failed alone, or that measured as the default did, left out), after
        dropping one of its options and giving each knob one look (:meth:`_unseen`);
        when all of those are compiled, around the next best plan; until the compile
        count runs out."""
        base = self.points[self.default]
        usable = [
            [0]
            + [
                i
                for i in range(1, len(knob.options))
                if not self._single(k, i).error and not _same_plan(self._single(k, i), base)
            ]
            for k, knob in enumerate(self.knobs)
        ]
        while len(self.points) < self.max_compiles and (best := self.best()) is not None:
            fitting = sorted(
                (p for p in self.points.values() if p.fits and (p.exact or not best.exact)),
                key=Point.key,
            )
            centre, around = next(
                ((p, found) for p in fitting if (found := self._around(p, best.exact, usable))),
                (best, []),
            )
            if not around:
                return
            # An option another one made redundant only costs time: dropping it comes first.
            dropped = [c for c in around if _dropped(centre.choice, c)]
            valid = {choice: p.cost_s for choice, p in self.points.items() if not p.error}
            model = Interactions.of(base.cost_s, valid)
            first = dropped or self._unseen(centre.choice, around) or around
            self.point(min(first, key=lambda c: (model.optimistic(c), c)))

    def _unseen(self, centre: Choice, around: Sequence[Choice]) -> list[Choice]:
        """The combinations of ``around`` one knob from ``centre``, on the knobs that no
        compiled combination changes alone from it.

        How a knob acts in the company of ``centre``'s options is unknown until one of
        its options is compiled with them: alone, ``tiles=L1/4`` is 2.4 ms slower than
        GPT-2's default, with ``sequence=rows/16`` and 16-bit activations 1.1 ms faster
        (:class:`Interactions` learns from pairs of options only). Each knob gets that
        one look before the predictions, which add up what was measured elsewhere,
        choose among the rest. Dropping an option back to its default is no look: it
        tells how the option acts, not how the others do.
        """
        seen = {
            k
            for choice in self.points
            if (k := _knob_moved(centre, choice)) is not None and choice[k]
        }
        return [c for c in around if (k := _knob_moved(centre, c)) is not None and k not in seen]

    def _around(self, centre: Point, exact: bool, usable: list[list[int]]) -> list[Choice]:
        """The combinations one or two knobs away from ``centre`` (to ``usable`` options)
        not compiled yet, exact ones only when ``exact`` (a 16-bit plan would not be
        chosen over an exact one), and predicted within the budget from the nearest
        compiled combination, ``centre`` first among the nearest (:meth:`_excess_from`;
        with the slack for a dropped option): from ``float16+weights`` alone, as near
        to GPT-2's ``sequence=rows/16, precision=float16`` at 0.25x and faster,
        ``sequence=rows/16, precision=float16+weights`` looked 5% over the budget; from
        that plan, 19% under (really 25%)."""
        moves = [
            (k, i) for k, options in enumerate(usable) for i in options if i != centre.choice[k]
        ]
        found = {_moved(centre.choice, [move]) for move in moves}
        found |= {
            _moved(centre.choice, [first, second])
            for first, second in itertools.combinations(moves, 2)
            if first[0] != second[0]
        }
        anchors = sorted(
            (p for p in self.points.values() if not p.error),
            key=lambda p: (p.choice != centre.choice, p.key()),
        )
        return sorted(
            c
            for c in found
            if c not in self.points
            and (self._exact(c) or not exact)
            and self._excess_from(anchors, c)
            <= (1 + PREDICTION_SLACK if _dropped(centre.choice, c) else 1)
        )

    def _excess_from(self, anchors: Sequence[Point], choice: Choice) -> float:
        """The excess of ``choice`` predicted from the anchor fewest knobs away (the
        first of ``anchors`` among those): its excess times the ratios, alone, of the
        options that differ."""
        anchor = min(anchors, key=lambda p: _distance(p.choice, choice))
        ratio = 1.0
        for k, (was, now) in enumerate(zip(anchor.choice, choice, strict=True)):
            before = self._single(k, was).excess
            if was != now and before:
                ratio *= self._single(k, now).excess / before
        return anchor.excess * ratio

    def _single(self, position: int, index: int) -> Point:
        """The point of option ``index`` of knob ``position`` alone (compiled first)."""
        return self.points[tuple(index if k == position else 0 for k in range(len(self.knobs)))]

    def _exact(self, choice: Choice) -> bool:
        return all(option.exact for option in self.options(choice))

    def expect(self, choices: Sequence[Choice]) -> None:
        """Tell the runner the screening compiles to come (it keeps their shared prefixes)."""
        pipelines = []
        for choice in choices:
            options = self.options(choice)
            pipelines.append(
                (assemble(self.screening, options), planning_target(self.planning, options))
            )
        self.runner.expect(pipelines)

    def _compile_within(self, choices: Iterable[Choice]) -> None:
        """Compile ``choices`` in order until one fits or the compile count runs out."""
        for choice in choices:
            if self.best() is not None or len(self.points) >= self.max_compiles:
                return
            self.point(choice)

    def _undominated(self, base: Point) -> list[list[int]]:
        """Per knob, the options no other option of it beats on latency and excess alone."""
        kept = []
        for position, knob in enumerate(self.knobs):
            measured = [
                self.points[tuple(i if k == position else 0 for k in range(len(self.knobs)))]
                for i in range(len(knob.options))
            ]
            keep = [0]
            for index, point in enumerate(measured[1:], start=1):
                if point.error or _same_plan(point, measured[0]):
                    continue
                beaten = any(
                    other is not point
                    and not other.error
                    and other.cost_s <= point.cost_s
                    and other.excess <= point.excess
                    and (other.exact or not point.exact)
                    and (other.cost_s, other.excess) != (point.cost_s, point.excess)
                    for other in measured
                )
                if not beaten:
                    keep.append(index)
            kept.append(keep)
        return kept

    def _predictions(
        self, base: Point
    ) -> tuple[Callable[[Choice], float], Callable[[Choice], float]]:
        """Predicted cost (latency or slowest stage: base + the options' changes) and
        excess (base times their ratios) of a combination, from the one-knob points."""

        single = self._single

        def latency(choice: Choice) -> float:
            return base.cost_s + sum(
                single(k, i).cost_s - base.cost_s for k, i in enumerate(choice) if i
            )

        def excess(choice: Choice) -> float:
            ratio = math.prod(
                single(k, i).excess / base.excess for k, i in enumerate(choice) if i and base.excess
            )
            return base.excess * ratio

        return latency, excess

    def _finish(self, base: Point) -> FitResult:
        chosen = self.best()
        result = None
        if chosen is not None:
            full, result = self.compile(chosen.choice, self.full)
            if full.fits:
                chosen = full
            else:  # the screening plan, validated
                result = self.compile(chosen.choice, _base(SCREENING_SOLVERS))[1]
        else:
            chosen, result = self._full_rescue()
        closest = None if chosen is not None or self.closest is None else self.closest[1]
        return FitResult(
            self.knobs,
            self.budget,
            list(self.points.values()),
            chosen,
            result,
            closest,
            base.flops,
            self.objective,
        )

    def _full_rescue(self) -> tuple[Point | None, CompileResult | None]:
        """When no screened plan fits: the nearest few compiled in full (exact packing
        may bring one under the budget)."""
        near = sorted(
            (p for p in self.points.values() if p.excess <= 1 + PREDICTION_SLACK),
            key=lambda p: (p.excess, p.choice),
        )
        for point in near[:RESCUES]:
            full, result = self.compile(point.choice, self.full)
            if full.fits:
                return full, result
        return None, None


def frontier(points: Iterable[Point]) -> list[Point]:
    """The points no other beats on activation peak, latency, FLOPs and numerics together
    (and slowest stage and device peak: weights split over devices), least memory first."""
    valid = [p for p in points if not p.error]

    def measures(p: Point) -> tuple[int, float, float, int, int, int]:
        exact = 0 if p.exact else 1
        return (p.activation_peak, p.latency_s, p.stage_s, p.flops, exact, p.device_peak)

    found = []
    for point in valid:
        own = measures(point)
        if not any(
            all(a <= b for a, b in zip(measures(o), own, strict=True)) and measures(o) != own
            for o in valid
        ):
            found.append(point)
    unique = {measures(p): p for p in sorted(found, key=lambda p: p.choice, reverse=True)}
    return sorted(unique.values(), key=lambda p: (p.activation_peak, p.latency_s, p.choice))


def _same_plan(option: Point, default: Point) -> bool:
    """An option that measured as the default did (GPT-2's and ResNet-50's ``onnx``
    order): combining it would only compile the same plans again."""
    measures = ("cost_s", "latency_s", "excess", "activation_peak", "device_peak", "flops")
    return all(getattr(option, name) == getattr(default, name) for name in measures)


def _dropped(centre: Choice, choice: Choice) -> bool:
    """Whether ``choice`` is ``centre`` with one of its options back to the default.

    Memory-saving options overlap (with the sequence in 16 chunks, chunking attention
    too saves little), so the excess predicted by multiplying their ratios alone
    overstates what dropping one costs: such a move is allowed the main phase's slack.
    """
    knob = _knob_moved(centre, choice)
    return knob is not None and choice[knob] == 0


def _knob_moved(centre: Choice, choice: Choice) -> int | None:
    """The knob whose option ``choice`` changes from ``centre``'s, when it changes one."""
    changed = [k for k, (a, b) in enumerate(zip(centre, choice, strict=True)) if a != b]
    return changed[0] if len(changed) == 1 else None


def _distance(first: Choice, second: Choice) -> int:
    """How many knobs' options differ."""
    return sum(a != b for a, b in zip(first, second, strict=True))


def _moved(choice: Choice, moves: Iterable[tuple[int, int]]) -> Choice:
    """``choice`` with each (knob position, option index) of ``moves`` set."""
    changed = list(choice)
    for position, index in moves:
        changed[position] = index
    return tuple(changed)


def _base(overrides: dict[str, str]) -> list[Pass]:
    spelled = [overrides.get(name, name) for name in default_pipeline()]
    return parse_pipeline([item for item in spelled if item])


def _device_counts(model: LoadedModel, budget: Budget, target: Target) -> list[int]:
    """Device counts to try: the target's, one more, and the fewest whose share of the
    weights fits device memory (and one more, as pipeline stages rarely split evenly)."""
    weights = sum(t.nbytes for t in model.ir.tensors() if t.kind == "weight")
    memory = target.memory_tier
    allowed = min(memory.usable, budget.tiers.get(memory.name, memory.usable))
    counts = {target.devices, target.devices + 1}
    if weights > allowed:
        fewest = math.ceil(weights / allowed)
        counts |= {fewest, fewest + 1}
    return sorted(count for count in counts if count <= MAX_DEVICES)
