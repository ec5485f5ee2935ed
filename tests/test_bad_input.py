"""Bad input to ``tierplan compile``: one line on stderr, exit code 2, nothing written.

Every case runs the CLI in-process with ``-o tmp_path/"out"`` from inside
``tmp_path`` and checks that the error is a single ``tierplan: error:`` line with
no traceback, that the output folder was not created and that no other file
(temporary or default output folder) appeared. One test runs the real entry point
in a subprocess.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from tests.cli_checks import compiles, fails_cleanly

SYNTHETIC = Path(__file__).resolve().parents[1] / "models" / "synthetic"
RESIDUAL = SYNTHETIC / "residual_block.onnx"

Dim = int | str | None


pytestmark = pytest.mark.usefixtures("run_in_tmp_path")


def _value(
    name: str, shape: Sequence[Dim] | None, elem_type: int = TensorProto.FLOAT
) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem_type, None if shape is None else list(shape))


def _save(
    path: Path,
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    value_info: Sequence[onnx.ValueInfoProto] = (),
    domains: Sequence[str] = (),
) -> Path:
    graph = helper.make_graph(nodes, "g", inputs, outputs, value_info=list(value_info))
    opsets = [helper.make_opsetid("", 18), *(helper.make_opsetid(d, 1) for d in domains)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 10
    onnx.save(model, path)
    return path


def _relu_model(path: Path, shape: Sequence[Dim], out_shape: Sequence[Dim] | None = None) -> Path:
    """x -> Relu -> y, with x of ``shape`` (y unshaped unless ``out_shape``)."""
    node = helper.make_node("Relu", ["x"], ["y"], name="relu")
    return _save(path, [node], [_value("x", shape)], [_value("y", out_shape)])


def _custom_op_model(path: Path, typed: bool) -> Path:
    """x -> Relu -> h -> com.example.Frob -> z -> Relu -> y; ``typed``: z's dtype is declared."""
    nodes = [
        helper.make_node("Relu", ["x"], ["h"], name="pre"),
        helper.make_node("Frob", ["h"], ["z"], name="frob", domain="com.example"),
        helper.make_node("Relu", ["z"], ["y"], name="post"),
    ]
    value_info = [_value("z", None)] if typed else []
    return _save(
        path, nodes, [_value("x", [1, 4])], [_value("y", None)], value_info, ["com.example"]
    )


# -- unreadable files -------------------------------------------------------------------


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    message = fails_cleanly(tmp_path, capsys, tmp_path / "absent.onnx")
    assert "absent.onnx" in message and "does not exist" in message


def test_directory_instead_of_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "model.onnx"
    folder.mkdir()
    assert "is not a file" in fails_cleanly(tmp_path, capsys, folder)


def test_empty_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "empty.onnx"
    model.write_bytes(b"")
    assert "is not an ONNX model" in fails_cleanly(tmp_path, capsys, model)


def test_random_bytes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "random.onnx"
    model.write_bytes(random.Random(20240601).randbytes(4096))
    assert "is not an ONNX model" in fails_cleanly(tmp_path, capsys, model)


def test_truncated_protobuf(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = RESIDUAL.read_bytes()
    model = tmp_path / "truncated.onnx"
    model.write_bytes(data[: len(data) // 2])
    assert "is not an ONNX model" in fails_cleanly(tmp_path, capsys, model)


# -- malformed graphs -----------------------------------------------------------------


def test_cycle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nodes = [
        helper.make_node("Relu", ["b"], ["a"], name="first"),
        helper.make_node("Relu", ["a"], ["b"], name="second"),
    ]
    model = _save(tmp_path / "cycle.onnx", nodes, [_value("x", [1, 4])], [_value("a", [1, 4])])
    message = fails_cleanly(tmp_path, capsys, model)
    assert "cycle" in message and "first" in message and "second" in message


def test_read_of_unproduced_tensor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nodes = [helper.make_node("Add", ["x", "ghost"], ["y"], name="add")]
    model = _save(tmp_path / "dangling.onnx", nodes, [_value("x", [1, 4])], [_value("y", [1, 4])])
    message = fails_cleanly(tmp_path, capsys, model)
    assert "'ghost'" in message and "'add'" in message


def test_tensor_written_twice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["y"], name="relu"),
        helper.make_node("Sigmoid", ["x"], ["y"], name="sigmoid"),
    ]
    model = _save(tmp_path / "twice.onnx", nodes, [_value("x", [1, 4])], [_value("y", [1, 4])])
    message = fails_cleanly(tmp_path, capsys, model)
    assert "'y' is written twice" in message and "'sigmoid'" in message


# -- targets, options, pipelines --------------------------------------------------------


def test_unknown_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    message = fails_cleanly(tmp_path, capsys, RESIDUAL, "--target", "no-such-target")
    assert "unknown target 'no-such-target'" in message


def test_target_toml_syntax_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "bad.toml"
    target.write_text("[[tiers]\nname = 'DDR'\n")
    message = fails_cleanly(tmp_path, capsys, RESIDUAL, "--target", str(target))
    assert "bad.toml" in message and "not valid TOML" in message


def test_target_negative_capacity(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "negative.toml"
    target.write_text("[[tiers]]\nname = 'DDR'\ncapacity = -1024\nbandwidth = 1e12\n")
    message = fails_cleanly(tmp_path, capsys, RESIDUAL, "--target", str(target))
    assert "'DDR' capacity" in message and "-1024" in message


def test_dim_not_in_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _relu_model(tmp_path / "symbolic.onnx", ["batch", 4])
    message = fails_cleanly(tmp_path, capsys, model, "--dim", "seq=3")
    assert "--dim 'seq' is not a dimension" in message and "batch" in message


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--dim", "x"], "cannot read dimension 'x'"),
        (["--dim", "batch=0"], "cannot read dimension 'batch=0'"),
        (["--dim", "batch=two"], "cannot read dimension 'batch=two'"),
        (["--input-shape", "x"], "cannot read shape 'x'"),
        (["--input-shape", "input:1,a"], "cannot read shape 'input:1,a'"),
        (["--input-shape", "input:1,-3"], "cannot read shape 'input:1,-3'"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_malformed_spec(
    options: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert expected in fails_cleanly(tmp_path, capsys, RESIDUAL, *options)


def test_unknown_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    message = fails_cleanly(tmp_path, capsys, RESIDUAL, "--passes", "schedule,bogus")
    assert "unknown pass 'bogus'" in message


def test_missing_requirement(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    message = fails_cleanly(tmp_path, capsys, RESIDUAL, "--passes", "pack,evaluate")
    assert "'pack'" in message and "'liveness'" in message


# -- shapes -----------------------------------------------------------------------------


def test_unbound_symbolic_dimension(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _relu_model(tmp_path / "symbolic.onnx", ["batch", 4], ["batch", 4])
    message = fails_cleanly(tmp_path, capsys, model)
    assert "'batch'" in message and "'x'" in message and "--dim batch=" in message
    plan = json.loads(compiles(tmp_path, capsys, model, "--dim", "batch=2").read_text())
    assert plan["dims"] == {"batch": 2}


def test_unknown_operator_needs_a_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _custom_op_model(tmp_path / "custom.onnx", typed=False)
    message = fails_cleanly(tmp_path, capsys, model)
    assert "'frob'" in message and "Frob" in message and "--input-shape z:" in message


def test_unknown_operator_with_typed_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _custom_op_model(tmp_path / "custom.onnx", typed=True)
    message = fails_cleanly(tmp_path, capsys, model)
    assert "'frob'" in message and "--input-shape z:" in message
    compiles(tmp_path, capsys, model, "--input-shape", "z:1,4")


def test_unknown_operator_compiles_with_input_shape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _custom_op_model(tmp_path / "custom.onnx", typed=False)
    compiles(tmp_path, capsys, model, "--input-shape", "z:1,4")


def test_negative_dimension(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _relu_model(tmp_path / "negative.onnx", [-3, 4])
    message = fails_cleanly(tmp_path, capsys, model)
    assert "'x'" in message and "negative dimension" in message and "-3" in message


def test_size_overflows_int64(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _relu_model(tmp_path / "huge.onnx", [2**40, 2**40], [2**40, 2**40])
    message = fails_cleanly(tmp_path, capsys, model)
    assert "'x'" in message and "more than any target can hold" in message


# -- what must work ---------------------------------------------------------------------


def test_absent_external_weights_compile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proto = onnx.load(str(RESIDUAL), load_external_data=False)
    locations = {
        entry.value
        for init in proto.graph.initializer
        if init.data_location == TensorProto.EXTERNAL
        for entry in init.external_data
        if entry.key == "location"
    }
    assert locations, "the model should reference external weights"
    assert not any((RESIDUAL.parent / location).exists() for location in locations)
    plan = compiles(tmp_path, capsys, RESIDUAL)
    assert (plan.parent / "residual_block.planned.onnx").is_file()


def test_entry_point_prints_no_traceback(tmp_path: Path) -> None:
    model = tmp_path / "random.onnx"
    model.write_bytes(random.Random(7).randbytes(2048))
    env = {k: v for k, v in os.environ.items() if k != "TIERPLAN_DEBUG"}
    command = [sys.executable, "-m", "tierplan.compiler.cli", "compile", str(model), "-o", "out"]
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("tierplan: error: "), done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()
