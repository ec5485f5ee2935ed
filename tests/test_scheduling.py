"""Memory-aware scheduling: exact on small graphs, never worse than the ONNX order."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import onnx
import onnx.parser
import pytest
from hypothesis import HealthCheck, given, settings
from tierplan.compiler import PipelineError, compile_model
from tierplan.compiler.aliasing import view_aliases
from tierplan.compiler.frontend import load_model
from tierplan.compiler.ir import IRGraph, Operator
from tierplan.compiler.scheduling import MemoryGraph, beam_schedule, memory_schedule, model_order
from tierplan.passes.schedule import Schedule

from tests.conftest import MODELS, model_files
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


# One memory tier and the scheduler's plain (no aliasing) max-live, so that the
# plan's bound without aliasing is the scheduler's.
ONE_TIER = "schedule{aliasing=false},liveness,inplace,pack,evaluate"


@pytest.fixture
def breadth_first(tmp_path: Path) -> Path:
    path = tmp_path / "breadth_first.onnx"
    onnx.save(onnx.parser.parse_model(BREADTH_FIRST), path)
    return path


def test_memory_order_lowers_max_live_of_a_breadth_first_model(breadth_first: Path) -> None:
    result = compile_model(breadth_first, passes=ONE_TIER)
    report = result.context.result(Schedule)
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
    assert result.context.result(Schedule).method == "onnx"


def test_unknown_order_is_a_pipeline_error(breadth_first: Path) -> None:
    with pytest.raises(PipelineError, match=r"schedule\{order=fast\}: expected 'memory' or 'onnx'"):
        compile_model(breadth_first, passes="schedule{order=fast},liveness,pack,evaluate")


def _loaded(tmp_path: Path, model: onnx.ModelProto) -> tuple[IRGraph, list[Operator]]:
    """``model`` saved and loaded, with its operators in ONNX order."""
    path = tmp_path / "random.onnx"
    onnx.save(model, path)
    ir = load_model(path).ir
    return ir, model_order(ir)


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
    graph = MemoryGraph.of(*_loaded(tmp_path, model))
    onnx_bound = graph.max_live(range(len(graph.operators)))
    greedy = beam_schedule(graph, width=1)
    assert greedy.order is not None and greedy.peak == graph.max_live(greedy.order)
    position = {op: step for step, op in enumerate(greedy.order)}
    for op, after in enumerate(graph.successors):
        assert all(position[op] < position[u] for u in after)
    if len(graph.operators) > 8:
        return  # exhaustive search is for small graphs
    exact = beam_schedule(graph, width=10**6)
    assert exact.exact and exact.order is not None
    assert exact.peak == graph.max_live(exact.order) == _best_by_brute_force(graph)
    assert exact.peak <= min(onnx_bound, greedy.peak)
    # A ceiling at the optimum leaves nothing to find: no order beats it.
    assert beam_schedule(graph, width=10**6, ceiling=exact.peak).order is None


def _memory_graph(text: str, tmp_path: Path) -> MemoryGraph:
    path = tmp_path / "model.onnx"
    onnx.save(onnx.parser.parse_model(text), path)
    ir = load_model(path).ir
    return MemoryGraph.of(ir, model_order(ir), reuse=True)


def test_cut_points_are_the_operators_every_order_passes(tmp_path: Path) -> None:
    chain = _memory_graph(
        """<ir_version: 8, opset_import: ["" : 18]>
        g (float[1,8] x) => (float[1,8] y) { a = Relu(x)  b = Exp(a)  y = Tanh(b) }""",
        tmp_path,
    )
    assert chain.cut_points() == [0, 1, 2]
    diamond = _memory_graph(
        """<ir_version: 8, opset_import: ["" : 18]>
        g (float[1,8] x) => (float[1,8] y) {
          a = Relu(x)  b = Exp(a)  c = Tanh(a)  d = Add(b, c)  y = Neg(d)
        }""",
        tmp_path,
    )
    assert diamond.cut_points() == [0, 3, 4]  # either branch may run first


def test_memory_model_writes_in_place_over_an_input_that_dies(tmp_path: Path) -> None:
    text = """<ir_version: 8, opset_import: ["" : 18]>
        g (float[1,1024] x) => (float[1,1] y) {
          a = Exp(x)
          v = Identity(a)
          b = Relu(a)
          c = Neg(v)
          d = Add(b, c)
          y = ReduceSum<keepdims = 1>(d)
        }"""
    graph = _memory_graph(text, tmp_path)
    ir = load_model(tmp_path / "model.onnx").ir
    assert view_aliases(ir, list(graph.operators)) == {"v": "a"}
    exp, identity, relu, neg, add, _ = range(6)
    # a (with its view v) dies at whichever of Relu and Neg runs last: that one
    # writes in place; Add overwrites b or c. 4 KiB each: x and a, then a and b.
    assert graph.max_live([exp, identity, relu, neg, add, 5]) == 8192
    assert graph.running(relu, 0b000111, 8192) == 8192 + 4096  # a still read by Neg
    assert graph.running(neg, 0b001111, 8192) == 8192  # a dies at Neg: in place
    # Exp needs x and a in any order: the lower bound proves 8 KiB optimal.
    assert graph.lower_bound() == 8192


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=40)
@given(model=random_models())
def test_segmented_search_is_exact_and_bounds_the_plan(
    tmp_path: Path, model: onnx.ModelProto
) -> None:
    graph = MemoryGraph.of(*_loaded(tmp_path, model), reuse=True)
    onnx_bound = graph.max_live(range(len(graph.operators)))
    found = memory_schedule(graph, budget=20_000)
    peak = onnx_bound if found.order is None else graph.max_live(found.order)
    assert graph.lower_bound() <= found.peak == peak <= onnx_bound
    if len(graph.operators) <= 8:  # at most 2^8 frontiers a search: exact in the budget
        assert found.exact and peak == _best_by_brute_force(graph)
    # The scheduler's memory model is the plan's: its max-live is the plan's bound.
    result = compile_model(
        tmp_path / "random.onnx", passes="schedule,liveness,inplace,pack,evaluate"
    )
    assert result.evaluation is not None
    assert result.evaluation.activation_lower_bound_bytes["0/DDR"] == (
        result.context.result(Schedule).bound
    )


@pytest.mark.slow
def test_memory_order_lowers_the_bound_of_a_randomly_wired_network() -> None:
    # RandWire's exported order runs nodes by index; a memory-aware order keeps fewer
    # node outputs alive (benchmarks/results/compile_models.md: 11.74 -> 10.43 MiB).
    path = MODELS / "real" / "randwire_ws.onnx"
    one_tier = "schedule{order=ORDER},liveness,inplace,pack,evaluate"
    bounds = {}
    for order in ("onnx", "memory"):
        evaluation = compile_model(path, passes=one_tier.replace("ORDER", order)).evaluation
        assert evaluation is not None
        bounds[order] = evaluation.activation_lower_bound_bytes["0/DDR"]
    assert bounds["memory"] <= 0.9 * bounds["onnx"]


@pytest.mark.slow
@pytest.mark.parametrize("path", model_files(), ids=lambda p: p.stem)
def test_schedule_never_raises_max_live(path: Path) -> None:
    report = compile_model(path).context.result(Schedule)
    assert report.bound <= report.onnx_order_bound


def test_frontier_count_is_deterministic(breadth_first: Path) -> None:
    runs = [
        compile_model(breadth_first, passes=ONE_TIER).context.result(Schedule) for _ in range(2)
    ]
    assert runs[0] == runs[1] and runs[0].frontiers > 0


def test_a_wide_fan_out_search_stops_at_its_move_budget_and_says_so(tmp_path: Path) -> None:
    # 400 ready operators at once: a beam of width w tries 400 w moves per layer.
    text = "\n".join(
        [
            '<ir_version: 8, opset_import: ["" : 18]>',
            "g (float[1,256] x) => (float[1,256] y) {",
            "  s0 = Sigmoid(x)",
            *(f"  s{i} = Sigmoid(x)" for i in range(1, 400)),
            "  t1 = Add(s0, s1)",
            *(f"  t{i} = Add(t{i - 1}, s{i})" for i in range(2, 400)),
            "  y = Relu(t399)",
            "}",
        ]
    )
    graph = MemoryGraph.of(*_loaded(tmp_path, onnx.parser.parse_model(text)), reuse=True)
    bounded = beam_schedule(graph, width=8, moves=1_000)
    assert bounded.budget_spent and bounded.order is None and bounded.moves > 1_000
    found = memory_schedule(graph, budget=20)
    assert found.budget_spent and not found.exact
    unbounded = beam_schedule(graph, width=1)
    assert not unbounded.budget_spent and unbounded.order is not None


def test_the_schedule_note_says_when_the_budget_ended_the_search(tmp_path: Path) -> None:
    path = tmp_path / "breadth.onnx"
    onnx.save(onnx.parser.parse_model(BREADTH_FIRST), path)
    tight = compile_model(path, passes="schedule{budget=1},liveness")
    report = tight.context.result(Schedule)
    assert report.budget_spent and report.method == "beam"
    roomy = compile_model(path, passes="schedule,liveness").context.result(Schedule)
    assert not roomy.budget_spent and roomy.method == "exact"
