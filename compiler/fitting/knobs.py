"""The knobs the fit search turns: each option is a change of the pass pipeline.

A :class:`Knob` is one decision (the schedule's order, attention chunking, 16-bit
activations ...) with its options; option 0 is the default. An option either
replaces a pass of the base pipeline (``edits``: pass name -> its new spelling,
``""`` removes it), inserts rewrite passes (``rewrites``: placed by
:func:`assemble` where their requirements hold), or lets tiling use only a share
of the fastest tier (``tile_share``, through the tier's ``reserve``).

A knob whose pass is not registered (``registered_passes()``) is left out, so a
rewrite merged later (``sequence``, ``precision``, ``recompute``) joins the search
by being registered: its entries below are already written. An option whose spelling its
pass refuses (another option type than expected) is left out the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from tierplan.compiler.errors import PipelineError
from tierplan.compiler.ir import IRGraph
from tierplan.compiler.pass_manager import (
    INITIAL_FACTS,
    Pass,
    check_pipeline,
    parse_pipeline,
    registered_passes,
)
from tierplan.compiler.target import Target

ROW_CHUNKS = (2, 4, 8, 16, 32)
ONLINE_CHUNKS = (8, 32)
TILE_SHARES = (0.5, 0.25)
RECOMPUTE_RATIOS = ("0.8", "0.6", "0.4")
SEQUENCE_CHUNKS = (4, 16)


@dataclass(frozen=True, slots=True)
class Option:
    """One choice of a knob: its label and the pipeline change it makes."""

    label: str
    rewrites: tuple[str, ...] = ()
    edits: Mapping[str, str] = field(default_factory=dict)
    tile_share: float = 1.0
    exact: bool = True  # False: numerics change (16-bit activations)


@dataclass(frozen=True, slots=True)
class Knob:
    """A decision of the search; ``options[0]`` is what ``compile`` does without a budget."""

    name: str
    options: tuple[Option, ...]
    needs: str = ""  # the pass that must be registered for the knob to exist
    applies: Callable[[IRGraph], bool] | None = None  # None: to every model


def all_knobs(target: Target, devices: Sequence[int]) -> list[Knob]:
    """Every knob the search knows, registered or not; ``devices``: the counts to try."""
    reuse_off = "inplace{views=false in_place=false}"
    rows = [Option(f"rows/{n}", rewrites=(f"attention{{chunks={n}}}",)) for n in ROW_CHUNKS]
    online = [
        Option(f"online/{n}", rewrites=(f"attention{{chunks={n} mode=online}}",))
        for n in ONLINE_CHUNKS
    ]
    recompute = [
        Option(f"recompute/{ratio}", rewrites=(f"recompute{{budget={ratio}}}",))
        for ratio in RECOMPUTE_RATIOS
    ]
    sequence = [Option(f"rows/{n}", rewrites=(f"sequence{{chunks={n}}}",)) for n in SEQUENCE_CHUNKS]
    precision = [
        Option("float16", rewrites=("precision{activations=float16}",), exact=False),
        Option(
            "float16+weights",
            rewrites=("precision{activations=float16 weights=float16}",),
            exact=False,
        ),
    ]
    # Graph rewrites in the order their passes run (each after the previous one).
    knobs = [
        Knob(
            "order", (Option("memory"), Option("onnx", edits={"schedule": "schedule{order=onnx}"}))
        ),
        Knob("reuse", (Option("on"), Option("off", edits={"inplace": reuse_off}))),
        Knob(
            "concat chains",
            (Option("off"), Option("on", rewrites=("concat-chains",))),
            "concat-chains",
            _has_prefix_concats,
        ),
        Knob("sequence", (Option("off"), *sequence), "sequence", _has_attention),
        Knob("attention", (Option("off"), *rows, *online), "attention", _has_attention),
        Knob("precision", (Option("float32"), *precision), "precision"),
        Knob("recompute", (Option("off"), *recompute), needs="recompute"),
        Knob(
            "devices",
            tuple(
                Option(str(n), edits={"partition": f"partition{{devices={n}}}"})
                if n != target.devices
                else Option(str(n))
                for n in devices
            ),
        ),
    ]
    if len(target.tiers) > 1:
        shares = [Option(f"L1/{round(1 / s)}", tile_share=s) for s in TILE_SHARES]
        knobs.append(Knob("tiles", (Option("L1"), *shares), needs="tiling"))
    if len(target.tiers) > 2:
        slower = Option("off", edits={"tiers": ""})
        knobs.append(Knob("fast tier", (Option("on"), slower), needs="tiers"))
    return knobs


def _has_prefix_concats(ir: IRGraph) -> bool:
    from tierplan.passes.concat_chains import chain_links

    return bool(chain_links(ir))


def _has_attention(ir: IRGraph) -> bool:
    from tierplan.passes.attention import find_attention

    softmaxes = [op for op in ir.operators() if op.op_type == "Softmax"]
    return any(find_attention(ir, op) is not None for op in softmaxes)


def available_knobs(knobs: Sequence[Knob], base: Sequence[Pass], ir: IRGraph) -> list[Knob]:
    """The knobs whose pass is registered and that apply to ``ir``, with the options
    that make a valid pipeline."""
    registered = registered_passes()
    found = []
    for knob in knobs:
        if knob.needs and knob.needs not in registered:
            continue
        if knob.applies is not None and not knob.applies(ir):
            continue
        options = [o for o in knob.options if _valid(o, base)]
        if options and options[0] is knob.options[0]:
            found.append(dataclasses.replace(knob, options=tuple(options)))
    return found


def _valid(option: Option, base: Sequence[Pass]) -> bool:
    try:
        assemble(base, [option])
    except PipelineError:
        return False
    return True


def assemble(base: Sequence[Pass], options: Sequence[Option]) -> list[Pass]:
    """The pipeline of ``base`` with every option's edits and rewrites applied."""
    edits: dict[str, str] = {}
    for option in options:
        edits.update(option.edits)
    passes: list[Pass] = []
    for item in base:
        spelled = edits.get(item.name, item.spelled())
        if spelled:
            passes += parse_pipeline(_merged(spelled, item))
    after = 0  # rewrites run in the knobs' order: each after the one before
    for option in options:
        for rewrite in parse_pipeline(list(option.rewrites)) if option.rewrites else []:
            passes, after = _insert(passes, rewrite, after)
    check_pipeline(passes)
    return passes


def _merged(spelled: str, base: Pass) -> str:
    """An edit keeps the base pass's own option changes (the screening solvers)."""
    edited = parse_pipeline(spelled)[0]
    if edited.name != base.name:
        return spelled
    changes = {
        f.name: getattr(base, f.name)
        for f in dataclasses.fields(base)
        if getattr(edited, f.name) == f.default and getattr(base, f.name) != f.default
    }
    return dataclasses.replace(edited, **changes).spelled()


def _insert(passes: list[Pass], rewrite: Pass, after: int) -> tuple[list[Pass], int]:
    """``rewrite`` at the first place from ``after`` where its requirements hold,
    followed by the passes before it that provide facts it invalidates (run again on
    the rewritten graph); and the position following it."""
    facts = set(INITIAL_FACTS)
    position = 0
    while position < after or not rewrite.requires <= facts:
        if position == len(passes):
            raise PipelineError(f"no place for {rewrite.name!r} in the pipeline")
        facts = (facts - passes[position].invalidates) | passes[position].provides
        position += 1
    before = passes[:position]
    again = [item for item in before if item.provides & rewrite.invalidates]
    return [*before, rewrite, *again, *passes[position:]], position + 1


def planning_target(target: Target, options: Sequence[Option]) -> Target:
    """``target`` with the fastest tier's reserve grown to the smallest ``tile_share``."""
    share = min((o.tile_share for o in options), default=1.0)
    if share >= 1 or len(target.tiers) < 2:
        return target
    first = target.tiers[0]
    reserve = max(first.reserve, first.capacity - int(first.usable * share))
    tiers = (dataclasses.replace(first, reserve=reserve), *target.tiers[1:])
    return dataclasses.replace(target, tiers=tiers)
