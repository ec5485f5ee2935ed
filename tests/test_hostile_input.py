"""Hostile input to every command: one test per case class of issue 20.

Each class fails with one ``tierplan: error:`` line and exit code 2, no traceback and
no output file (never exit 3, never a hang): numbers out of range in options, models,
targets, traces and plans; files that are not regular; plans of the wrong shape;
output paths that cannot be written; signals between two outputs. Names with control
characters never reach the terminal raw, and ``report`` never opens a path that only
a plan names.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import networkx as nx
import onnx
import pytest
from onnx import TensorProto, helper
from tierplan.compiler import files
from tierplan.compiler.cli import main
from tierplan.compiler.errors import InputError
from tierplan.compiler.inputs import read_bytes
from tierplan.compiler.report.terminal import EscapingFormatter

from tests.cli_checks import fails_cleanly, fails_in_one_line, listing, opened_paths

pytestmark = pytest.mark.usefixtures("run_in_tmp_path")

ESCAPES = "\x1b]0;owned\x07\x1b[2J\x9b31m"
TARGET = """
[[tiers]]
name = "L1"
capacity = 262144
bandwidth = 1e12
[[tiers]]
name = "DDR"
capacity = "1GiB"
bandwidth = {bandwidth}
latency = {latency}
"""


def _model(path: Path, suffix: str = "", shape: tuple[int | str, ...] = (2, 4)) -> Path:
    """x -> Relu -> h -> Relu -> y, every name ending in ``suffix``."""
    x, h, y = (f"{name}{suffix}" for name in "xhy")
    value = helper.make_tensor_value_info
    graph = helper.make_graph(
        [
            helper.make_node("Relu", [x], [h], name=f"first{suffix}"),
            helper.make_node("Relu", [h], [y], name=f"second{suffix}"),
        ],
        "g",
        [value(x, TensorProto.FLOAT, list(shape))],
        [value(y, TensorProto.FLOAT, list(shape))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, path)
    return path


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return _model(tmp_path / "m.onnx")


@pytest.fixture
def plan_path(model: Path, tmp_path: Path) -> Path:
    """A compiled plan in ``tmp_path/good`` (its model copy beside it)."""
    assert main(["compile", str(model), "-o", str(tmp_path / "good"), "-q"]) == 0
    return tmp_path / "good" / "plan.json"


def _no_control_bytes(text: str) -> None:
    assert not any(char in text for char in "\x1b\x07\x9b"), repr(text)


# -- numbers out of range in options -------------------------------------------------------


@pytest.mark.parametrize(
    "value", [str(2**63), str(2**64), "9" * 5000, "²", "٣", "0", "-1", "1e3"], ids=repr
)
def test_dim_out_of_range(value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _model(tmp_path / "m.onnx", shape=("N", 4))
    line = fails_cleanly(tmp_path, capsys, model, "--dim", f"N={value}")
    assert "cannot read dimension" in line
    assert len(line) < 300  # a 5,000-digit value is cut


@pytest.mark.parametrize("value", [str(2**64), "²", "-3", "9" * 5000])
def test_input_shape_out_of_range(
    value: str, model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = fails_cleanly(tmp_path, capsys, model, "--input-shape", f"x:{value},4")
    assert "cannot read shape" in line


@pytest.mark.parametrize("value", ["1e400", "9" * 400, str(2**63), "nan"])
def test_simulate_capacity_out_of_range(
    value: str, model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "--capacity" in fails_in_one_line(capsys, ["simulate", str(model), "--capacity", value])


@pytest.mark.parametrize("value", ["1000000", "100000000", str(2**63), "²"])
def test_device_count_over_the_limit(
    value: str, model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = fails_cleanly(tmp_path, capsys, model, "--devices", value)
    assert "devices" in line


@pytest.mark.parametrize("option", ["budget=nan", "budget=inf", "budget=1e400", f"workers={2**64}"])
def test_pass_option_out_of_range(
    option: str, model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    passes = f"schedule,liveness,pack{{{option}}},evaluate"
    assert f"pack{{{option}}}: expected" in fails_cleanly(
        tmp_path, capsys, model, "--passes", passes
    )


# -- models ----------------------------------------------------------------------------------


def test_model_dimension_past_the_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _model(tmp_path / "m.onnx", shape=(2**63 - 1,))
    assert "more than any target can hold" in fails_cleanly(tmp_path, capsys, model)


def test_model_names_not_utf8(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model.write_bytes(model.read_bytes().replace(b"first", b"f\xffr\xfet"))
    assert "is not valid UTF-8" in fails_cleanly(tmp_path, capsys, model)


# -- files that are not regular files, and size limits -----------------------------------------


def _run_with_timeout(*argv: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a child process that must finish within a minute (a hang fails)."""
    script = "import sys\nfrom tierplan.compiler.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", script, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("role", ["model", "target", "plan", "trace"])
@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
def test_special_files_are_refused(role: str, special: str, model: Path, tmp_path: Path) -> None:
    path = tmp_path / "fifo"
    if special == "fifo":
        os.mkfifo(path)
    else:
        path = Path(special)
    argv = {
        "model": ["compile", str(path), "-o", str(tmp_path / "out")],
        "target": ["compile", str(model), "-o", str(tmp_path / "out"), "--target", str(path)],
        "plan": ["inspect", str(path)],
        "trace": ["pack", str(path), "-o", str(tmp_path / "out.txt")],
    }[role]
    child = _run_with_timeout(*argv)
    assert child.returncode == 2, child.stderr
    assert child.stderr.count("\n") == 1 and "is not a regular file" in child.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.txt").exists()


def test_files_over_their_limit_are_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_bytes(b" " * 1001)
    with pytest.raises(InputError, match="more than the limit 1000"):
        read_bytes(path, "plan file", 1000)
    assert read_bytes(path, "plan file", 1001) == b" " * 1001


# -- targets -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (TARGET.format(bandwidth="nan", latency=0), "bandwidth"),
        (TARGET.format(bandwidth="inf", latency=0), "bandwidth"),
        (TARGET.format(bandwidth=1e9, latency="nan"), "latency"),
        (TARGET.format(bandwidth=1e9, latency="-inf"), "latency"),
        ("link_bandwidth = nan\n" + TARGET.format(bandwidth=1e9, latency=0), "link_bandwidth"),
        (TARGET.format(bandwidth=1e9, latency=0) + "[compute]\ndefault = nan\n", "compute"),
        (f"alignment = {2**100}\n" + TARGET.format(bandwidth=1e9, latency=0), "alignment"),
        (f"devices = {2**63 - 1}\n" + TARGET.format(bandwidth=1e9, latency=0), "devices"),
        (TARGET.format(bandwidth=1e9, latency=0).replace('"1GiB"', "1e400"), "capacity"),
        (TARGET.format(bandwidth=1e9, latency=0).replace('"1GiB"', str(2**63)), "capacity"),
    ],
)
def test_target_numbers_out_of_range(
    text: str, field: str, model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "t.toml"
    target.write_text(text)
    line = fails_cleanly(tmp_path, capsys, model, "--target", str(target))
    assert "t.toml" in line and field in line


# -- traces --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line", [f"{2**63} 0 1", f"{10**100} 0 1", f"10 0 {10**12}", f"10 0 {10**30}", "1 0 ²"]
)
def test_trace_numbers_out_of_range(
    line: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "t.txt"
    trace.write_text(line + "\n")
    assert "t.txt:1" in fails_in_one_line(capsys, ["pack", str(trace)])
    assert not (tmp_path / "t.packed.txt").exists()


# -- plans of the wrong shape ----------------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], None]
MUTATIONS: dict[str, Mutation] = {
    "kind a list": lambda p: p["buffers"][0].update(kind=["activation"]),
    "kind a dict": lambda p: p["buffers"][0].update(kind={}),
    "device a list": lambda p: p["buffers"][0].update(device=[0]),
    "buffers a string": lambda p: p.update(buffers="x"),
    "no start": lambda p: p["buffers"][0].pop("start"),
    "no kind": lambda p: p["buffers"][0].pop("kind"),
    "model.path a list": lambda p: p["model"].update(path=["m.onnx"]),
    "tiles a list": lambda p: p["ops"][0].update(tiles=[1, 2]),
    "tiles without axes": lambda p: p["ops"][0].update(tiles={"count": 1}),
    "tiers empty": lambda p: p["target"].update(tiers=[]),
    "schedule of integers": lambda p: p.update(schedule=[0, 1]),
    "step a string": lambda p: p["ops"][0].update(step="0"),
    "bytes 2^63": lambda p: p["buffers"][0].update(bytes=2**63),
    "bytes 10^100": lambda p: p["buffers"][0].update(bytes=10**100),
    "offset negative": lambda p: p["buffers"][0].update(offset=-64),
    "capacity a float": lambda p: p["target"]["tiers"][0].update(capacity=1.5),
    "devices 2^63-1": lambda p: p["target"].update(devices=2**63 - 1),
    "dims a list": lambda p: p.update(dims=[1]),
    "latency a string": lambda p: p["summary"].update(latency_s="fast"),
}


@pytest.mark.parametrize("command", ["check", "report", "inspect", "plot"])
@pytest.mark.parametrize("mutation", MUTATIONS, ids=str)
def test_plan_of_the_wrong_shape(
    mutation: str,
    command: str,
    plan_path: Path,
    model: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    plan = json.loads(plan_path.read_text())
    MUTATIONS[mutation](plan)
    plan_path.write_text(json.dumps(plan))
    argv = {
        "check": ["check", str(model), str(plan_path)],
        "report": ["report", str(plan_path), "-o", "r.html"],
        "inspect": ["inspect", str(plan_path)],
        "plot": ["plot", str(plan_path), "-o", "r.png"],
    }[command]
    assert str(plan_path) in fails_in_one_line(capsys, argv)
    assert not Path("r.html").exists() and not Path("r.png").exists()


INCONSISTENT: dict[str, Mutation] = {
    "schedule longer than ops": lambda p: p["schedule"].extend(["ghost", "ghost2"]),
    "no ops": lambda p: p.update(ops=[]),
    "empty schedule": lambda p: p.update(schedule=[]),
    "no buffers": lambda p: p.update(buffers=[]),
    "start after end": lambda p: p["buffers"][0].update(start=5, end=1),
    "steps past the schedule": lambda p: [b.update(start=9_999_999) for b in p["buffers"]],
    "op step past the schedule": lambda p: p["ops"][0].update(step=10_000_000),
    "unknown tier": lambda p: p["buffers"][0].update(tier="NOPE"),
    "device 1023": lambda p: p["buffers"][0].update(device=1023),
    "alias cycle": lambda p: [
        p["buffers"][0].update(alias_of=p["buffers"][1]["tensor"]),
        p["buffers"][1].update(alias_of=p["buffers"][0]["tensor"]),
    ],
    "all scratch": lambda p: [b.update(kind="scratch") for b in p["buffers"]],
    "unknown inputs": lambda p: p["ops"][0].update(inputs=["zzz", ""], outputs=[""]),
}


@pytest.mark.parametrize("mutation", INCONSISTENT, ids=str)
def test_plan_well_typed_but_inconsistent(
    mutation: str, plan_path: Path, model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Views show what they can of a rule-breaking plan or refuse it in one line."""
    plan = json.loads(plan_path.read_text())
    INCONSISTENT[mutation](plan)
    plan_path.write_text(json.dumps(plan))
    assert main(["check", str(model), str(plan_path)]) == 1
    for argv in (
        ["inspect", str(plan_path)],
        ["inspect", str(plan_path), "--step", "1"],
        ["inspect", str(plan_path), "--model", str(model)],
        ["report", str(plan_path), "-o", "r.html", "-q"],
        ["plot", str(plan_path), "-o", "r.png", "-q"],
    ):
        capsys.readouterr()
        code = main(argv)
        err = capsys.readouterr().err
        assert code in (0, 2), err
        assert code == 0 or (len(err.splitlines()) == 1 and err.startswith("tierplan: error:"))


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000 + "]" * 100_000, '{"a": NaN}', '{"a": Infinity}', "1" * 5000, "\xff"],
    ids=["nested 100000 deep", "NaN", "Infinity", "5000 digits", "not UTF-8"],
)
def test_plan_not_strict_json(
    text: str, tmp_path: Path, model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.json"
    path.write_bytes(text.encode("latin-1"))
    for argv in (["inspect", str(path)], ["check", str(model), str(path)]):
        assert "p.json" in fails_in_one_line(capsys, argv)


def test_written_plan_is_strict_json(plan_path: Path) -> None:
    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in plan.json")

    json.loads(plan_path.read_text(), parse_constant=refuse)


# -- report and the model a plan names ----------------------------------------------------------------


def _without_costs(plan: dict[str, Any]) -> dict[str, Any]:
    """An older plan: its operators carry no cost, so the report must cost it on the model."""
    for op in plan["ops"]:
        op.pop("cost", None)
    return plan


@pytest.mark.parametrize("carried", [True, False], ids=["costs-carried", "older-plan"])
@pytest.mark.parametrize(
    "named", ["../../../../etc/passwd", "/etc/passwd", "sub/m.onnx", "..", "/dev/zero"]
)
def test_report_never_opens_a_path_only_a_plan_names(
    named: str,
    carried: bool,
    plan_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A plan whose operators carry their costs needs no model (the report is complete
    without it); an older plan does, and then says so. Neither opens what the plan names."""
    plan = json.loads(plan_path.read_text())
    plan["model"]["path"] = named
    plan_path.write_text(json.dumps(plan if carried else _without_costs(plan)))
    opened = opened_paths(monkeypatch)
    if carried:
        assert main(["report", str(plan_path), "-o", "r.html"]) == 0
        capsys.readouterr()
        assert Path("r.html").is_file()
    else:
        line = fails_in_one_line(capsys, ["report", str(plan_path), "-o", "r.html"])
        assert "pass --model" in line
    assert opened, "the recorder saw no file at all (it is not hooked)"
    named_by_plan = [p for p in opened if "passwd" in p or p.startswith("/dev/") or "sub" in p]
    assert named_by_plan == []


def test_report_of_an_older_plan_without_its_model(
    plan_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for stale in plan_path.parent.glob("*.onnx"):
        stale.unlink()
    plan_path.write_text(json.dumps(_without_costs(json.loads(plan_path.read_text()))))
    assert "pass --model" in fails_in_one_line(capsys, ["report", str(plan_path), "-o", "r.html"])
    assert not Path("r.html").exists()


# -- output paths ------------------------------------------------------------------------------------


@pytest.mark.parametrize("blocked", ["plan.json", "m.planned.onnx"])
def test_output_file_is_a_folder(
    blocked: str, model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    (out / blocked).mkdir(parents=True)
    line = fails_in_one_line(capsys, ["compile", str(model), "-o", str(out), "-q"])
    assert blocked in line and "folder" in line
    assert listing(out) == {blocked}  # neither output, no temporary


def test_report_output_is_a_folder(plan_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Path("r.html").mkdir()
    assert "folder" in fails_in_one_line(capsys, ["report", str(plan_path), "-o", "r.html"])


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EACCES, errno.EIO])
@pytest.mark.parametrize("failing", ["write", "rename"])
def test_write_errors_leave_nothing(
    error: int,
    failing: str,
    model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The second file fails: the first, already complete (or renamed), disappears too."""
    calls = {"n": 0}

    def second_fails(original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any) -> Any:
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(error, os.strerror(error))
            return original(*args)

        return wrapper

    if failing == "write":
        monkeypatch.setattr(files, "_write_temporary", second_fails(files._write_temporary))
    else:
        monkeypatch.setattr(files.os, "replace", second_fails(os.replace))
    out = tmp_path / "out"
    line = fails_in_one_line(capsys, ["compile", str(model), "-o", str(out), "-q"])
    assert os.strerror(error) in line
    assert not out.exists()


@pytest.mark.parametrize("when", ["while writing", "between the renames"])
def test_sigterm_leaves_both_outputs_or_neither(
    when: str,
    model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SIGTERM is a clean exit (143) that removes temporaries; held during the renames,
    it lands after both outputs are in place."""
    hooked = files._write_temporary if when == "while writing" else os.replace
    name = "_write_temporary" if when == "while writing" else "replace"
    owner: Any = files if when == "while writing" else files.os
    out = tmp_path / "out"

    def terminated(*args: Any) -> Any:
        if str(out) in str(args[0]):  # not another library's file
            os.kill(os.getpid(), signal.SIGTERM)
        return hooked(*args)

    monkeypatch.setattr(owner, name, terminated)
    code = main(["compile", str(model), "-o", str(out), "-q"])
    assert code == 128 + signal.SIGTERM
    assert capsys.readouterr().err == "tierplan: terminated\n"
    expected = set() if when == "while writing" else {"plan.json", "m.planned.onnx"}
    assert (listing(out) if out.exists() else set()) == expected


# -- names with control characters ----------------------------------------------------------------------


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Path, Path]:
    """A model whose every name carries ESC/OSC/CSI sequences, and its compiled plan."""
    model = _model(tmp_path / "hostile.onnx", suffix=ESCAPES)
    assert main(["compile", str(model), "-o", str(tmp_path / "h"), "-q"]) == 0
    return model, tmp_path / "h" / "plan.json"


def _views(model: Path, plan: Path) -> Iterator[list[str]]:
    yield ["compile", str(model), "-o", "again"]
    yield ["check", str(model), str(plan)]
    yield ["inspect", str(plan)]
    yield ["inspect", str(plan), "--step", "0"]
    yield ["inspect", str(plan), "--step", "1", "--model", str(model)]
    yield ["inspect", str(plan), "--tensor", f"h{ESCAPES}"]
    yield ["inspect", str(plan), "--op", f"second{ESCAPES}"]
    yield ["inspect", str(plan), "--tensor", f"nothing{ESCAPES}"]  # an error naming it


def test_control_characters_never_reach_the_terminal(
    hostile: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    model, plan = hostile
    for argv in _views(model, plan):
        main(argv)
        captured = capsys.readouterr()
        assert captured.out or captured.err, argv
        _no_control_bytes(captured.out + captured.err)
    main(["inspect", str(plan), "--step", "0"])
    assert "\\x1b]0;owned\\x07" in capsys.readouterr().out  # shown, escaped


def test_control_characters_in_check_violations(
    hostile: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    model, plan_path = hostile
    plan = json.loads(plan_path.read_text())
    named = next(b for b in plan["buffers"] if b["kind"] == "activation")
    named["kind"] = "weight"
    plan_path.write_text(json.dumps(plan))
    assert main(["check", str(model), str(plan_path)]) == 1
    captured = capsys.readouterr()
    assert "\\x1b" in captured.err
    _no_control_bytes(captured.out + captured.err)


def test_graphml_is_well_formed_xml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _model(tmp_path / "m.onnx", suffix="\x00\n\x01" + ESCAPES)
    assert main(["compile", str(model), "-o", "out", "--graphml", "-q"]) == 0
    text = (tmp_path / "out" / "m.graphml").read_text()
    ElementTree.fromstring(text)  # raises on NUL and other characters XML cannot hold
    graph = nx.read_graphml(tmp_path / "out" / "m.graphml")
    assert any("\\x00\\x0a\\x01" in node for node in graph.nodes)


def test_log_lines_escape_control_characters() -> None:
    record = logging.LogRecord(
        "tierplan", logging.WARNING, __file__, 1, "tensor %s", (ESCAPES,), None
    )
    line = EscapingFormatter("tierplan: %(levelname)s: %(message)s").format(record)
    _no_control_bytes(line)
    assert "tensor \\x1b]0;owned\\x07" in line
