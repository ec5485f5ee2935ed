"""Memory-aware scheduling: a topological order with a low max-live.

The memory a schedule needs (before any aliasing) is its max-live: the largest total
of bytes alive at one step, with the liveness rules of ``plan-format.md`` (graph
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
they cannot beat it. The search is deterministic: it counts frontiers, never time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import networkx as nx
from tierplan.compiler.ir import IRGraph, Operator

log = logging.getLogger(__name__)


def model_order(ir: IRGraph) -> list[Operator]:
    """Operators in ONNX order if that order is topological, else a stable topological order."""
    ops = sorted(ir.operators(), key=lambda op: (op.index is None, op.index or 0, op.name))
    position = {op.name: i for i, op in enumerate(ops)}
    for op in ops:
        for name in op.read_tensors():
            if ir.has_producer(name) and position[ir.producer(name).name] > position[op.name]:
                # Inserted operators (transfers) sort last by design; only a model
                # whose own nodes are out of order deserves a warning.
                if not (op.inserted or ir.producer(name).inserted):
                    log.warning("the ONNX node order is not topological; sorting it")
                return _stable_topological(ir, position)
    return ops


def _stable_topological(ir: IRGraph, position: dict[str, int]) -> list[Operator]:
    def key(node: tuple[str, str]) -> tuple[int, str]:
        return (position.get(node[1], -1) if node[0] == "op" else -1, node[1])

    order = nx.lexicographical_topological_sort(ir.graph, key=key)
    return [ir.operator(node[1]) for node in order if node[0] == "op"]


@dataclass(frozen=True, slots=True)
class MemoryGraph:
    """Operators numbered in a reference order, with the bytes each one allocates and frees.

    ``reads[v]`` are the tensors operator ``v`` reads that may die after it: each is
    freed after the step at which every operator in ``readers[t]`` (a bit mask) has
    run. ``allocates[v]`` are its output bytes, ``transient[v]`` those nobody reads
    (freed right after the step). ``initial`` bytes (graph inputs) are alive from step 0.
    """

    operators: tuple[Operator, ...]
    predecessors: tuple[int, ...]  # bit mask of the operators each one waits for
    successors: tuple[tuple[int, ...], ...]
    allocates: tuple[int, ...]
    transient: tuple[int, ...]
    reads: tuple[tuple[int, ...], ...]
    tensor_bytes: tuple[int, ...]
    readers: tuple[int, ...]  # bit mask of the readers of each tensor in ``reads``
    initial: int

    @classmethod
    def of(cls, ir: IRGraph, reference: Sequence[Operator]) -> MemoryGraph:
        """Number the operators of ``ir`` in ``reference`` (a topological) order."""
        index = {op.name: i for i, op in enumerate(reference)}
        tensor_id: dict[str, int] = {}
        tensor_bytes: list[int] = []
        readers: list[int] = []
        initial = 0
        for tensor in ir.tensors():
            if tensor.kind == "weight":
                continue
            consumers = [index[op.name] for op in ir.consumers(tensor.name)]
            if not ir.has_producer(tensor.name) and (consumers or tensor.graph_output):
                initial += tensor.nbytes
            if consumers and not tensor.graph_output:
                tensor_id[tensor.name] = len(tensor_bytes)
                tensor_bytes.append(tensor.nbytes)
                readers.append(sum(1 << c for c in consumers))
        predecessors, successors, allocates, transient, reads = [], [], [], [], []
        for op in reference:
            read = op.read_tensors()
            producers = {index[ir.producer(n).name] for n in read if ir.has_producer(n)}
            predecessors.append(sum(1 << p for p in producers))
            outputs = [ir.tensor(name) for name in op.outputs if name]
            allocates.append(sum(t.nbytes for t in outputs))
            transient.append(
                sum(t.nbytes for t in outputs if not t.graph_output and not ir.consumers(t.name))
            )
            after = {index[c.name] for t in outputs for c in ir.consumers(t.name)}
            successors.append(tuple(sorted(after)))
            reads.append(tuple(tensor_id[n] for n in read if n in tensor_id))
        return cls(
            operators=tuple(reference),
            predecessors=tuple(predecessors),
            successors=tuple(successors),
            allocates=tuple(allocates),
            transient=tuple(transient),
            reads=tuple(reads),
            tensor_bytes=tuple(tensor_bytes),
            readers=tuple(readers),
            initial=initial,
        )

    def freed(self, op: int, done: int) -> int:
        """Bytes that die after ``op`` runs, ``done`` being the mask of operators run by then."""
        return self.transient[op] + sum(
            self.tensor_bytes[t] for t in self.reads[op] if not self.readers[t] & ~done
        )

    def max_live(self, order: Sequence[int]) -> int:
        """Max-live of running the operators in ``order``."""
        live = peak = self.initial
        done = 0
        for op in order:
            done |= 1 << op
            peak = max(peak, live + self.allocates[op])
            live += self.allocates[op] - self.freed(op, done)
        return peak


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


def beam_schedule(graph: MemoryGraph, width: int, ceiling: int | None = None) -> SearchResult:
    """Search frontiers layer by layer, keeping at most ``width`` per layer."""
    count = len(graph.operators)
    ready = tuple(v for v in range(count) if not graph.predecessors[v])
    layer = [Frontier(0, graph.initial, graph.initial, ready, None)]
    exact, expanded = True, 0
    for _ in range(count):
        following: dict[int, Frontier] = {}
        for frontier in layer:
            expanded += 1
            for op in frontier.ready:
                peak = max(frontier.peak, frontier.live + graph.allocates[op])
                done = frontier.done | 1 << op
                known = following.get(done)
                if (ceiling is not None and peak >= ceiling) or (known and known.peak <= peak):
                    continue
                unlocked = [u for u in graph.successors[op] if not graph.predecessors[u] & ~done]
                following[done] = Frontier(
                    done=done,
                    peak=peak,
                    live=frontier.live + graph.allocates[op] - graph.freed(op, done),
                    ready=tuple(sorted([v for v in frontier.ready if v != op] + unlocked)),
                    path=(op, frontier.path),
                )
        layer = sorted(following.values(), key=lambda f: (f.peak, f.live, f.done))
        if len(layer) > width:
            layer, exact = layer[:width], False
        if not layer:
            return SearchResult(None, ceiling or 0, exact, expanded)
    best = layer[0]
    order: list[int] = []
    path = best.path
    while path is not None:
        op, rest = path
        order.append(op)
        path = rest  # type: ignore[assignment]
    return SearchResult(order[::-1], best.peak, exact, expanded)


def onnx_order_bound(ir: IRGraph) -> int:
    """Max-live (bytes, no aliasing, weights left out) of running ``ir`` in the ONNX order."""
    reference = model_order(ir)
    return MemoryGraph.of(ir, reference).max_live(range(len(reference)))
