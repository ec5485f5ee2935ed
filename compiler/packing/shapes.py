"""Alias groups as shapes: the bytes a group holds step by step, not one rectangle.

The placers see an alias group as one :class:`~tierplan.compiler.packing.Item`, its
largest member's bytes over the union of its members' steps. A group whose members
lie at positions inside it (slice views of a Split, concat parts) holds less: after
the Split's input dies only the live slices hold bytes, and a Concat's output holds
only the parts written so far. The plan's lower bound counts the union of the live
members' bytes (plan-format.md), so a group placed as a rectangle can keep a plan
well above its bound (a chunked 16-bit Softmax: the scores' slices and the Concat's
parts, each group a rectangle over the whole chunk loop, hold twice the scores).

A :class:`Shape` is a group's members as :class:`Piece` rectangles at fixed positions
from the group's offset; :func:`settle` places shapes one by one, each at the lowest
aligned offset where none of its pieces meets a piece placed before it, so a group
can sit in the bytes another group's dead members left.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tierplan.compiler.intervals import IntervalIndex


@dataclass(frozen=True, slots=True)
class Piece:
    """``size`` bytes at ``position`` from the group's offset, alive at steps ``[start, end]``."""

    position: int
    start: int
    end: int
    size: int


@dataclass(frozen=True, slots=True)
class Shape:
    """An alias group (keyed by its root) as the pieces its members hold."""

    key: str
    pieces: tuple[Piece, ...]

    @classmethod
    def of(cls, key: str, pieces: Iterable[Piece]) -> Shape:
        """The shape of ``pieces``, those at one byte range whose steps meet or touch
        merged (a chain of views or in-place writes over one range is one piece)."""
        merged: list[Piece] = []
        for piece in sorted(pieces, key=lambda p: (p.position, p.size, p.start, p.end)):
            last = merged[-1] if merged else None
            same_bytes = last is not None and (last.position, last.size) == (
                piece.position,
                piece.size,
            )
            if last is not None and same_bytes and piece.start <= last.end + 1:
                merged[-1] = Piece(last.position, last.start, max(last.end, piece.end), last.size)
            else:
                merged.append(piece)
        return cls(key, tuple(merged))

    @property
    def height(self) -> int:
        """The highest byte the shape reaches above its offset."""
        return max((p.position + p.size for p in self.pieces), default=0)

    @property
    def rectangular(self) -> bool:
        """True when the shape is its bounding rectangle (one piece covers it all)."""
        start = min(p.start for p in self.pieces)
        end = max(p.end for p in self.pieces)
        return any(
            (p.position, p.start, p.end, p.size) == (0, start, end, self.height)
            for p in self.pieces
        )


def shapes_peak(shapes: list[Shape], offsets: Mapping[str, int]) -> int:
    """The highest byte ``shapes`` reach at ``offsets``."""
    return max((offsets[s.key] + s.height for s in shapes), default=0)


def settle(shapes: list[Shape], order: list[str], alignment: int) -> dict[str, int]:
    """Offsets of ``shapes`` placed in ``order`` (their keys), each at the lowest
    multiple of ``alignment`` where its pieces share no byte with a piece placed before
    at a common step."""
    by_key = {s.key: s for s in shapes}
    horizon = max((p.end for s in shapes for p in s.pieces), default=0) + 1
    placed: IntervalIndex[int] = IntervalIndex(horizon)
    held: list[tuple[int, int]] = []  # absolute byte range of each placed piece
    offsets: dict[str, int] = {}
    for key in order:
        shape = by_key[key]
        blocked: list[tuple[int, int]] = []  # offsets [low, high) the shape may not take
        for piece in shape.pieces:
            for index in placed.overlapping(piece.start, piece.end):
                low, high = held[index]
                blocked.append((low - piece.position - piece.size + 1, high - piece.position))
        offset = 0
        for low, high in sorted(blocked):
            if low > offset:
                break
            if high > offset:
                offset = -(-high // alignment) * alignment
        offsets[key] = offset
        for piece in shape.pieces:
            placed.add(len(held), piece.start, piece.end)
            held.append((offset + piece.position, offset + piece.position + piece.size))
    return offsets
