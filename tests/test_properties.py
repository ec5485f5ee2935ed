"""Property tests: random DAGs on random targets always give a valid plan or a clear 'does not fit'.

The targets have 1 to 3 tiers and 1 to 4 devices, so tiling, tier assignment and
partitioning are fuzzed with the rest of the default pipeline; the graphs mix
elementwise operators, concatenation, views (Reshape), Softmax, reductions and
MatMul. :func:`check_compiled_plan` is what each plan must pass.

Valid means accepted by the validator and, independently, replayed byte by byte
(:mod:`tests.byte_owners`): no read finds bytes that another write overwrote.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from tierplan.compiler import CompileResult, PassFailure, compile_model, validate_plan
from tierplan.compiler.frontend import load_model
from tierplan.compiler.target import Target, Tier

from tests.byte_owners import corrupted_reads

UNARY = ["Relu", "Sigmoid", "Neg", "Identity", "Tanh"]
BINARY = ["Add", "Mul", "Sub"]
KINDS = ["unary", "binary", "concat", "reshape", "softmax", "reduce", "matmul"]
# Examples per run in CI (the `thorough` profile, if larger, wins): ~30 s of CPU.
EXAMPLES = 200


@st.composite
def random_models(draw: st.DrawFn) -> onnx.ModelProto:
    """A DAG over [rows, width] float tensors (one ``rows`` per model, widths vary)."""
    rows = draw(st.sampled_from([1, 4]))
    widths = [
        draw(st.sampled_from([1, 3, 16, 100, 1024, 4096])) for _ in range(draw(st.integers(1, 3)))
    ]
    values = [(f"in{i}", w) for i, w in enumerate(widths)]
    inputs = [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, [rows, w]) for name, w in values
    ]
    nodes, initializers = [], []
    for index in range(draw(st.integers(1, 25))):
        kind = draw(st.sampled_from(KINDS))
        first = draw(st.sampled_from(values))
        out, width = f"t{index}", first[1]
        if kind == "unary":
            nodes.append(helper.make_node(draw(st.sampled_from(UNARY)), [first[0]], [out]))
        elif kind == "binary":
            second = draw(st.sampled_from([v for v in values if v[1] == first[1]]))
            op_type = draw(st.sampled_from(BINARY))
            nodes.append(helper.make_node(op_type, [first[0], second[0]], [out]))
        elif kind == "concat":
            second = draw(st.sampled_from(values))
            nodes.append(helper.make_node("Concat", [first[0], second[0]], [out], axis=1))
            width = first[1] + second[1]
        elif kind == "reshape":  # a view: same bytes, same shape
            shape = f"shape{index}"
            initializers.append(numpy_helper.from_array(np.array([rows, width]), shape))
            nodes.append(helper.make_node("Reshape", [first[0], shape], [out]))
        elif kind == "softmax":
            nodes.append(helper.make_node("Softmax", [first[0]], [out], axis=-1))
        elif kind == "reduce":
            axes = f"axes{index}"
            initializers.append(numpy_helper.from_array(np.array([1]), axes))
            nodes.append(helper.make_node("ReduceSum", [first[0], axes], [out], keepdims=1))
            width = 1
        else:
            width = draw(st.sampled_from([8, 256]))
            weight = f"w{index}"
            initializers.append(
                numpy_helper.from_array(np.zeros((first[1], width), np.float32), weight)
            )
            nodes.append(helper.make_node("MatMul", [first[0], weight], [out]))
        values.append((out, width))
        if draw(st.booleans()):
            nodes[-1].name = f"n{index}"
    read = {name for node in nodes for name in node.input}
    outs = [name for name, _ in values[len(widths) :] if name not in read] or [values[-1][0]]
    widths_by_name = dict(values)
    outputs = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, [rows, widths_by_name[n]]) for n in outs
    ]
    graph = helper.make_graph(nodes, "random", inputs, outputs, initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@st.composite
def targets(draw: st.DrawFn) -> Target:
    """1 to 3 tiers (fastest first, each 2 to 64 times larger than the one before), 1 to 4 devices."""
    count = draw(st.integers(1, 3))
    capacities = [draw(st.integers(512, 2**16)) if count > 1 else draw(st.integers(1024, 2**22))]
    for _ in range(count - 1):
        capacities.append(capacities[-1] * draw(st.integers(2, 64)))
    names = ["L1", "L2", "DDR"][3 - count :]
    tiers = tuple(
        Tier(name, capacity, 1e12 * 2 ** (count - i), 1e-8 * (i + 1))
        for i, (name, capacity) in enumerate(zip(names, capacities, strict=True))
    )
    return Target(
        name="random",
        tiers=tiers,
        alignment=draw(st.sampled_from([1, 4, 64, 512])),
        devices=draw(st.integers(1, 4)),
    )


def check_compiled_plan(result: CompileResult, model: Path) -> None:
    """What every compiled plan must satisfy: valid against a fresh load of its model.

    ``tests/test_run.py`` also executes plans of the same random graphs and targets.
    """
    target = result.target
    assert validate_plan(result.plan, load_model(model).ir) == []
    assert corrupted_reads(result.plan) == []
    # Concat parts sit where their bytes are in their Concat's output (plan-format.md).
    parts = {
        (name, op["outputs"][0])
        for op in result.plan["ops"]
        if op["op_type"] == "Concat"
        for name in op["inputs"]
    }
    assert all(
        b["offset"] % target.alignment == 0
        for b in result.plan["buffers"]
        if (b["tensor"], b["alias_of"]) not in parts
    )
    assert {b["device"] for b in result.plan["buffers"]} <= set(range(target.devices))
    capacity = {t.name: t.capacity for t in target.tiers}
    assert all(b["offset"] + b["bytes"] <= capacity[b["tier"]] for b in result.plan["buffers"])


@settings(
    max_examples=max(EXAMPLES, settings.default.max_examples),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(model=random_models(), target=targets())
def test_random_dags_give_valid_plans(
    tmp_path: Path, model: onnx.ModelProto, target: Target
) -> None:
    path = tmp_path / "random.onnx"
    onnx.save(model, path)
    try:
        result = compile_model(path, target=target, verify_each=True)
    except PassFailure as error:
        assert "does not fit" in str(error)
        event("does not fit")
        return
    check_compiled_plan(result, path)
    event(f"{len(target.tiers)} tiers, {target.devices} devices")
    event("tiled" if any(op["tiles"] for op in result.plan["ops"]) else "nothing tiled")
    event(
        "several devices used"
        if len({op["device"] for op in result.plan["ops"]}) > 1
        else "one device used"
    )
