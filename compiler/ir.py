"""The intermediate representation: one bipartite ``networkx.DiGraph``.

Nodes are operators and tensors. Edges run operator -> tensor (the operator
produces the tensor) and tensor -> operator (the operator reads the tensor, in a
slot or as an implicit input). An operator's inputs and outputs have one source:
its ``inputs``, ``outputs`` and ``implicit_inputs`` lists (slot order, repeats,
omitted optional inputs). The edges are derived from them by :class:`IRGraph`
whenever it adds an operator or changes what one reads or writes, carry no data,
and serve as the index of producers and readers; :meth:`IRGraph.verify` checks
that they are exactly what the lists give.

This module is the single definition of the schema. Every node carries one
attribute, ``data``, holding an :class:`Operator` or a :class:`Tensor`; passes
read and write those typed fields, never ad-hoc keys. Node keys are
``("op", name)`` and ``("tensor", name)`` so that an operator and a tensor may
share a name, as they often do in ONNX files.

Fields filled by passes start as ``None``; which pass fills which field is in
the table of ``docs/design.md`` and in each pass's docstring.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import networkx as nx
from tierplan.compiler.errors import InputError, InvariantError
from tierplan.compiler.files import write_atomically
from tierplan.compiler.inputs import escape_controls

TensorKind = Literal["input", "output", "activation", "weight", "scratch"]
AttributeValue = int | float | str | list[int] | list[float] | list[str] | None
NodeKey = tuple[str, str]

IR_FORMAT = "tierplan-ir/1"

# op_type of the operators the ``partition`` pass inserts to copy a tensor to another
# device: input 0 is the tensor, output 0 its copy; attribute ``to_device``.
TRANSFER_OP = "Transfer"


@dataclass(slots=True)
class Tiles:
    """How an operator is split to fit the fastest tier (``ops[*].tiles`` in a plan).

    ``traffic_by_tensor`` splits ``traffic_bytes`` among the operator's tensors, so
    that the tiers pass and the evaluator know from which tier each byte moves.
    """

    axes: dict[str, int]
    count: int
    l1_bytes: int
    traffic_bytes: int
    traffic_by_tensor: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class Operator:
    """An operator node.

    Attributes
    ----------
    name:
        Unique node name (unnamed ONNX nodes are named ``<op_type>_<index>``).
    op_type, domain:
        As in ONNX (``domain`` is ``""`` for the default domain).
    inputs, outputs:
        Tensor names in slot order; ``""`` marks an omitted optional input.
    implicit_inputs:
        Outer-scope tensors read by a subgraph (If/Loop/Scan body); they must stay
        alive until this operator runs, although they are no input slot.
    attributes:
        The ONNX attributes that are numbers, strings or lists of them.
    index:
        Position in the ONNX ``graph.node`` list; ``None`` for inserted operators.
    step:
        Position in the schedule (``schedule`` pass).
    device:
        Device that runs the operator (``partition`` pass; 0 on one device).
    tiles:
        Tiling of the operator (``tiling`` pass); ``None`` when not tiled.
    """

    name: str
    op_type: str
    domain: str = ""
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    implicit_inputs: list[str] = field(default_factory=list)
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    index: int | None = None
    step: int | None = None
    device: int = 0
    tiles: Tiles | None = None

    @property
    def inserted(self) -> bool:
        """True for an operator the compiler added (it is not in the input model)."""
        return self.index is None

    def read_tensors(self) -> list[str]:
        """Every tensor the operator reads, input slots first, without repeats."""
        names = [name for name in self.inputs if name] + self.implicit_inputs
        return list(dict.fromkeys(names))


@dataclass(slots=True)
class Tensor:
    """A tensor node: a value of the model and, once planned, its buffer.

    Attributes
    ----------
    name:
        The ONNX value name.
    dtype:
        Element type as the numpy-style name (``float32``, ``int64``, ``float8e4m3fn``).
    shape:
        Static shape; every dimension is bound.
    nbytes:
        Exact size: element count times element size, sub-byte types packed and
        rounded up to a whole byte. Alignment padding is never included.
    kind:
        ``input``, ``output``, ``activation``, ``weight`` or ``scratch``.
    graph_output:
        True when the tensor is a graph output (it may also be a graph input).
    start, end:
        Inclusive range of steps during which the bytes must stay intact
        (``liveness`` pass); ``None`` for a tensor that needs no buffer.
    alias_of:
        Name of a tensor whose bytes this one reuses (``inplace`` pass).
    device, tier, offset:
        Where the buffer lives (``partition``, ``tiers`` and ``pack`` passes).
    copy_of:
        For a copy of another tensor on another device (``partition`` pass: the
        output of a ``Transfer``, or a weight replica), that tensor's name. The
        plan names the copy's buffer, and every operator's use of it, by the
        original name (:meth:`IRGraph.plan_name`).
    scratch_of:
        For a ``scratch`` tensor (a tile buffer, ``tiling`` pass), the operator that
        owns it: no edge joins them, it lives at that operator's step only and on its
        device.
    value:
        The elements of a small integer constant (an initializer whose bytes are in
        the file, a ``Constant`` node's output), flattened; ``None`` otherwise. Where
        a Slice or a Gather view lies in its input depends on them (plan-format.md).
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    kind: TensorKind
    graph_output: bool = False
    start: int | None = None
    end: int | None = None
    alias_of: str | None = None
    device: int = 0
    tier: str | None = None
    offset: int | None = None
    copy_of: str | None = None
    scratch_of: str | None = None
    value: list[int] | None = None

    @property
    def needs_buffer(self) -> bool:
        """True once liveness has given the tensor a range of steps."""
        return self.start is not None and self.end is not None


Key = TypeVar("Key", bound=Hashable)


def alias_roots(names: Iterable[Key], parent: Callable[[Key], Key | None]) -> dict[Key, Key]:
    """The root of each name's alias chain (``parent`` gives the next link, ``None`` at a root).

    The one alias-group resolver of the IR, the plan and the validator: every link is
    followed once, so a chain of n aliases costs O(n), not O(n) per member. A malformed
    cycle ends each walk at the first repeat: a member of the cycle gets the member whose
    parent it is, a name leading into the cycle gets what the cycle's entry gets.

    >>> links = {"c": "b", "b": "a", "x": "y", "y": "x"}
    >>> sorted(alias_roots(["c", "x"], links.get).items())
    [('a', 'a'), ('b', 'a'), ('c', 'a'), ('x', 'y'), ('y', 'x')]
    """
    roots: dict[Key, Key] = {}
    for start in names:
        path: list[Key] = []
        on_path: dict[Key, int] = {}
        node = start
        while node not in roots:
            if node in on_path:
                cycle = path[on_path[node] :]
                for position, member in enumerate(cycle):
                    roots[member] = cycle[position - 1]
                del path[on_path[node] :]
                break
            on_path[node] = len(path)
            path.append(node)
            following = parent(node)
            if following is None:
                roots[node] = node
                break
            node = following
        for member in path:
            roots[member] = roots[node]
    return roots


def op_key(name: str) -> NodeKey:
    """Node key of the operator called ``name``."""
    return ("op", name)


def tensor_key(name: str) -> NodeKey:
    """Node key of the tensor called ``name``."""
    return ("tensor", name)


@dataclass(slots=True)
class ModelInfo:
    """Facts about the source model that the plan records."""

    path: str
    sha256: str
    dims: dict[str, int] = field(default_factory=dict)
    opset: int = 0


class IRGraph:
    """The IR: a bipartite DiGraph of :class:`Operator` and :class:`Tensor` nodes.

    Parameters
    ----------
    model:
        Where the graph came from.

    Examples
    --------
    >>> ir = IRGraph(ModelInfo(path="m.onnx", sha256=""))
    >>> ir.add_tensor(Tensor("x", "float32", (4,), 16, "input"))
    >>> ir.add_tensor(Tensor("y", "float32", (4,), 16, "output", graph_output=True))
    >>> ir.add_operator(Operator("relu", "Relu", inputs=["x"], outputs=["y"], index=0))
    >>> [op.name for op in ir.operators()], ir.producer("y").name
    (['relu'], 'relu')
    """

    def __init__(self, model: ModelInfo) -> None:
        self.graph: nx.DiGraph = nx.DiGraph()
        self.model = model
        # unique_name's last suffix per base: every name up to it was taken when it was
        # made (a rewrite making thousands of ``at/Constant`` names probed them all from 0
        # each time: 5 of the 5.6 s of GPT-2's sequence{chunks=16}). Removing a node
        # forgets it, so the names made are the first free ones, as without it.
        self._suffixes: dict[str, int] = {}

    # -- building -------------------------------------------------------------

    def add_tensor(self, tensor: Tensor) -> None:
        """Add a tensor node; its name must be new."""
        key = tensor_key(tensor.name)
        if key in self.graph:
            raise InputError(f"duplicate tensor name {tensor.name!r}")
        self.graph.add_node(key, data=tensor)

    def add_operator(self, op: Operator) -> None:
        """Add an operator and its edges; every tensor it names must already exist."""
        key = op_key(op.name)
        if key in self.graph:
            raise InputError(f"duplicate operator name {op.name!r}")
        self.graph.add_node(key, data=op)
        self._link(op)

    def _link(self, op: Operator) -> None:
        """Add the edges ``op``'s input and output lists give that it lacks (an edge it
        keeps keeps its place among its tensor's readers)."""
        key = op_key(op.name)
        for name in op.read_tensors():
            self._check_read(op, name)
            self.graph.add_edge(tensor_key(name), key)
        for name in op.outputs:
            if name and not self.graph.has_edge(key, tensor_key(name)):
                self._check_write(op, name)
                self.graph.add_edge(key, tensor_key(name))

    def _check_read(self, op: Operator, name: str) -> None:
        if tensor_key(name) not in self.graph:
            raise InputError(
                f"operator {op.name!r} ({op.op_type}) reads tensor {name!r}, "
                "which no operator, graph input or initializer provides"
            )

    def _check_write(self, op: Operator, name: str) -> None:
        """``name`` exists and no operator writes it yet."""
        if tensor_key(name) not in self.graph:
            raise InputError(f"operator {op.name!r} writes unknown tensor {name!r}")
        if self.graph.in_degree(tensor_key(name)):
            other = self.producer(name)
            raise InputError(f"tensor {name!r} is written by both {other.name!r} and {op.name!r}")

    def _relink(self, op: Operator) -> None:
        """Derive ``op``'s edges again from its (changed) input and output lists."""
        key = op_key(op.name)
        reads = set(op.read_tensors())
        writes = {name for name in op.outputs if name}
        stale = [(t, key) for t in self.graph.predecessors(key) if t[1] not in reads]
        stale += [(key, t) for t in self.graph.successors(key) if t[1] not in writes]
        self.graph.remove_edges_from(stale)
        self._link(op)

    # -- reading --------------------------------------------------------------

    def operator(self, name: str) -> Operator:
        """The operator called ``name``."""
        data: Operator = self.graph.nodes[op_key(name)]["data"]
        return data

    def tensor(self, name: str) -> Tensor:
        """The tensor called ``name``."""
        data: Tensor = self.graph.nodes[tensor_key(name)]["data"]
        return data

    def alias_root(self, tensor: Tensor) -> str:
        """The tensor at the end of the ``alias_of`` chain (itself if it aliases nothing)."""
        return self.alias_roots([tensor])[tensor.name]

    def alias_roots(self, tensors: Iterable[Tensor]) -> dict[str, str]:
        """:meth:`alias_root` of each of ``tensors`` (and of the tensors their chains pass),
        in time linear in the tensors visited: call it once per pass, not once per tensor."""
        return alias_roots((t.name for t in tensors), lambda name: self.tensor(name).alias_of)

    def alias_groups(self, tensors: Iterable[Tensor]) -> dict[str, list[Tensor]]:
        """``tensors`` grouped by :meth:`alias_root`: each group shares its bytes."""
        members = list(tensors)
        roots = self.alias_roots(members)
        groups: dict[str, list[Tensor]] = {}
        for tensor in members:
            groups.setdefault(roots[tensor.name], []).append(tensor)
        return groups

    def has_operator(self, name: str) -> bool:
        """True when an operator called ``name`` exists."""
        return op_key(name) in self.graph

    def has_tensor(self, name: str) -> bool:
        """True when a tensor called ``name`` exists."""
        return tensor_key(name) in self.graph

    def operators(self) -> Iterator[Operator]:
        """All operators, in insertion order (the ONNX order, then inserted ones)."""
        for key, data in self.graph.nodes(data="data"):
            if key[0] == "op":
                yield data

    def tensors(self) -> Iterator[Tensor]:
        """All tensors, in insertion order."""
        for key, data in self.graph.nodes(data="data"):
            if key[0] == "tensor":
                yield data

    def scheduled_operators(self) -> list[Operator]:
        """Operators sorted by ``step``; raises if the graph is not scheduled."""
        ops = list(self.operators())
        if any(op.step is None for op in ops):
            raise InvariantError("the graph has no schedule yet (run the 'schedule' pass)")
        return sorted(ops, key=lambda op: op.step or 0)

    def producer(self, tensor: str) -> Operator:
        """The operator that writes ``tensor`` (raises if none does)."""
        for key in self.graph.predecessors(tensor_key(tensor)):
            data: Operator = self.graph.nodes[key]["data"]
            return data
        raise KeyError(f"tensor {tensor!r} has no producer")

    def has_producer(self, tensor: str) -> bool:
        """True when an operator writes ``tensor``."""
        return bool(self.graph.in_degree(tensor_key(tensor)))

    def consumers(self, tensor: str) -> list[Operator]:
        """Operators that read ``tensor``, in insertion order."""
        return [self.graph.nodes[key]["data"] for key in self.graph.successors(tensor_key(tensor))]

    def plan_name(self, tensor: str) -> str:
        """The name the plan gives ``tensor``: the original's for a copy (``Tensor.copy_of``)."""
        return self.tensor(tensor).copy_of or tensor if tensor else tensor

    def redirect_read(self, op: Operator, old: str, new: str) -> None:
        """Make ``op`` read tensor ``new`` wherever it read ``old`` (its lists, then its edges)."""
        self._check_read(op, new)
        op.inputs = [new if name == old else name for name in op.inputs]
        op.implicit_inputs = [new if name == old else name for name in op.implicit_inputs]
        self._relink(op)

    def redirect_write(self, op: Operator, old: str, new: str) -> None:
        """Make ``op`` write tensor ``new`` (which nothing writes yet) instead of ``old``."""
        self._check_write(op, new)
        op.outputs = [new if name == old else name for name in op.outputs]
        self._relink(op)

    def operator_count(self) -> int:
        """Number of operator nodes."""
        return sum(1 for key in self.graph if key[0] == "op")

    # -- editing (passes that rewrite the graph) --------------------------------

    def unique_name(self, base: str) -> str:
        """``base``, or ``base_1``, ``base_2``, ...: the first that names no operator or tensor."""
        count = self._suffixes.get(base, 0)
        name = f"{base}_{count}" if count else base
        while self.has_operator(name) or self.has_tensor(name):
            count += 1
            name = f"{base}_{count}"
        self._suffixes[base] = count
        return name

    def add_value(self, name: str, dtype: str, shape: tuple[int, ...], nbytes: int) -> Tensor:
        """Add a new activation tensor (``name`` made unique) and return it."""
        tensor = Tensor(self.unique_name(name), dtype, shape, nbytes, "activation")
        self.add_tensor(tensor)
        return tensor

    def remove_operator(self, name: str) -> Operator:
        """Remove an operator and its edges; the tensors it read and wrote stay."""
        op = self.operator(name)
        self.graph.remove_node(op_key(name))
        self._suffixes.clear()
        return op

    def remove_tensor(self, name: str) -> None:
        """Remove a tensor that no operator writes or reads any more."""
        key = tensor_key(name)
        if self.graph.degree(key):
            raise InvariantError(f"tensor {name!r} is still written or read; it cannot be removed")
        self.graph.remove_node(key)
        self._suffixes.clear()

    def replace_uses(self, old: str, new: str) -> None:
        """Make every operator that reads ``old`` read ``new`` instead (slots and edges)."""
        for op in self.consumers(old):
            self.redirect_read(op, old, new)

    def clone_operators(self, names: Iterable[str], suffix: str) -> dict[str, str]:
        """Copy operators ``names``, renaming what they write with ``suffix``.

        Tensors written inside the copied set get fresh names (``<name><suffix>``,
        made unique); tensors from outside are read as they are. Returns the map
        from each original operator and tensor name to its copy's name. The copies
        are inserted operators (``index`` None), not scheduled.
        """
        chosen = [self.operator(name) for name in names]
        renamed: dict[str, str] = {}
        for op in chosen:
            for out in op.outputs:
                if out:
                    source = self.tensor(out)
                    copy = self.add_value(out + suffix, source.dtype, source.shape, source.nbytes)
                    renamed[out] = copy.name
        for op in chosen:
            clone = dataclasses.replace(
                op,
                name=self.unique_name(op.name + suffix),
                inputs=[renamed.get(n, n) for n in op.inputs],
                outputs=[renamed.get(n, n) for n in op.outputs],
                implicit_inputs=[renamed.get(n, n) for n in op.implicit_inputs],
                attributes=dict(op.attributes),
                index=None,
                step=None,
                tiles=None,
            )
            self.add_operator(clone)
            renamed[op.name] = clone.name
        return renamed

    # -- invariants -----------------------------------------------------------

    def verify(self) -> None:
        """Check the invariants every pass must keep; raise :class:`InvariantError`.

        Structure: bipartite edges, one producer per tensor, edges that are exactly
        those the operators' input and output lists give, no cycle; a tensor with ``scratch_of`` is ``scratch``, edgeless and
        owned by an existing operator. Once scheduled: steps are ``0..n-1`` and
        topological. Once live ranges exist: they cover producer and readers, and a
        scratch tensor lives at its owner's step only. Placement fields
        are checked by the plan validator, which knows the target.
        """
        problems: list[str] = []
        for source, dest in self.graph.edges:
            if source[0] == dest[0]:
                problems.append(f"edge {source[1]!r} -> {dest[1]!r} joins two {source[0]} nodes")
        for op in self.operators():
            key = op_key(op.name)
            expected_in = set(op.read_tensors())
            actual_in = {source[1] for source in self.graph.predecessors(key)}
            if expected_in != actual_in:
                problems.append(f"operator {op.name!r}: input edges differ from its input list")
            expected_out = {name for name in op.outputs if name}
            actual_out = {dest[1] for dest in self.graph.successors(key)}
            if expected_out != actual_out:
                problems.append(f"operator {op.name!r}: output edges differ from its output list")
        for tensor in self.tensors():
            if self.graph.in_degree(tensor_key(tensor.name)) > 1:
                problems.append(f"tensor {tensor.name!r} has several producers")
            if tensor.scratch_of is not None:
                problems += self._scratch_problems(tensor, tensor.scratch_of)
        if not problems and not nx.is_directed_acyclic_graph(self.graph):
            problems.append("the graph has a cycle")
        if not problems:
            problems += self._schedule_problems()
        if problems:
            raise InvariantError("; ".join(problems[:5]))

    def _scratch_problems(self, tensor: Tensor, owner: str) -> list[str]:
        if tensor.kind != "scratch":
            return [f"tensor {tensor.name!r} has an owner but is {tensor.kind}, not scratch"]
        if not self.has_operator(owner):
            return [f"scratch tensor {tensor.name!r} belongs to no operator {owner!r}"]
        if self.graph.degree(tensor_key(tensor.name)):
            return [f"scratch tensor {tensor.name!r} is read or written by an operator"]
        return []

    def _schedule_problems(self) -> list[str]:
        ops = list(self.operators())
        steps = [op.step for op in ops]
        if all(step is None for step in steps):
            return []
        if any(step is None for step in steps) or sorted(steps) != list(range(len(ops))):  # type: ignore[type-var]
            return ["operator steps are not exactly 0..n-1"]
        problems = []
        for tensor in self.tensors():
            if not self.has_producer(tensor.name):
                continue
            made = self.producer(tensor.name).step or 0
            for reader in self.consumers(tensor.name):
                if (reader.step or 0) <= made:
                    problems.append(
                        f"operator {reader.name!r} runs before the producer of {tensor.name!r}"
                    )
            if tensor.needs_buffer and (tensor.start or 0) > made:
                problems.append(f"tensor {tensor.name!r} is live only after it is written")
        for tensor in self.tensors():
            if tensor.scratch_of is not None and tensor.needs_buffer:
                step = self.operator(tensor.scratch_of).step
                if (tensor.start, tensor.end) != (step, step):
                    problems.append(
                        f"scratch tensor {tensor.name!r} lives beyond the step of its operator"
                    )
        return problems

    # -- serialization --------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The whole IR as JSON-ready data (the format of ``--dump-after`` files)."""
        return {
            "format": IR_FORMAT,
            "model": dataclasses.asdict(self.model),
            "tensors": [_tensor_json(t) for t in self.tensors()],
            "operators": [dataclasses.asdict(op) for op in self.operators()],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IRGraph:
        """Rebuild an IR written by :meth:`to_json`."""
        if data.get("format") != IR_FORMAT:
            raise InputError(f"not a tierplan IR dump (expected format {IR_FORMAT!r})")
        ir = cls(ModelInfo(**data["model"]))
        for item in data["tensors"]:
            ir.add_tensor(Tensor(**{**item, "shape": tuple(item["shape"])}))
        for item in data["operators"]:
            tiles = Tiles(**item["tiles"]) if item.get("tiles") else None
            ir.add_operator(Operator(**{**item, "tiles": tiles}))
        return ir

    def dump(self, path: Path) -> None:
        """Write :meth:`to_json` to ``path`` (atomically)."""
        write_atomically(path, json.dumps(self.to_json(), indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> IRGraph:
        """Read an IR dump written by :meth:`dump`."""
        try:
            return cls.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise InputError(f"cannot read IR dump {str(path)!r}: {error}") from None

    def graphml_text(self) -> str:
        """GraphML for graph tools (yEd, Gephi): scalar fields become node attributes.

        Control characters of names (NUL, newline, ESC ...) are written escaped
        (``\\x00``): XML 1.0 cannot hold most of them, and ids must survive parsing.
        """
        flat = nx.DiGraph()
        for key, data in self.graph.nodes(data="data"):
            fields: dict[str, int | float | str] = {}
            for name, value in _node_json(data).items():
                if isinstance(value, str):
                    fields[name] = escape_controls(value)
                elif isinstance(value, int | float):
                    fields[name] = value
                elif value is not None:
                    fields[name] = json.dumps(value)  # escapes control characters itself
            flat.add_node(_graphml_id(key), node_type=key[0], **fields)
        for source, dest in self.graph.edges:
            flat.add_edge(_graphml_id(source), _graphml_id(dest))
        return "\n".join(nx.generate_graphml(flat)) + "\n"


def _graphml_id(key: tuple[str, str]) -> str:
    return escape_controls(f"{key[0]}:{key[1]}")


def _tensor_json(tensor: Tensor) -> dict[str, Any]:
    data = dataclasses.asdict(tensor)
    data["shape"] = list(tensor.shape)
    return data


def _node_json(data: Operator | Tensor) -> dict[str, Any]:
    if isinstance(data, Tensor):
        return _tensor_json(data)
    return dataclasses.asdict(data)
