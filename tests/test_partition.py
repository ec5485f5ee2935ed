"""The partition pass: exact pipeline cuts, graph mode, transfers, valid multi-device plans."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import onnx
import pytest
from tierplan.compiler import compile_model, load_target
from tierplan.compiler.cli import main
from tierplan.compiler.errors import PassFailure
from tierplan.compiler.intervals import max_live_bytes
from tierplan.compiler.liveness import live_range
from tierplan.compiler.partition import (
    assignment_cost,
    best_cuts,
    build_problem,
    fewest_stages,
    stage_tables,
)
from tierplan.compiler.partition.graph import balance_load, graph_split
from tierplan.compiler.plan import Plan
from tierplan.passes import DEFAULT_PIPELINE

from models.llama import llama
from models.synthetic import check_stripped_model, random_dag
from tests.conftest import MODELS

SYNTHETIC = MODELS / "synthetic"
# The ONNX order keeps these tests independent of (and faster than) the schedule search.
PIPELINE = "schedule{order=onnx},liveness,inplace,partition{%s},pack,evaluate"
DEFAULT = ",".join(
    {"schedule": "schedule{order=onnx}", "partition": "partition{solver_time=0.2}"}.get(p, p)
    for p in DEFAULT_PIPELINE
)


def _problem(path: Path, target: str = "ascend-like"):  # type: ignore[no-untyped-def]
    result = compile_model(path, passes="schedule{order=onnx},liveness")
    return build_problem(result.ir, load_target(target))


def _dag(tmp_path: Path, ops: int, seed: int) -> Path:
    path = tmp_path / f"dag_{ops}_{seed}.onnx"
    onnx.save(random_dag(num_ops=ops, seed=seed, name=path.stem), path)
    return path


def _devices(starts: list[int], size: int) -> np.ndarray:
    devices = np.zeros(size, dtype=np.int64)
    for stage, start in enumerate(starts):
        devices[start:] = stage
    return devices


def test_the_problem_prices_the_live_ranges_the_liveness_rules_give() -> None:
    """Partition asks the liveness definition (after inplace's concat parts), not rules of its
    own."""
    model = SYNTHETIC / "wide_branchy.onnx"
    result = compile_model(model, passes="schedule{order=onnx},liveness,inplace")
    problem = build_problem(result.ir, load_target("ascend-like"))
    last = result.ir.operator_count() - 1
    for name, start, end in zip(problem.tensor_names, problem.start, problem.last, strict=True):
        assert live_range(result.ir, result.ir.tensor(name), last) == (start, end)
    assert any(result.ir.tensor(name).alias_of for name in problem.tensor_names)  # parts
    single = assignment_cost(problem, np.zeros(problem.size, dtype=np.int64), 1)
    spans = zip(problem.start, problem.last, problem.tensor_bytes, strict=True)
    assert single.max_peak == sum(problem.weight_bytes) + max_live_bytes(spans)


# -- the pipeline DP ------------------------------------------------------------------


@pytest.mark.parametrize("stages", [2, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dp_cut_equals_brute_force_over_all_contiguous_cuts(
    tmp_path: Path, seed: int, stages: int
) -> None:
    problem = _problem(_dag(tmp_path, 14, seed))
    tables = stage_tables(problem)
    n = problem.size
    for balance in ("memory", "time"):
        found = best_cuts(tables, stages, balance)  # type: ignore[arg-type]
        candidates = []
        for count in range(1, stages + 1):
            for cuts in itertools.combinations(range(1, n), count - 1):
                starts = [0, *cuts]
                cost = assignment_cost(problem, _devices(starts, n), stages)
                spans = zip(starts, [*cuts, n], strict=True)
                seconds = max(float(tables.seconds[i, j - 1]) for i, j in spans)
                memory = cost.max_peak
                primary = (memory, seconds) if balance == "memory" else (seconds, memory)
                candidates.append((*primary, cost.total_transfer))
        best = min(candidates)
        ours = (found.max_memory, found.max_seconds)
        assert (*(ours if balance == "memory" else ours[::-1]), found.transfer_bytes) == best


def test_stage_tables_equal_the_cost_of_each_stage(tmp_path: Path) -> None:
    problem = _problem(_dag(tmp_path, 30, 3))
    tables = stage_tables(problem)
    n = problem.size
    for i, j in itertools.combinations_with_replacement(range(n), 2):
        starts = [0, i, j + 1] if i else [0, j + 1]
        starts = [s for s in dict.fromkeys(starts) if s < n]
        devices = _devices(starts, n)
        cost = assignment_cost(problem, devices, len(starts))
        stage = int(devices[i])
        assert tables.memory[i, j] == cost.peak_bytes[stage]
        assert tables.seconds[i, j] == pytest.approx(cost.seconds[stage], rel=1e-9)


def test_more_stages_never_need_more_memory_and_the_max_is_above_the_ideal() -> None:
    problem = _problem(SYNTHETIC / "transformer_stack_4.onnx")
    tables = stage_tables(problem)
    single = assignment_cost(problem, np.zeros(problem.size, dtype=np.int64), 1).max_peak
    peaks = [best_cuts(tables, k).max_memory for k in (1, 2, 4, 8)]
    assert peaks[0] == single
    assert peaks == sorted(peaks, reverse=True) and peaks[-1] < peaks[0]
    for k, peak in zip((1, 2, 4, 8), peaks, strict=True):
        assert peak >= single / k


def test_limited_cut_candidates_give_the_full_tables_entries(tmp_path: Path) -> None:
    problem = _problem(_dag(tmp_path, 40, 4))
    full = stage_tables(problem)
    limited = stage_tables(problem, limit=7)
    starts = limited.starts.tolist()
    assert len(starts) == 7 and starts[0] == 0 and starts == sorted(set(starts))
    ends = [*(s - 1 for s in starts[1:]), problem.size - 1]
    for a, b in itertools.combinations_with_replacement(range(len(starts)), 2):
        i, j = starts[a], ends[b]
        assert limited.memory[a, b] == full.memory[i, j]
        assert limited.incoming[a, b] == full.incoming[i, j]
        assert limited.seconds[a, b] == pytest.approx(full.seconds[i, j], rel=1e-12)
    cuts = best_cuts(limited, 3)
    assert set(cuts.starts) <= set(starts)
    assert (
        cuts.max_memory == assignment_cost(problem, _devices(cuts.starts, problem.size), 3).max_peak
    )


def test_a_device_count_far_above_the_operators_costs_no_more_than_one_per_operator(
    tmp_path: Path,
) -> None:
    problem = _problem(_dag(tmp_path, 12, 5))
    tables = stage_tables(problem)
    many = best_cuts(tables, 10**5)
    assert many == best_cuts(tables, problem.size)
    cost = assignment_cost(problem, _devices(many.starts, problem.size), 10**5)
    assert len(cost.peak_bytes) == 10**5 and cost.max_peak == many.max_memory


# -- graph mode -----------------------------------------------------------------------


def test_graph_mode_is_exact_on_a_small_graph(tmp_path: Path) -> None:
    problem = _problem(_dag(tmp_path, 9, 4))
    tables = stage_tables(problem)
    hint = _devices(best_cuts(tables, 2).starts, problem.size)
    capacity = balance_load(problem, hint, 2)
    split = graph_split(problem, 2, capacity, hint)
    assert split.optimal
    best = min(
        assignment_cost(problem, np.array((0, *rest)), 2).total_transfer
        for rest in itertools.product((0, 1), repeat=problem.size - 1)
        if balance_load(problem, np.array((0, *rest)), 2) <= capacity
    )
    assert assignment_cost(problem, split.devices, 2).total_transfer == best
    assert balance_load(problem, split.devices, 2) <= capacity


def test_graph_mode_transfers_less_than_pipeline_on_a_branchy_model() -> None:
    model = SYNTHETIC / "wide_branchy.onnx"
    moved = {}
    for mode in ("pipeline", "graph"):
        passes = PIPELINE % f"devices=2 mode={mode} solver_time=0.2"
        result = compile_model(model, passes=passes)
        assert result.evaluation is not None
        moved[mode] = sum(result.evaluation.transfer_bytes.values())
    assert 0 < moved["graph"] < moved["pipeline"]


# -- the plans ------------------------------------------------------------------------


def _check_transfers(plan: Plan) -> int:
    """Every tensor read on a device has a live buffer there; every copy came by a
    Transfer from a live buffer on another device. Returns the number of transfers."""
    buffers: dict[str, list[dict[str, object]]] = {}
    for b in plan["buffers"]:
        buffers.setdefault(b["tensor"], []).append(b)

    def live(tensor: str, device: int, step: int) -> bool:
        return any(
            b["device"] == device and b["start"] <= step <= b["end"]  # type: ignore[operator]
            for b in buffers.get(tensor, [])
        )

    transfers = [op for op in plan["ops"] if op["op_type"] == "Transfer"]
    received = {(op["inputs"][0], op["to_device"]) for op in transfers}
    for op in transfers:
        assert op["inserted"] is True and op["inputs"] == op["outputs"]
        assert op["device"] != op["to_device"]
        assert live(op["inputs"][0], op["device"], op["step"]), op
        assert live(op["inputs"][0], op["to_device"], op["step"]), op
    for op in plan["ops"]:
        for tensor in op["inputs"]:
            if tensor:
                assert live(tensor, op["device"], op["step"]), (tensor, op["node"])
    for tensor, copies in buffers.items():
        homes = {b["device"] for b in copies}
        if len(homes) > 1 and copies[0]["kind"] != "weight":
            assert all((tensor, d) in received for d in homes if d != copies[0]["device"])
    return len(transfers)


@pytest.mark.parametrize("mode", ["pipeline", "graph"])
@pytest.mark.parametrize(
    "name", ["diamond", "residual_block", "transformer_stack_4", "unet", "wide_branchy"]
)
def test_multi_device_plans_are_valid_with_a_transfer_per_cut(
    name: str, mode: str, tmp_path: Path
) -> None:
    model = SYNTHETIC / f"{name}.onnx"
    out = tmp_path / "out"
    args = ["compile", str(model), "-o", str(out), "-q", "--passes", DEFAULT]
    assert main([*args, "--devices", "3", "--partition", mode]) == 0
    assert main(["check", str(model), str(out / "plan.json")]) == 0
    plan = onnx_plan(out)
    assert plan["target"]["devices"] == 3
    assert {op["device"] for op in plan["ops"]} - {0, 1, 2} == set()
    assert _check_transfers(plan) > 0
    assert set(plan["summary"]["device_seconds"]) <= {"0", "1", "2"}


def onnx_plan(out: Path) -> Plan:
    import json

    data: Plan = json.loads((out / "plan.json").read_text())
    return data


def test_graph_mode_is_deterministic() -> None:
    model = SYNTHETIC / "unet.onnx"
    passes = PIPELINE % "devices=3 mode=graph solver_time=0.2"
    first, second = (compile_model(model, passes=passes).plan_json() for _ in range(2))
    assert first == second


def test_one_device_is_a_no_op() -> None:
    model = SYNTHETIC / "unet.onnx"
    without = [p for p in DEFAULT_PIPELINE if p != "partition"]
    assert "partition" in DEFAULT_PIPELINE
    assert compile_model(model).plan_json() == compile_model(model, passes=without).plan_json()


def test_auto_picks_the_fewest_devices_that_fit(tmp_path: Path) -> None:
    model = SYNTHETIC / "transformer_stack_4.onnx"
    problem = _problem(model)
    tables = stage_tables(problem)
    # A DDR between the best 2-stage and 3-stage peaks: exactly 3 devices fit.
    capacity = (best_cuts(tables, 2).max_memory + best_cuts(tables, 3).max_memory) // 2
    toml = tmp_path / "small.toml"
    toml.write_text(
        f'name = "small"\n[[tiers]]\nname = "DDR"\ncapacity = {capacity}\n'
        "bandwidth = 1e12\nlatency = 1e-7\n"
    )
    assert fewest_stages(tables, capacity, 8) == 3
    result = compile_model(model, target=toml, passes=PIPELINE % "devices=auto")
    assert result.plan["target"]["devices"] == 3
    assert all(peak <= capacity for peak in result.plan["summary"]["peak_bytes"].values())
    with pytest.raises(PassFailure, match="does not fit"):
        compile_model(model, target=toml, passes=PIPELINE % "devices=2")


def test_partition_options_need_the_partition_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = SYNTHETIC / "diamond.onnx"
    args = ["compile", str(model), "-o", str(tmp_path), "--passes", "schedule,liveness,pack"]
    assert main([*args, "--devices", "2"]) == 2
    assert "partition" in capsys.readouterr().err
    assert main(["compile", str(model), "-o", str(tmp_path), "--devices", "two"]) == 2


# -- the Llama model ------------------------------------------------------------------


def test_llama_builder_counts_7b_parameters() -> None:
    small = llama(2, seq=16, name="llama_2l")
    check_stripped_model(small)
    model = llama(32)
    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type == 10)
    assert 6.6e9 < params < 6.8e9  # Llama-7B: 6.74B
    assert model.ByteSize() < 1_000_000
    committed = MODELS / "scale" / "llama_7b_48l.onnx"
    assert committed.read_bytes() == llama(48, name=committed.stem).SerializeToString()


@pytest.mark.slow
def test_llama_7b_48l_needs_two_inference_cards(tmp_path: Path) -> None:
    model = MODELS / "scale" / "llama_7b_48l.onnx"
    with pytest.raises(PassFailure, match="does not fit"):
        compile_model(model, target="inference-card", passes=PIPELINE % "devices=1")
    out = tmp_path / "out"
    args = ["compile", str(model), "-o", str(out), "-q", "--target", "inference-card"]
    assert main([*args, "--devices", "auto"]) == 0
    assert main(["check", str(model), str(out / "plan.json")]) == 0
    plan = onnx_plan(out)
    assert plan["target"]["devices"] == 2
    capacity = 16 * 2**30
    assert all(peak <= capacity for peak in plan["summary"]["peak_bytes"].values())
    assert _check_transfers(plan) > 0
