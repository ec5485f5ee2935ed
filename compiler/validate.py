"""The plan validator: every rule of ``plan-format.md``, checked against the model.

:func:`validate_plan` reads a plan as plain JSON data (it may come from any tool)
and the model's IR as the frontend built it, and returns the list of
:class:`Violation` found; an empty list means the plan is valid. Each violation
names its rule and the buffers or operators involved. The evaluator runs it before
costing a plan, and ``tierplan check`` runs it on any plan file.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from tierplan.compiler.alias_layout import concat_part_positions, slice_view_position
from tierplan.compiler.intervals import IntervalIndex, sharing_pairs
from tierplan.compiler.ir import IRGraph, Operator, alias_roots
from tierplan.compiler.plan import PLAN_FORMAT, PlanBuffer, memory_summary
from tierplan.compiler.plan_schema import plan_problems

# Operators whose output may be declared a view of input 0 (plan-format.md).
VIEW_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"})
# Alias kinds that only read their source's bytes, and those that may sit at any byte.
READ_ONLY_ALIASES = frozenset({"view", "slice view"})
UNALIGNED_ALIASES = frozenset({"slice view", "concat part"})
MAX_REPORTED = 50


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule: ``rule`` is a short identifier, ``message`` says which buffers or ops."""

    rule: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.message}"


class _Checker:
    def __init__(self, plan: Any, model: IRGraph) -> None:
        self.plan = plan
        self.model = model
        self.violations: list[Violation] = []

    def add(self, rule: str, message: str) -> None:
        self.violations.append(Violation(rule, message))

    # -- structure ---------------------------------------------------------------

    def structure(self) -> bool:
        """The plan's keys and types (plan_schema); then its buffers, typed."""
        problems = plan_problems(self.plan, MAX_REPORTED)
        for problem in problems:
            self.add("format", problem)
        if problems:
            return False
        if self.plan["format"] != PLAN_FORMAT:
            self.add("format", f"'format' must be {PLAN_FORMAT!r}, found {self.plan['format']!r}")
        self.buffers = PlanBuffer.of_plan(self.plan)
        return True

    # -- schedule and operators -------------------------------------------------

    def schedule(self) -> None:
        plan, model = self.plan, self.model
        self.steps: dict[str, int] = {}
        for step, name in enumerate(plan["schedule"]):
            if name in self.steps:
                self.add(
                    "schedule",
                    f"operator {name!r} is scheduled twice (steps {self.steps[name]} and {step})",
                )
            else:
                self.steps[name] = step
        self.last_step = len(plan["schedule"]) - 1
        model_ops = {op.name: op for op in model.operators()}
        missing = [name for name in model_ops if name not in self.steps]
        if missing:
            more = f" and {len(missing) - 1} more are" if len(missing) > 1 else " is"
            self.add("schedule", f"the model's operator {missing[0]!r}{more} not scheduled")
        self.ops: dict[str, dict[str, Any]] = {}
        for entry in plan["ops"]:
            name = entry.get("node")
            if name in self.ops:
                self.add("ops", f"operator {name!r} has two entries in 'ops'")
            self.ops[name] = entry
        devices = plan["target"]["devices"]
        for name, step in self.steps.items():
            entry = self.ops.get(name)
            if entry is None:
                self.add("ops", f"scheduled operator {name!r} has no entry in 'ops'")
                continue
            if entry.get("step") != step:
                self.add(
                    "ops",
                    f"operator {name!r} has step {entry.get('step')!r} but is at position {step} of the schedule",
                )
            if not 0 <= entry["device"] < devices:
                self.add(
                    "ops",
                    f"operator {name!r} runs on device {entry.get('device')!r}, outside 0..{devices - 1}",
                )
            model_op = model_ops.get(name)
            if model_op is None:
                if entry.get("inserted") is not True:
                    self.add(
                        "ops",
                        f'operator {name!r} is not in the model and not marked "inserted": true',
                    )
                continue
            if entry.get("op_type") != model_op.op_type:
                self.add(
                    "ops",
                    f"operator {name!r} is {model_op.op_type} in the model, not {entry.get('op_type')!r}",
                )
            inputs, outputs = (
                [model.plan_name(n) for n in names] for names in (model_op.inputs, model_op.outputs)
            )
            if entry.get("inputs") != inputs or entry.get("outputs") != outputs:
                self.add("ops", f"operator {name!r}: inputs/outputs differ from the model")
        for name in self.ops:
            if name not in self.steps:
                self.add("ops", f"'ops' has an entry for {name!r}, which is not scheduled")

    def reads(self, name: str) -> list[str]:
        entry = self.ops.get(name, {})
        names = [n for n in entry.get("inputs") or [] if isinstance(n, str) and n]
        if self.model.has_operator(name):
            names += map(self.model.plan_name, self.model.operator(name).implicit_inputs)
        return list(dict.fromkeys(names))

    def topological(self) -> None:
        self.producer_step: dict[str, int] = {}
        self.readers: dict[str, list[int]] = defaultdict(list)
        self.op_device: dict[int, int] = {}
        for name, step in self.steps.items():
            entry = self.ops.get(name, {})
            self.op_device[step] = entry.get("device", 0)
            for output in entry.get("outputs") or []:
                # An operator writing a tensor it reads (a Transfer) copies it, not produces it.
                if isinstance(output, str) and output and output not in entry.get("inputs", []):
                    self.producer_step[output] = step
        for name, step in self.steps.items():
            for tensor in self.reads(name):
                self.readers[tensor].append(step)
                made = self.producer_step.get(tensor)
                if made is not None and made >= step:
                    self.add(
                        "topological",
                        f"operator {name!r} at step {step} reads {tensor!r}, written only at step {made}",
                    )

    # -- buffers ------------------------------------------------------------------

    def buffer_fields(self) -> None:
        target = self.plan["target"]
        capacity = {t["name"]: t["capacity"] for t in target["tiers"]}
        devices = target["devices"]
        for b in self.buffers:
            if b.tier not in capacity:
                self.add("tier", f"buffer {b.label()} is in unknown tier {b.tier!r}")
            elif b.offset < 0 or b.offset + b.nbytes > capacity[b.tier]:
                self.add(
                    "capacity", f"buffer {b.label()} exceeds {b.tier} capacity {capacity[b.tier]}"
                )
            if not 0 <= b.device < devices:
                self.add(
                    "device",
                    f"buffer {b.label()} is on device {b.device}, outside 0..{devices - 1}",
                )
            if not 0 <= b.start <= b.end <= self.last_step:
                self.add(
                    "lifetime",
                    f"buffer {b.label()}: steps must satisfy 0 <= start <= end <= {self.last_step}",
                )
            if b.kind == "scratch":
                if b.start != b.end:
                    self.add("scratch", f"scratch buffer {b.label()} must have start == end")
                continue
            if not self.model.has_tensor(b.tensor):
                if b.tensor not in self.producer_step:
                    self.add(
                        "tensor",
                        f"buffer {b.index} names {b.tensor!r}, which no operator writes and the model lacks",
                    )
                continue
            tensor = self.model.tensor(b.tensor)
            if b.nbytes != tensor.nbytes:
                self.add(
                    "bytes",
                    f"buffer {b.label()}: the tensor has {tensor.nbytes} bytes, not {b.nbytes}",
                )
            if b.kind != tensor.kind:
                self.add(
                    "kind", f"buffer {b.label()}: kind {b.kind!r}, the tensor is {tensor.kind!r}"
                )

    def tiles(self) -> None:
        """A tiled operator's tile buffers: ``scratch`` in the first tier at its step, on its
        device, adding up to ``l1_bytes``, which fits that tier (plan-format.md)."""
        first = self.plan["target"]["tiers"][0]
        scratch: dict[tuple[int, int], int] = defaultdict(int)
        for b in self.buffers:
            if b.kind == "scratch" and b.tier == first["name"] and b.start == b.end:
                scratch[(b.device, b.start)] += b.nbytes
        for name, step in self.steps.items():
            entry = self.ops.get(name, {})
            tiles = entry.get("tiles")
            if tiles is None:
                continue
            if tiles["l1_bytes"] > first["capacity"]:
                self.add(
                    "tiles",
                    f"operator {name!r}: l1_bytes {tiles['l1_bytes']} exceed {first['name']} "
                    f"capacity {first['capacity']}",
                )
            found = scratch.get((entry.get("device", 0), step), 0)
            if found != tiles["l1_bytes"]:
                self.add(
                    "tiles",
                    f"operator {name!r}: l1_bytes is {tiles['l1_bytes']}, its scratch buffers in "
                    f"{first['name']} at step {step} total {found}",
                )

    def coverage(self) -> None:
        by_tensor: dict[str, list[PlanBuffer]] = defaultdict(list)
        for b in self.buffers:
            if b.kind != "scratch":
                by_tensor[b.tensor].append(b)
        for tensor in self.model.tensors():
            if tensor.copy_of is not None:
                continue  # a planned IR's copy: its buffers are the original's
            name = tensor.name
            readers = self.readers.get(name, [])
            if tensor.kind == "weight":
                low, high = 0, self.last_step
            elif name in self.producer_step:
                if not readers and not tensor.graph_output:
                    continue
                low = self.producer_step[name]
                high = self.last_step if tensor.graph_output else max(readers)
            elif readers or tensor.graph_output:
                low = 0
                high = self.last_step if tensor.graph_output else max(readers)
            else:
                continue
            copies = by_tensor.get(name)
            if not copies:
                source = self.view_source(name)
                if source is not None and not tensor.graph_output:
                    self.require_live(
                        source, by_tensor.get(source, []), readers, f"view {name!r} read"
                    )
                    continue
                self.add(
                    "coverage",
                    f"tensor {name!r} ({tensor.kind}) needs a buffer for steps [{low}, {high}] and has none",
                )
                continue
            self.check_range(name, copies, low, high)
            made = self.producer_step.get(name)
            self.require_live(name, copies, [made] if made is not None else [], "written")
            self.require_live(name, copies, readers, "read")

    def view_source(self, name: str) -> str | None:
        """For a buffer-less view output, the tensor whose buffers serve its readers."""
        seen = set()
        while name not in seen:
            seen.add(name)
            step = self.producer_step.get(name)
            if step is None:
                return None
            entry = self.ops.get(self.plan["schedule"][step], {})
            inputs = entry.get("inputs") or []
            if (
                entry.get("op_type") not in VIEW_OPS
                or not inputs
                or not self.model.has_tensor(inputs[0])
            ):
                return None
            if self.model.tensor(inputs[0]).nbytes != self.model.tensor(name).nbytes:
                return None
            name = inputs[0]
            if any(b.tensor == name for b in self.buffers):
                return name
        return None

    def check_range(self, name: str, copies: list[PlanBuffer], low: int, high: int) -> None:
        ordered = sorted(copies, key=lambda b: (b.start, b.end))
        if ordered[0].start > low:
            self.add(
                "lifetime",
                f"tensor {name!r} is live from step {low}, its buffer starts at {ordered[0].start}",
            )
        reach = ordered[0].end
        for b in ordered[1:]:
            if b.start > reach:
                self.add(
                    "lifetime",
                    f"tensor {name!r}: copies leave steps {reach + 1}..{b.start - 1} uncovered",
                )
            reach = max(reach, b.end)
        if reach < high:
            self.add(
                "lifetime",
                f"tensor {name!r} must stay live until step {high}, its buffers end at step {reach}",
            )

    def require_live(
        self, name: str, copies: list[PlanBuffer], steps: list[int], verb: str
    ) -> None:
        for step in steps:
            device = self.op_device.get(step, 0)
            if not any(b.device == device and b.start <= step <= b.end for b in copies):
                self.add(
                    "lifetime",
                    f"tensor {name!r} is {verb} at step {step} on device {device} with no live buffer there",
                )
                return

    # -- aliasing and overlap --------------------------------------------------

    def aliases(self) -> dict[int, str]:
        """Validate each alias; return the alias-group root of each buffer allowed to share bytes.

        Also records, for each valid alias, its parent buffer and its kind (in place,
        view, slice view, concat part), which the group and alignment rules read.
        """
        first: dict[tuple[str, int, str], PlanBuffer] = {}
        for b in self.buffers:
            first.setdefault((b.tensor, b.device, b.tier), b)
        self.alias_parent: dict[int, int] = {}  # buffer index -> the aliased buffer's
        self.alias_kind: dict[int, str] = {}
        for b in self.buffers:
            if b.alias_of is None:
                continue
            target = first.get((b.alias_of, b.device, b.tier))
            if target is None:
                self.add(
                    "alias",
                    f"buffer {b.label()} aliases {b.alias_of!r}, which has no buffer on {b.device}/{b.tier}",
                )
                continue
            placements = self.alias_placements(b, target)
            kind = next((kind for kind, offset in placements if offset == b.offset), None)
            if kind is not None:
                self.alias_parent[b.index] = target.index
                self.alias_kind[b.index] = kind
            elif placements:
                where = " or ".join(f"{offset} ({kind})" for kind, offset in placements)
                self.add(
                    "alias",
                    f"buffer {b.label()} aliases {target.label()} at a different offset: "
                    f"its declaration puts it at {where}",
                )
            else:
                self.add(
                    "alias",
                    f"buffer {b.label()} aliases {b.alias_of!r} but is neither an in-place result "
                    "(starting where the aliased buffer ends, written by the operator that reads it), "
                    "a view, a slice view nor a concat part of it",
                )
        names = {b.index: b.tensor for b in self.buffers}
        root_index = alias_roots(names, self.alias_parent.get)
        return {index: names[root] for index, root in root_index.items()}

    def alias_placements(self, b: PlanBuffer, target: PlanBuffer) -> list[tuple[str, int]]:
        """Each kind of alias ``b`` may be of ``target`` (plan-format.md), with the offset
        that kind puts it at."""
        found = []
        if self.is_view(b, target):
            found.append(("view", target.offset))
        made = self.model_producer(b.tensor)
        # The compiler's own IR names a device copy apart; the plan by its original.
        if made is not None and [self.model.plan_name(n) for n in made.inputs[:1]] == [
            target.tensor
        ]:
            position = slice_view_position(self.model, made, b.tensor)
            if position is not None:
                found.append(("slice view", target.offset + position))
        made = self.model_producer(target.tensor)
        if made is not None:
            found += [
                ("concat part", target.offset + position)
                for position in concat_part_positions(self.model, made, b.tensor)
            ]
        # In place last: an alias that is also a (slice) view of its source only reads it.
        if self.in_place(b, target):
            found.append(("in place", target.offset))
        return found

    def model_producer(self, tensor: str) -> Operator | None:
        """The model's operator that the plan schedules to write ``tensor``."""
        step = self.producer_step.get(tensor)
        if step is None:
            return None
        name = self.plan["schedule"][step]
        return self.model.operator(name) if self.model.has_operator(name) else None

    def in_place(self, b: PlanBuffer, target: PlanBuffer) -> bool:
        if b.start != target.end or not 0 <= b.start <= self.last_step:
            return False
        entry = self.ops.get(self.plan["schedule"][b.start], {})
        return target.tensor in (entry.get("inputs") or []) and b.tensor in (
            entry.get("outputs") or []
        )

    def is_view(self, b: PlanBuffer, target: PlanBuffer) -> bool:
        step = self.producer_step.get(b.tensor)
        if step is None:
            return False
        entry = self.ops.get(self.plan["schedule"][step], {})
        inputs = entry.get("inputs") or []
        return (
            entry.get("op_type") in VIEW_OPS
            and bool(inputs)
            and inputs[0] == target.tensor
            and b.nbytes == target.nbytes
        )

    def overlaps(self, roots: dict[int, str]) -> None:
        regions: dict[tuple[int, str], list[PlanBuffer]] = defaultdict(list)
        for b in self.buffers:
            regions[b.region].append(b)
        reported = 0
        for members in regions.values():
            boxes = [(b.start, b.end, b.offset, b.nbytes) for b in members]
            for i, j in sharing_pairs(boxes, self.last_step):
                a, b = members[i], members[j]
                if roots[a.index] == roots[b.index]:
                    continue  # members of one group: group_writes() checks them
                self.add(
                    "overlap", f"buffers {a.label()} and {b.label()} share bytes at a common step"
                )
                reported += 1
                if reported >= MAX_REPORTED:
                    return

    def alignment(self) -> None:
        """Every offset is a multiple of the alignment, but for slice views and concat parts,
        which sit where their bytes are."""
        alignment = self.plan["target"]["alignment"]
        for b in self.buffers:
            if b.offset % alignment and self.alias_kind.get(b.index) not in UNALIGNED_ALIASES:
                self.add(
                    "alignment",
                    f"buffer {b.label()}: offset {b.offset} is not a multiple of {alignment}",
                )

    def group_writes(self, roots: dict[int, str]) -> None:
        """Members of one alias group share bytes only through their declarations.

        Views and slice views only read their source's bytes; every other member
        (the root, an in-place result, a concat part) writes its bytes at the step
        that produces it. Such a write must not reach a byte of another member that must stay
        intact after that step: an in-place write while a view of the overwritten
        tensor is still read later corrupts the view (plan-format.md). A write into a
        concat output by one of its parts is the declaration itself.
        """
        groups: dict[tuple[int, str, str], list[PlanBuffer]] = defaultdict(list)
        for b in self.buffers:
            groups[(b.device, b.tier, roots[b.index])].append(b)
        reported = 0
        for (_, _, root), members in groups.items():
            if len(members) < 2:
                continue
            # Members that must stay intact after a step: an index, not a scan of the
            # group per writer (an in-place chain of n is one group of n).
            intact: IntervalIndex[PlanBuffer] = IntervalIndex(self.last_step + 1)
            for other in members:
                low, high = max(other.start, 0), min(other.end - 1, self.last_step)
                if low <= high:
                    intact.add(other, low, high)
            for writer in members:
                step = self.write_step(writer)
                if step is None or not 0 <= step <= self.last_step:
                    continue
                for other in sorted(intact.overlapping(step, step), key=lambda b: b.index):
                    if (
                        other is writer
                        or other.offset >= writer.offset + writer.nbytes
                        or writer.offset >= other.offset + other.nbytes
                        or self.is_part_of(writer, other)
                    ):
                        continue
                    later = [s for s in self.readers.get(other.tensor, []) if s > step]
                    still = (
                        f"read at step {min(later)}" if later else f"live until step {other.end}"
                    )
                    what = self.alias_kind.get(writer.index, "root")
                    self.add(
                        "alias-group",
                        f"{what} {writer.label()} writes at step {step} over bytes of "
                        f"{other.label()}, which is in the same alias group (root {root!r}) "
                        f"and still {still}",
                    )
                    reported += 1
                    if reported >= MAX_REPORTED:
                        return

    def write_step(self, b: PlanBuffer) -> int | None:
        """The step at which ``b``'s bytes are written, ``None`` if they are only read
        (a view) or written before the schedule starts (a graph input, a weight)."""
        if self.alias_kind.get(b.index) in READ_ONLY_ALIASES:
            return None
        made = self.producer_step.get(b.tensor)
        if made is not None and self.op_device.get(made) == b.device and b.start <= made <= b.end:
            return made
        # A copy from another device or tier is written when its buffer starts.
        return b.start if made is not None or b.start > 0 else None

    def is_part_of(self, part: PlanBuffer, whole: PlanBuffer) -> bool:
        """True when ``part`` is a concat part of ``whole``, directly or through nested concats."""
        index = part.index
        while self.alias_kind.get(index) == "concat part":
            index = self.alias_parent[index]
            if index == whole.index:
                return True
        return False

    def summary(self) -> None:
        summary = self.plan["summary"]
        # Buffers outside the schedule are reported as lifetime violations.
        peaks, bounds = memory_summary(
            [b for b in self.buffers if 0 <= b.start <= b.end <= self.last_step]
        )
        for key, expected, found in (
            ("peak_bytes", peaks, summary.get("peak_bytes")),
            ("lower_bound_bytes", bounds, summary.get("lower_bound_bytes")),
        ):
            if found != expected:
                self.add("summary", f"summary.{key} is {found!r}, the buffers give {expected!r}")


def validate_plan(plan: Any, model: IRGraph, model_sha256: str | None = None) -> list[Violation]:
    """Check ``plan`` against every rule of plan-format.md for ``model``.

    Parameters
    ----------
    plan:
        The plan as JSON data.
    model:
        The model's IR as the frontend built it (passes' annotations are ignored).
    model_sha256:
        When given, the plan must name this hash of the model file.

    Returns
    -------
    list[Violation]
        Empty when the plan is valid.
    """
    checker = _Checker(plan, model)
    if not checker.structure():
        return checker.violations
    found = plan["model"].get("sha256")
    if model_sha256 is not None and found != model_sha256:
        checker.add(
            "model",
            f"the plan is for a model with sha256 {found!r}, not this file ({model_sha256})",
        )
    checker.schedule()
    checker.topological()
    checker.buffer_fields()
    checker.tiles()
    checker.coverage()
    roots = checker.aliases()
    checker.alignment()
    checker.group_writes(roots)
    checker.overlaps(roots)
    checker.summary()
    return checker.violations
