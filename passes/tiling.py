"""``tiling``: cut every operator too large for L1 into tiles that fit.

Reads: shapes, ``Operator.step`` and ``device``, ``Tensor.alias_of`` (a view or a
Concat of parts in place, :func:`~tierplan.compiler.aliasing.moves_nothing`, moves
nothing and is never tiled),
the target's first tier (its capacity minus its ``reserve``). Writes:
``Operator.tiles`` (axes with tile sizes in loop order, outermost first; tile
count; L1 bytes; traffic, in total and per tensor) on operators whose working set
(every operand whole) exceeds the budget, ``None`` on the others; and one ``scratch`` tensor per tile buffer, owned by the
operator (``scratch_of``), in the first tier, live at the operator's step only, with an offset (buffers of one
step stacked from 0), so their total is ``l1_bytes`` (``plan-format.md``).

The tilers are :mod:`tierplan.compiler.tiling`. An operator larger than the
budget that no tiler handles, or whose tiler finds no tiling that fits, is left
untiled: it streams its tensors from the tiers they live in, each moved once (the
cost model counts that traffic), and the pass notes it. The pass fails only when
not even one element of each operand fits (double-buffered), or, with
``strict=true``, on any operator it leaves untiled above the budget. A target
with one tier has no faster memory to tile into: nothing is tiled.
"""

from __future__ import annotations

from dataclasses import dataclass

from tierplan.compiler.aliasing import moves_nothing
from tierplan.compiler.errors import PassFailure
from tierplan.compiler.ir import IRGraph, Operator, Tensor, Tiles
from tierplan.compiler.pass_manager import Pass, PassContext, PassResult, register_pass
from tierplan.compiler.tiling import (
    TilingError,
    choose_tiling,
    element_floor,
    loop_nest,
    untiled_bytes,
)
from tierplan.compiler.tiling.nest import LoopNest
from tierplan.compiler.tiling.nest import Tiling as NestTiling


def _scratch_name(ir: IRGraph, op: Operator, label: str) -> str:
    name = f"{op.name}.tile.{label}"
    suffix = 0
    while ir.has_tensor(name):
        suffix += 1
        name = f"{op.name}.tile{suffix}.{label}"
    return name


def _remove_scratch(ir: IRGraph) -> None:
    """Drop the tile buffers of an earlier run."""
    for stale in [t.name for t in ir.tensors() if t.scratch_of is not None]:
        ir.remove_tensor(stale)


def _search(nest: LoopNest | None, budget: int, alignment: int) -> NestTiling | TilingError | None:
    """The tiling of ``nest``, or why there is none (``None``: no tiler)."""
    if nest is None:
        return None
    try:
        return choose_tiling(nest, budget, alignment)
    except TilingError as error:
        return error


@register_pass
@dataclass(frozen=True)
class Tiling(Pass):
    """Tile operators whose working set exceeds L1; add their L1 scratch buffers."""

    name = "tiling"
    requires = frozenset({"liveness"})
    provides = frozenset({"tiling"})
    invalidates = frozenset({"placement", "evaluation"})

    strict: bool = False

    def run(self, ir: IRGraph, context: PassContext) -> PassResult:
        """Set ``tiles`` and add scratch tensors (see the module docstring)."""
        l1 = context.target.tiers[0]
        budget, alignment = l1.usable, context.target.alignment
        _remove_scratch(ir)
        for op in ir.operators():
            op.tiles = None
        if len(context.target.tiers) < 2:
            return PassResult(changed=False, notes=["one memory tier: nothing to tile into"])
        tiled, streamed = 0, []
        for op in ir.scheduled_operators():
            if moves_nothing(ir, op):
                continue
            nest = loop_nest(ir, op)
            touched = sum(ir.tensor(n).nbytes for n in [*op.read_tensors(), *op.outputs] if n)
            if (untiled_bytes(nest) if nest is not None else touched) <= budget:
                continue
            floor = element_floor(ir, op, alignment)
            if floor > budget:
                raise TilingError(
                    f"tiling: operator {op.name!r} ({op.op_type}) does not fit L1: one element "
                    f"of each operand, double-buffered, needs {floor} bytes, the L1 budget is {budget}"
                )
            found = _search(nest, budget, alignment)
            if isinstance(found, NestTiling) and nest is not None:
                self._apply(ir, op, found, nest, l1.name)
                tiled += 1
            elif self.strict:
                raise (
                    found
                    if isinstance(found, TilingError)
                    else PassFailure(
                        f"tiling: operator {op.name!r} ({op.op_type}) touches {touched} bytes, "
                        f"more than the L1 budget {budget}, and no tiler handles it"
                    )
                )
            else:
                streamed.append(op.op_type)
        notes = [f"{tiled} operators tiled into {l1.name} (budget {budget} bytes)"]
        if streamed:
            kinds = ", ".join(sorted(set(streamed)))
            notes.append(
                f"{len(streamed)} operators larger than {l1.name} stream from their tiers "
                f"untiled (no tiler, or none that fits): {kinds}"
            )
        return PassResult(changed=True, notes=notes)

    def _apply(
        self, ir: IRGraph, op: Operator, tiling: NestTiling, nest: LoopNest, tier: str
    ) -> None:
        sizes = {axis.name: axis.size for axis in nest.axes}
        offset = 0
        for label, size in tiling.buffers:
            ir.add_tensor(
                Tensor(
                    name=_scratch_name(ir, op, label),
                    dtype="uint8",
                    shape=(size,),
                    nbytes=size,
                    kind="scratch",
                    scratch_of=op.name,
                    start=op.step,
                    end=op.step,
                    device=op.device,
                    tier=tier,
                    offset=offset,
                )
            )
            offset += size
        op.tiles = Tiles(
            axes={name: tiling.sizes[name] for name in tiling.order if sizes[name] > 1},
            count=tiling.count,
            l1_bytes=tiling.l1_bytes,
            traffic_bytes=tiling.traffic_bytes,
            traffic_by_tensor=dict(sorted(tiling.traffic.items())),
        )
