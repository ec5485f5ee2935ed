"""Property tests: random DAGs on random targets always give a valid plan or a clear 'does not fit'.

Valid means accepted by the validator and, independently, replayed byte by byte
(:mod:`tests.byte_owners`): no read finds bytes that another write overwrote, so the
``inplace`` pass never overwrites a member of an alias group that is read later.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper
from tierplan.compiler import PassFailure, compile_model, validate_plan
from tierplan.compiler.frontend import load_model
from tierplan.compiler.target import Target, Tier

from tests.byte_owners import corrupted_reads

UNARY = ["Relu", "Sigmoid", "Neg", "Identity", "Tanh"]
BINARY = ["Add", "Mul", "Sub"]


@st.composite
def random_models(draw: st.DrawFn) -> onnx.ModelProto:
    """A DAG of unary, binary and Concat operators over [1, width] float tensors."""
    widths = [draw(st.sampled_from([1, 3, 16, 100, 1024])) for _ in range(draw(st.integers(1, 3)))]
    values = [(f"in{i}", w) for i, w in enumerate(widths)]
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, w]) for name, w in values]
    nodes = []
    for index in range(draw(st.integers(1, 25))):
        kind = draw(st.sampled_from(["unary", "binary", "concat"]))
        first = draw(st.sampled_from(values))
        out = f"t{index}"
        if kind == "unary":
            nodes.append(helper.make_node(draw(st.sampled_from(UNARY)), [first[0]], [out]))
            values.append((out, first[1]))
        elif kind == "binary":
            same = [v for v in values if v[1] == first[1]]
            second = draw(st.sampled_from(same))
            nodes.append(
                helper.make_node(draw(st.sampled_from(BINARY)), [first[0], second[0]], [out])
            )
            values.append((out, first[1]))
        else:
            second = draw(st.sampled_from(values))
            nodes.append(helper.make_node("Concat", [first[0], second[0]], [out], axis=1))
            values.append((out, first[1] + second[1]))
        if draw(st.booleans()):
            nodes[-1].name = f"n{index}"
    read = {name for node in nodes for name in node.input}
    outs = [name for name, _ in values[len(widths) :] if name not in read] or [values[-1][0]]
    widths_by_name = dict(values)
    outputs = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, widths_by_name[n]]) for n in outs
    ]
    graph = helper.make_graph(nodes, "random", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _tiered_target(alignment: int, tiers: int, devices: int, capacity: int) -> Target:
    fast = [Tier("L1", 4096, 1e13, 1e-8), Tier("L2", 65536, 2e12, 5e-8)][: tiers - 1]
    return Target(
        name="random",
        alignment=alignment,
        devices=devices,
        tiers=(*fast, Tier("DDR", capacity, 1e12, 1e-7)),
    )


tiered_targets = st.builds(
    _tiered_target,
    st.sampled_from([1, 4, 64, 512]),
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(2**16, 2**20),
)

targets = st.builds(
    lambda alignment, capacity: Target(
        name="random", alignment=alignment, tiers=(Tier("DDR", capacity, 1e12, 1e-7),)
    ),
    st.sampled_from([1, 4, 64, 512]),
    st.integers(1024, 2**20),
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=random_models(), target=st.one_of(targets, tiered_targets))
def test_random_dags_give_valid_plans(
    tmp_path: Path, model: onnx.ModelProto, target: Target
) -> None:
    path = tmp_path / "random.onnx"
    onnx.save(model, path)
    try:
        result = compile_model(path, target=target, verify_each=True)
    except PassFailure as error:
        assert "does not fit" in str(error)
        return
    fresh = load_model(path).ir
    assert validate_plan(result.plan, fresh) == []
    assert corrupted_reads(result.plan) == []
    assert all(b["offset"] % target.alignment == 0 for b in result.plan["buffers"])
