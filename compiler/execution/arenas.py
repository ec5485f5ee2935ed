"""The plan's memory, for real: one byte arena per (device, tier), poisoned where dead.

Each region gets one ``numpy`` byte array exactly as large as the plan's peak for
it (the highest ``offset + bytes``), and every buffer is an ``ndarray`` view of its
bytes, so tensors that the plan lets share bytes really share them: an in-place
write overwrites its input, a view reads its source.

Poisoning makes a wrong plan fail deterministically rather than by luck: the
arenas start filled with ``0xFF`` bytes (NaN for every float type, -1 for
integers), and before each step the bytes of every buffer that died at the step
before are filled again, except where a buffer still alive covers them. Since an
operator only writes its own (live) outputs, every byte not covered by a live
buffer holds the poison at every step: a reader of dead bytes, or of a buffer
another live one overwrote, sees it.

Tile scratch buffers are a cost-model concept (the tiling of an operator's loop
nest); they hold no data and get no bytes here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np
from tierplan.compiler.errors import InputError
from tierplan.compiler.plan import PlanBuffer

POISON = 0xFF

Region = tuple[int, str]


class Arenas:
    """The byte arrays of every region, and views of buffers into them."""

    def __init__(self, buffers: Iterable[PlanBuffer]) -> None:
        self.buffers = [b for b in buffers if b.kind != "scratch"]
        sizes: dict[Region, int] = defaultdict(int)
        for buffer in self.buffers:
            sizes[buffer.region] = max(sizes[buffer.region], buffer.offset + buffer.nbytes)
        self.memory = {
            region: np.full(size, POISON, dtype=np.uint8) for region, size in sorted(sizes.items())
        }
        self._by_region: dict[Region, list[PlanBuffer]] = defaultdict(list)
        self._dying: dict[int, list[PlanBuffer]] = defaultdict(list)
        for buffer in self.buffers:
            self._by_region[buffer.region].append(buffer)
            self._dying[buffer.end].append(buffer)

    def view(self, buffer: PlanBuffer, dtype: np.dtype[Any], shape: tuple[int, ...]) -> np.ndarray:
        """The buffer's bytes as an array of ``dtype`` and ``shape``."""
        count = int(np.prod(shape, dtype=np.int64))
        if count * dtype.itemsize != buffer.nbytes:
            raise InputError(
                f"plan buffer of {buffer.tensor!r} holds {buffer.nbytes} bytes; the tensor "
                f"({dtype.name}{list(shape)}) needs {count * dtype.itemsize}"
            )
        raw = self.memory[buffer.region][buffer.offset : buffer.offset + buffer.nbytes]
        return raw.view(dtype).reshape(shape)

    def poison_dead(self, step: int) -> None:
        """Fill the bytes of buffers that died before ``step`` and no live buffer covers."""
        for dead in self._dying.get(step - 1, []):
            covered = sorted(
                (b.offset, b.offset + b.nbytes)
                for b in self._by_region[dead.region]
                if b.live_at(step)
                and b.offset < dead.offset + dead.nbytes
                and dead.offset < b.offset + b.nbytes
            )
            memory = self.memory[dead.region]
            cursor = dead.offset
            for low, high in [*covered, (dead.offset + dead.nbytes, dead.offset + dead.nbytes)]:
                if low > cursor:
                    memory[cursor:low] = POISON
                cursor = max(cursor, high)
