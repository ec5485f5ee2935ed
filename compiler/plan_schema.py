"""The shape of a plan file: which keys it has, of which JSON types, in which ranges.

A plan file is untrusted input (any tool may write one). :func:`plan_problems`
checks a parsed document against ``plan-format.md``'s structure before anything reads
it: required keys, JSON types, integers within :mod:`~tierplan.compiler.inputs`'
limits, finite numbers. It says nothing about the rules between fields (overlaps,
lifetimes, steps matching positions): :mod:`~tierplan.compiler.validate` checks
those, on a document that has passed here. ``tierplan check``, ``report``,
``inspect`` and ``plot`` all read plans through this one definition
(:func:`~tierplan.compiler.plan.read_plan`).

Typed checks written out, not a JSON Schema: each message names the field path and
the value in one line, ranges come from the same constants as every other input,
and a plan of 10^5 buffers is checked in well under a second without a dependency.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from itertools import chain
from operator import itemgetter
from typing import Any

from tierplan.compiler.inputs import MAX_BYTES, MAX_DEVICES, MAX_STEPS, shown

BUFFER_KINDS = frozenset({"input", "output", "activation", "weight", "scratch"})
INT64_MAX = 2**63 - 1

Check = Callable[[Any], str | None]  # None when the value is fine, else what was expected
# The range of each integer check, for checking a whole column of values at once.
_INTEGER_RANGES: dict[Check, tuple[int, int]] = {}


def _integer(low: int, high: int) -> Check:
    def check(value: Any) -> str | None:
        ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
        return None if ok else f"an integer in {low}..{high}"

    _INTEGER_RANGES[check] = (low, high)
    return check


def _number(positive: bool) -> Check:
    def check(value: Any) -> str | None:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        ok = ok and abs(value) < 2**1000 and math.isfinite(value) and value >= 0
        ok = ok and not (positive and value == 0)
        return None if ok else f"a finite {'positive' if positive else 'non-negative'} number"

    return check


def _string(value: Any) -> str | None:
    return None if isinstance(value, str) else "a string"


def _optional_string(value: Any) -> str | None:
    return None if value is None or isinstance(value, str) else "a string or null"


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "true or false"


def _names(value: Any) -> str | None:
    ok = isinstance(value, list) and all(isinstance(name, str) for name in value)
    return None if ok else "a list of strings"


def _kind(value: Any) -> str | None:
    return (
        None
        if isinstance(value, str) and value in BUFFER_KINDS
        else f"one of {', '.join(sorted(BUFFER_KINDS))}"
    )


def _table(values: Check, most: int = MAX_STEPS) -> Check:
    """An object of string keys whose values pass ``values``."""

    def check(value: Any) -> str | None:
        if not isinstance(value, dict) or len(value) > most:
            return "an object"
        wanted = next((values(v) for v in value.values() if values(v)), None)
        return None if wanted is None else f"an object of {wanted} values"

    return check


SIZE = _integer(0, MAX_BYTES)
STEP = _integer(0, MAX_STEPS)
DEVICE = _integer(0, MAX_DEVICES - 1)

Fields = Mapping[str, tuple[Check, bool]]  # key -> (check, required)

TIER: Fields = {
    "name": (_string, True),
    "capacity": (_integer(1, MAX_BYTES), True),
    "bandwidth": (_number(positive=True), True),
    "latency": (_number(positive=False), True),
}
TARGET: Fields = {
    "name": (_string, True),
    "alignment": (_integer(1, MAX_BYTES), True),
    "devices": (_integer(1, MAX_DEVICES), True),
}
BUFFER: Fields = {
    "tensor": (_string, True),
    "kind": (_kind, True),
    "bytes": (SIZE, True),
    "device": (DEVICE, True),
    "tier": (_string, True),
    "offset": (SIZE, True),
    "start": (STEP, True),
    "end": (STEP, True),
    "alias_of": (_optional_string, False),
}
OP: Fields = {
    "node": (_string, True),
    "op_type": (_string, True),
    "device": (DEVICE, True),
    "step": (STEP, True),
    "inputs": (_names, True),
    "outputs": (_names, True),
    "implicit_inputs": (_names, False),
    "inserted": (_boolean, False),
    "to_device": (DEVICE, False),
}
TILES: Fields = {
    "axes": (_table(_integer(1, MAX_BYTES)), True),
    "count": (_integer(0, INT64_MAX), True),
    "l1_bytes": (SIZE, True),
    "traffic_bytes": (_integer(0, INT64_MAX), True),
}
SUMMARY: Fields = {
    "peak_bytes": (_table(_integer(0, INT64_MAX)), False),
    "lower_bound_bytes": (_table(_integer(0, INT64_MAX)), False),
    "latency_s": (_number(positive=False), False),
}
MODEL: Fields = {"path": (_string, True), "sha256": (_string, True)}


def _column_passes(check: Check, values: list[Any]) -> bool:
    """Whether every value passes ``check``; the common checks run over the whole column
    (a plan of 10^5 buffers is checked in a fraction of the time of one call per value)."""
    if check in _INTEGER_RANGES:
        low, high = _INTEGER_RANGES[check]
        return set(map(type, values)) <= {int} and (
            not values or (low <= min(values) and max(values) <= high)
        )
    whole_column = _COLUMN_CHECKS.get(check)
    if whole_column is not None:
        return whole_column(values)
    return all(check(v) is None for v in values)


def _strings(values: Iterable[Any]) -> bool:
    return set(map(type, values)) <= {str}


_COLUMN_CHECKS: dict[Check, Callable[[list[Any]], bool]] = {
    _string: _strings,
    _optional_string: lambda values: _strings([v for v in values if v is not None]),
    _names: lambda values: set(map(type, values)) <= {list} and _strings(chain(*values)),
    _kind: lambda values: _strings(values) and set(values) <= BUFFER_KINDS,
}


def _columns_pass(items: list[Any], fields: Fields) -> bool:
    """Whether every item is an object whose fields all pass (the common case, fast)."""
    if not set(map(type, items)) <= {dict}:
        return False
    for key, (check, required) in fields.items():
        if required:
            try:
                column = list(map(itemgetter(key), items))
            except KeyError:
                return False
        else:
            column = [item[key] for item in items if key in item]
        if not _column_passes(check, column):
            return False
    return True


class _Problems:
    """Problems found so far, each ``"<field path>: expected ..., got <value>"``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.found: list[str] = []

    @property
    def full(self) -> bool:
        return len(self.found) >= self.limit

    def add(self, path: str, message: str) -> None:
        if not self.full:
            self.found.append(f"{path}: {message}")

    def fields(self, value: Any, path: str, fields: Fields) -> bool:
        """Check an object against ``fields``; False if it is not an object at all."""
        if not isinstance(value, dict):
            self.add(path, f"expected an object, got {shown(value)}")
            return False
        for key, (check, required) in fields.items():
            if key not in value:
                if required:
                    self.add(path, f"missing {key!r}")
                continue
            wanted = check(value[key])
            if wanted is not None:
                self.add(f"{path}.{key}", f"expected {wanted}, got {shown(value[key])}")
        return True

    def items(self, value: Any, path: str, fields: Fields, label: str) -> None:
        """Check a list of objects, each against ``fields``; ``label`` names an entry's key."""
        if not isinstance(value, list) or len(value) > MAX_STEPS:
            self.add(path, f"expected a list of at most {MAX_STEPS} objects, got {shown(value)}")
            return
        columns_pass = _columns_pass(value, fields)
        if columns_pass and path != "ops":
            return  # only tiles, inside ops, are left to check one by one
        for index, item in enumerate(value):
            tiled = path == "ops" and isinstance(item, dict) and item.get("tiles") is not None
            if columns_pass and not tiled:
                continue
            if self.full:
                return
            name = item.get(label) if isinstance(item, dict) else None
            where = f"{path}[{index}]" + (f" ({shown(name)})" if isinstance(name, str) else "")
            if (columns_pass or self.fields(item, where, fields)) and tiled:
                self.fields(item["tiles"], f"{where}.tiles", TILES)


def plan_problems(data: Any, limit: int = 50) -> list[str]:
    """What keeps ``data`` (parsed JSON) from having a plan's structure; empty if nothing.

    At most ``limit`` problems are listed, in document order.
    """
    problems = _Problems(limit)
    if not problems.fields(data, "plan", {"format": (_string, True)}):
        return problems.found
    if problems.fields(data.get("target"), "target", TARGET):
        tiers = data["target"].get("tiers")
        if not isinstance(tiers, list) or not tiers:
            problems.add("target.tiers", f"expected a non-empty list, got {shown(tiers)}")
        else:
            problems.items(tiers, "target.tiers", TIER, "name")
    problems.fields(data.get("model"), "model", MODEL)
    if "dims" in data and _table(_integer(1, MAX_BYTES))(data["dims"]) is not None:
        problems.add("dims", f"expected an object of positive integers, got {shown(data['dims'])}")
    schedule = data.get("schedule")
    if _names(schedule) is not None or len(schedule) > MAX_STEPS:
        problems.add("schedule", f"expected a list of operator names, got {shown(schedule)}")
    problems.items(data.get("ops"), "ops", OP, "node")
    problems.items(data.get("buffers"), "buffers", BUFFER, "tensor")
    problems.fields(data.get("summary"), "summary", SUMMARY)
    return problems.found
