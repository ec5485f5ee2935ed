"""``tierplan check MODEL PLAN`` rejects hand-broken plans, naming the rule and the culprits.

A small model is compiled once per module; each test deep-copies its plan, breaks
one rule of ``plan-format.md``, writes it and runs the CLI in-process. Breakages
pick their victims from the plan itself (live-together pairs, readers, ...) so they
keep working if the packer or the scheduler changes its choices. Plans the compiler
does not make (alias-group breakages, slice views, concat parts) are written by hand
(:mod:`tests.hand_plans`), accepted or rejected.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tierplan.compiler import compile_model, validate_plan
from tierplan.compiler.cli import main
from tierplan.compiler.frontend import load_model

from tests.byte_owners import corrupted_reads
from tests.hand_plans import HAND_PLANS, HandPlan, hand_plan, save_model

MODEL = Path(__file__).resolve().parents[1] / "models" / "synthetic" / "diamond.onnx"

Plan = dict[str, Any]
Buffer = dict[str, Any]
Breakage = Callable[[Plan], tuple[str, list[str]]]
"""Breaks a plan in place; returns the rule id and the names its message must contain."""


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Plan, Path]:
    """The model's plan (as data) and the plan.json the compiler wrote for it.

    Compiled without ``inplace``, so that every activation has bytes of its own and
    each breakage below has exactly the effect its test describes.
    """
    result = compile_model(MODEL, passes="schedule,liveness,pack,evaluate")
    plan_path, _ = result.write(tmp_path_factory.mktemp("compiled"))
    return copy.deepcopy(result.plan), plan_path


@pytest.fixture
def plan(compiled: tuple[Plan, Path]) -> Plan:
    """A fresh deep copy of the compiled plan, free to break."""
    return copy.deepcopy(compiled[0])


# -- helpers --------------------------------------------------------------------------


def _write(plan: Plan | Any, path: Path) -> Path:
    path.write_text(json.dumps(plan, indent=1))
    return path


def _check(capsys: pytest.CaptureFixture[str], plan_path: Path) -> tuple[int, str]:
    code = main(["check", str(MODEL), str(plan_path)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.err


def _activations(plan: Plan) -> list[Buffer]:
    return [b for b in plan["buffers"] if b["kind"] == "activation" and b["alias_of"] is None]


def _capacity(plan: Plan, tier: str) -> int:
    return int(next(t["capacity"] for t in plan["target"]["tiers"] if t["name"] == tier))


def _live_together(plan: Plan) -> tuple[Buffer, Buffer]:
    """Two activations in one region, alive together at different offsets.

    They share more than a boundary step, so putting one at the other's offset can
    never be a legal in-place reuse (which starts where the aliased buffer ends).
    """
    for a, b in itertools.combinations(_activations(plan), 2):
        same_region = (a["device"], a["tier"]) == (b["device"], b["tier"])
        common_step = max(a["start"], b["start"]) < min(a["end"], b["end"])
        fits = a["offset"] + b["bytes"] <= _capacity(plan, b["tier"])
        if same_region and common_step and a["offset"] != b["offset"] and fits:
            return a, b
    raise AssertionError("the test model has no two activations alive together")


def _last_read(plan: Plan, tensor: str) -> int:
    return int(max(op["step"] for op in plan["ops"] if tensor in op["inputs"]))


# -- breakages ------------------------------------------------------------------------


def overlap(plan: Plan) -> tuple[str, list[str]]:
    a, b = _live_together(plan)
    b["offset"] = a["offset"]
    return "overlap", [a["tensor"], b["tensor"]]


def misaligned(plan: Plan) -> tuple[str, list[str]]:
    b = next(
        b for b in _activations(plan) if b["offset"] + 1 + b["bytes"] <= _capacity(plan, b["tier"])
    )
    b["offset"] += 1
    return "alignment", [b["tensor"], str(b["offset"])]


def over_capacity(plan: Plan) -> tuple[str, list[str]]:
    b = _activations(plan)[0]
    alignment = plan["target"]["alignment"]
    capacity = _capacity(plan, b["tier"])
    b["offset"] = -(-capacity // alignment) * alignment  # aligned, at or past the end
    return "capacity", [b["tensor"], b["tier"], str(capacity)]


def missing_operator(plan: Plan) -> tuple[str, list[str]]:
    name = plan["schedule"].pop()
    plan["ops"] = [op for op in plan["ops"] if op["node"] != name]
    return "schedule", [name]


def not_topological(plan: Plan) -> tuple[str, list[str]]:
    ops = {op["node"]: op for op in plan["ops"]}
    schedule = plan["schedule"]
    for step in range(len(schedule) - 1):
        writer, reader = ops[schedule[step]], ops[schedule[step + 1]]
        shared = [t for t in writer["outputs"] if t in reader["inputs"]]
        if shared:
            schedule[step], schedule[step + 1] = reader["node"], writer["node"]
            reader["step"], writer["step"] = step, step + 1
            return "topological", [reader["node"], shared[0]]
    raise AssertionError("no two consecutive dependent operators")


def lifetime_too_short(plan: Plan) -> tuple[str, list[str]]:
    b = max(_activations(plan), key=lambda b: _last_read(plan, b["tensor"]) - b["start"])
    b["end"] = _last_read(plan, b["tensor"]) - 1
    assert b["end"] >= b["start"]
    return "lifetime", [b["tensor"]]


def wrong_bytes(plan: Plan) -> tuple[str, list[str]]:
    alignment = plan["target"]["alignment"]
    b = next(b for b in _activations(plan) if b["bytes"] > alignment)
    true_bytes = b["bytes"]
    b["bytes"] -= alignment
    return "bytes", [b["tensor"], str(true_bytes), str(b["bytes"])]


def wrong_kind(plan: Plan) -> tuple[str, list[str]]:
    b = _activations(plan)[0]
    b["kind"] = "weight"
    return "kind", [b["tensor"], "'weight'", "'activation'"]


def alias_hiding_overlap(plan: Plan) -> tuple[str, list[str]]:
    """Two live-together tensors at one offset, 'excused' by an alias that is no reuse."""
    a, b = _live_together(plan)
    b["offset"], b["alias_of"] = a["offset"], a["tensor"]
    return "alias", [b["tensor"], a["tensor"]]


def alias_of_nothing(plan: Plan) -> tuple[str, list[str]]:
    b = _activations(plan)[0]
    b["alias_of"] = "no_such_tensor"
    return "alias", [b["tensor"], "no_such_tensor"]


def summary_peak_wrong(plan: Plan) -> tuple[str, list[str]]:
    key = next(iter(plan["summary"]["peak_bytes"]))
    plan["summary"]["peak_bytes"][key] += plan["target"]["alignment"]
    return "summary", ["peak_bytes", key]


def other_model(plan: Plan) -> tuple[str, list[str]]:
    plan["model"]["sha256"] = "0" * 64
    return "model", ["0" * 64]


BREAKAGES: list[Breakage] = [
    overlap,
    misaligned,
    over_capacity,
    missing_operator,
    not_topological,
    lifetime_too_short,
    wrong_bytes,
    wrong_kind,
    alias_hiding_overlap,
    alias_of_nothing,
    summary_peak_wrong,
    other_model,
]


# -- the CLI ----------------------------------------------------------------------------


def test_compiled_plan_is_valid(
    compiled: tuple[Plan, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _check(capsys, compiled[1])
    assert code == 0, err
    assert err == ""


def test_rewritten_unbroken_plan_is_valid(
    plan: Plan, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The plan survives the test's own JSON round trip (so breakages are the only change)."""
    code, err = _check(capsys, _write(plan, tmp_path / "plan.json"))
    assert code == 0, err


@pytest.mark.parametrize("breakage", BREAKAGES, ids=lambda f: f.__name__)
def test_broken_plan_is_rejected(
    breakage: Breakage, plan: Plan, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rule, names = breakage(plan)
    plan_path = _write(plan, tmp_path / "plan.json")
    code, err = _check(capsys, plan_path)
    assert code == 1, err
    lines = err.splitlines()
    assert all(line.startswith(f"{plan_path}: ") for line in lines), err
    # Another model's plan breaks every rule: one line says so, nothing else is checked.
    if breakage is other_model:
        assert len(lines) == 1, err
    else:
        assert lines[-1].endswith("violations)"), err
    culprits = [line for line in lines if f"[{rule}]" in line]
    assert culprits, f"no [{rule}] violation in:\n{err}"
    assert any(all(name in line for name in names) for line in culprits), (
        f"no [{rule}] line names all of {names}:\n{err}"
    )
    if breakage is alias_hiding_overlap:  # a bad alias excuses nothing
        assert "[overlap]" in err


def test_plan_not_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan_path = tmp_path / "plan.json"
    plan_path.write_text('{"format": "tierplan-plan/1", ')
    code, err = _check(capsys, plan_path)
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("tierplan: error: ")
    assert "is not JSON" in err


@pytest.mark.parametrize("data", [[1, 2], "plan", 42, None], ids=repr)
def test_plan_json_but_not_object(
    data: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _check(capsys, _write(data, tmp_path / "plan.json"))
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("tierplan: error: ")
    assert "JSON object" in err


def test_buffers_lacking_fields(
    plan: Plan, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not a plan's structure: bad input (exit 2) for the CLI, [format] for the API."""
    first = plan["buffers"][0]["tensor"]
    plan["buffers"] = [{"tensor": b["tensor"]} for b in plan["buffers"]]
    code, err = _check(capsys, _write(plan, tmp_path / "plan.json"))
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert f"buffers[0] ({first!r}): missing 'kind'" in err
    violations = validate_plan(plan, load_model(MODEL).ir)
    assert {v.rule for v in violations} == {"format"}
    assert any(repr(first) in v.message for v in violations), violations


def test_buffers_not_objects(
    plan: Plan, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan["buffers"] = [{}, 3, "x", None]
    code, err = _check(capsys, _write(plan, tmp_path / "plan.json"))
    assert code == 2, err
    assert "buffers[0]: missing 'tensor'" in err
    violations = validate_plan(plan, load_model(MODEL).ir)
    assert {v.rule for v in violations} == {"format"}
    assert all(any(f"buffers[{i}]" in v.message for v in violations) for i in range(4))


def test_ops_entry_with_unhashable_node(
    plan: Plan, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan["ops"][0]["node"] = [plan["ops"][0]["node"]]
    code, err = _check(capsys, _write(plan, tmp_path / "plan.json"))
    assert code == 2, err
    assert "ops[0].node: expected a string" in err


# -- the Python API -------------------------------------------------------------------


def test_validate_plan_api(plan: Plan) -> None:
    ir = load_model(MODEL).ir
    assert validate_plan(copy.deepcopy(plan), ir, model_sha256=ir.model.sha256) == []
    _, names = overlap(plan)
    violations = validate_plan(plan, ir, model_sha256=ir.model.sha256)
    assert violations, "the overlap went unnoticed"
    assert {v.rule for v in violations} == {"overlap"}, violations
    assert any(all(repr(name) in v.message for name in names) for v in violations), violations
    assert all(str(v).startswith("[overlap] ") for v in violations)
    # Without a hash to compare, the model rule is not checked.
    plan["model"]["sha256"] = "0" * 64
    assert {v.rule for v in validate_plan(plan, ir)} == {"overlap"}


# -- hand-built plans: alias groups, slice views, concat parts ---------------------------


@pytest.mark.parametrize("case", HAND_PLANS, ids=lambda case: case.name)
def test_hand_built_plan(
    case: HandPlan, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = save_model(tmp_path / "hand.onnx", case.nodes, case.inputs)
    plan = hand_plan(model, case.placements)
    code = main(["check", str(model), str(_write(plan, tmp_path / "plan.json"))])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if case.rule is None:
        assert code == 0, err
        assert err == ""
        assert corrupted_reads(plan) == []
        return
    if case.rule == "alias-group":  # the independent replay sees the corruption too
        assert corrupted_reads(plan)
    assert code == 1, err
    culprits = [line for line in err.splitlines() if f"[{case.rule}]" in line]
    assert any(all(name in line for name in case.culprits) for line in culprits), err
