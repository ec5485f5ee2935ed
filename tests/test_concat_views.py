"""Concat parts and slice views: each rule, its refusals, and plans that run with them."""

from __future__ import annotations

from pathlib import Path

import onnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tierplan.compiler import compile_model, validate_plan
from tierplan.compiler.aliasing import moves_nothing
from tierplan.compiler.execution import run_plan
from tierplan.compiler.frontend import load_model
from tierplan.compiler.scheduling import MemoryGraph, model_order

HEADER = '<ir_version: 10, opset_import: ["" : 18]>'
REUSE = "schedule,liveness,inplace,pack,evaluate"
TWO_DEVICES = "schedule,liveness,inplace,tiling,partition{devices=2},tiers,pack,evaluate"


def _runs_everywhere(path: Path) -> bool:
    """The model matches onnxruntime in its reuse-only, default and two-device plans."""
    return all(
        run_plan(path, compile_options={"passes": passes}).matches
        for passes in (REUSE, None, TWO_DEVICES)
    )


def _save(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.onnx"
    onnx.save(onnx.parser.parse_model(f"{HEADER}\n{text}"), path)
    return path


def _plan_of(path: Path) -> dict[str, dict[str, object]]:
    """Compile with the reuse-only pipeline; each tensor's buffer, the plan checked valid."""
    result = compile_model(path, passes=REUSE)
    assert validate_plan(result.plan, load_model(path).ir) == []
    return {b["tensor"]: b for b in result.plan["buffers"]}


TWO_PARTS = """g (float[1,16] x) => (float[1,32] z) {
    a = Neg(x) b = Relu(x) c = Concat<axis=1>(a, b) z = Sigmoid(c) }"""


def test_parts_are_written_into_their_slice_of_the_output(tmp_path: Path) -> None:
    path = _save(tmp_path, TWO_PARTS)
    buffers = _plan_of(path)
    assert buffers["a"]["alias_of"] == "c" and buffers["b"]["alias_of"] == "c"
    assert buffers["a"]["offset"] == buffers["c"]["offset"]
    assert buffers["b"]["offset"] == buffers["c"]["offset"] + 16 * 4
    assert buffers["c"]["start"] == max(buffers["a"]["end"], buffers["b"]["end"]), (
        "the output's buffer starts at its Concat: before it, each part holds its own slice"
    )
    assert _runs_everywhere(path)


def test_nested_concats_place_parts_inside_the_outermost_output(tmp_path: Path) -> None:
    path = _save(
        tmp_path,
        """g (float[1,8] x) => (float[1,24] z) {
            a = Neg(x) b = Relu(x) c = Concat<axis=1>(a, b) d = Sigmoid(x)
            e = Concat<axis=1>(d, c) z = Neg(e) }""",
    )
    buffers = _plan_of(path)
    assert buffers["c"]["alias_of"] == "e" and buffers["a"]["alias_of"] == "c"
    assert buffers["c"]["offset"] == buffers["e"]["offset"] + 8 * 4
    assert buffers["b"]["offset"] == buffers["e"]["offset"] + 16 * 4
    assert buffers["e"]["start"] == max(buffers[n]["end"] for n in "cd")
    assert buffers["c"]["start"] == max(buffers[n]["end"] for n in "ab")
    assert _runs_everywhere(path)


def test_a_part_is_not_also_an_in_place_write(tmp_path: Path) -> None:
    path = _save(
        tmp_path,
        """g (float[1,16] x) => (float[1,32] z) {
            t = Neg(x) a = Relu(t) b = Exp(x) c = Concat<axis=1>(a, b) z = Neg(c) }""",
    )
    buffers = _plan_of(path)
    assert buffers["a"]["alias_of"] == "c", "a goes into the concat, not over t"
    assert buffers["t"]["alias_of"] is None
    assert _runs_everywhere(path)


def test_concat_output_is_a_graph_output(tmp_path: Path) -> None:
    path = _save(
        tmp_path,
        "g (float[1,16] x) => (float[1,32] c) { a = Neg(x) b = Relu(x) c = Concat<axis=1>(a, b) }",
    )
    assert _plan_of(path)["a"]["alias_of"] == "c"
    assert _runs_everywhere(path)


def test_a_concat_nobody_reads_lives_until_it_is_written(tmp_path: Path) -> None:
    path = _save(
        tmp_path,
        """g (float[1,16] x) => (float[1,16] z) {
            a = Neg(x) b = Relu(x) c = Concat<axis=1>(a, b) z = Sigmoid(x) }""",
    )
    result = compile_model(path, passes="schedule{order=onnx},liveness,inplace")
    written = result.ir.producer("c").step
    assert result.ir.tensor("a").alias_of == "c"
    assert result.ir.tensor("c").end == written, "its parts are written into it until then"
    buffers = _plan_of(path)  # valid: its range no longer ends before the step writing it
    assert buffers["c"]["end"] == buffers["a"]["end"]


def _parts(path: Path) -> dict[str, object]:
    buffers = _plan_of(path)
    return {name: b["alias_of"] for name, b in buffers.items() if b["alias_of"] == "c"}


def test_inner_axis_concat_is_refused(tmp_path: Path) -> None:
    # Rows of 4: a's rows and b's rows interleave in c, no part is contiguous.
    path = _save(
        tmp_path,
        """g (float[4,16] x) => (float[4,32] z) {
            a = Neg(x) b = Relu(x) c = Concat<axis=1>(a, b) z = Neg(c) }""",
    )
    assert _parts(path) == {}


def test_a_part_read_by_another_operator_refuses_the_whole_concat(tmp_path: Path) -> None:
    path = _save(
        tmp_path,
        """g (float[1,16] x) => (float[1,32] z, float[1,16] w) {
            a = Neg(x) b = Relu(x) c = Concat<axis=1>(a, b) z = Neg(c) w = Exp(a) }""",
    )
    assert _parts(path) == {}, "b alone in place would leave a's slot reserved early"


def test_graph_input_and_output_parts_are_refused(tmp_path: Path) -> None:
    given_input = _save(
        tmp_path,
        "g (float[1,16] x) => (float[1,32] z) { a = Neg(x) c = Concat<axis=1>(x, a) z = Neg(c) }",
    )
    assert _parts(given_input) == {}
    given_output = _save(
        tmp_path,
        """g (float[1,16] x) => (float[1,32] z, float[1,16] a) {
            a = Neg(x) b = Relu(x) c = Concat<axis=1>(a, b) z = Neg(c) }""",
    )
    assert _parts(given_output) == {}


def test_a_view_is_not_a_part(tmp_path: Path) -> None:
    path = _save(
        tmp_path,
        """g (float[1,16] x) => (float[1,32] z) {
            a = Neg(x) v = Identity(a) b = Relu(x) c = Concat<axis=1>(v, b) z = Neg(c) }""",
    )
    assert _parts(path) == {}


def test_a_part_read_twice_by_its_concat_is_refused(tmp_path: Path) -> None:
    path = _save(
        tmp_path,
        "g (float[1,16] x) => (float[1,32] z) { a = Neg(x) c = Concat<axis=1>(a, a) z = Neg(c) }",
    )
    assert _parts(path) == {}


def test_memory_model_allocates_the_concat_when_its_first_part_is_written(
    tmp_path: Path,
) -> None:
    ir = load_model(_save(tmp_path, TWO_PARTS)).ir
    order = model_order(ir)
    graph = MemoryGraph.of(ir, order, reuse=True)
    names = [op.outputs[0] for op in order]
    first, second, concat = (names.index(n) for n in ("a", "b", "c"))
    done = 1 << first
    assert graph.allocated(first, done) == 32 * 4, "the whole output, at the first part"
    done |= 1 << second
    assert graph.allocated(second, done) == 0
    assert graph.allocated(concat, done | 1 << concat) == 0
    assert graph.allocated(second, 1 << second) == 32 * 4, "in the other order, b is first"


UNARY = ["Neg", "Relu", "Exp", "Sigmoid", "Abs"]


@st.composite
def concat_models(draw: st.DrawFn) -> str:
    """Random DAGs of [1, w] tensors: unary ops, Concats of fresh results or earlier
    values, and Splits in halves (slice views)."""
    values: list[tuple[str, int]] = [("x", 4)]
    lines, read = [], set()
    for index in range(draw(st.integers(2, 10))):
        out = f"t{index}"
        kind = draw(st.sampled_from(["unary", "concat", "split"]))
        if kind == "concat" and len(values) > 1:
            picked = draw(st.lists(st.sampled_from(values), min_size=2, max_size=3))
            read.update(n for n, _ in picked)
            lines.append(f"{out} = Concat<axis=1>({', '.join(n for n, _ in picked)})")
            values.append((out, sum(w for _, w in picked)))
            continue
        source, width = draw(st.sampled_from(values))
        read.add(source)
        if kind == "split" and width % 2 == 0:
            lines.append(f"{out}a, {out}b = Split<axis=1, num_outputs=2>({source})")
            values += [(f"{out}a", width // 2), (f"{out}b", width // 2)]
        else:
            lines.append(f"{out} = {draw(st.sampled_from(UNARY))}({source})")
            values.append((out, width))
    outputs = [(n, w) for n, w in values[1:] if n not in read] or [values[-1]]
    declared = ", ".join(f"float[1,{w}] {n}" for n, w in outputs)
    return f"g (float[1,4] x) => ({declared}) {{ {' '.join(lines)} }}"


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=concat_models())
def test_random_concat_dags_give_valid_plans_that_run(tmp_path: Path, text: str) -> None:
    path = _save(tmp_path, text)
    _plan_of(path)
    assert _runs_everywhere(path)


def _slice_aliases(tmp_path: Path, text: str) -> dict[str, dict[str, object]]:
    path = _save(tmp_path, text)
    buffers = _plan_of(path)
    assert _runs_everywhere(path)
    return buffers


def test_outer_axis_split_outputs_are_slice_views(tmp_path: Path) -> None:
    buffers = _slice_aliases(
        tmp_path,
        """g (float[1,6,8] x) => (float[1,3,8] z, float[1,3,8] w) {
            a = Neg(x) p, q = Split<axis=1, num_outputs=2>(a) z = Exp(p) w = Relu(q) }""",
    )
    # Split into 2 of 6 rows: 3 rows each; axis 0 has size 1, so axis 1 is outermost.
    assert buffers["p"]["alias_of"] == "a" and buffers["q"]["alias_of"] == "a"
    assert buffers["q"]["offset"] == buffers["a"]["offset"] + 3 * 8 * 4


def test_slice_and_scalar_gather_are_slice_views(tmp_path: Path) -> None:
    buffers = _slice_aliases(
        tmp_path,
        """g (float[5,8] x) => (float[2,8] z, float[8] w) <int64[1] s = {1}, int64[1] e = {3},
            int64[1] ax = {0}, int64 i = {4}> {
            a = Neg(x) p = Slice(a, s, e, ax) g = Gather<axis=0>(a, i) z = Exp(p) w = Relu(g) }""",
    )
    assert buffers["p"]["alias_of"] == "a"
    assert buffers["p"]["offset"] == buffers["a"]["offset"] + 1 * 8 * 4
    assert buffers["g"]["alias_of"] == "a"
    assert buffers["g"]["offset"] == buffers["a"]["offset"] + 4 * 8 * 4


def test_slices_that_are_not_contiguous_are_copies(tmp_path: Path) -> None:
    buffers = _slice_aliases(
        tmp_path,
        """g (float[4,8] x) => (float[4,2] z, float[2,8] w, float[4] v) <int64[1] s = {1},
            int64[1] e = {3}, int64[1] ax = {1}, int64[1] s0 = {0}, int64[1] e0 = {4},
            int64[1] ax0 = {0}, int64[1] two = {2}, int64 i = {1}> {
            a = Neg(x) p = Slice(a, s, e, ax) q = Slice(a, s0, e0, ax0, two)
            g = Gather<axis=1>(a, i) z = Exp(p) w = Relu(q) v = Exp(g) }""",
    )
    assert buffers["p"]["alias_of"] is None, "a range of the inner axis"
    assert buffers["q"]["alias_of"] is None, "a step of 2"
    assert buffers["g"]["alias_of"] is None, "a column"


def test_a_weight_is_never_sliced_in_place(tmp_path: Path) -> None:
    table = ", ".join(["0.5"] * 40)
    buffers = _slice_aliases(
        tmp_path,
        f"""g (float[8] x) => (float[8] z) <float[5,8] table = {{{table}}}, int64 i = {{2}}> {{
            g = Gather<axis=0>(table, i) z = Add(g, x) }}""",
    )
    assert buffers["g"]["alias_of"] is None


def test_squeeze_unsqueeze_chain_is_one_group(tmp_path: Path) -> None:
    buffers = _slice_aliases(
        tmp_path,
        """g (float[4,8] x) => (float[4,8] z) <int64[1] zero = {0}> {
            a = Neg(x) u = Unsqueeze(a, zero) s = Squeeze(u, zero) z = Exp(s) }""",
    )
    assert buffers["u"]["alias_of"] == "a" and buffers["s"]["alias_of"] == "u"
    assert buffers["s"]["offset"] == buffers["a"]["offset"]


def test_expand_is_not_a_view(tmp_path: Path) -> None:
    buffers = _slice_aliases(
        tmp_path,
        """g (float[1,8] x) => (float[4,8] z) <int64[2] shape = {4, 8}> {
            a = Neg(x) e = Expand(a, shape) z = Exp(e) }""",
    )
    assert buffers["e"]["alias_of"] is None


def test_a_concat_of_parts_in_place_is_free(tmp_path: Path) -> None:
    result = compile_model(_save(tmp_path, TWO_PARTS))
    concat = next(op for op in result.ir.operators() if op.op_type == "Concat")
    assert moves_nothing(result.ir, concat)
    assert concat.tiles is None
    assert result.evaluation is not None
    cost = next(c for c in result.evaluation.op_costs if c.name == concat.name)
    assert cost.seconds == 0 and not cost.bytes_by_tier


def test_only_slices_at_aligned_bytes_are_viewed_or_overwritten(tmp_path: Path) -> None:
    buffers = _slice_aliases(
        tmp_path,
        """g (float[1,4] x) => (float[1,2] y, float[1,2] z) {
            a = Neg(x) p, q = Split<axis=1, num_outputs=2>(a)
            v = Identity(p) w = Identity(q) t = Neg(w) y = Relu(v) z = Relu(t) }""",
    )
    assert buffers["q"]["alias_of"] == "a", "a slice view sits where its bytes are"
    assert buffers["v"]["alias_of"] == "p", "p starts at byte 0 of a: aligned"
    assert buffers["w"]["alias_of"] is None, "q starts at byte 8: a view must be aligned"
