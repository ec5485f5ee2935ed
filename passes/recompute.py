"""``recompute``: recompute long-lived activations just before a late reader (rematerialization).

Reads: the schedule (``step``), shapes, op types. Writes: the graph and ``step``.
It runs after ``schedule`` and keeps its order (the model's steps are that order):
``schedule,recompute{budget=0.8},liveness,inplace,tiling,partition,tiers,pack,evaluate``.

A tensor ``T`` read at steps ``r1 < ... < rm`` (``m >= 2``) may be recomputed for the
readers from ``rk`` on: the operators producing it (its producer alone, or a short
chain of its recomputable ancestors, up to ``depth`` levels) are cloned just before
``rk`` and those readers read the clone. ``T`` then dies at ``r(k-1)``; the clone
lives from just before ``rk`` to ``rm``; the chain's inputs from outside it (its
sources) must stay alive until the clone runs: that is the trade-off.

Which tensors to recompute is chosen, for a budget on the activation peak, with the
fewest extra FLOPs (:func:`~tierplan.compiler.cost.operator_flops`):

- up to :data:`EXACT_LIMIT` operators, by an exact CP-SAT model: a bounded set of
  options (tensor, chain, first rewired reader; only those that free bytes where the
  unrewritten model is above the budget), at most one per tensor; a time-indexed 0-1
  model at every step and between steps (where clones run) whose bytes could exceed
  the bound: a tensor an option touches is alive unless a chosen option cuts it there
  and no chosen option still needs it as a source; a chosen option adds its clone and
  its chain's working bytes. Deterministic: fixed seed and workers,
  ``max_deterministic_time`` and a conflict count; a wall-clock cap only guards a
  runaway machine (then the greedy answer is kept and a warning logged);
- beyond, greedily: at the peak, the option with the fewest extra FLOPs per byte it
  frees there first, until the peak meets the budget or no option lowers it.

The model's liveness is an estimate (no views, in-place writes, tiers or tiling
scratch), so the pass measures what the final plan has: it runs the rest of the
default pipeline on a copy of the graph (activation peak: bytes above the weights,
summed over every device and tier, as ``Evaluation.activation_peak_bytes``), before
and after the rewrite, and tightens the model's budget by the overshoot, up to
:data:`ROUNDS` times. ``budget`` is bytes (``40MiB``) or a ratio of that unrewritten
peak (``0.8``). When no choice reaches it the pass fails (exit 1, no files):
``cannot: the smallest activation peak reachable by recomputation is X bytes (budget Y;
...)``, naming the operator whose own inputs and outputs set a floor no recomputation
goes below (:func:`own_bytes`) and the model's lowest peak (proven when CP-SAT says
``OPTIMAL``).

Refused (never recomputed): random operators (``RandomNormal``, ``RandomNormalLike``,
``RandomUniform``, ``RandomUniformLike``, ``Bernoulli``, ``Multinomial``, ``Dropout``),
operators with subgraphs (``If``, ``Loop``, ``Scan``: they read outer-scope values),
operators of another domain, operators with several outputs, and every operator not
in :data:`RECOMPUTABLE` (unknown ones may have side effects or attributes the IR does
not keep); graph outputs are never the recomputed tensor.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Literal

from ortools.sat.python import cp_model
from tierplan.compiler.aliasing import IN_PLACE_OPS
from tierplan.compiler.cost import operator_flops
from tierplan.compiler.errors import InputError, PassFailure, PipelineError
from tierplan.compiler.ir import IRGraph, Operator
from tierplan.compiler.pass_manager import (
    GRAPH_FACTS,
    Bounds,
    PassContext,
    PassResult,
    ResultPass,
    parse_pipeline,
    register_pass,
)
from tierplan.compiler.target import Target, parse_size
from tierplan.passes.evaluate import Evaluate
from tierplan.passes.schedule import ensure_topological

log = logging.getLogger(__name__)

RECOMPUTABLE = frozenset(
    {
        *("Conv", "ConvTranspose", "MatMul", "Gemm", "BatchNormalization"),
        *("InstanceNormalization", "LayerNormalization", "Softmax", "LogSoftmax"),
        *("Relu", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Gelu", "Erf"),
        *("Elu", "Selu", "Softplus", "Softsign", "Abs", "Neg", "Exp", "Log", "Sqrt", "Clip"),
        *("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Where", "Equal", "Less"),
        *("Greater", "Not", "And", "Or", "Cast", "Identity"),
        *("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Resize"),
        *("Concat", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Expand"),
        *("Slice", "Gather", "Pad", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin"),
    }
)
"""Deterministic standard operators without side effects whose attributes the IR keeps
whole (numbers, strings and lists of them): the only ones cloned."""

EXACT_LIMIT = 2_000
"""Largest graph (operators) the CP-SAT model decides; the greedy beyond."""
ROUNDS = 4
"""Times the pass re-solves with a tighter model budget when the final plan overshoots."""
CHAIN_LIMIT = 8
"""Most operators one recomputation clones."""
OPTION_LIMIT = 4_000
"""Most options in one model (the largest tensors alive longest are kept)."""
SECONDS_CAP = 120.0
"""Wall-clock safety net of one CP-SAT solve (never reached on a sane machine)."""
CONFLICTS_PER_UNIT = 2_000
"""CP-SAT conflicts allowed per unit of ``max_deterministic_time``: its deterministic
time undercounts the propagation of a large cumulative constraint, so the number of
conflicts bounds the search too (both are counts, not time)."""


@dataclass(frozen=True, slots=True)
class Option:
    """Recompute ``tensor`` with ``chain`` just before step ``split``; readers at ``split``
    and later read the clone. Times are doubled steps: step ``t`` is ``2t``, the moment
    just before it (where clones run) ``2t - 1``."""

    tensor: str
    chain: tuple[str, ...]
    sources: tuple[str, ...]
    split: int
    cut_end: int
    last: int
    nbytes: int
    working: int
    flops: int

    @property
    def at(self) -> int:
        """Doubled time at which the clone runs."""
        return 2 * self.split - 1


@dataclass(slots=True)
class Liveness:
    """Doubled-time live intervals ``[start, end]`` of every non-weight tensor."""

    start: dict[str, int]
    end: dict[str, int]
    nbytes: dict[str, int]
    horizon: int


@dataclass(frozen=True, slots=True)
class Choice:
    """Options chosen by one engine, with the model's estimate of their peak."""

    options: tuple[Option, ...]
    peak: int
    engine: str
    objective: int = 0
    bound: int = 0
    status: str = ""

    @property
    def flops(self) -> int:
        """Extra FLOPs of the chosen recomputations."""
        return sum(o.flops for o in self.options)

    @property
    def gap(self) -> float:
        """CP-SAT's relative gap between its objective and its proven bound."""
        return (self.objective - self.bound) / self.objective if self.objective else 0.0


@dataclass(frozen=True, slots=True)
class RecomputeReport:
    """What ``recompute`` did (``context.result(Recompute)``).

    Peaks are of the final plan (``before``: unrewritten, ``after``: rewritten);
    ``estimate`` is the model's peak of the choice; ``flops_before`` the graph's FLOPs.
    """

    budget: int
    before: int
    after: int
    estimate: int
    extra_flops: int
    flops_before: int
    engine: str
    recomputed: tuple[str, ...] = ()
    objective: int = 0
    bound: int = 0
    gap: float = 0.0
    status: str = ""
    rounds: int = 0
    notes: list[str] = field(default_factory=list)


def recomputable(op: Operator) -> bool:
    """True when ``op`` may be cloned: known, deterministic, one output, no subgraph."""
    outputs = [name for name in op.outputs if name]
    return (
        op.op_type in RECOMPUTABLE
        and not op.domain
        and len(outputs) == 1
        and len(op.outputs) == 1
        and not op.implicit_inputs
    )


def liveness(ir: IRGraph, order: Sequence[Operator]) -> Liveness:
    """Live intervals by the rules of plan-format.md, in doubled time, weights left out."""
    step = {op.name: index for index, op in enumerate(order)}
    last = len(order) - 1
    start, end, nbytes = {}, {}, {}
    for tensor in ir.tensors():
        if tensor.kind == "weight":
            continue
        readers = [step[op.name] for op in ir.consumers(tensor.name)]
        made = step[ir.producer(tensor.name).name] if ir.has_producer(tensor.name) else 0
        if not readers and not tensor.graph_output and not ir.has_producer(tensor.name):
            continue
        start[tensor.name] = 2 * made
        end[tensor.name] = 2 * (last if tensor.graph_output else max([made, *readers]))
        nbytes[tensor.name] = tensor.nbytes
    return Liveness(start, end, nbytes, 2 * len(order))


def own_bytes(ir: IRGraph, order: Sequence[Operator]) -> tuple[int, str]:
    """The most bytes one operator's own non-weight inputs and outputs hold, and its name:
    no recomputation goes below it (an in-place operator's output is counted in the bytes
    of an input as large)."""
    most, name = 0, ""
    for op in order:
        inputs = [ir.tensor(n) for n in op.read_tensors() if ir.tensor(n).kind != "weight"]
        outputs = [ir.tensor(n) for n in op.outputs if n]
        held = sum(t.nbytes for t in inputs) + sum(t.nbytes for t in outputs)
        if (
            outputs
            and op.op_type in IN_PLACE_OPS
            and any(t.nbytes == outputs[0].nbytes for t in inputs)
        ):
            held -= outputs[0].nbytes
        if held > most:
            most, name = held, op.name
    return most, name


def _chains(ir: IRGraph, tensor: str, depth: int) -> list[tuple[list[Operator], list[str]]]:
    """The chains recomputing ``tensor`` (ancestors within 1..``depth`` levels) and their
    sources (non-weight tensors they read from outside)."""
    producer = ir.producer(tensor)
    if not recomputable(producer):
        return []
    chains: list[tuple[list[Operator], list[str]]] = []
    members = {producer.name: producer}
    frontier = [producer]
    for _ in range(depth):
        inside = {out for op in members.values() for out in op.outputs}
        sources = sorted(
            {
                name
                for op in members.values()
                for name in op.read_tensors()
                if name not in inside and ir.tensor(name).kind != "weight"
            }
        )
        chains.append((list(members.values()), sources))
        grown = [
            ir.producer(name)
            for op in frontier
            for name in op.read_tensors()
            if ir.has_producer(name) and ir.tensor(name).kind != "weight"
        ]
        frontier = [op for op in grown if op.name not in members and recomputable(op)]
        if not frontier or len(members) + len(frontier) > CHAIN_LIMIT:
            break
        members.update({op.name: op for op in frontier})
    return chains


def _working(ir: IRGraph, chain: list[Operator], step: dict[str, int]) -> int:
    """Most bytes the chain's own outputs hold at once while it runs (its result
    included); an in-place operator's output takes the bytes of a chain input dying at it,
    as the ``inplace`` pass will make it."""
    ordered = sorted(chain, key=lambda op: step[op.name])
    outputs = [op.outputs[0] for op in ordered]
    last_read = {
        name: max([i for i, op in enumerate(ordered) if name in op.read_tensors()], default=-1)
        for name in outputs
    }
    last_read[outputs[-1]] = len(ordered) - 1
    peak = 0
    for index, op in enumerate(ordered):
        alive = sum(
            ir.tensor(name).nbytes
            for made, name in enumerate(outputs)
            if made <= index <= max(made, last_read[name])
        )
        size = ir.tensor(op.outputs[0]).nbytes
        dying = [
            name
            for name in op.read_tensors()
            if name in last_read and last_read[name] == index and ir.tensor(name).nbytes == size
        ]
        peak = max(peak, alive - size if op.op_type in IN_PLACE_OPS and dying else alive)
    return peak


def options(ir: IRGraph, order: Sequence[Operator], live: Liveness, depth: int) -> list[Option]:
    """Every recomputation worth modelling: a tensor read again at least 2 steps after
    a previous read, by each chain of up to ``depth`` levels."""
    step = {op.name: index for index, op in enumerate(order)}
    found: list[Option] = []
    for tensor in ir.tensors():
        if tensor.kind != "activation" or tensor.graph_output or not ir.has_producer(tensor.name):
            continue
        reads = sorted({step[op.name] for op in ir.consumers(tensor.name)})
        splits = [(a, b) for a, b in itertools.pairwise(reads) if b - a >= 2]
        if not splits:
            continue
        for chain, sources in _chains(ir, tensor.name, depth):
            working = max(0, _working(ir, chain, step) - tensor.nbytes)
            flops = sum(operator_flops(ir, op) for op in chain)
            names = tuple(op.name for op in sorted(chain, key=lambda op: step[op.name]))
            for cut_end, split in splits:
                found.append(
                    Option(
                        tensor.name,
                        names,
                        tuple(sources),
                        split=split,
                        cut_end=cut_end,
                        last=reads[-1],
                        nbytes=tensor.nbytes,
                        working=working,
                        flops=flops,
                    )
                )
    found.sort(key=lambda o: (-o.nbytes * (o.split - o.cut_end), o.flops, o.tensor, o.split))
    return found[:OPTION_LIMIT]


def _ends(live: Liveness, chosen: Sequence[Option]) -> dict[str, int]:
    """Where each tensor's interval ends with the ``chosen`` recomputations made."""
    end = dict(live.end)
    for option in chosen:
        end[option.tensor] = 2 * option.cut_end
    for option in chosen:
        for source in option.sources:
            end[source] = max(end[source], option.at)
    return end


def profile(live: Liveness, chosen: Sequence[Option]) -> list[int]:
    """Bytes alive at every doubled time with the ``chosen`` recomputations made."""
    end = _ends(live, chosen)
    delta = [0] * (live.horizon + 1)
    for name, begin in live.start.items():
        delta[begin] += live.nbytes[name]
        delta[end[name] + 1] -= live.nbytes[name]
    for option in chosen:
        delta[option.at] += option.nbytes + option.working
        delta[option.at + 1] -= option.working
        delta[2 * option.last + 1] -= option.nbytes
    alive, total = [], 0
    for change in delta[: live.horizon]:
        total += change
        alive.append(total)
    return alive


def _freed(live: Liveness, end: dict[str, int], option: Option, at: int) -> int:
    """Bytes ``option`` frees at time ``at`` (negative: it adds some), the ends being ``end``."""
    if not 2 * option.cut_end < at < option.at or end[option.tensor] < at:
        return 0
    kept = {
        source
        for source in option.sources
        if live.start[source] <= at and end[source] < at and source != option.tensor
    }
    return live.nbytes[option.tensor] - sum(live.nbytes[source] for source in kept)


def useful(live: Liveness, found: Sequence[Option], above: int) -> list[Option]:
    """The options that free bytes at some time where more than ``above`` bytes are alive
    (the others cannot lower a peak above it)."""
    alive = profile(live, [])
    return [o for o in found if max(alive[2 * o.cut_end + 1 : o.at], default=0) > above]


def floor(live: Liveness, ir: IRGraph, order: Sequence[Operator]) -> int:
    """Bytes the model keeps alive at some step whatever is recomputed: each operator's own
    non-weight inputs and outputs."""
    return max(
        (
            sum(live.nbytes[n] for n in {*op.read_tensors(), *op.outputs} if n in live.nbytes)
            for op in order
        ),
        default=0,
    )


def greedy(live: Liveness, found: Sequence[Option], budget: int) -> Choice:
    """Peak-driven: at the peak, the fewest extra FLOPs per byte freed there first.
    Returns the choice that met ``budget``, or the lowest peak it reached."""
    chosen: dict[str, Option] = {}
    alive = profile(live, [])
    best = Choice((), max(alive, default=0), "greedy")
    while alive and max(alive) > budget:
        at = alive.index(max(alive))
        end = _ends(live, list(chosen.values()))
        ranked = [
            (option.flops / freed, option.tensor, option.split, option)
            for option in found
            if option.tensor not in chosen and (freed := _freed(live, end, option, at)) > 0
        ]
        if not ranked:
            break
        option = min(ranked, key=lambda item: item[:3])[3]
        chosen[option.tensor] = option
        alive = profile(live, list(chosen.values()))
        if max(alive) < best.peak or max(alive) <= budget:
            best = Choice(tuple(chosen.values()), max(alive), "greedy")
    return best


def exact(
    live: Liveness,
    found: Sequence[Option],
    budget: int | None,
    hint: Choice,
    deterministic_time: float,
    workers: int,
    lowest: int = 0,
) -> Choice | None:
    """CP-SAT: the fewest extra FLOPs with the model's peak at most ``budget`` (or, with
    ``budget`` None, the lowest peak, known to be at least ``lowest``). None when CP-SAT
    found nothing in its limits.

    Time-indexed 0-1 model: at every time where the bytes alive could exceed the bound,
    the untouched tensors are a constant, each tensor an option touches is alive unless a
    chosen option cuts it there and no chosen option still needs it as a source, and
    each chosen option adds its clone (and its chain's working bytes when it runs)."""
    model = cp_model.CpModel()
    touched = sorted({o.tensor for o in found} | {s for o in found for s in o.sources})
    alive = profile(live, [])
    fixed = list(alive)
    for name in touched:
        for time in range(live.start[name], live.end[name] + 1):
            fixed[time] -= live.nbytes[name]
    cuts: dict[str, list[int]] = {}
    needs: dict[str, list[int]] = {}
    for index, option in enumerate(found):
        cuts.setdefault(option.tensor, []).append(index)
        for source in option.sources:
            needs.setdefault(source, []).append(index)
    could = [0] * live.horizon
    for name in touched:
        latest = max([live.end[name], *(found[i].at for i in needs.get(name, ()))])
        for time in range(live.start[name], latest + 1):
            could[time] += live.nbytes[name]
    for option in found:
        for time in range(option.at, 2 * option.last + 1):
            could[time] += option.nbytes
        could[option.at] += option.working
    least = max([lowest, *fixed], default=0)
    bound = least if budget is None else budget
    times = [t for t in range(live.horizon) if fixed[t] + could[t] > bound]
    chosen = [model.new_bool_var(f"x{i}") for i in range(len(found))]
    for indices in cuts.values():
        model.add_at_most_one(chosen[i] for i in indices)
    capacity = model.new_int_var(least, max(alive, default=0), "capacity")
    if budget is not None:
        model.add(capacity <= budget)
    for time in times:
        constant, terms = fixed[time], []
        for name in touched:
            if live.start[name] > time:
                continue
            freeing = [
                i for i in cuts.get(name, ()) if 2 * found[i].cut_end < time <= live.end[name]
            ]
            keeping = [i for i in needs.get(name, ()) if time <= found[i].at]
            if time <= live.end[name] and not freeing:
                constant += live.nbytes[name]
                continue
            if time > live.end[name] and not keeping:
                continue
            held = model.new_bool_var("")
            if time <= live.end[name]:
                model.add(held + sum(chosen[i] for i in freeing) >= 1)
            for i in keeping:
                model.add_implication(chosen[i], held)
            terms.append(held * live.nbytes[name])
        for index, option in enumerate(found):
            if option.at <= time <= 2 * option.last:
                extra = option.nbytes + (option.working if time == option.at else 0)
                terms.append(chosen[index] * extra)
        model.add(constant + sum(terms) <= capacity)
    cost = sum(chosen[i] * o.flops for i, o in enumerate(found))
    model.minimize(capacity if budget is None else cost)
    picked = {(o.tensor, o.split, o.chain) for o in hint.options}
    for index, option in enumerate(found):
        model.add_hint(chosen[index], (option.tensor, option.split, option.chain) in picked)
    solver = cp_model.CpSolver()
    solver.parameters.max_deterministic_time = deterministic_time
    solver.parameters.max_number_of_conflicts = max(
        1, round(deterministic_time * CONFLICTS_PER_UNIT)
    )
    solver.parameters.max_time_in_seconds = SECONDS_CAP
    solver.parameters.random_seed = 0
    solver.parameters.num_workers = workers
    solver.parameters.interleave_search = workers > 1
    status = solver.status_name(solver.solve(model))
    if solver.wall_time >= SECONDS_CAP:
        log.warning("recompute: CP-SAT hit its wall-clock safety cap; keeping the greedy choice")
        return None
    if status not in ("OPTIMAL", "FEASIBLE"):
        return (
            Choice((), max(alive, default=0), "cpsat", status=status)
            if status == "INFEASIBLE"
            else None
        )
    options_chosen = tuple(o for i, o in enumerate(found) if solver.boolean_value(chosen[i]))
    return Choice(
        options_chosen,
        max(profile(live, options_chosen)),
        "cpsat",
        round(solver.objective_value),
        math.ceil(solver.best_objective_bound - 1e-6),
        status,
    )


def apply(ir: IRGraph, order: Sequence[Operator], chosen: Sequence[Option]) -> None:
    """Clone each chosen chain, rewire the late readers, and number the steps anew."""
    step = {op.name: index for index, op in enumerate(order)}
    rewired = {
        o.tensor: [op for op in ir.consumers(o.tensor) if step[op.name] >= o.split] for o in chosen
    }
    before: dict[int, list[Operator]] = {}
    copies: dict[str, str] = {}
    for option in sorted(chosen, key=lambda o: (o.split, o.tensor)):
        renamed = ir.clone_operators(option.chain, "/recompute")
        copies[option.tensor] = renamed[option.tensor]
        before.setdefault(option.split, []).extend(
            ir.operator(renamed[name]) for name in option.chain
        )
    for option in chosen:
        for reader in rewired[option.tensor]:
            ir.redirect_read(reader, option.tensor, copies[option.tensor])
    position = 0
    for op in order:
        for clone in before.get(step[op.name], []):
            clone.step = position
            position += 1
        op.step = position
        position += 1


def _measured(ir: IRGraph, choice: Choice, target: Target) -> int:
    """:func:`measure` of ``ir`` with ``choice`` applied (on a copy)."""
    trial = IRGraph.from_json(ir.to_json())
    apply(trial, trial.scheduled_operators(), choice.options)
    return measure(trial, target)


def measure(ir: IRGraph, target: Target) -> int:
    """Activation peak of the final plan: the rest of the default pipeline on a copy."""
    from tierplan.passes import DEFAULT_PIPELINE

    rest = DEFAULT_PIPELINE[DEFAULT_PIPELINE.index("schedule") + 1 :]
    copy = IRGraph.from_json(ir.to_json())
    context = PassContext(target=target)
    for item in parse_pipeline(rest):  # the schedule holds already: no pipeline check
        item.run(copy, context)
    return sum(context.result(Evaluate).activation_peak_bytes.values())


def _budget(text: str) -> tuple[int, float]:
    """``budget=`` as (bytes, 0) or (0, ratio)."""
    refused = PipelineError(
        f"recompute{{budget={text}}}: expected bytes (40MiB) or a ratio in (0, 1]"
    )
    if text.isdigit() and int(text) > 1:
        return int(text), 0.0
    try:
        ratio = float(text)
    except ValueError:
        try:
            return parse_size(text, "recompute{budget}"), 0.0
        except InputError:
            raise refused from None
    if not 0 < ratio <= 1 or (text.isdigit() and ratio < 1):
        raise refused
    return 0, ratio


@register_pass
@dataclass(frozen=True)
class Recompute(ResultPass[RecomputeReport]):
    """Recompute long-lived activations before late readers to meet an activation budget."""

    name = "recompute"
    requires = frozenset({"schedule"})
    provides = frozenset({"schedule"})
    invalidates = GRAPH_FACTS - {"schedule"}  # it writes the steps itself

    budget: str = "0.8"  # bytes (40MiB) or a ratio in (0, 1] of the unrewritten peak
    depth: Annotated[int, Bounds(1)] = 4
    engine: Literal["auto", "cpsat", "greedy"] = "auto"
    max_deterministic_time: Annotated[float, Bounds(0)] = 5.0
    workers: Annotated[int, Bounds(1)] = 2

    def check_options(self) -> None:
        """``budget`` must be bytes or a ratio; CP-SAT needs some time."""
        _budget(self.budget)
        if self.max_deterministic_time == 0:
            raise PipelineError("recompute{max_deterministic_time=0}: expected a positive time")

    def ensures(self, ir: IRGraph, context: PassContext) -> None:
        """The steps stay a topological order, clones included."""
        ensure_topological(ir)

    def run(self, ir: IRGraph, context: PassContext) -> PassResult:
        order = ir.scheduled_operators()
        flops_before = sum(operator_flops(ir, op) for op in order)
        before = measure(ir, context.target)
        nbytes, ratio = _budget(self.budget)
        budget = nbytes or math.floor(ratio * before)
        live = liveness(ir, order)
        estimate = max(profile(live, []), default=0)
        if before <= budget:
            report = RecomputeReport(budget, before, before, estimate, 0, flops_before, "none")
            context.set_result(self, report)
            return PassResult(
                False, [f"activation peak {before} bytes already within budget {budget}"]
            )
        found = options(ir, order, live, self.depth)
        target = budget - (before - estimate)
        lowest: tuple[int, Choice] | None = None
        for round_ in range(1, ROUNDS + 1):
            choice = self._choose(ir, live, found, target)
            if choice is None:
                break
            after = _measured(ir, choice, context.target)
            if lowest is None or after < lowest[0]:
                lowest = (after, choice)
            if after <= budget:
                apply(ir, order, choice.options)
                return self._done(context, budget, before, after, flops_before, choice, round_)
            target -= after - budget
        least = self._lowest_peak(ir, live, found)
        after = _measured(ir, least, context.target)
        if after <= budget:  # the model's estimate was pessimistic: the final plan fits
            apply(ir, order, least.options)
            return self._done(context, budget, before, after, flops_before, least, ROUNDS)
        smallest = min(after, lowest[0]) if lowest is not None else after
        proof = f", {least.engine} {least.status}".rstrip(" ") if least.status else ""
        floor, busiest = own_bytes(ir, order)
        raise PassFailure(
            f"cannot: the smallest activation peak reachable by recomputation is {smallest} "
            f"bytes (budget {budget}; operator {busiest!r} alone reads and writes {floor} "
            f"bytes; the model's lowest peak {least.peak} of {estimate} bytes{proof})"
        )

    def _engine(self, ir: IRGraph) -> str:
        if self.engine != "auto":
            return self.engine
        return "cpsat" if ir.operator_count() <= EXACT_LIMIT else "greedy"

    def _choose(
        self, ir: IRGraph, live: Liveness, found: list[Option], target: int
    ) -> Choice | None:
        """The fewest extra FLOPs with the model's peak at most ``target``; None if none."""
        if target < floor(live, ir, ir.scheduled_operators()):
            return None
        quick = greedy(live, found, target)
        if self._engine(ir) == "greedy":
            return quick if quick.peak <= target else None
        hint = quick if quick.peak <= target else Choice((), 0, "greedy")
        kept = useful(live, found, target)
        solved = exact(live, kept, target, hint, self.max_deterministic_time, self.workers)
        if solved is None:
            return quick if quick.peak <= target else None
        return solved if solved.status != "INFEASIBLE" else None

    def _lowest_peak(self, ir: IRGraph, live: Liveness, found: list[Option]) -> Choice:
        """The choice with the lowest peak in the model the engine finds."""
        quick = greedy(live, found, 0)
        if self._engine(ir) != "cpsat":
            return quick
        lowest = floor(live, ir, ir.scheduled_operators())
        kept = useful(live, found, lowest)
        solved = exact(live, kept, None, quick, self.max_deterministic_time, self.workers, lowest)
        return solved if solved is not None and solved.peak <= quick.peak else quick

    def _done(
        self,
        context: PassContext,
        budget: int,
        before: int,
        after: int,
        flops_before: int,
        choice: Choice,
        rounds: int,
    ) -> PassResult:
        share = choice.flops / flops_before if flops_before else 0.0
        notes = [
            f"{len(choice.options)} tensors recomputed ({choice.engine}): activation peak "
            f"{before} -> {after} bytes (budget {budget}, {before - after} saved), "
            f"extra FLOPs {choice.flops} ({share:+.2%})",
        ]
        if choice.engine == "cpsat":
            notes.append(
                f"CP-SAT {choice.status}: objective {choice.objective}, bound {choice.bound}, "
                f"gap {choice.gap:.2%}; model peak {choice.peak} bytes, round {rounds}"
            )
        notes += [
            f"{o.tensor}: {len(o.chain)} operators before step {o.split}" for o in choice.options
        ]
        context.set_result(
            self,
            RecomputeReport(
                budget,
                before,
                after,
                choice.peak,
                choice.flops,
                flops_before,
                choice.engine,
                tuple(o.tensor for o in choice.options),
                choice.objective,
                choice.bound,
                choice.gap,
                choice.status,
                rounds,
                notes,
            ),
        )
        return PassResult(bool(choice.options), notes)
