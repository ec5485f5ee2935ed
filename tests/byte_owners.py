"""Replay a plan's byte ownership: an independent check that no read sees overwritten bytes.

Each region gets an arena of owner ids, one per byte. Walking the schedule, every
buffer whose bytes get written stamps them with its owner: its tensor, or, for a
view declared an alias, the owner of the bytes it views. A read must then find
its owner on every byte of the buffer it reads. Views and slice views only read
their source's bytes; a concat part's bytes keep their owner inside the Concat output. This is what executing the plan
checks (without the arithmetic), written without the validator's alias groups.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
from tierplan.compiler.validate import VIEW_OPS

READ_ONLY_OPS = VIEW_OPS | {"Split", "Slice", "Gather"}

Buffer = dict[str, Any]


def corrupted_reads(plan: dict[str, Any]) -> list[str]:
    """Reads (and graph outputs at the end) that find bytes another buffer overwrote."""
    ops = plan["ops"]
    made = {name: op for op in ops for name in op["outputs"] if name not in op["inputs"]}
    first: dict[tuple[str, int, str], Buffer] = {}
    for b in plan["buffers"]:
        first.setdefault((b["tensor"], b["device"], b["tier"]), b)
    ids: dict[str, int] = {}

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
        """Owner of each byte of ``b``: its own, but where a concat part was written in place."""
        found = np.full(b["bytes"], owner(b), dtype=np.int64)
        op = made.get(b["tensor"])
        if op is not None and op["op_type"] == "Concat":
            for part in plan["buffers"]:
                if (
                    part["alias_of"] == b["tensor"]
                    and part["tensor"] in op["inputs"]
                    and (part["device"], part["tier"]) == (b["device"], b["tier"])
                ):
                    low = part["offset"] - b["offset"]
                    found[low : low + part["bytes"]] = owner(part)
        return found

    sizes: dict[tuple[int, str], int] = defaultdict(int)
    copies: dict[int, list[Buffer]] = defaultdict(list)  # written when they start (-1: before)
    outputs: dict[int, list[Buffer]] = defaultdict(list)  # written by their operator
    for b in plan["buffers"]:
        key = (b["device"], b["tier"])
        sizes[key] = max(sizes[key], b["offset"] + b["bytes"])
        op = made.get(b["tensor"])
        if op is not None and op["device"] == b["device"] and b["start"] <= op["step"] <= b["end"]:
            outputs[op["step"]].append(b)
        else:
            copies[b["start"] if op is not None or b["start"] > 0 else -1].append(b)
    arenas = {key: np.full(size, -1, dtype=np.int64) for key, size in sizes.items()}

    def stamp(b: Buffer) -> None:
        if source(b) is None:
            arenas[(b["device"], b["tier"])][b["offset"] : b["offset"] + b["bytes"]] = expected(b)

    def intact(b: Buffer) -> bool:
        found = arenas[(b["device"], b["tier"])][b["offset"] : b["offset"] + b["bytes"]]
        return bool((found == expected(b)).all())

    problems = []
    for b in copies.pop(-1, []):
        stamp(b)
    for step, op in enumerate(ops):
        for b in copies.get(step, []):
            stamp(b)
        for name in dict.fromkeys(n for n in op["inputs"] if n):
            live = [
                b
                for b in plan["buffers"]
                if b["tensor"] == name
                and b["device"] == op["device"]
                and b["start"] <= step <= b["end"]
            ]
            if live and not any(intact(b) for b in live):
                problems.append(f"step {step}: {op['node']} reads {name!r}, overwritten")
        for b in outputs.get(step, []):
            stamp(b)
    last = len(ops) - 1
    for b in plan["buffers"]:
        if b["kind"] == "output" and b["end"] == last and not intact(b):
            problems.append(f"graph output {b['tensor']!r} overwritten before the end")
    return problems
