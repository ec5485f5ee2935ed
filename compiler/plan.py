"""The plan file (``tierplan-plan/1``, see ``plan-format.md``): build it from the IR, read it.

The plan is a public contract read without tierplan, so it is plain JSON data
(``dict``). :func:`build_plan` turns a planned IR into it; :func:`plan_text` is its
deterministic text (same plan, same bytes); :func:`read_plan` reads a plan file of
any origin through the checks of :mod:`.plan_schema`.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tierplan.compiler.errors import InputError, InvariantError
from tierplan.compiler.inputs import MAX_PLAN_FILE, read_text
from tierplan.compiler.intervals import max_live_bytes
from tierplan.compiler.ir import TRANSFER_OP, IRGraph, Tensor, alias_roots
from tierplan.compiler.plan_schema import plan_problems
from tierplan.compiler.target import Target

PLAN_FORMAT = "tierplan-plan/1"
Plan = dict[str, Any]


@dataclass(frozen=True, slots=True)
class PlanBuffer:
    """One entry of a plan's ``buffers`` (plan-format.md), typed; ``index`` is its position.

    The one record of a plan buffer: :func:`build_plan` writes it (:meth:`to_json`),
    the summary, the validator, the reports, the allocator simulation and
    ``tierplan run`` read it. Build it from a plan whose structure
    :func:`~tierplan.compiler.plan_schema.plan_problems` accepted (:meth:`of_plan`).
    """

    index: int
    tensor: str
    kind: str
    nbytes: int
    device: int
    tier: str
    offset: int
    start: int
    end: int
    alias_of: str | None = None

    @classmethod
    def of_plan(cls, plan: Plan) -> list[PlanBuffer]:
        """Every buffer of a structurally valid plan, in order."""
        return cls.of_entries(plan["buffers"])

    @classmethod
    def of_entries(cls, entries: Sequence[dict[str, Any]]) -> list[PlanBuffer]:
        """Records of plan ``buffers`` entries (JSON objects), in order."""
        return [
            cls(
                index,
                b["tensor"],
                b["kind"],
                b["bytes"],
                b["device"],
                b["tier"],
                b["offset"],
                b["start"],
                b["end"],
                b.get("alias_of"),
            )
            for index, b in enumerate(entries)
        ]

    def to_json(self) -> dict[str, Any]:
        """Its ``buffers`` entry, keys in plan-format.md's order."""
        return {
            "tensor": self.tensor,
            "kind": self.kind,
            "bytes": self.nbytes,
            "device": self.device,
            "tier": self.tier,
            "offset": self.offset,
            "start": self.start,
            "end": self.end,
            "alias_of": self.alias_of,
        }

    @property
    def region(self) -> tuple[int, str]:
        """``(device, tier)``: the memory the buffer lives in."""
        return (self.device, self.tier)

    @property
    def region_key(self) -> str:
        """``"<device>/<tier>"``: its region as ``summary`` dicts name it."""
        return region_key(self.device, self.tier)

    def live_at(self, step: int) -> bool:
        """True when ``step`` is in the buffer's inclusive range."""
        return self.start <= step <= self.end

    def label(self) -> str:
        """How messages name the buffer: tensor, region, bytes and steps."""
        return (
            f"{self.tensor!r} ({self.device}/{self.tier} bytes [{self.offset}, "
            f"{self.offset + self.nbytes}) steps [{self.start}, {self.end}])"
        )


def region_key(device: int, tier: str) -> str:
    """The ``"<device>/<tier>"`` key of ``summary`` dicts."""
    return f"{device}/{tier}"


def alias_groups(buffers: Sequence[PlanBuffer]) -> dict[tuple[str, str], str]:
    """Map each ``(region key, tensor)`` to the root of its ``alias_of`` chain in that region.

    ``alias_of`` applies to the aliased tensor's buffers on the same device and tier
    (plan-format.md), so a tensor copied to other devices or tiers belongs to one
    group per region. Cycles end at the first repeat (:func:`~tierplan.compiler.ir.alias_roots`).
    """
    parent: dict[tuple[str, str], str | None] = {}
    for b in buffers:
        key = (b.region_key, b.tensor)
        parent[key] = parent.get(key) or b.alias_of or None

    def link(key: tuple[str, str]) -> tuple[str, str] | None:
        up = parent.get(key)
        return (key[0], up) if up else None

    roots = alias_roots(parent, link)
    return {key: roots[key][1] for key in parent}


def group_live_ranges(members: Sequence[PlanBuffer]) -> list[tuple[int, int, int]]:
    """The bytes one alias group holds, as inclusive ``(start, end, bytes)`` ranges.

    At each step the group holds the union of the byte ranges of its live members
    (a slice view or a concat part lies inside another member: counted once).
    """
    events = sorted({b.start for b in members} | {b.end + 1 for b in members})
    waiting = sorted(members, key=lambda b: b.start, reverse=True)
    live: list[PlanBuffer] = []
    ranges = []
    for first, after in itertools.pairwise(events):
        while waiting and waiting[-1].start <= first:
            live.append(waiting.pop())
        live = [b for b in live if b.end >= first]
        held, reach = 0, -(2**63)
        for low, high in sorted((b.offset, b.offset + b.nbytes) for b in live):
            held += max(0, high - max(low, reach))
            reach = max(reach, high)
        if held:
            ranges.append((first, after - 1, held))
    return ranges


def region_live_ranges(buffers: Sequence[PlanBuffer]) -> list[tuple[int, int, int]]:
    """Inclusive ``(start, end, bytes)`` ranges of one region's buffers, each alias group
    counted once: their :func:`~tierplan.compiler.intervals.max_live_bytes` is the
    region's lower bound."""
    roots = alias_groups(buffers)
    groups: dict[tuple[str, str], list[PlanBuffer]] = defaultdict(list)
    for b in buffers:
        key = (b.region_key, b.tensor)
        groups[(key[0], roots[key])].append(b)
    return [span for members in groups.values() for span in group_live_ranges(members)]


def memory_summary(
    buffers: Sequence[PlanBuffer], kinds: set[str] | None = None
) -> tuple[dict[str, int], dict[str, int]]:
    """``(peak, lower_bound)`` bytes per ``"<device>/<tier>"`` as plan-format.md defines them.

    ``kinds`` restricts both to buffers of those kinds (e.g. activations only);
    the peak is then measured from the lowest such buffer's offset.
    """
    chosen = [b for b in buffers if kinds is None or b.kind in kinds]
    regions: dict[str, list[PlanBuffer]] = defaultdict(list)
    for buffer in chosen:
        regions[buffer.region_key].append(buffer)
    peaks, bounds = {}, {}
    for key, members in sorted(regions.items()):
        floor = 0 if kinds is None else min(b.offset for b in members)
        peaks[key] = max(b.offset + b.nbytes for b in members) - floor
        bounds[key] = max_live_bytes(region_live_ranges(members))
    return peaks, bounds


def build_plan(ir: IRGraph, target: Target, latency_s: float | None = None) -> Plan:
    """The plan of a scheduled, live and packed IR.

    A copy of a tensor on another device (``Tensor.copy_of``) is a buffer of the
    original tensor, and operators reading the copy name the original.
    """
    ops = ir.scheduled_operators()
    buffers = [
        _planned_buffer(ir, index, t)
        for index, t in enumerate(t for t in ir.tensors() if t.needs_buffer)
    ]
    op_entries = []
    for op in ops:
        entry: dict[str, Any] = {
            "node": op.name,
            "op_type": op.op_type,
            "device": op.device,
            "step": op.step,
            "inputs": [ir.plan_name(name) for name in op.inputs],
            "outputs": [ir.plan_name(name) for name in op.outputs],
            "tiles": None,
        }
        if op.tiles is not None:
            tiles = op.tiles
            entry["tiles"] = {
                "axes": tiles.axes,
                "count": tiles.count,
                "l1_bytes": tiles.l1_bytes,
                "traffic_bytes": tiles.traffic_bytes,
            }
        if op.inserted:
            entry["inserted"] = True
        if op.op_type == TRANSFER_OP:
            entry["to_device"] = op.attributes["to_device"]
        if op.implicit_inputs:
            entry["implicit_inputs"] = [ir.plan_name(name) for name in op.implicit_inputs]
        op_entries.append(entry)
    peaks, bounds = memory_summary(buffers)
    summary: dict[str, Any] = {"peak_bytes": peaks, "lower_bound_bytes": bounds}
    if latency_s is not None:
        if not math.isfinite(latency_s):
            raise InputError(
                f"the estimated latency is {latency_s}: the target's bandwidths or compute "
                "peaks are too small for this model"
            )
        summary["latency_s"] = latency_s
    plan: Plan = {
        "format": PLAN_FORMAT,
        "model": {"path": ir.model.path, "sha256": ir.model.sha256},
        "target": target.to_json(),
    }
    if ir.model.dims:
        plan["dims"] = ir.model.dims
    plan.update(
        schedule=[op.name for op in ops],
        buffers=[b.to_json() for b in buffers],
        ops=op_entries,
        summary=summary,
    )
    return plan


def _planned_buffer(ir: IRGraph, index: int, t: Tensor) -> PlanBuffer:
    if t.start is None or t.end is None or t.tier is None or t.offset is None:
        raise InvariantError(f"tensor {t.name!r} has a live range but no tier or offset")
    alias = t.alias_of and ir.plan_name(t.alias_of)
    return PlanBuffer(
        index, ir.plan_name(t.name), t.kind, t.nbytes, t.device, t.tier, t.offset, t.start, t.end,
        alias,
    )  # fmt: skip


def plan_text(plan: Plan) -> str:
    """Deterministic strict JSON (no NaN or Infinity): indented, one line per buffer and per
    operator (diff-friendly)."""
    lines = ["{"]
    keys = list(plan)
    for position, key in enumerate(keys):
        value = plan[key]
        comma = "," if position < len(keys) - 1 else ""
        if key in ("buffers", "ops", "schedule") and isinstance(value, list):
            items = [
                f"    {json.dumps(item, ensure_ascii=False, allow_nan=False)}" for item in value
            ]
            body = ",\n".join(items)
            lines.append(
                f"  {json.dumps(key)}: [\n{body}\n  ]{comma}"
                if items
                else f"  {json.dumps(key)}: []{comma}"
            )
        else:
            text = json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False).replace(
                "\n", "\n  "
            )
            lines.append(f"  {json.dumps(key)}: {text}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def is_rewritten(plan: Plan) -> bool:
    """True when the plan schedules operators a pass inserted (other than transfers):
    its graph is the rewritten one of the ``.planned.onnx``, not the source model's."""
    ops = plan.get("ops")
    return isinstance(ops, list) and any(
        isinstance(op, dict) and op.get("inserted") and op.get("op_type") != TRANSFER_OP
        for op in ops
    )


def planned_model_path(plan_path: Path, model: Path) -> Path:
    """Where ``compile`` wrote the rewritten model beside ``plan_path``."""
    return plan_path.parent / f"{model.stem}.planned.onnx"


def existing_planned_model(path: str | Path) -> Path:
    """``path``, the rewritten model a rewritten plan needs, refused when it is no file."""
    if not Path(path).is_file():
        raise InputError(
            f"the plan schedules operators a pass inserted; the rewritten model "
            f"{str(path)!r} that holds them does not exist (pass --planned-model)"
        )
    return Path(path)


def read_plan(path: Path) -> Plan:
    """Read a plan file whose structure follows plan-format.md (:mod:`.plan_schema`).

    Raises :class:`~tierplan.compiler.errors.InputError` naming the file, the field
    and the value when it is not strict JSON or does not have a plan's structure.
    """
    data = read_plan_document(path)
    problems = plan_problems(data, limit=2)
    if problems:
        more = " (and more)" if len(problems) > 1 else ""
        raise InputError(f"plan file {str(path)!r}: {problems[0]}{more}")
    return data


def read_plan_document(path: Path) -> dict[str, Any]:
    """The JSON object of a plan file, its structure not checked yet (any plan version)."""
    where = f"plan file {str(path)!r}"
    text = read_text(path, "plan file", MAX_PLAN_FILE)
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise InputError(f"{where} is nested too deeply to be a plan") from None
    except ValueError as error:  # JSONDecodeError, and integers of over 4,300 digits
        raise InputError(f"{where} is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise InputError(f"{where} does not hold a JSON object")
    return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")
