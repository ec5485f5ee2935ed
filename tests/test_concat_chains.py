"""The ``concat-chains`` rewrite: a DenseNet-style block of growing Concats becomes one
chain of nested Concats whose features are written in place, proven by running it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.parser
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from tierplan.compiler import compile_model
from tierplan.compiler.cli import main
from tierplan.compiler.evaluation import ACTIVATION_KINDS
from tierplan.compiler.execution import run_plan
from tierplan.compiler.fitting.budget import device_totals
from tierplan.compiler.fitting.knobs import all_knobs, available_knobs
from tierplan.compiler.frontend import load_model
from tierplan.compiler.pass_manager import parse_pipeline
from tierplan.compiler.plan import PlanBuffer, memory_summary
from tierplan.compiler.target import load_target
from tierplan.passes import DEFAULT_PIPELINE

REST = "schedule,liveness,inplace,tiling,partition,tiers,pack,evaluate"
CHANNELS, GROWTH, LAYERS = 8, 4, 3


def _dense_block(path: Path) -> Path:
    """x -> Relu; each layer concatenates every feature so far (a copy each time), then a
    1x1 Conv adds GROWTH channels; the block ends with the Concat of all of them."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Relu", ["x"], ["f0"])]
    weights, features = [], ["f0"]
    for layer in range(1, LAYERS + 1):
        channels = CHANNELS + GROWTH * (layer - 1)
        joined = "f0" if layer == 1 else f"cat{layer}"
        if layer > 1:
            nodes.append(helper.make_node("Concat", list(features), [joined], axis=1))
        kernel = rng.standard_normal((GROWTH, channels, 1, 1), dtype=np.float32)
        weights.append(numpy_helper.from_array(kernel, f"w{layer}"))
        nodes.append(helper.make_node("Sigmoid", [joined], [f"a{layer}"]))
        nodes.append(helper.make_node("Conv", [f"a{layer}", f"w{layer}"], [f"f{layer}"]))
        features.append(f"f{layer}")
    nodes.append(helper.make_node("Concat", features, ["y"], axis=-3))
    total = CHANNELS + GROWTH * LAYERS
    graph = helper.make_graph(
        nodes,
        "dense_block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, CHANNELS, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, total, 6, 6])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)
    return path


def _activation_peak(plan: dict[str, Any]) -> int:
    """What ``--budget SIZE`` limits: the largest device's activations, all its tiers."""
    peaks, _ = memory_summary(PlanBuffer.of_plan(plan), set(ACTIVATION_KINDS))
    return max(device_totals(peaks).values())


def test_each_concat_reads_the_longest_earlier_prefix(tmp_path: Path) -> None:
    model = _dense_block(tmp_path / "block.onnx")
    result = compile_model(model, passes=f"concat-chains,{REST}")
    concats = {op.outputs[0]: op.inputs for op in result.ir.operators() if op.op_type == "Concat"}
    assert concats == {"cat2": ["f0", "f1"], "cat3": ["cat2", "f2"], "y": ["cat3", "f3"]}


def test_every_feature_is_written_into_the_last_concat(tmp_path: Path) -> None:
    model = _dense_block(tmp_path / "block.onnx")
    chained = compile_model(model, passes=f"concat-chains,{REST}")
    parents = {name: chained.ir.tensor(name).alias_of for name in ("cat2", "cat3", "f3")}
    assert parents == {"cat2": "cat3", "cat3": "y", "f3": "y"}
    assert chained.ir.alias_root(chained.ir.tensor("f1")) == "y"
    plain = compile_model(model, passes=REST)
    assert plain.ir.tensor("f1").alias_of is None  # read by three Concats: copied each time


def test_chained_plan_matches_onnxruntime(tmp_path: Path) -> None:
    model = _dense_block(tmp_path / "block.onnx")
    report = run_plan(model, compile_options={"passes": f"concat-chains,{REST}"})
    assert report.matches, report.divergence


def test_concats_along_different_axes_are_not_chained(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Concat", ["a", "b"], ["ab"], axis=0),
        helper.make_node("Concat", ["a", "b", "a"], ["aba"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "axes",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 2]) for n in "ab"],
        [
            helper.make_tensor_value_info("ab", TensorProto.FLOAT, [4, 2]),
            helper.make_tensor_value_info("aba", TensorProto.FLOAT, [2, 6]),
        ],
    )
    path = tmp_path / "axes.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    result = compile_model(path, passes=f"concat-chains,{REST}")
    assert not any(op.inserted for op in result.ir.operators())


@st.composite
def growing_concats(draw: st.DrawFn) -> str:
    """Random DenseNet-like DAGs of [1, w] tensors: Concats of the features so far (or
    of a random selection), new features computed from them, and other readers."""
    features: list[tuple[str, int]] = [("f0", 4)]
    lines = ["f0 = Relu(x)"]
    read: set[str] = set()
    for index in range(draw(st.integers(2, 8))):
        if draw(st.booleans()):
            picked = features if draw(st.booleans()) else draw(st.permutations(features))[:2]
        else:
            picked = [draw(st.sampled_from(features))]
        source = f"c{index}"
        if len(picked) > 1:
            lines.append(f"{source} = Concat<axis=1>({', '.join(n for n, _ in picked)})")
        else:
            source = picked[0][0]
        read.update(n for n, _ in picked)
        read.add(source)
        width = sum(w for _, w in picked)
        lines.append(
            f"f{index + 1} = {draw(st.sampled_from(['Neg', 'Tanh', 'Sigmoid']))}({source})"
        )
        features.append((f"f{index + 1}", width))
    lines.append(f"y = Concat<axis=1>({', '.join(n for n, _ in features)})")
    total = sum(w for _, w in features)
    others = [(n, w) for n, w in features if draw(st.booleans()) and n not in read]
    declared = ", ".join(f"float[1,{w}] {n}" for n, w in [("y", total), *others])
    return f"g (float[1,4] x) => ({declared}) {{ {' '.join(lines)} }}"


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=growing_concats())
def test_random_growing_concats_give_valid_plans_that_run(tmp_path: Path, text: str) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(onnx.parser.parse_model(f'<ir_version: 8, opset_import: ["" : 17]>\n{text}'), path)
    for rest in (REST, "schedule,liveness,inplace,pack,evaluate"):
        report = run_plan(path, compile_options={"passes": f"concat-chains,{rest}"})
        assert report.matches, report.divergence


def test_fit_turns_the_chains_on_when_only_they_fit(tmp_path: Path) -> None:
    model = _dense_block(tmp_path / "block.onnx")
    ir = load_model(model).ir
    base = parse_pipeline(",".join(DEFAULT_PIPELINE))
    knobs = available_knobs(all_knobs(load_target(None), [1]), base, ir)
    assert "concat chains" in [knob.name for knob in knobs]
    budget = _activation_peak(compile_model(model, passes=f"concat-chains,{REST}").plan)
    assert budget < _activation_peak(compile_model(model).plan)  # the chains lower this peak
    out = tmp_path / "out"
    assert main(["compile", str(model), "-o", str(out), "--budget", str(budget), "-q"]) == 0
    fit = json.loads((out / "plan.json").read_text())["summary"]["fit"]
    assert "concat chains=on" in fit["chosen"]
