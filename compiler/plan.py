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
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tierplan.compiler.errors import InputError
from tierplan.compiler.inputs import MAX_PLAN_FILE, read_text
from tierplan.compiler.ir import TRANSFER_OP, IRGraph, alias_roots
from tierplan.compiler.plan_schema import plan_problems
from tierplan.compiler.target import Target

PLAN_FORMAT = "tierplan-plan/1"
Plan = dict[str, Any]


@dataclass(frozen=True, slots=True)
class PlanBuffer:
    """One entry of a plan's ``buffers`` (plan-format.md), typed; ``index`` is its position.

    The one record of a plan buffer: the validator checks the rules on it and
    ``tierplan run`` places tensors with it. Build it from a plan whose structure
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
            for index, b in enumerate(plan["buffers"])
        ]

    @property
    def region(self) -> tuple[int, str]:
        """``(device, tier)``: the memory the buffer lives in."""
        return (self.device, self.tier)

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


def live_bytes_per_step(
    ranges: Iterable[tuple[int, int, int]], steps: int | None = None
) -> np.ndarray:
    """Bytes alive at each step, for inclusive ``(start, end, bytes)`` ranges.

    ``steps`` is the curve's length (default: up to the last range's end).

    >>> live_bytes_per_step([(0, 1, 10), (1, 2, 5), (2, 3, 7)]).tolist()
    [10, 15, 12, 7]
    """
    array = np.array(list(ranges), dtype=np.int64).reshape(-1, 3)
    reach = int(array[:, 1].max()) + 1 if len(array) else 0
    steps = reach if steps is None else steps
    delta = np.zeros(max(steps, reach) + 1, dtype=np.int64)
    np.add.at(delta, array[:, 0], array[:, 2])
    np.add.at(delta, array[:, 1] + 1, -array[:, 2])
    return np.cumsum(delta)[:steps]


def max_live_bytes(ranges: Iterable[tuple[int, int, int]]) -> int:
    """Largest total of bytes alive at one step, for inclusive ``(start, end, bytes)`` ranges.

    >>> max_live_bytes([(0, 1, 10), (1, 2, 5), (2, 3, 7)])
    15
    """
    curve = live_bytes_per_step(ranges)
    return int(curve.max()) if len(curve) else 0


def alias_groups(buffers: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """Map each ``(region key, tensor)`` to the root of its ``alias_of`` chain in that region.

    ``alias_of`` applies to the aliased tensor's buffers on the same device and tier
    (plan-format.md), so a tensor copied to other devices or tiers belongs to one
    group per region. Cycles end at the first repeat (:func:`~tierplan.compiler.ir.alias_roots`).
    """
    parent: dict[tuple[str, str], str | None] = {}
    for b in buffers:
        key = (region_key(b["device"], b["tier"]), b["tensor"])
        parent[key] = parent.get(key) or b.get("alias_of") or None

    def link(key: tuple[str, str]) -> tuple[str, str] | None:
        up = parent.get(key)
        return (key[0], up) if up else None

    roots = alias_roots(parent, link)
    return {key: roots[key][1] for key in parent}


def group_live_ranges(members: list[dict[str, Any]]) -> list[tuple[int, int, int]]:
    """The bytes one alias group holds, as inclusive ``(start, end, bytes)`` ranges.

    At each step the group holds the union of the byte ranges of its live members
    (a slice view or a concat part lies inside another member: counted once).
    """
    events = sorted({b["start"] for b in members} | {b["end"] + 1 for b in members})
    waiting = sorted(members, key=lambda b: b["start"], reverse=True)
    live: list[dict[str, Any]] = []
    ranges = []
    for first, after in itertools.pairwise(events):
        while waiting and waiting[-1]["start"] <= first:
            live.append(waiting.pop())
        live = [b for b in live if b["end"] >= first]
        held, reach = 0, -(2**63)
        for low, high in sorted((b["offset"], b["offset"] + b["bytes"]) for b in live):
            held += max(0, high - max(low, reach))
            reach = max(reach, high)
        if held:
            ranges.append((first, after - 1, held))
    return ranges


def region_live_ranges(buffers: list[dict[str, Any]]) -> list[tuple[int, int, int]]:
    """Inclusive ``(start, end, bytes)`` ranges of one region's buffers, each alias group
    counted once: their :func:`max_live_bytes` is the region's lower bound."""
    roots = alias_groups(buffers)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for b in buffers:
        key = (region_key(b["device"], b["tier"]), b["tensor"])
        groups[(key[0], roots[key])].append(b)
    return [span for members in groups.values() for span in group_live_ranges(members)]


def memory_summary(
    buffers: list[dict[str, Any]], kinds: set[str] | None = None
) -> tuple[dict[str, int], dict[str, int]]:
    """``(peak, lower_bound)`` bytes per ``"<device>/<tier>"`` as plan-format.md defines them.

    ``kinds`` restricts both to buffers of those kinds (e.g. activations only);
    the peak is then measured from the lowest such buffer's offset.
    """
    chosen = [b for b in buffers if kinds is None or b["kind"] in kinds]
    regions: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for buffer in chosen:
        regions[region_key(buffer["device"], buffer["tier"])].append(buffer)
    peaks, bounds = {}, {}
    for key, members in sorted(regions.items()):
        floor = 0 if kinds is None else min(b["offset"] for b in members)
        peaks[key] = max(b["offset"] + b["bytes"] for b in members) - floor
        bounds[key] = max_live_bytes(region_live_ranges(members))
    return peaks, bounds


def build_plan(ir: IRGraph, target: Target, latency_s: float | None = None) -> Plan:
    """The plan of a scheduled, live and packed IR.

    A copy of a tensor on another device (``Tensor.copy_of``) is a buffer of the
    original tensor, and operators reading the copy name the original.
    """
    ops = ir.scheduled_operators()
    buffers = [
        {
            "tensor": ir.plan_name(t.name),
            "kind": t.kind,
            "bytes": t.nbytes,
            "device": t.device,
            "tier": t.tier,
            "offset": t.offset,
            "start": t.start,
            "end": t.end,
            "alias_of": t.alias_of and ir.plan_name(t.alias_of),
        }
        for t in ir.tensors()
        if t.needs_buffer
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
    plan.update(schedule=[op.name for op in ops], buffers=buffers, ops=op_entries, summary=summary)
    return plan


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
