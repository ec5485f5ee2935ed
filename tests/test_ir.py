"""The IR: schema, invariants, JSON and GraphML round trips."""

from __future__ import annotations

import random
from pathlib import Path

import networkx as nx
import pytest
from tierplan.compiler import IRGraph, ModelInfo, Operator, Tensor, compile_model
from tierplan.compiler.errors import InputError, InvariantError
from tierplan.compiler.ir import alias_roots

from tests.conftest import MODELS


def small_ir() -> IRGraph:
    ir = IRGraph(ModelInfo(path="m.onnx", sha256="0"))
    ir.add_tensor(Tensor("x", "float32", (4,), 16, "input"))
    ir.add_tensor(Tensor("w", "float32", (4,), 16, "weight"))
    ir.add_tensor(Tensor("y", "float32", (4,), 16, "activation"))
    ir.add_tensor(Tensor("z", "float32", (4,), 16, "output", graph_output=True))
    ir.add_operator(Operator("mul", "Mul", inputs=["x", "x"], outputs=["y"], index=0))
    ir.add_operator(Operator("add", "Add", inputs=["y", "w"], outputs=["z"], index=1))
    return ir


def test_edges_follow_the_schema() -> None:
    ir = small_ir()
    assert set(ir.graph.in_edges(("op", "mul"))) == {(("tensor", "x"), ("op", "mul"))}
    assert set(ir.graph.out_edges(("op", "add"))) == {(("op", "add"), ("tensor", "z"))}
    assert ir.producer("y").name == "mul"
    assert [op.name for op in ir.consumers("y")] == ["add"]
    assert nx.is_bipartite(ir.graph)
    ir.verify()


def test_edges_are_derived_from_the_lists_when_an_operator_changes() -> None:
    ir = small_ir()
    ir.add_tensor(Tensor("v", "float32", (4,), 16, "activation"))
    ir.add_operator(Operator("neg", "Neg", inputs=["x"], outputs=["v"], index=2))
    ir.redirect_read(ir.operator("mul"), "x", "v")
    assert ir.operator("mul").inputs == ["v", "v"]
    assert [op.name for op in ir.consumers("x")] == ["neg"]
    assert [op.name for op in ir.consumers("v")] == ["mul"]
    ir.add_tensor(Tensor("u", "float32", (4,), 16, "activation"))
    ir.redirect_write(ir.operator("mul"), "y", "u")
    assert ir.producer("u").name == "mul" and not ir.has_producer("y")
    with pytest.raises(InputError, match="reads tensor 'nope'"):
        ir.redirect_read(ir.operator("add"), "w", "nope")
    with pytest.raises(InputError, match="written by both 'neg' and 'add'"):
        ir.redirect_write(ir.operator("add"), "z", "v")
    ir.verify()  # a refused change changes nothing
    ir.operator("add").inputs = ["u", "w"]  # changed by hand, edges not derived again
    with pytest.raises(InvariantError, match="input edges differ from its input list"):
        ir.verify()


def test_building_rejects_unknown_and_doubly_written_tensors() -> None:
    ir = small_ir()
    with pytest.raises(InputError, match="reads tensor 'nope'"):
        ir.add_operator(Operator("bad", "Relu", inputs=["nope"], outputs=[], index=2))
    with pytest.raises(InputError, match="written by both 'mul' and 'again'"):
        ir.add_operator(Operator("again", "Relu", inputs=["x"], outputs=["y"], index=3))


def test_verify_catches_a_schedule_that_is_not_topological() -> None:
    ir = small_ir()
    ir.operator("mul").step, ir.operator("add").step = 1, 0
    with pytest.raises(InvariantError, match="runs before the producer of 'y'"):
        ir.verify()


def test_json_dump_round_trips(tmp_path: Path) -> None:
    result = compile_model(MODELS / "synthetic" / "transformer_block.onnx")
    result.ir.dump(tmp_path / "ir.json")
    loaded = IRGraph.load(tmp_path / "ir.json")
    assert loaded.to_json() == result.ir.to_json()
    loaded.verify()


def test_graphml_export_opens_in_networkx(tmp_path: Path) -> None:
    result = compile_model(MODELS / "synthetic" / "diamond.onnx")
    (tmp_path / "g.graphml").write_text(result.ir.graphml_text())
    graph = nx.read_graphml(tmp_path / "g.graphml")
    assert graph.number_of_nodes() == result.ir.graph.number_of_nodes()
    offsets = {n: d["offset"] for n, d in graph.nodes(data=True) if d.get("node_type") == "tensor"}
    assert offsets["tensor:" + next(iter(result.ir.tensors())).name] == 0


def _walk_to_first_repeat(parent: dict[str, str], name: str) -> str:
    seen = [name]
    while parent.get(seen[-1]) and parent[seen[-1]] not in seen:
        seen.append(parent[seen[-1]])
    return seen[-1]


@pytest.mark.parametrize("seed", range(20))
def test_alias_roots_equal_walking_each_chain(seed: int) -> None:
    rng = random.Random(seed)
    names = [f"t{i}" for i in range(rng.randint(1, 40))]
    # Random links, cycles included (a malformed plan may hold them).
    parent = {name: rng.choice(names) for name in names if rng.random() < 0.7}
    roots = alias_roots(names, parent.get)
    assert {name: roots[name] for name in names} == {
        name: _walk_to_first_repeat(parent, name) for name in names
    }


def test_alias_groups_of_a_long_in_place_chain_share_one_root() -> None:
    ir = IRGraph(ModelInfo(path="m.onnx", sha256="0"))
    for i in range(5000):
        ir.add_tensor(
            Tensor(f"t{i}", "float32", (4,), 16, "activation", alias_of=f"t{i - 1}" if i else None)
        )
    groups = ir.alias_groups(ir.tensors())
    assert list(groups) == ["t0"] and len(groups["t0"]) == 5000
    assert ir.alias_root(ir.tensor("t4999")) == "t0"


def test_unique_names_are_the_first_free_ones_after_removals() -> None:
    ir = IRGraph(ModelInfo(path="m.onnx", sha256=""))
    made = [ir.add_value("c", "float32", (1,), 4).name for _ in range(3)]
    assert made == ["c", "c_1", "c_2"]
    ir.remove_tensor("c_1")
    assert ir.add_value("c", "float32", (1,), 4).name == "c_1"  # freed: made again
    assert ir.add_value("c", "float32", (1,), 4).name == "c_3"
