"""The loop-nest model every tiler shares, and its exhaustive search.

An operator is described as a perfect loop nest over named **axes**; each
**operand** (input or output) touches, per tile, a box whose extent along each
of its dimensions follows one axis (identity, or a sliding window whose halo
grows the extent: ``(t - 1) * stride + window``) or is fixed. A **tiling** picks
a tile size per axis and a loop order (outermost first).

Traffic (bytes moved between the operand's home tier and L1) follows from the
order: an operand's tile is reloaded every time an axis it depends on changes,
and also every time an axis it does *not* depend on changes outside the innermost
varying axis it depends on (reuse happens only inside that axis). An output that
accumulates over a reduction axis looping outside its innermost varying axis is
written and read back as partial sums: ``2r - 1`` transfers for ``r`` reloads.

Two operand kinds serve operators that reduce (:mod:`.reduction`): a **local**
operand is an L1 accumulator (running maxima, sums, statistics): it takes a
buffer but moves no bytes; an operand with ``rereads`` is read that many extra
times when one of its ``reread_axes`` is split (a second pass over a row too
large for L1: softmax, normalizations).

Stationarity: operands that depend on the innermost varying axis stream and are
double-buffered (the next tile loads while this one computes); the others stay
resident across it and are held once. A tiling is legal when the buffers, each
rounded up to the alignment, fit the L1 budget. The search enumerates candidate
tile sizes (``ceil(size / p)`` for a geometric-ish set of ``p``) and the given
loop orders with numpy, and keeps the least traffic, then the fewest tiles, then
the first order: deterministic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import permutations

import numpy as np

# Splits tried per axis: ceil(size / p) for these p (and p = size, one element).
_SPLITS = sorted({1, 2, 3, 5, 7} | {m * 2**i for i in range(24) for m in (1, 3)})
# Combinations beyond this are thinned (fewer candidates per axis) to bound the search.
_MAX_COMBINATIONS = 400_000


@dataclass(frozen=True, slots=True)
class Axis:
    """A loop of the nest: ``size`` iterations, split into tiles unless ``whole``."""

    name: str
    size: int
    whole: bool = False


@dataclass(frozen=True, slots=True)
class Dim:
    """One dimension of an operand's tile.

    ``axis`` is the loop it follows (``None``: a fixed extent of ``full``). A
    sliding window (convolution, pooling) reads ``(t - 1) * stride + window``
    elements for ``t`` outputs, at most ``full``.
    """

    axis: str | None
    full: int
    stride: int = 1
    window: int = 1


@dataclass(frozen=True, slots=True)
class Operand:
    """An input or output of the nest; ``label`` names its tile buffer.

    ``tensor`` is the IR tensor it stands for (traffic is reported per tensor);
    ``element_bytes`` may be fractional for a stream that packs several tensors.
    ``local`` and ``rereads`` are as the module docstring says.
    """

    label: str
    tensor: str
    dims: tuple[Dim, ...]
    element_bytes: float
    output: bool = False
    local: bool = False
    rereads: int = 0
    reread_axes: frozenset[str] = frozenset()

    @property
    def axes(self) -> frozenset[str]:
        """The axes this operand's tile depends on."""
        return frozenset(d.axis for d in self.dims if d.axis is not None)


@dataclass(frozen=True, slots=True)
class LoopNest:
    """An operator as a loop nest: axes, operands, and the loop orders worth trying."""

    op: str
    axes: tuple[Axis, ...]
    operands: tuple[Operand, ...]
    orders: tuple[tuple[str, ...], ...]


@dataclass(frozen=True, slots=True)
class Tiling:
    """The chosen tiling of a nest."""

    sizes: dict[str, int]
    order: tuple[str, ...]
    count: int
    buffers: tuple[tuple[str, int], ...]
    traffic: dict[str, int] = field(default_factory=dict)  # bytes moved per operand label

    @property
    def l1_bytes(self) -> int:
        """Total bytes of the tile buffers (what the scratch buffers add up to)."""
        return sum(size for _, size in self.buffers)

    @property
    def traffic_bytes(self) -> int:
        """Bytes moved between home tiers and L1, all operands together."""
        return sum(self.traffic.values())


def candidates(axis: Axis, per_axis: int | None = None) -> np.ndarray:
    """Tile sizes tried for ``axis``, largest first (only the whole axis if ``whole``)."""
    if axis.whole or axis.size == 1:
        return np.array([axis.size], dtype=np.int64)
    sizes = sorted({-(-axis.size // p) for p in _SPLITS if p <= axis.size} | {1}, reverse=True)
    if per_axis is not None and len(sizes) > per_axis:
        keep = np.unique(np.linspace(0, len(sizes) - 1, per_axis).round().astype(int))
        sizes = [sizes[i] for i in keep]
    return np.array(sizes, dtype=np.int64)


def _span(dim: Dim, steps: np.ndarray) -> np.ndarray:
    """Elements a tile of ``steps`` along ``dim``'s axis covers (with the window's halo)."""
    span: np.ndarray = np.minimum((steps - 1) * dim.stride + dim.window, dim.full)
    return span


def _extent(dim: Dim, tiles: dict[str, np.ndarray]) -> np.ndarray | int:
    return dim.full if dim.axis is None else _span(dim, tiles[dim.axis])


def _grid(nest: LoopNest) -> dict[str, np.ndarray]:
    split = [axis for axis in nest.axes if not axis.whole and axis.size > 1]
    per_axis = None
    full = math.prod(len(candidates(axis)) for axis in split)
    if full > _MAX_COMBINATIONS:
        per_axis = max(2, int(_MAX_COMBINATIONS ** (1 / len(split))))
    lists = [candidates(axis, per_axis) for axis in nest.axes]
    mesh = np.meshgrid(*lists, indexing="ij")
    return {axis.name: grid.ravel() for axis, grid in zip(nest.axes, mesh, strict=True)}


def minimal_tile_bytes(nest: LoopNest, alignment: int) -> int:
    """Working set of the smallest tiling (every splittable axis at 1): a legality floor."""
    tiles = {a.name: np.array([1 if not a.whole else a.size]) for a in nest.axes}
    return int(_working_set(nest, tiles, nest.orders[0], alignment)[0][0])


def _working_set(
    nest: LoopNest, tiles: dict[str, np.ndarray], order: tuple[str, ...], alignment: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    sizes = {a.name: a.size for a in nest.axes}
    trips = {name: -(-sizes[name] // tiles[name]) for name in sizes}
    count = len(next(iter(tiles.values())))
    # Position of the innermost loop that iterates more than once (-1: none does).
    innermost = np.full(count, -1)
    for position, name in enumerate(order):
        innermost = np.where(trips[name] > 1, position, innermost)
    total = np.zeros(count, dtype=np.int64)
    buffers = []
    for operand in nest.operands:
        elements = np.ones(count, dtype=np.float64)
        for dim in operand.dims:
            elements = elements * _extent(dim, tiles)
        raw = np.ceil(elements * operand.element_bytes).astype(np.int64)
        aligned = -(-raw // alignment) * alignment
        streams = np.zeros(count, dtype=bool)
        for position, name in enumerate(order):
            if name in operand.axes:
                streams |= innermost == position
        buffer = aligned * np.where(streams, 2, 1)
        buffers.append(buffer)
        total += buffer
    return total, buffers


def _swept(dim: Dim, tiles: dict[str, np.ndarray], sizes: dict[str, int]) -> np.ndarray | int:
    """Elements along ``dim`` summed over the tiles of its axis (the ragged last one exact)."""
    if dim.axis is None:
        return dim.full
    tile, size = tiles[dim.axis], sizes[dim.axis]
    trips = -(-size // tile)
    swept: np.ndarray = (trips - 1) * _span(dim, tile) + _span(dim, size - (trips - 1) * tile)
    return swept


def _traffic(
    nest: LoopNest, tiles: dict[str, np.ndarray], order: tuple[str, ...]
) -> list[np.ndarray]:
    sizes = {a.name: a.size for a in nest.axes}
    trips = {name: -(-sizes[name] // tiles[name]) for name in sizes}
    position = {name: index for index, name in enumerate(order)}
    count = len(next(iter(tiles.values())))
    result = []
    for operand in nest.operands:
        if operand.local:
            result.append(np.zeros(count, dtype=np.int64))
            continue
        swept = np.full(count, operand.element_bytes, dtype=np.float64)
        for dim in operand.dims:
            swept = swept * _swept(dim, tiles, sizes)
        deepest = np.full(count, -1)  # innermost varying axis the operand depends on
        for name in operand.axes:
            deepest = np.where(trips[name] > 1, np.maximum(deepest, position[name]), deepest)
        reloads = np.ones(count, dtype=np.float64)
        for name in order:
            if name not in operand.axes:
                reloads = reloads * np.where(position[name] < deepest, trips[name], 1)
        transfers = 2 * reloads - 1 if operand.output else reloads
        if operand.reread_axes:
            split = np.zeros(count, dtype=bool)
            for name in operand.reread_axes:
                split |= trips[name] > 1
            transfers = transfers * np.where(split, 1 + operand.rereads, 1)
        result.append(np.ceil(swept * transfers).astype(np.int64))
    return result


def measure(
    nest: LoopNest, sizes: dict[str, int], order: tuple[str, ...], alignment: int
) -> Tiling:
    """Buffers, tile count and traffic (per operand label) of one given tiling."""
    tiles = {axis.name: np.array([sizes.get(axis.name, axis.size)]) for axis in nest.axes}
    _, buffers = _working_set(nest, tiles, order, alignment)
    moved = _traffic(nest, tiles, order)
    return Tiling(
        sizes={name: int(values[0]) for name, values in tiles.items()},
        order=order,
        count=math.prod(-(-axis.size // int(tiles[axis.name][0])) for axis in nest.axes),
        buffers=tuple((o.label, int(b[0])) for o, b in zip(nest.operands, buffers, strict=True)),
        traffic={o.label: int(m[0]) for o, m in zip(nest.operands, moved, strict=True)},
    )


def search(nest: LoopNest, budget: int, alignment: int) -> Tiling | None:
    """The least-traffic tiling whose buffers fit ``budget`` bytes; ``None`` if none does.

    Ties: fewer tiles, then the earlier order, then larger tiles on the earlier axes.
    """
    tiles = _grid(nest)
    count = np.ones(len(next(iter(tiles.values()))), dtype=np.int64)
    for axis in nest.axes:
        count = count * -(-axis.size // tiles[axis.name])
    best: tuple[int, int, int, int] | None = None
    for order_index, order in enumerate(nest.orders):
        total, _ = _working_set(nest, tiles, order, alignment)
        fits = np.flatnonzero(total <= budget)
        if not fits.size:
            continue
        traffic = np.sum(_traffic(nest, {n: v[fits] for n, v in tiles.items()}, order), axis=0)
        pick = int(fits[np.lexsort((count[fits], traffic))[0]])
        key = (int(traffic.min()), int(count[pick]), order_index, pick)
        if best is None or key < best:
            best = key
    if best is None:
        return None
    order = nest.orders[best[2]]
    return measure(
        nest, {name: int(values[best[3]]) for name, values in tiles.items()}, order, alignment
    )


def orders_of(
    groups: list[tuple[str, ...]], outer: tuple[str, ...] = ()
) -> tuple[tuple[str, ...], ...]:
    """Loop orders: ``outer`` axes first, then every order of the ``groups`` (each kept together)."""
    return tuple(
        outer + tuple(name for group in chosen for name in group) for chosen in permutations(groups)
    )
