"""``inplace``: let outputs reuse their input's bytes (views, in-place writes, concat parts).

Reads: ``Tensor.start``/``end`` (liveness), shapes, op types. Writes:
``Tensor.alias_of`` (``plan-format.md``); ``pack`` then places an alias group as one
block of bytes, each member at its position in it.

Rules:

- **Views** (Reshape, Flatten, Squeeze, Unsqueeze, Identity): the output is the
  bytes of input 0, when both have the same size and input 0 is not a weight.
- **Slice views** (Split, Slice, Gather of a constant scalar, along the outermost
  non-unit axis of input 0): each such output is its range of input 0's bytes
  (:func:`~tierplan.compiler.aliasing.slice_views`), input 0 not a weight.
- **In-place writes** (unary elementwise ops and activations, Cast between
  types of one size, Dropout, inference BatchNormalization, binary elementwise ops,
  row-wise Softmax/LogSoftmax/Hardmax and the normalizations, which read a whole
  row or channel group before writing it):
  the output overwrites one input when
  (a) the input has the output's shape and size (so broadcasting never reads an
  overwritten element),
  (b) the input is an activation: not a graph input, weight or graph output,
  (c) every member of the input's alias group (the input, the views of it, what
  it overwrote) ends at this operator's step: no later reader sees the overwrite,
  (d) the input was not already overwritten by another output, and
  (e) the output is not a graph output (it must then outlive the schedule on its own).
  The first input in slot order that qualifies is reused. Views and in-place writes
  also need (f): the input lies at a byte of its group that ``pack`` keeps aligned
  (plan-format.md exempts only slice views and concat parts from the alignment), so
  a slice at an unaligned position is neither viewed nor overwritten.
- **Concat parts**: a Concat's input is written straight into its slice of the
  Concat's output (``alias_of`` names the output) by the rules of
  :func:`~tierplan.compiler.aliasing.concat_parts`, decided first: a part is
  never also an in-place write, and the parts' group (the output, its parts,
  nested parts) counts in (c) as one, so nothing overwrites a part's bytes
  while the Concat's output still needs them.

The op types and the rules that need no schedule, (a), (b), (e), the view rule
and the concat-part rule, live in :mod:`tierplan.compiler.aliasing`, which the
scheduler's memory model shares; this pass adds the ones that depend on the
schedule or the layout, (c), (d) and (f).
"""

from __future__ import annotations

from dataclasses import dataclass

from tierplan.compiler.alias_layout import alias_positions, slice_view_position
from tierplan.compiler.aliasing import (
    concat_parts,
    reuse_candidates,
    slice_views,
)
from tierplan.compiler.ir import IRGraph, Operator, Tensor
from tierplan.compiler.pass_manager import Pass, PassContext, PassResult, register_pass


def _group_end(ir: IRGraph, root: str, ends: dict[str, int]) -> int:
    return ends.get(root, ir.tensor(root).end or 0)


@register_pass
@dataclass(frozen=True)
class InPlace(Pass):
    """Mark views, in-place writes and concat parts (alias_of) so tensors share bytes."""

    name = "inplace"
    requires = frozenset({"liveness"})
    provides = frozenset({"aliasing"})
    invalidates = frozenset({"placement", "evaluation"})

    views: bool = True
    in_place: bool = True
    concat: bool = True

    def run(self, ir: IRGraph, context: PassContext) -> PassResult:
        """Set ``alias_of`` where the rules of the module docstring allow it."""
        root_of: dict[str, str] = {}
        group_end: dict[str, int] = {}
        overwritten: set[str] = set()
        for tensor in ir.tensors():
            tensor.alias_of = None
        parts = concat_parts(ir) if self.concat else {}
        for part, concat in parts.items():
            ir.tensor(part).alias_of = concat.outputs[0]
        members = [ir.tensor(name) for name in parts]
        for name, root in ir.alias_roots(members).items():
            root_of[name] = root
            group_end[root] = max(group_end.get(root, 0), ir.tensor(name).end or 0)
        # Byte position in the group's root, which pack aligns: a view or an in-place
        # write must lie at an aligned one (only slices and parts sit where their bytes are).
        inside = alias_positions(ir, members)
        alignment = context.target.alignment
        marked = len(parts)
        for op in ir.scheduled_operators():
            shared = [
                (output, source, slice_view_position(ir, op, output.name) or 0)
                for output, source in (slice_views(ir, op) if self.views else [])
            ]
            found = reuse_candidates(ir, op, self.views, self.in_place)
            if found is not None and found.output.needs_buffer and found.output.name not in parts:
                aligned = [s for s in found.sources if inside.get(s.name, 0) % alignment == 0]
                source = self._source(ir, op, found.view, aligned, root_of, group_end, overwritten)
                if source is not None:
                    shared.append((found.output, source, 0))
                    if not found.view:
                        overwritten.add(source.name)
            for output, source, position in shared:
                if not output.needs_buffer or not source.needs_buffer or output.name in parts:
                    continue
                output.alias_of = source.name
                inside[output.name] = inside.get(source.name, 0) + position
                root = root_of.get(source.name, source.name)
                root_of[output.name] = root
                end = max(_group_end(ir, root, group_end), source.end or 0, output.end or 0)
                group_end[root] = end
                marked += 1
        return PassResult(changed=marked > 0, notes=[f"{marked} outputs reuse an input's bytes"])

    def _source(
        self,
        ir: IRGraph,
        op: Operator,
        view: bool,
        sources: list[Tensor],
        root_of: dict[str, str],
        group_end: dict[str, int],
        overwritten: set[str],
    ) -> Tensor | None:
        if view:
            return sources[0] if sources and sources[0].needs_buffer else None
        for source in sources:
            if (
                source.name not in overwritten
                and source.end == op.step
                and _group_end(ir, root_of.get(source.name, source.name), group_end)
                <= (op.step or 0)
            ):
                return source
        return None
