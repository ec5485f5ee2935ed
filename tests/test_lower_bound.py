"""``summary.lower_bound_bytes``: each region's max-live, each alias group counted once.

The bound is recomputed here without the compiler's alias groups: in a valid plan,
buffers of different groups never share a byte at a common step, so the bytes live
at a step are the union of the live buffers' byte ranges.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from tierplan.compiler import compile_model, validate_plan
from tierplan.compiler.frontend import load_model
from tierplan.compiler.intervals import live_bytes_per_step
from tierplan.compiler.plan import PlanBuffer, group_live_ranges

from models.llama import llama
from tests.hand_plans import HAND_PLANS, HandPlan, hand_plan, save_model


def _union_max_live(buffers: list[dict[str, Any]]) -> int:
    """Largest number of distinct bytes held by live buffers at one step."""
    steps = sorted({b["start"] for b in buffers})
    best = 0
    for step in steps:
        live = sorted(
            (b["offset"], b["offset"] + b["bytes"])
            for b in buffers
            if b["start"] <= step <= b["end"]
        )
        held, reach = 0, 0
        for low, high in live:
            held += max(0, high - max(low, reach))
            reach = max(reach, high)
        best = max(best, held)
    return best


def _regions(plan: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    regions: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for b in plan["buffers"]:
        regions[f"{b['device']}/{b['tier']}"].append(b)
    return regions


@pytest.fixture(scope="module")
def wide_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four layers at Llama-7B widths: activations of 1 MiB that crowd an 8 MiB L2."""
    path = tmp_path_factory.mktemp("llama") / "llama_4l.onnx"
    path.write_bytes(llama(4).SerializeToString())
    return path


@pytest.mark.parametrize("devices", [1, 2, 4])
def test_partitioned_bound_is_each_regions_max_live(wide_llama: Path, devices: int) -> None:
    result = compile_model(
        wide_llama,
        passes=f"schedule,liveness,inplace,tiling,partition{{devices={devices}}},tiers,pack,evaluate",
    )
    plan = result.plan
    assert validate_plan(plan, load_model(wide_llama).ir) == []
    summary = plan["summary"]
    regions = _regions(plan)
    assert {key.split("/")[0] for key in regions} == {str(d) for d in range(devices)}
    assert set(summary["lower_bound_bytes"]) == set(regions)
    for key, members in regions.items():
        bound = summary["lower_bound_bytes"][key]
        assert bound == _union_max_live(members), key
        assert bound <= summary["peak_bytes"][key], key


VALID_HAND_PLANS = [case for case in HAND_PLANS if case.rule is None]


@pytest.mark.parametrize("case", VALID_HAND_PLANS, ids=lambda case: case.name)
def test_members_inside_each_other_count_once(case: HandPlan, tmp_path: Path) -> None:
    model = save_model(tmp_path / "hand.onnx", case.nodes, case.inputs)
    plan = hand_plan(model, case.placements)
    assert validate_plan(plan, load_model(model).ir) == []
    [(key, members)] = _regions(plan).items()
    assert plan["summary"]["lower_bound_bytes"][key] == _union_max_live(members)


def test_a_group_holds_the_union_of_its_live_members() -> None:
    """A slice view outliving its source holds only its own bytes after the source ends."""
    source = PlanBuffer(0, "x", "activation", 100, 0, "DDR", 0, 0, 1)
    part = PlanBuffer(1, "y", "activation", 20, 0, "DDR", 20, 1, 5)
    inside = PlanBuffer(2, "z", "activation", 5, 0, "DDR", 30, 4, 6)
    curve = live_bytes_per_step(group_live_ranges([source, part, inside]))
    assert curve.tolist() == [100, 100, 20, 20, 20, 20, 5]
