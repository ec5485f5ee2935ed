"""Memory-aware scheduling: a topological order with a low max-live.

The memory a schedule needs is its max-live: the largest total of bytes alive at
one step (without aliasing, or with the views and in-place writes the ``inplace``
pass will make for that order), with the liveness rules of ``plan-format.md`` (graph
inputs from step 0 to their last reader, outputs from their producer to their last
reader or to the end for graph outputs; weights are alive throughout, whatever the
order, so they are left out). Which bytes are alive after some operators have run
depends only on *which* operators have run — the frontier — not on their order.

:func:`beam_schedule` searches over frontiers, one operator more per layer. Each
frontier keeps the lowest peak any order reaching it has seen (a bottleneck shortest
path). When a layer has more frontiers than ``width``, the best ones survive
(lowest peak, then fewest live bytes, then nearest the ONNX order): with width 1 it
is a list scheduler whose priority is the bytes an operator allocates minus those it
frees; wider beams look ahead by keeping several partial orders alive; and when no
layer was ever cut the result is the exact optimum (a DP over frontiers). Frontiers
whose peak already reaches ``ceiling`` (e.g. the ONNX order's max-live) are dropped:
they cannot beat it. The search is deterministic: it counts frontiers and the
operators tried from them (moves: a fan-out of n readers makes every frontier try
n), never time; a search that reaches its move budget stops and says so.

:func:`memory_schedule` first cuts the graph at the operators every order passes
through (:meth:`MemoryGraph.cut_points`): the segments between them are independent,
and only the one that sets the peak can lower it, so the budget goes to it (and to
the next one once it no longer sets the peak).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np
from tierplan.compiler.aliasing import concat_parts, reuse_candidates, shared_bytes
from tierplan.compiler.ir import IRGraph, Operator, Tensor

log = logging.getLogger(__name__)

BOUND_LIMIT = 5_000
"""Largest graph :meth:`MemoryGraph.lower_bound` examines (its masks are quadratic)."""


def _as_array(mask: int, count: int) -> np.ndarray[Any, np.dtype[np.int64]]:
    """``mask`` as ``count`` zeros and ones, bit ``v`` at position ``v``."""
    packed = np.frombuffer(mask.to_bytes((count + 7) // 8, "little"), dtype=np.uint8)
    return np.unpackbits(packed, bitorder="little")[:count].astype(np.int64)


def set_bits(mask: int) -> list[int]:
    """Positions of the set bits of ``mask``."""
    found = []
    while mask:
        low = mask & -mask
        found.append(low.bit_length() - 1)
        mask ^= low
    return found


def model_order(ir: IRGraph) -> list[Operator]:
    """Operators in ONNX order if that order is topological, else a stable topological order.

    Inserted operators (a rewrite's) sit just before the first model operator that
    needs them, in the order the pass added them (a rewrite adds one block of work
    after another: that order interleaves them), each preceded by the producers it
    waits for (:func:`_pulled_order`).
    """
    ops = sorted(ir.operators(), key=lambda op: (op.index is None, op.index or 0))
    position = {op.name: i for i, op in enumerate(ops)}
    for op in ops:
        for name in op.read_tensors():
            if ir.has_producer(name) and position[ir.producer(name).name] > position[op.name]:
                # Inserted operators (transfers) sort last by design; only a model
                # whose own nodes are out of order deserves a warning.
                if not (op.inserted or ir.producer(name).inserted):
                    log.warning("the ONNX node order is not topological; sorting it")
                return _pulled_order(ir, _anchored(ir, ops))
    return ops


def _anchored(ir: IRGraph, ops: list[Operator]) -> list[Operator]:
    """``ops`` with every inserted operator moved just before the first model operator
    that needs it (directly or through other inserted ones), in insertion order: a
    rewrite's work runs where the work it replaced ran."""
    anchor: dict[str, float] = {}
    for key in reversed(list(nx.topological_sort(ir.graph))):
        if key[0] != "op":
            continue
        op = ir.operator(key[1])
        if op.index is not None:
            anchor[op.name] = op.index
        else:
            readers = (r.name for out in op.outputs if out for r in ir.consumers(out))
            anchor[op.name] = min((anchor[name] for name in readers), default=math.inf)
    rank = {op.name: i for i, op in enumerate(ops)}
    return sorted(ops, key=lambda op: (anchor[op.name], not op.inserted, rank[op.name]))


def _pulled_order(ir: IRGraph, ops: list[Operator]) -> list[Operator]:
    """``ops`` in their order, each preceded by the producers it still waits for (depth
    first, in that order too): an operator runs when a reader needs it, not as soon as
    it could (a value computed from constants alone would otherwise be made at once
    and kept until its reader, far later)."""
    position = {op.name: i for i, op in enumerate(ops)}

    def producers(op: Operator) -> Iterator[Operator]:
        names = {ir.producer(n).name for n in op.read_tensors() if ir.has_producer(n)}
        return iter(sorted((ir.operator(n) for n in names), key=lambda o: position[o.name]))

    emitted: set[str] = set()
    order: list[Operator] = []
    for root in ops:
        stack = [] if root.name in emitted else [(root, producers(root))]
        while stack:
            op, waiting = stack[-1]
            needed = next((p for p in waiting if p.name not in emitted), None)
            if needed is None:
                stack.pop()
                emitted.add(op.name)
                order.append(op)
            else:
                stack.append((needed, producers(needed)))
    return order


@dataclass(frozen=True, slots=True)
class MemoryGraph:
    """Operators numbered in a reference order, with the bytes each one allocates and frees.

    ``reads[v]`` are the buffers operator ``v`` reads that may die after it: each is
    freed after the step at which every operator in ``readers[t]`` (a bit mask) has
    run. ``allocates[v]`` are its output bytes, ``transient[v]`` those nobody reads
    (freed right after the step). ``initial`` bytes (graph inputs) are alive from step 0.

    With reuse (:meth:`of`), a buffer is an alias group of views and concat parts, and
    ``v``'s output may overwrite one of the buffers ``overwrites[v]``: it then needs no
    bytes of its own while ``v`` runs if that buffer dies at ``v`` (every reader has
    run), the rule by which the ``inplace`` pass will make the write. A group with
    concat parts is allocated by whichever of its writers runs first: ``claims[v]``
    holds, for each such group ``v`` writes, the mask of its other writers and its bytes
    (:meth:`allocated`).
    """

    operators: tuple[Operator, ...]
    predecessors: tuple[int, ...]  # bit mask of the operators each one waits for
    successors: tuple[tuple[int, ...], ...]
    allocates: tuple[int, ...]
    transient: tuple[int, ...]
    reads: tuple[tuple[int, ...], ...]
    tensor_bytes: tuple[int, ...]
    readers: tuple[int, ...]  # bit mask of the readers of each buffer in ``reads``
    producers: tuple[int, ...]  # the operator writing each buffer in ``reads`` (-1: an input)
    overwrites: tuple[tuple[int, ...], ...]
    overwrite_bytes: tuple[int, ...]
    initial: int
    claims: tuple[tuple[tuple[int, int], ...], ...]

    @classmethod
    def of(cls, ir: IRGraph, reference: Sequence[Operator], reuse: bool = False) -> MemoryGraph:
        """Number the operators of ``ir`` in ``reference`` (a topological) order.

        With ``reuse``, views share their input's buffer and concat parts their
        Concat's output (:func:`~tierplan.compiler.aliasing.shared_bytes`: a group is
        allocated once, by its root or by the first writer of a concat part, and freed
        when every reader of every member has run) and in-place writes are modelled as
        the ``inplace`` pass makes them
        (:func:`~tierplan.compiler.aliasing.reuse_candidates`); without it every
        tensor has bytes of its own: the max-live without aliasing.
        """
        aliases = shared_bytes(ir, list(reference)) if reuse else {}
        parts = concat_parts(ir) if reuse else {}
        index = {op.name: i for i, op in enumerate(reference)}
        groups: dict[str, list[Tensor]] = {}
        for tensor in ir.tensors():
            if tensor.kind != "weight":
                groups.setdefault(aliases.get(tensor.name, tensor.name), []).append(tensor)
        group_id: dict[str, int] = {}
        tensor_bytes: list[int] = []
        readers: list[int] = []
        writers: list[int] = []
        unread: set[str] = set()  # roots of groups nobody reads and nobody keeps
        initial = 0
        for root, members in groups.items():
            consumers = {index[op.name] for t in members for op in ir.consumers(t.name)}
            kept = any(t.graph_output for t in members)
            nbytes = ir.tensor(root).nbytes
            if not ir.has_producer(root) and (consumers or kept):
                initial += nbytes
            if consumers and not kept:
                for tensor in members:
                    group_id[tensor.name] = len(tensor_bytes)
                tensor_bytes.append(nbytes)
                readers.append(sum(1 << c for c in consumers))
                writers.append(index[ir.producer(root).name] if ir.has_producer(root) else -1)
            elif not consumers and not kept:
                unread.add(root)
        claims: list[list[tuple[int, int]]] = [[] for _ in reference]
        claimed: set[str] = set()  # roots of groups with concat parts: their writers claim them
        for root, members in groups.items():
            written = {index[ir.producer(t.name).name] for t in members if t.name in parts}
            if written and ir.has_producer(root):
                claimed.add(root)
                written.add(index[ir.producer(root).name])
                every = sum(1 << w for w in written)
                for w in sorted(written):
                    claims[w].append((every & ~(1 << w), ir.tensor(root).nbytes))
        predecessors, successors, allocates, transient, reads = [], [], [], [], []
        overwrites: list[tuple[int, ...]] = []
        overwrite_bytes: list[int] = []
        for op in reference:
            read = op.read_tensors()
            producers = {index[ir.producer(n).name] for n in read if ir.has_producer(n)}
            predecessors.append(sum(1 << p for p in producers))
            outputs = [
                ir.tensor(name)
                for name in op.outputs
                if name and name not in aliases and name not in claimed
            ]
            allocates.append(sum(t.nbytes for t in outputs))
            transient.append(sum(t.nbytes for t in outputs if t.name in unread))
            after = {index[c.name] for name in op.outputs if name for c in ir.consumers(name)}
            successors.append(tuple(sorted(after)))
            reads.append(tuple(dict.fromkeys(group_id[n] for n in read if n in group_id)))
            found = reuse_candidates(ir, op, views=False) if reuse else None
            if found is not None and found.output.name in parts:
                found = None  # the output is written into its Concat's output instead
            sources = found.sources if found else ()
            overwrites.append(tuple(group_id[t.name] for t in sources if t.name in group_id))
            overwrite_bytes.append(found.output.nbytes if found else 0)
        return cls(
            operators=tuple(reference),
            predecessors=tuple(predecessors),
            successors=tuple(successors),
            allocates=tuple(allocates),
            transient=tuple(transient),
            reads=tuple(reads),
            tensor_bytes=tuple(tensor_bytes),
            readers=tuple(readers),
            producers=tuple(writers),
            overwrites=tuple(overwrites),
            overwrite_bytes=tuple(overwrite_bytes),
            initial=initial,
            claims=tuple(tuple(c) for c in claims),
        )

    def allocated(self, op: int, done: int) -> int:
        """Bytes ``op`` allocates when it runs (``done`` includes it): its outputs, and the
        bytes of each group with concat parts it is the first writer of."""
        first = sum(nbytes for others, nbytes in self.claims[op] if not done & others)
        return self.allocates[op] + first

    def freed(self, op: int, done: int) -> int:
        """Bytes that die after ``op`` runs, ``done`` being the mask of operators run by then."""
        return self.transient[op] + sum(
            self.tensor_bytes[t] for t in self.reads[op] if not self.readers[t] & ~done
        )

    def running(self, op: int, done: int, live: int) -> int:
        """Bytes alive while ``op`` runs after ``live`` bytes (``done`` includes ``op``)."""
        if any(not self.readers[t] & ~done for t in self.overwrites[op]):
            return live + self.allocated(op, done) - self.overwrite_bytes[op]
        return live + self.allocated(op, done)

    def max_live(self, order: Sequence[int]) -> int:
        """Max-live of running the operators in ``order``."""
        return self.replay(order)[1]

    def replay(
        self, order: Sequence[int], done: int = 0, live: int | None = None
    ) -> tuple[int, int]:
        """Live bytes after running ``order``, and the peak on the way.

        ``done`` (a mask) has run before, leaving ``live`` bytes (default: a fresh
        start, with the graph inputs alive).
        """
        live = peak = self.initial if live is None else live
        for op in order:
            done |= 1 << op
            peak = max(peak, self.running(op, done, live))
            live += self.allocated(op, done) - self.freed(op, done)
        return live, peak

    def lower_bound(self) -> int:
        """Bytes alive at some step in every order: no order's max-live is lower.

        While operator ``v`` runs, its inputs and outputs are alive, and so is every
        buffer written by an ancestor of ``v`` (or a graph input) and read by a
        descendant: the bound is the largest such total over the operators (an output
        that may be written in place counted as free). Ancestor masks are quadratic in
        the operators, so graphs above :data:`BOUND_LIMIT` operators get 0.
        """
        count = len(self.operators)
        if count > BOUND_LIMIT:
            return 0
        ancestors = [0] * count
        for v in range(count):
            for p in set_bits(self.predecessors[v]):
                ancestors[v] |= ancestors[p] | 1 << p
        descendants = [0] * count
        for v in range(count - 1, -1, -1):
            for u in self.successors[v]:
                descendants[v] |= descendants[u] | 1 << u
        everything = (1 << count) - 1
        alive = np.zeros(count, dtype=np.int64)
        for t, size in enumerate(self.tensor_bytes):
            writer = self.producers[t]
            after = everything if writer < 0 else descendants[writer]
            before = 0
            for reader in set_bits(self.readers[t]):
                before |= ancestors[reader]
            alive += size * _as_array(after & before | self.readers[t], count)
        own = [
            a - (b if o else 0)
            for a, b, o in zip(self.allocates, self.overwrite_bytes, self.overwrites, strict=True)
        ]
        return max(self.initial, int((alive + np.array(own, dtype=np.int64)).max(initial=0)))

    def cut_points(self) -> list[int]:
        """Positions (in the reference order) of the operators every order passes through.

        Operator ``v`` at position ``i`` is one when every operator before it is an
        ancestor of ``v`` and every one after it a descendant: what runs before ``i``
        is then the same set in any order, so the orders of the segments between cut
        points can be chosen independently. Checked in one sweep: nothing before
        ``i`` is read after ``i``, everything before ``i`` is read by someone, and
        everything after ``i`` reads some operator's output.
        """
        count = len(self.operators)
        sources_after = [0] * (count + 1)
        for v in range(count - 1, -1, -1):
            sources_after[v] = sources_after[v + 1] + (not self.predecessors[v])
        cuts, reach, unread = [], -1, 0
        for v in range(count):
            if reach <= v and not unread and not sources_after[v + 1]:
                cuts.append(v)
            reach = max(reach, *self.successors[v], v)
            unread += not self.successors[v]
        return cuts


@dataclass(frozen=True, slots=True)
class Frontier:
    """Operators run so far (a mask), the peak on the way, live bytes, ready operators."""

    done: int
    peak: int
    live: int
    ready: tuple[int, ...]
    path: tuple[int, object] | None  # (last operator, the path before it): a linked list


@dataclass(frozen=True, slots=True)
class SearchResult:
    """An order found by :func:`beam_schedule`, or ``None`` if none beats the ceiling."""

    order: list[int] | None
    peak: int
    exact: bool  # no layer was cut: the order is optimal (or none beats the ceiling)
    frontiers: int  # frontiers expanded
    budget_spent: bool = False  # the search stopped at its budget, not at a proof
    moves: int = 0  # operators tried from the frontiers


def beam_schedule(
    graph: MemoryGraph,
    width: int,
    ceiling: int | None = None,
    segment: range | None = None,
    live: int | None = None,
    moves: int | None = None,
) -> SearchResult:
    """Search frontiers layer by layer, keeping at most ``width`` per layer.

    With ``segment`` (the positions between two cut points, see
    :meth:`MemoryGraph.cut_points`) only those operators are ordered, the ones
    before it having run, leaving ``live`` bytes (replayed in the reference order
    when not given); the peak is the segment's own. ``moves`` bounds the operators
    tried from all frontiers together (None: no bound): a search that reaches it
    stops without an order (``budget_spent``), so a wide fan-out costs a bounded
    number of steps, not width times its ready operators at every layer.
    """
    segment = segment if segment is not None else range(len(graph.operators))
    done = (1 << segment.start) - 1
    if live is None:
        live, _ = graph.replay(range(segment.start))
    ready = tuple(v for v in segment if not graph.predecessors[v] & ~done)
    count = len(segment)
    layer = [Frontier(done, live, live, ready, None)]
    exact, expanded, tried = True, 0, 0
    for _ in range(count):
        # A move is (frontier, operator, peak, live after); only the moves that
        # survive the layer's cut build their frontier (its ready tuple).
        following: dict[int, tuple[Frontier, int, int, int]] = {}
        for frontier in layer:
            expanded += 1
            tried += len(frontier.ready)
            if moves is not None and tried > moves:
                return SearchResult(None, ceiling or 0, False, expanded, True, tried)
            for op in frontier.ready:
                done = frontier.done | 1 << op
                peak = max(frontier.peak, graph.running(op, done, frontier.live))
                known = following.get(done)
                if (ceiling is not None and peak >= ceiling) or (known and known[2] <= peak):
                    continue
                after = frontier.live + graph.allocated(op, done) - graph.freed(op, done)
                following[done] = (frontier, op, peak, after)
        chosen = sorted(following.items(), key=lambda item: (item[1][2], item[1][3], item[0]))
        if len(chosen) > width:
            chosen, exact = chosen[:width], False
        if not chosen:
            return SearchResult(None, ceiling or 0, exact, expanded, moves=tried)
        layer = [
            _advance(graph, parent, op, done, peak, after)
            for done, (parent, op, peak, after) in chosen
        ]
    best = layer[0]
    order: list[int] = []
    path = best.path
    while path is not None:
        op, rest = path
        order.append(op)
        path = rest  # type: ignore[assignment]
    return SearchResult(order[::-1], best.peak, exact, expanded, moves=tried)


def _advance(
    graph: MemoryGraph, parent: Frontier, op: int, done: int, peak: int, live: int
) -> Frontier:
    unlocked = [u for u in graph.successors[op] if not graph.predecessors[u] & ~done]
    return Frontier(
        done=done,
        peak=peak,
        live=live,
        ready=tuple(sorted([v for v in parent.ready if v != op] + unlocked)),
        path=(op, parent.path),
    )


@dataclass(slots=True)
class _Segment:
    positions: range
    live: int  # bytes alive when it starts, whatever the order
    order: list[int]
    peak: int
    settled: bool = False  # searched without finding a lower peak
    proven: bool = False  # and the search was exact: no order of it is lower


MOVES_PER_FRONTIER = 16
"""Operators a search may try per frontier of its budget, on a graph of up to
:data:`MASK_BITS` operators (fewer above: every move costs a mask of the graph's size)."""
MASK_BITS = 4096


def move_budget(budget: int, operators: int) -> int:
    """The moves (operators tried, see :func:`beam_schedule`) a ``budget`` of frontiers allows."""
    return budget * MOVES_PER_FRONTIER * MASK_BITS // max(MASK_BITS, operators)


def memory_schedule(graph: MemoryGraph, budget: int) -> SearchResult:
    """An order with a lower max-live than the reference one, within ``budget`` frontiers.

    The graph is split at its cut points; only the segment that sets the peak can
    lower it, so it is searched (:func:`beam_schedule`, as wide as the remaining
    budget allows for its length) with its current peak as the ceiling, again
    after every improvement, until a search finds nothing lower (then, if it was
    exact, the order is optimal), the peak meets :meth:`MemoryGraph.lower_bound`
    (optimal too) or the budget is spent: ``budget`` frontiers, or the moves
    :func:`move_budget` allows for them, whichever runs out first. The result's
    ``budget_spent`` says the budget, not a proof or a settled search, ended it.
    """
    if not graph.operators:
        return SearchResult(None, graph.initial, True, 0)
    cuts = graph.cut_points()
    bounds = [0, *(c + 1 for c in cuts if c + 1 < len(graph.operators)), len(graph.operators)]
    segments = []
    live, done = graph.initial, 0
    for first, last in itertools.pairwise(bounds):
        positions = range(first, last)
        after, peak = graph.replay(positions, done, live)
        segments.append(_Segment(positions, live, list(positions), peak))
        live, done = after, done | ((1 << last) - (1 << first))
    # Each segment starts from the same live bytes in any order: the max-live of an
    # order is the largest of its segments' peaks.
    reference_peak = max((segment.peak for segment in segments), default=graph.initial)
    remaining, expanded = budget, 0
    moves = move_budget(budget, len(graph.operators))
    floor = graph.lower_bound()
    spent = True
    while remaining > 0:
        top = max(segments, key=lambda s: (s.peak, -s.positions.start))
        if top.settled or top.peak <= floor:
            spent = False
            break
        width = max(1, remaining // len(top.positions))
        found = beam_schedule(graph, width, top.peak, top.positions, top.live, moves)
        remaining -= found.frontiers
        expanded += found.frontiers
        moves -= found.moves
        if found.budget_spent:
            break
        if found.order is None:
            top.settled, top.proven = True, found.exact
        else:
            top.order, top.peak = found.order, found.peak
    top = max(segments, key=lambda s: (s.peak, -s.positions.start))
    proven = top.proven or top.peak <= floor
    spent = spent and not proven
    if top.peak >= reference_peak:
        return SearchResult(None, reference_peak, proven, expanded, spent)
    order = [v for segment in segments for v in segment.order]
    return SearchResult(order, top.peak, proven, expanded, spent)


def onnx_order_bound(ir: IRGraph) -> int:
    """Max-live (bytes, no aliasing, weights left out) of running ``ir`` in the ONNX order."""
    reference = model_order(ir)
    return MemoryGraph.of(ir, reference).max_live(range(len(reference)))
