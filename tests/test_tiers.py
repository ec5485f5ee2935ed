"""The tiers pass: exact on small instances, everything in L2 when it fits, monotone latency."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from tierplan.compiler import IRGraph, compile_model
from tierplan.compiler.packing import Item, max_live, place
from tierplan.compiler.target import Target, load_target, parse_target
from tierplan.passes.tiers import Candidate, Tiers, assign, demote_until_placed, greedy_assignment

MODELS = Path(__file__).resolve().parent.parent / "models"


def with_l2(target: Target, capacity: int) -> Target:
    tiers = tuple(replace(t, capacity=capacity) if t.name == "L2" else t for t in target.tiers)
    return replace(target, tiers=tiers)


def l2_tensors(ir: IRGraph) -> set[str]:
    return {t.name for t in ir.tensors() if t.tier == "L2"}


def brute_force(
    candidates: list[Candidate], capacity: int, fits: Callable[[tuple[Candidate, ...], int], bool]
) -> int:
    best = 0
    for count in range(len(candidates) + 1):
        for chosen in itertools.combinations(candidates, count):
            if fits(chosen, capacity):
                best = max(best, sum(c.benefit for c in chosen))
    return best


def all_overlapping(chosen: tuple[Candidate, ...], capacity: int) -> bool:
    return sum(c.size for c in chosen) <= capacity


def equal_size_intervals(chosen: tuple[Candidate, ...], capacity: int) -> bool:
    # Interval graphs are perfect: equal-size items fit iff no step holds too many.
    steps = range(0, 1 + max((c.end for c in chosen), default=0))
    size = chosen[0].size if chosen else 1
    return all(sum(c.start <= s <= c.end for c in chosen) * size <= capacity for s in steps)


@pytest.mark.parametrize("seed", range(6))
def test_small_knapsacks_match_the_optimum(seed: int) -> None:
    rng = random.Random(seed)
    candidates = [
        Candidate(f"t{i}", 0, 3, 64 * rng.randint(1, 20), rng.randint(1, 1000)) for i in range(9)
    ]
    capacity = 64 * 40
    found = assign(candidates, capacity, 64)
    assert found.benefit == brute_force(candidates, capacity, all_overlapping)
    assert found.method == "cp-sat optimal"
    assert found.benefit >= greedy_assignment(candidates, capacity).benefit


@pytest.mark.parametrize("seed", range(6))
def test_small_interval_instances_match_the_optimum(seed: int) -> None:
    rng = random.Random(100 + seed)
    candidates = []
    for i in range(10):
        start = rng.randint(0, 12)
        candidates.append(
            Candidate(f"t{i}", start, start + rng.randint(0, 6), 128, rng.randint(1, 99))
        )
    capacity = 128 * 3
    found = assign(candidates, capacity, 64)
    assert found.benefit == brute_force(candidates, capacity, equal_size_intervals)
    assert found.bound == found.benefit


def test_everything_goes_to_l2_when_it_fits() -> None:
    target = with_l2(load_target("ascend-like"), 1 << 30)
    result = compile_model(MODELS / "synthetic" / "transformer_block.onnx", target=target)
    activations = [t for t in result.ir.tensors() if t.kind == "activation" and t.needs_buffer]
    assert activations
    assert all(t.tier == "L2" for t in activations)


@pytest.mark.parametrize("model", ["resnet18", "bert_base"])
def test_real_models_are_within_five_percent_of_the_bound(model: str) -> None:
    result = compile_model(MODELS / "real" / f"{model}.onnx")
    (report,) = result.context.result(Tiers).devices.values()
    assert report.benefit >= 0.95 * report.bound


@pytest.mark.parametrize(
    "model", ["resnet18", "mobilenet_v2", pytest.param("bert_base", marks=pytest.mark.slow)]
)
def test_latency_never_increases_when_l2_grows(model: str) -> None:
    base = load_target("ascend-like")
    latencies = []
    for capacity in (1 << 20, 2 << 20, 8 << 20, 32 << 20):
        result = compile_model(MODELS / "real" / f"{model}.onnx", target=with_l2(base, capacity))
        assert result.evaluation is not None
        latencies.append(result.evaluation.latency_s)
    assert latencies == sorted(latencies, reverse=True), latencies
    assert latencies[-1] < latencies[0]


def test_a_user_target_changes_tiling_and_assignment(tmp_path: Path) -> None:
    text = (
        Path(__file__).resolve().parent.parent / "compiler" / "targets" / "ascend-like.toml"
    ).read_text()
    small = text.replace('capacity = "256KiB"', 'capacity = "64KiB"').replace(
        'capacity = "8MiB"', 'capacity = "1MiB"'
    )
    path = tmp_path / "small.toml"
    path.write_text(small)
    assert parse_target(small, "small").tiers[1].capacity == 1 << 20
    model = MODELS / "real" / "resnet18.onnx"
    default, user = compile_model(model), compile_model(model, target=path)
    tiles = {op.name: op.tiles for op in default.ir.operators()}
    changed = [op.name for op in user.ir.operators() if op.tiles != tiles[op.name]]
    assert changed, "a smaller L1 changes the tilings"
    for op in user.ir.operators():
        assert op.tiles is None or op.tiles.l1_bytes <= 64 * 1024
    assert l2_tensors(default.ir) != l2_tensors(user.ir)
    l2 = [t for t in user.ir.tensors() if t.tier == "L2"]
    assert l2 and max((t.offset or 0) + t.nbytes for t in l2) <= 1 << 20


def _random_candidates(rng: random.Random, count: int) -> list[Candidate]:
    candidates = []
    for index in range(count):
        start = rng.randrange(30)
        end = rng.randint(start, min(29, start + rng.choice([0, 2, 8, 30])))
        size = 64 * rng.choice([1, 2, 3, 5, 8])
        candidates.append(Candidate(f"c{index}", start, end, size, rng.randint(1, 10**6)))
    return candidates


def _checked_choice(seed: int) -> set[str]:
    """Choose among random candidates, check the choice by placing it; what was demoted."""
    rng = random.Random(seed)
    candidates = _random_candidates(rng, 40)
    capacity = 64 * rng.choice([4, 7, 11])
    choice = assign(candidates, capacity, 64, max_deterministic_time=0.2)
    items: list[Item] = [c for c in candidates if c.key in choice.chosen]
    assert max_live(items) <= capacity  # the choice respects the peak
    kept, dropped = demote_until_placed(items, capacity)
    assert {i.key for i in kept} | dropped == choice.chosen
    assert not {i.key for i in kept} & dropped
    assert place(kept).peak <= capacity
    return dropped


def test_every_choice_is_placed_within_the_tier() -> None:
    for seed in range(40):
        _checked_choice(seed)


def test_the_check_demotes_a_choice_within_the_peak_that_does_not_place() -> None:
    # Found by searching seeds: within L2 at every step, but no placement of `best`
    # (skylines included) fits it, so one group goes to DDR.
    assert len(_checked_choice(82)) == 1


def test_pack_falls_back_to_the_placement_tiers_checked() -> None:
    # The first-fit placer alone puts this L2 choice above L2; the best placer does not.
    model = MODELS / "real" / "mobilenet_v2.onnx"
    capacity = 1 << 20
    passes = (
        "schedule,liveness,inplace,tiling,tiers,pack{strategy=first-fit-schedule solver=greedy}"
    )
    result = compile_model(
        model, target=with_l2(load_target("ascend-like"), capacity), passes=passes
    )
    notes = [note for step in result.pass_results for note in step.notes]
    assert "0/L2: above the tier, fell back to greedy-size" in notes
    l2 = [t for t in result.ir.tensors() if t.tier == "L2"]
    assert l2 and max((t.offset or 0) + t.nbytes for t in l2) <= capacity


def _greedy_by_scanning(candidates: list[Candidate], capacity: int) -> set[str]:
    """The greedy by its definition: each candidate in turn kept if the peak stays within."""
    order = sorted(
        candidates,
        key=lambda c: (-c.benefit / (c.size * (c.end - c.start + 1)), c.start, c.key),
    )
    kept: list[Item] = []
    for c in order:
        if max_live([*kept, c]) <= capacity:
            kept.append(c)
    return {item.key for item in kept}


@pytest.mark.parametrize("seed", range(10))
def test_the_greedy_keeps_what_keeps_the_peak_within_the_tier(seed: int) -> None:
    rng = random.Random(seed)
    steps = rng.randint(1, 200)
    candidates = []
    for index in range(rng.randint(0, 150)):
        start = rng.randrange(steps)
        end = rng.randint(start, min(steps - 1, start + rng.choice([0, 3, 30, steps])))
        size = rng.choice([64, 128, 512, 2048])
        candidates.append(Candidate(f"c{index}", start, end, size, rng.randint(1, 10**6)))
    capacity = rng.choice([512, 4096, 65536])
    assert greedy_assignment(candidates, capacity).chosen == _greedy_by_scanning(
        candidates, capacity
    )


def test_tiers_chooses_tiers_and_places_nothing() -> None:
    model = MODELS / "synthetic" / "transformer_block.onnx"
    result = compile_model(model, passes="schedule,liveness,inplace,tiling,tiers")
    l2 = [t for t in result.ir.tensors() if t.tier == "L2"]
    assert l2 and all(t.offset is None for t in l2)
