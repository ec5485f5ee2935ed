"""Malformed models beyond ``test_bad_input.py``: names, empty and huge tensors, hostile paths.

Bad files fail with one ``tierplan: error:`` line, exit code 2 and nothing written
(the helpers of ``test_bad_input.py``); the odd but valid ones (a dimension of 0,
external data pointing anywhere, tensors of 1 GiB and models over 2 GB) compile
without reading or allocating their bytes.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from models.synthetic import weight
from tests.cli_checks import compiles, fails_cleanly, opened_paths

pytestmark = pytest.mark.usefixtures("run_in_tmp_path")

GiB = 1 << 30


def _save(
    path: Path,
    nodes: Sequence[onnx.NodeProto],
    inputs: Sequence[onnx.ValueInfoProto],
    outputs: Sequence[onnx.ValueInfoProto],
    initializers: Sequence[TensorProto] = (),
) -> Path:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def _value(name: str, shape: Sequence[int]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _zeros(name: str, shape: Sequence[int]) -> TensorProto:
    return numpy_helper.from_array(np.zeros(shape, np.float32), name)


RELU = helper.make_node("Relu", ["x"], ["y"], name="relu")
ADD_W = helper.make_node("Add", ["x", "w"], ["y"], name="add")


# -- duplicate names -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("two graph inputs", "graph input 'x' is declared 2 times"),
        ("two initializers", "initializer 'w' is declared 2 times"),
        ("two graph outputs", "graph output 'y' is declared 2 times"),
        (
            "initializer and input disagree",
            "initializer 'w' has shape [4] but the graph input of that name declares [2]",
        ),
        ("node writes an initializer", "tensor 'w' is written twice (by initializer and node"),
    ],
)
def test_duplicate_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, expected: str
) -> None:
    x, y, w = _value("x", [2]), _value("y", [2]), _zeros("w", [2])
    models: dict[str, tuple[list[onnx.NodeProto], list[Any], list[Any], list[TensorProto]]] = {
        "two graph inputs": ([ADD_W], [x, x, _value("w", [2])], [y], []),
        "two initializers": ([ADD_W], [x], [y], [w, w]),
        "two graph outputs": ([ADD_W], [x], [y, y], [w]),
        "initializer and input disagree": ([ADD_W], [x, _value("w", [2])], [y], [_zeros("w", [4])]),
        "node writes an initializer": (
            [helper.make_node("Relu", ["x"], ["w"], name="relu"), ADD_W],
            [x],
            [y],
            [w],
        ),
    }
    nodes, inputs, outputs, initializers = models[case]
    model = _save(tmp_path / "m.onnx", nodes, inputs, outputs, initializers)
    assert expected in fails_cleanly(tmp_path, capsys, model)


# -- empty tensors ---------------------------------------------------------------------


def test_dimension_of_zerocompiles(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _save(tmp_path / "m.onnx", [RELU], [_value("x", [0, 3])], [_value("y", [0, 3])])
    plan = compiles(tmp_path, capsys, model)
    from tierplan.compiler.frontend import load_model

    ir = load_model(model).ir
    assert ir.tensor("x").nbytes == 0 and ir.tensor("y").nbytes == 0
    assert plan.stat().st_size > 0


# -- external data pointing anywhere -----------------------------------------------------


@pytest.mark.parametrize("location", ["../../etc/passwd", "/etc/passwd", "/dev/zero"])
def test_external_data_location_is_never_opened(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    location: str,
) -> None:
    model = _save(
        tmp_path / "m.onnx",
        [ADD_W],
        [_value("x", [4, 256])],
        [_value("y", [4, 256])],
        [weight("w", [4, 256], location=location)],
    )
    opened = opened_paths(monkeypatch)
    compiles(tmp_path, capsys, model)
    assert opened, "the recorder saw no file at all (it is not hooked)"
    assert not [p for p in opened if "passwd" in p or p.startswith("/dev/")]


# -- huge declared sizes ---------------------------------------------------------------


def _compile_in_subprocess(tmp_path: Path, model: Path, *options: str) -> tuple[int, int]:
    """Run ``tierplan compile`` in a child; return (exit code, child peak RSS in bytes).

    The peak is the child's VmHWM: ``ru_maxrss`` survives ``exec`` and so would count
    the pytest parent's pages the child was forked with.
    """
    script = (
        "import re, sys\n"
        "from pathlib import Path\n"
        "from tierplan.compiler.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "status = Path('/proc/self/status').read_text()\n"
        "print(re.search(r'VmHWM:\\s+(\\d+)', status).group(1))\n"
        "sys.exit(code)\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", script, "compile", str(model), "-o", str(tmp_path / "out"), "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.stderr == "", child.stderr
    return child.returncode, int(child.stdout.split()[-1]) * 1024  # VmHWM is in KiB


def test_one_gib_tensor_compiles_without_allocating(tmp_path: Path) -> None:
    rows = GiB // 4 // 1024  # float32[262144, 1024] = 1 GiB, in and out
    model = _save(
        tmp_path / "m.onnx", [RELU], [_value("x", [rows, 1024])], [_value("y", [rows, 1024])]
    )
    code, peak = _compile_in_subprocess(tmp_path, model)
    assert code == 0
    assert peak < GiB // 2, f"compiler peak RSS {peak / 2**20:.0f} MiB for a 1 GiB tensor"
    assert (tmp_path / "out" / "plan.json").is_file()


def test_model_over_two_gb_declaredcompiles(tmp_path: Path) -> None:
    shape = [GiB // 4 // 4096, 4096]  # 1 GiB of float32 each, three of them
    names = ["w0", "w1", "w2"]
    nodes = [
        helper.make_node("Add", [prev, name], [out], name=f"add{i}")
        for i, (prev, name, out) in enumerate(
            zip(["x", "h0", "h1"], names, ["h0", "h1", "y"], strict=True)
        )
    ]
    initializers = [
        weight(name, shape, location="big.weights", offset=i * GiB) for i, name in enumerate(names)
    ]
    model = _save(
        tmp_path / "m.onnx", nodes, [_value("x", [1, 4096])], [_value("y", shape)], initializers
    )
    assert model.stat().st_size < 4096
    declared = sum(int(e.value) for t in initializers for e in t.external_data if e.key == "length")
    assert declared > 2 * 10**9
    code, peak = _compile_in_subprocess(tmp_path, model)
    assert code == 0
    assert peak < GiB // 2
    assert not (tmp_path / "big.weights").exists()
