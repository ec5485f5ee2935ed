"""Fuzzing the files users hand tierplan: plan JSON and target TOML.

Plans: a valid plan with keys removed and values replaced by other JSON (wrong types,
integers at and past every limit, NaN, names with control characters) is given to
``check``, ``report`` and ``inspect``. Targets: random tables of tiers and numbers.
Every run ends in exit 0, 1 or 2, with one error line for 2 and never exit 3.

The default profile runs a few dozen examples; ``pytest --hypothesis-profile fuzz
tests/test_fuzz_inputs.py`` runs 500 per test (issue 20's acceptance run: on
2026-11-29, 500 plans and 500 targets, no failure, no exit 3, in 21 s).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import json
import math
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from tierplan.compiler.cli import main
from tierplan.compiler.errors import InputError
from tierplan.compiler.inputs import MAX_BYTES, MAX_DEVICES
from tierplan.compiler.target import parse_target

from tests.conftest import MODELS

MODEL = MODELS / "synthetic" / "diamond.onnx"
EDGES = [-1, 0, 1, 63, 64, 2**31, MAX_BYTES, MAX_BYTES + 1, 2**63 - 1, 2**63, 10**100]

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.sampled_from(EDGES)
    | st.integers()
    | st.integers(0, 8)  # well-typed, but steps, devices and sizes that break the rules
    | st.integers(0, 8)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=8)
    | st.sampled_from(["activation", "scratch", "\x1b]0;t\x07", "../../etc/passwd", ""]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


@functools.cache
def _compiled() -> tuple[str, dict[str, Any]]:
    """A valid plan of the model (compiled once), and its text."""
    folder = Path(tempfile.mkdtemp(prefix="tierplan-fuzz-"))
    assert main(["compile", str(MODEL), "-o", str(folder), "-q"]) == 0
    text = (folder / "plan.json").read_text()
    return text, json.loads(text)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path in a JSON document (lists cut to their first three items)."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:3]):
            found += _paths(item, (*prefix, index))
    return found


@st.composite
def broken_plans(draw: st.DrawFn) -> dict[str, Any]:
    plan = copy.deepcopy(_compiled()[1])
    paths = [p for p in _paths(plan) if p]
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths))
        parent: Any = plan
        try:
            for key in path[:-1]:
                parent = parent[key]
            if draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = draw(JSON_VALUES)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or retyped this path
    return plan


def _run(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue()


def _ends_cleanly(code: int, err: str) -> None:
    event(f"exit {code}")  # the statistics show how many runs got past each check
    assert code in (0, 1, 2), err
    if code == 2:
        assert len(err.splitlines()) == 1 and err.startswith("tierplan: error: "), err
    assert "\x1b" not in err and "\x07" not in err


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(broken_plans())
def test_broken_plans_never_crash_check_report_or_inspect(plan: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        plan_path = Path(folder) / "plan.json"
        plan_path.write_text(json.dumps(plan))  # NaN and Infinity too: not strict JSON
        (Path(folder) / MODEL.name).symlink_to(MODEL)
        for argv in (
            ["check", str(MODEL), str(plan_path)],
            ["report", str(plan_path), "-o", str(Path(folder) / "r.html"), "-q"],
            ["inspect", str(plan_path)],
            ["inspect", str(plan_path), "--step", "1"],
        ):
            _ends_cleanly(*_run(argv))


HOSTILE_NUMBERS = (
    st.sampled_from(EDGES)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(["1e400", "9" * 40, "-5", "²", "nan", ""])
    | st.booleans()
)


def _mostly(sound: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``sound`` eight times in ten, else a hostile number: a fair share of targets
    gets past the checks to the compiler."""
    return st.integers(0, 9).flatmap(lambda roll: sound if roll < 8 else HOSTILE_NUMBERS)


SIZES = st.integers(1, 2**40) | st.sampled_from(["256KiB", "16MiB", "1GiB", "1.5MiB"])
RATES = st.floats(1e3, 1e15)
FIELDS = {
    "alignment": _mostly(st.integers(0, 12).map(lambda n: 1 << n)),
    "devices": _mostly(st.integers(1, 4)),
    "link_bandwidth": _mostly(RATES),
    "capacity": _mostly(SIZES),
    "bandwidth": _mostly(RATES),
    "latency": _mostly(st.floats(0, 1e-3)),
    "reserve": _mostly(st.integers(0, 4096)),
    "default": _mostly(RATES),
}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)


@st.composite
def targets(draw: st.DrawFn) -> str:
    """A target TOML: keys left out at random, each value sound or hostile."""

    def maybe(key: str, odds: int) -> list[str]:  # a key is left out one time in odds + 1
        return [f"{key} = {_toml_value(draw(FIELDS[key]))}"] if draw(st.integers(0, odds)) else []

    lines = maybe("alignment", 1) + maybe("devices", 1) + maybe("link_bandwidth", 1)
    for index in range(draw(st.integers(0, 9).map(lambda roll: roll and 1 + roll % 3))):
        lines += ["[[tiers]]", f'name = "T{index}"']
        lines += maybe("capacity", 19) + maybe("bandwidth", 19) + maybe("latency", 2)
        lines += maybe("reserve", 0)
    if draw(st.booleans()):
        lines += ["[compute]", *maybe("default", 9)]
    return "\n".join(lines) + "\n"


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(targets())
def test_random_targets_are_refused_or_sound(text: str) -> None:
    try:
        target = parse_target(text, "fuzz.toml")
    except InputError as error:
        assert "\n" not in str(error)
        event("refused")
        return
    assert 1 <= target.alignment <= MAX_BYTES and 1 <= target.devices <= MAX_DEVICES
    assert math.isfinite(target.link_bandwidth) and target.link_bandwidth > 0
    assert all(math.isfinite(v) and v > 0 for v in target.compute.values())
    for tier in target.tiers:
        assert 1 <= tier.capacity <= MAX_BYTES and 0 <= tier.reserve < tier.capacity
        assert math.isfinite(tier.bandwidth) and tier.bandwidth > 0
        assert math.isfinite(tier.latency) and tier.latency >= 0
    with tempfile.TemporaryDirectory() as folder:
        toml = Path(folder) / "t.toml"
        toml.write_text(text)
        argv = ["compile", str(MODEL), "-o", str(Path(folder) / "out"), "-q", "--target", str(toml)]
        _ends_cleanly(*_run(argv))
