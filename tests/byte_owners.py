"""Replay a plan's byte ownership: an independent check that no read sees overwritten bytes.

Each region gets an arena of owner ids over its bytes. Walking the schedule, every
buffer whose bytes get written stamps them with its owner: its tensor, or, for a
view declared an alias, the owner of the bytes it views. A read must then find
its owner on every byte of the buffer it reads. Views and slice views only read
their source's bytes; a concat part's bytes keep their owner inside the Concat output.
This is what executing the plan checks (without the arithmetic), written without
the validator's alias groups. Bytes are tracked per segment between consecutive
buffer boundaries, so a region of gigabytes costs what its buffers cost.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
from tierplan.compiler.validate import VIEW_OPS

Buffer = dict[str, Any]
Region = tuple[int, str]

READ_ONLY_OPS = VIEW_OPS | {"Split", "Slice", "Gather"}


def corrupted_reads(plan: dict[str, Any]) -> list[str]:
    """Reads (and graph outputs at the end) that find bytes another buffer overwrote."""
    ops = plan["ops"]
    buffers = plan["buffers"]
    made = {name: op for op in ops for name in op["outputs"] if name not in op["inputs"]}
    first: dict[tuple[str, int, str], Buffer] = {}
    by_tensor: dict[str, list[Buffer]] = defaultdict(list)
    edges: dict[Region, set[int]] = defaultdict(set)
    for b in buffers:
        first.setdefault((b["tensor"], b["device"], b["tier"]), b)
        by_tensor[b["tensor"]].append(b)
        edges[(b["device"], b["tier"])] |= {b["offset"], b["offset"] + b["bytes"]}
    segment = {
        key: {edge: i for i, edge in enumerate(sorted(found))} for key, found in edges.items()
    }
    arenas = {key: np.full(max(1, len(found)), -1, dtype=np.int64) for key, found in edges.items()}
    ids: dict[str, int] = {}

    def span(b: Buffer) -> tuple[np.ndarray, int, int]:
        key = (b["device"], b["tier"])
        return arenas[key], segment[key][b["offset"]], segment[key][b["offset"] + b["bytes"]]

    def source(b: Buffer) -> Buffer | None:
        """The buffer whose bytes ``b`` only reads: a view or slice view declared an alias."""
        op = made.get(b["tensor"])
        aliased = first.get((b["alias_of"], b["device"], b["tier"])) if b["alias_of"] else None
        if aliased is None or op is None or op["op_type"] not in READ_ONLY_OPS:
            return None
        return aliased if op["inputs"][0] == aliased["tensor"] else None

    def owner(b: Buffer) -> int:
        viewed = source(b)
        return owner(viewed) if viewed is not None else ids.setdefault(b["tensor"], len(ids))

    def expected(b: Buffer) -> np.ndarray:
        """Owner of each segment of ``b``: its own, but where a concat part was written in place."""
        _, low, high = span(b)
        found = np.full(high - low, owner(b), dtype=np.int64)
        op = made.get(b["tensor"])
        if op is not None and op["op_type"] == "Concat":
            for name in op["inputs"]:
                part = first.get((name, b["device"], b["tier"]))
                if part is not None and part["alias_of"] == b["tensor"]:
                    _, start, stop = span(part)
                    found[start - low : stop - low] = owner(part)
        return found

    def stamp(b: Buffer) -> None:
        if source(b) is None:
            arena, low, high = span(b)
            arena[low:high] = expected(b)

    def intact(b: Buffer) -> bool:
        arena, low, high = span(b)
        return bool((arena[low:high] == expected(b)).all())

    copies: dict[int, list[Buffer]] = defaultdict(list)  # written when they start (-1: before)
    outputs: dict[int, list[Buffer]] = defaultdict(list)  # written by their operator
    for b in buffers:
        op = made.get(b["tensor"])
        if op is not None and op["device"] == b["device"] and b["start"] <= op["step"] <= b["end"]:
            outputs[op["step"]].append(b)
        else:
            copies[b["start"] if op is not None or b["start"] > 0 else -1].append(b)
    problems = []
    for b in copies.pop(-1, []):
        stamp(b)
    for step, op in enumerate(ops):
        for b in copies.get(step, []):
            stamp(b)
        for name in dict.fromkeys(n for n in op["inputs"] if n):
            live = [
                b
                for b in by_tensor.get(name, [])
                if b["device"] == op["device"] and b["start"] <= step <= b["end"]
            ]
            if live and not any(intact(b) for b in live):
                problems.append(f"step {step}: {op['node']} reads {name!r}, overwritten")
        for b in outputs.get(step, []):
            stamp(b)
    last = len(ops) - 1
    for b in buffers:
        if b["kind"] == "output" and b["end"] == last and not intact(b):
            problems.append(f"graph output {b['tensor']!r} overwritten before the end")
    return problems
