"""Lifetime traces: bare lists of buffers to pack, outside any model.

Two formats, told apart by their first data line:

- MiniMalloc's CSV: a header ``id,lower,upper,size`` (``upper`` exclusive), one
  buffer a row; extra columns (such as an ``offset`` from a previous run) are ignored;
- plain lines ``size first last`` (``last`` inclusive), separated by blanks; a buffer
  is named by its line's ordinal among the buffers (0, 1, ...).

Lines starting with ``#`` and blank lines are skipped in both. :func:`write_trace`
writes the buffers back in the format they came in, with each one's offset added
(CSV column ``offset``; a fourth field on plain lines). Buffers of size 0 take no
space; they get offset 0.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from tierplan.compiler.errors import InputError
from tierplan.compiler.files import write_atomically
from tierplan.compiler.inputs import MAX_BYTES, MAX_STEPS, MAX_TRACE_FILE, read_text, shown
from tierplan.compiler.packing.problem import Item

CSV_COLUMNS = ("id", "lower", "upper", "size")


@dataclass(frozen=True, slots=True)
class Trace:
    """The buffers of a trace as items (steps inclusive), in file order, and its format."""

    items: list[Item]
    csv: bool


def read_trace(path: Path) -> Trace:
    """Parse a trace file; a malformed line is an :class:`InputError` naming it."""
    text = read_text(path, "trace", MAX_TRACE_FILE)
    lines = [
        (number, line.strip())
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        raise InputError(f"{path}: no buffers in the trace")
    is_csv = "," in lines[0][1]
    items = _read_csv(path, lines) if is_csv else _read_plain(path, lines)
    seen: set[str] = set()
    for item in items:
        if item.key in seen:
            raise InputError(f"{path}: buffer id {item.key!r} appears twice")
        seen.add(item.key)
    return Trace(items=items, csv=is_csv)


def _read_csv(path: Path, lines: list[tuple[int, str]]) -> list[Item]:
    header = [name.strip() for name in lines[0][1].split(",")]
    if any(column not in header for column in CSV_COLUMNS):
        raise InputError(f"{path}:{lines[0][0]}: a CSV trace needs the columns id,lower,upper,size")
    where = {column: header.index(column) for column in CSV_COLUMNS}
    items = []
    for number, line in lines[1:]:
        fields = [field.strip() for field in line.split(",")]
        if len(fields) < len(header):
            raise InputError(f"{path}:{number}: expected {len(header)} fields, got {len(fields)}")
        lower, upper, size = (_integer(path, number, fields[where[c]]) for c in CSV_COLUMNS[1:])
        if upper <= lower:
            raise InputError(f"{path}:{number}: upper {upper} must exceed lower {lower}")
        items.append(_item(path, number, fields[where["id"]], lower, upper - 1, size))
    return items


def _read_plain(path: Path, lines: list[tuple[int, str]]) -> list[Item]:
    items = []
    for ordinal, (number, line) in enumerate(lines):
        fields = line.split()
        if len(fields) < 3:
            raise InputError(f"{path}:{number}: expected 'size first last', got {line!r}")
        size, first, last = (_integer(path, number, field) for field in fields[:3])
        if last < first:
            raise InputError(f"{path}:{number}: last step {last} is before first step {first}")
        items.append(_item(path, number, str(ordinal), first, last, size))
    return items


def _integer(path: Path, number: int, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InputError(f"{path}:{number}: {shown(text)} is not an integer") from None


def _item(path: Path, number: int, key: str, start: int, end: int, size: int) -> Item:
    if start < 0 or size < 0:
        raise InputError(f"{path}:{number}: steps and sizes must not be negative")
    if size > MAX_BYTES:
        raise InputError(f"{path}:{number}: size {shown(size)} is over the limit {MAX_BYTES}")
    if end >= MAX_STEPS:
        raise InputError(f"{path}:{number}: step {shown(end)} is over the limit {MAX_STEPS - 1}")
    return Item(key=key, start=start, end=end, size=size)


def write_trace(path: Path, trace: Trace, offsets: dict[str, int]) -> None:
    """Write ``trace`` with each buffer's offset, in its own format, atomically."""
    out = io.StringIO()
    if trace.csv:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([*CSV_COLUMNS, "offset"])
        for item in trace.items:
            writer.writerow([item.key, item.start, item.end + 1, item.size, offsets[item.key]])
    else:
        for item in trace.items:
            out.write(f"{item.size} {item.start} {item.end} {offsets[item.key]}\n")
    write_atomically(path, out.getvalue())
