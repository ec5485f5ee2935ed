"""Memory-aware scheduling: exact on small graphs, never worse than the ONNX order."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import onnx
import onnx.parser
import pytest
from hypothesis import HealthCheck, given, settings
from tierplan.compiler import PipelineError, compile_model
from tierplan.compiler.frontend import load_model
from tierplan.compiler.scheduling import MemoryGraph, beam_schedule, model_order

from tests.conftest import model_files
from tests.test_properties import random_models

# Four branches emitted breadth first, as some exporters do: every branch's 4 KiB
# tensors are alive at once, where running one branch at a time keeps two.
BREADTH_FIRST = """
<ir_version: 8, opset_import: ["" : 18]>
g (float[1,1024] x) => (float[1,4] y) {
  a1 = Relu(x)
  b1 = Sigmoid(x)
  c1 = Tanh(x)
  d1 = Neg(x)
  a2 = Relu(a1)
  b2 = Relu(b1)
  c2 = Relu(c1)
  d2 = Relu(d1)
  a3 = ReduceSum<keepdims = 1>(a2)
  b3 = ReduceSum<keepdims = 1>(b2)
  c3 = ReduceSum<keepdims = 1>(c2)
  d3 = ReduceSum<keepdims = 1>(d2)
  y = Concat<axis = 1>(a3, b3, c3, d3)
}
"""


# One memory tier, so that the plan's bound is the scheduler's max-live.
ONE_TIER = "schedule,liveness,inplace,pack,evaluate"


@pytest.fixture
def breadth_first(tmp_path: Path) -> Path:
    path = tmp_path / "breadth_first.onnx"
    onnx.save(onnx.parser.parse_model(BREADTH_FIRST), path)
    return path


def test_memory_order_lowers_max_live_of_a_breadth_first_model(breadth_first: Path) -> None:
    result = compile_model(breadth_first, passes=ONE_TIER)
    report = result.context.results["schedule"]
    evaluation = result.evaluation
    assert evaluation is not None
    assert (report.order, report.method) == ("memory", "exact")
    assert report.bound <= 0.9 * report.onnx_order_bound
    # The plan's own bound (no aliasing) is the scheduler's max-live, and the
    # evaluation and the plan summary give the ONNX-order bound it beats.
    assert evaluation.activation_bound_without_aliasing["0/DDR"] == report.bound
    assert evaluation.onnx_order_bound_bytes == report.onnx_order_bound
    assert evaluation.plan["summary"]["onnx_order_bound_bytes"] == report.onnx_order_bound


def test_onnx_order_option_keeps_the_model_order(breadth_first: Path) -> None:
    result = compile_model(breadth_first, passes="schedule{order=onnx},liveness,pack,evaluate")
    assert [op.index for op in result.ir.scheduled_operators()] == list(range(13))
    assert result.context.results["schedule"].method == "onnx"


def test_unknown_order_is_a_pipeline_error(breadth_first: Path) -> None:
    with pytest.raises(PipelineError, match="unknown order 'fast'"):
        compile_model(breadth_first, passes="schedule{order=fast},liveness,pack,evaluate")


def _best_by_brute_force(graph: MemoryGraph) -> int:
    ops = nx.DiGraph()
    ops.add_nodes_from(range(len(graph.operators)))
    ops.add_edges_from((v, u) for v, after in enumerate(graph.successors) for u in after)
    return min(graph.max_live(order) for order in nx.all_topological_sorts(ops))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=40)
@given(model=random_models())
def test_search_is_exact_when_uncut_and_valid_when_narrow(
    tmp_path: Path, model: onnx.ModelProto
) -> None:
    path = tmp_path / "random.onnx"
    onnx.save(model, path)
    ir = load_model(path).ir
    reference = model_order(ir)
    graph = MemoryGraph.of(ir, reference)
    onnx_bound = graph.max_live(range(len(reference)))
    greedy = beam_schedule(graph, width=1)
    assert greedy.order is not None and greedy.peak == graph.max_live(greedy.order)
    position = {op: step for step, op in enumerate(greedy.order)}
    for op, after in enumerate(graph.successors):
        assert all(position[op] < position[u] for u in after)
    if len(reference) > 8:
        return  # exhaustive search is for small graphs
    exact = beam_schedule(graph, width=10**6)
    assert exact.exact and exact.order is not None
    assert exact.peak == graph.max_live(exact.order) == _best_by_brute_force(graph)
    assert exact.peak <= min(onnx_bound, greedy.peak)
    # A ceiling at the optimum leaves nothing to find: no order beats it.
    assert beam_schedule(graph, width=10**6, ceiling=exact.peak).order is None


@pytest.mark.slow
@pytest.mark.parametrize("path", model_files(), ids=lambda p: p.stem)
def test_schedule_never_raises_max_live(path: Path) -> None:
    report = compile_model(path).context.results["schedule"]
    assert report.bound <= report.onnx_order_bound


def test_frontier_count_is_deterministic(breadth_first: Path) -> None:
    runs = [
        compile_model(breadth_first, passes=ONE_TIER).context.results["schedule"] for _ in range(2)
    ]
    assert runs[0] == runs[1] and runs[0].frontiers > 0
