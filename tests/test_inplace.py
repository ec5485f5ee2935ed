"""The inplace pass: each rule, and the cases where reuse must be refused."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from tierplan.compiler import compile_model

HEADER = '<ir_version: 10, opset_import: ["" : 18]>'


def aliases(tmp_path: Path, text: str) -> dict[str, str | None]:
    """Compile an ONNX-text model with the default pipeline; alias_of of each tensor."""
    path = tmp_path / "m.onnx"
    onnx.save(onnx.parser.parse_model(f"{HEADER}\n{text}"), path)
    result = compile_model(path, verify_each=True)
    return {t.name: t.alias_of for t in result.ir.tensors()}


def test_unary_op_overwrites_its_dying_input(tmp_path: Path) -> None:
    found = aliases(
        tmp_path, "g (float[64] x) => (float[64] z) { a = Neg(x) b = Relu(a) z = Sigmoid(b) }"
    )
    assert found["b"] == "a"
    assert found["a"] is None, "a graph input is never overwritten"
    assert found["z"] is None, "a graph output keeps bytes of its own"


def test_input_read_later_is_not_overwritten(tmp_path: Path) -> None:
    found = aliases(
        tmp_path,
        "g (float[64] x) => (float[64] z) { a = Neg(x) b = Relu(a) c = Add(a, b) z = Neg(c) }",
    )
    assert found["b"] is None, "a is read again by Add"
    assert found["c"] in ("a", "b")


def test_broadcast_input_is_not_reused(tmp_path: Path) -> None:
    found = aliases(
        tmp_path,
        "g (float[4,16] x, float[16] y) => (float[4,16] z)"
        " { a = Neg(x) s = Neg(y) b = Add(s, a) z = Neg(b) }",
    )
    assert found["b"] == "a", "the full-shape input is reused, not the broadcast one"


def test_size_changing_cast_is_refused(tmp_path: Path) -> None:
    found = aliases(
        tmp_path,
        "g (float[64] x) => (float16[64] z) { a = Neg(x) b = Cast<to=10>(a) z = Neg(b) }",
    )
    assert found["b"] is None


def test_views_alias_their_source_and_block_overwrites_while_read(tmp_path: Path) -> None:
    found = aliases(
        tmp_path,
        """g (float[4,16] x) => (float[64] z, float[4,16] w) {
            s = Constant<value = int64[1] {64}>()
            a = Neg(x)
            v = Flatten<axis = 0>(a)
            b = Relu(a)
            r = Reshape(v, s)
            z = Neg(r)
            w = Neg(b)
        }""",
    )
    assert found["v"] == "a"
    assert found["r"] == "v", "views of views chain"
    assert found["b"] is None, "Relu may not overwrite a while its views are read later"


def test_an_input_is_overwritten_once(tmp_path: Path) -> None:
    found = aliases(
        tmp_path,
        "g (float[64] x) => (float[64] z) { a = Neg(x) b = Relu(a) c = Sigmoid(b) z = Neg(c) }",
    )
    assert (found["b"], found["c"]) == ("a", "b")


@pytest.mark.parametrize("op", ["Relu", "Sigmoid", "Tanh", "Exp", "Clip", "Dropout"])
def test_listed_elementwise_ops_reuse(tmp_path: Path, op: str) -> None:
    found = aliases(
        tmp_path, f"g (float[64] x) => (float[64] z) {{ a = Neg(x) b = {op}(a) z = Neg(b) }}"
    )
    assert found["b"] == "a"


@pytest.mark.parametrize(
    "call", ["Softmax(a)", "LogSoftmax(a)", "LayerNormalization(a, scale)", "Hardmax(a)"]
)
def test_row_wise_ops_reuse(tmp_path: Path, call: str) -> None:
    """A row-wise operator reads a whole row before writing it: it may overwrite its input."""
    found = aliases(
        tmp_path,
        "g (float[8,8] x, float[8] scale) => (float[8,8] z) "
        f"{{ a = Neg(x) b = {call} z = Neg(b) }}",
    )
    assert found["b"] == "a"


@pytest.mark.parametrize("call", ["Transpose(a)", "MatMul(a, a)"])
def test_ops_that_move_or_mix_elements_do_not_reuse(tmp_path: Path, call: str) -> None:
    """An output element that depends on other positions' inputs must not overwrite them."""
    found = aliases(
        tmp_path,
        f"g (float[8,8] x) => (float[8,8] z) {{ a = Neg(x) b = {call} z = Neg(b) }}",
    )
    assert found.get("b") is None
