"""The pass manager: registry, plugins, pipeline strings, requirement checks, instruments."""

from __future__ import annotations

import json
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import onnx
import pytest
from tierplan.compiler import (
    IRGraph,
    Pass,
    PassContext,
    PassResult,
    compile_model,
    default_pipeline,
    register_pass,
    registered_passes,
)
from tierplan.compiler.cli import main
from tierplan.compiler.errors import InvariantError, PipelineError, TierplanError
from tierplan.compiler.packing import PLACERS, SOLVERS
from tierplan.compiler.pass_manager import (
    Bounds,
    PassManager,
    PostconditionError,
    load_plugin,
    option_types,
    parse_pipeline,
)
from tierplan.passes.pack import Pack, Solver, Strategy
from tierplan.passes.partition import Partition
from tierplan.passes.schedule import Schedule

from tests.byte_owners import corrupted_reads
from tests.conftest import MODELS

PLUGIN = Path(__file__).parent / "plugins" / "count_ops_plugin.py"
BROKEN = Path(__file__).parent / "plugins" / "broken_contract_plugin.py"
CHAIN = MODELS / "synthetic" / "chain.onnx"


def test_builtin_passes_are_registered_with_descriptions() -> None:
    passes = registered_passes()
    for name in default_pipeline():
        assert name in passes
        assert passes[name].description()


def test_plugin_pass_runs_inside_the_default_pipeline(tmp_path: Path) -> None:
    pipeline = list(default_pipeline())
    pipeline.insert(pipeline.index("liveness") + 1, "tag-large-tensors{threshold=64KiB}")
    result = compile_model(CHAIN, passes=pipeline, plugins=[str(PLUGIN)])
    large = result.context.result(registered_passes()["tag-large-tensors"])
    assert large == sorted(t.name for t in result.ir.tensors() if t.nbytes >= 65536)
    assert large, "the chain model has tensors of 64 KiB"
    assert result.evaluation is not None


def test_plugin_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["passes", "--plugin", str(PLUGIN)])
    assert code == 0
    assert "tag-large-tensors" in capsys.readouterr().out
    passes = "schedule,liveness,tag-large-tensors,pack,evaluate"
    code = main(
        [
            "compile",
            str(CHAIN),
            "-o",
            str(tmp_path),
            "-q",
            "--plugin",
            str(PLUGIN),
            "--passes",
            passes,
        ]
    )
    assert code == 0
    assert (tmp_path / "plan.json").exists()


def test_missing_requirement_is_reported_before_running() -> None:
    with pytest.raises(PipelineError, match=r"'pack' requires 'liveness'.*'liveness' before it"):
        parse_and_check("schedule,pack,evaluate")


def parse_and_check(text: str) -> None:
    PassManager(parse_pipeline(text))


def test_pipeline_options_are_typed() -> None:
    load_plugin(str(PLUGIN))
    [item] = parse_pipeline(["tag-large-tensors{threshold=2KiB}"])
    assert item.spelled() == "tag-large-tensors{threshold=2048}"
    with pytest.raises(PipelineError, match=r"threshold=big\}: expected int"):
        parse_pipeline("tag-large-tensors{threshold=big}")
    with pytest.raises(PipelineError, match="has no option 'color'"):
        parse_pipeline("schedule{color=red}")
    with pytest.raises(PipelineError, match="unknown pass 'nope'"):
        parse_pipeline("schedule,nope")
    with pytest.raises(PipelineError, match="unbalanced"):
        parse_pipeline("pack{a=1")


def test_dump_after_writes_numbered_ir_files_that_load_back(tmp_path: Path) -> None:
    compile_model(CHAIN, dump_after=["liveness", "pack"], dump_dir=tmp_path)
    pack_file = f"{default_pipeline().index('pack') + 1:03d}_pack.json"
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["002_liveness.json", pack_file]
    ir = IRGraph.load(tmp_path / pack_file)
    ir.verify()
    assert all(t.offset is not None for t in ir.tensors() if t.needs_buffer)
    assert json.loads((tmp_path / "002_liveness.json").read_text())["format"] == "tierplan-ir/1"


@register_pass
@dataclass(frozen=True)
class BreakSchedule(Pass):
    """Test pass: gives two operators the same step (an invariant violation)."""

    name = "test-break-schedule"
    requires = frozenset({"schedule"})

    def run(self, ir: IRGraph, context: PassContext) -> PassResult:
        ops = ir.scheduled_operators()
        ops[1].step = ops[0].step
        return PassResult(changed=True)


def test_verify_each_names_the_pass_that_broke_the_ir() -> None:
    with pytest.raises(InvariantError, match="after pass 'test-break-schedule'"):
        compile_model(CHAIN, passes="schedule,test-break-schedule", verify_each=True)


@register_pass
@dataclass(frozen=True)
class Crash(Pass):
    """Test pass: raises an unexpected exception."""

    name = "test-crash"

    def run(self, ir: IRGraph, context: PassContext) -> PassResult:
        raise ZeroDivisionError("boom")


def test_a_crashing_pass_is_reported_with_the_passes_before_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["compile", str(CHAIN), "--passes", "schedule,liveness,test-crash", "-q"])
    err = capsys.readouterr().err
    assert code == 3
    assert "pass 'test-crash' crashed with ZeroDivisionError: boom" in err
    assert "after the passes: [schedule, liveness]" in err
    assert err.count("\n") == 1


# -- the written plan is the validated one -----------------------------------------------


def test_a_pass_changing_the_plan_after_evaluate_is_refused_before_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    passes = "schedule,liveness,pack,evaluate,tiers"
    code = main(["compile", str(CHAIN), "-o", str(tmp_path / "out"), "-q", "--passes", passes])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1, err
    assert err.startswith("tierplan: error: pass 'tiers' changes the plan after 'evaluate'")
    assert not (tmp_path / "out").exists()
    with pytest.raises(PipelineError, match="'tiling' changes the plan after 'evaluate'"):
        parse_and_check("schedule,liveness,pack,evaluate,tiling,pack")


def test_evaluating_again_after_the_change_is_accepted() -> None:
    result = compile_model(CHAIN, passes="schedule,liveness,pack,evaluate,tiers,pack,evaluate")
    assert result.evaluation is not None
    assert {b["tier"] for b in result.plan["buffers"]} != {"DDR"}, "tiers moved nothing"


@register_pass
@dataclass(frozen=True)
class MoveBuffer(Pass):
    """Test pass: moves a buffer but does not say it invalidates the evaluation."""

    name = "test-move-buffer"
    requires = frozenset({"placement"})

    def run(self, ir: IRGraph, context: PassContext) -> PassResult:
        tensor = next(t for t in ir.tensors() if t.needs_buffer)
        tensor.offset = (tensor.offset or 0) + context.target.alignment
        return PassResult(changed=True)


def test_an_undeclared_change_after_evaluate_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    passes = "schedule,liveness,pack,evaluate,test-move-buffer"
    code = main(["compile", str(CHAIN), "-o", str(tmp_path / "out"), "-q", "--passes", passes])
    err = capsys.readouterr().err
    assert code == 3
    assert "buffers changed after 'evaluate' validated it" in err
    assert not list(tmp_path.glob("out/*"))


SAME_PLAN_MODELS = [
    *sorted((MODELS / "synthetic").glob("*.onnx")),
    MODELS / "real" / "resnet18.onnx",
    MODELS / "real" / "bert_base.onnx",
]


@pytest.mark.parametrize("devices", [1, 2])
@pytest.mark.parametrize("path", SAME_PLAN_MODELS, ids=lambda p: p.stem)
def test_annotated_model_and_plan_json_describe_the_same_plan(
    path: Path, devices: int, tmp_path: Path
) -> None:
    pipeline = [
        f"partition{{devices={devices}}}" if name == "partition" else name
        for name in default_pipeline()
    ]
    plan_path, model_path = compile_model(path, passes=pipeline).write(tmp_path)
    plan = json.loads(plan_path.read_text())
    assert corrupted_reads(plan) == []
    annotated = onnx.load(model_path, load_external_data=False)
    fields = ("device", "tier", "offset", "start", "end")
    buffers: dict[str, set[tuple[str, ...]]] = {}
    for b in plan["buffers"]:
        buffers.setdefault(b["tensor"], set()).add(tuple(str(b[key]) for key in fields))
    graph = annotated.graph
    described = set()
    for value in [*graph.input, *graph.output, *graph.value_info, *graph.initializer]:
        facts = {e.key.removeprefix("tierplan."): e.value for e in value.metadata_props}
        if "tier" in facts:
            described.add(value.name)
            assert tuple(facts[key] for key in fields) in buffers.get(value.name, set()), (
                f"{value.name}: the annotated model says {facts}, plan.json {buffers.get(value.name)}"
            )
            alias = next(b["alias_of"] for b in plan["buffers"] if b["tensor"] == value.name)
            assert facts.get("alias_of") == alias
    planned = {b["tensor"] for b in plan["buffers"] if b["kind"] != "scratch"}
    assert planned <= described
    ops = {op["node"]: op for op in plan["ops"]}
    for node in graph.node:
        facts = {e.key.removeprefix("tierplan."): e.value for e in node.metadata_props}
        assert (facts["step"], facts["device"]) == (
            str(ops[node.name]["step"]),
            str(ops[node.name]["device"]),
        )


@pytest.mark.parametrize(
    "passes",
    [
        "schedule,liveness,inplace,partition{devices=0},pack,evaluate",
        "schedule,liveness,inplace,partition{devices=-1},pack,evaluate",
        "schedule,liveness,inplace,partition{mode=ring},pack,evaluate",
        "schedule{order=bogus},liveness,pack,evaluate",
        "schedule,liveness,tiers{solver=x},pack,evaluate",
        "schedule,liveness,pack{workers=0},evaluate",
        "attention{chunks=0},schedule,liveness,pack,evaluate",
    ],
)
def test_bad_options_fail_before_any_pass_runs(passes: str) -> None:
    started: list[str] = []
    with pytest.raises(TierplanError) as raised:
        compile_model(
            MODELS / "synthetic" / "diamond.onnx",
            passes=passes,
            on_pass_start=lambda _, item: started.append(item.name),
        )
    assert raised.value.exit_code == 2
    assert started == []


# -- typed options: every bad option of every pass fails before any pass runs -----------

WRONG_TEXT = {bool: "maybe", int: "many", float: "much", str: "!"}


def _bad_texts(hint: Any) -> list[str]:
    """Spellings no option of type ``hint`` accepts: a wrong type, and each side of its bounds."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        bounds = [m for m in hint.__metadata__ if isinstance(m, Bounds)]
        outside = [b.low - 1 for b in bounds] + [b.high + 1 for b in bounds if b.high < math.inf]
        return [*_bad_texts(args[0]), *(str(int(x) if args[0] is int else x) for x in outside)]
    if origin is Literal:
        return ["nonsense!"]
    if origin in (typing.Union, types.UnionType):  # and each member's bounds
        return ["nonsense!"] + [t for arg in args for t in _bad_texts(arg)[1:]]
    return [WRONG_TEXT[hint]]


def test_every_bad_option_of_every_pass_fails_when_the_pipeline_is_built() -> None:
    load_plugin(str(PLUGIN))
    load_plugin(str(BROKEN))
    checked, started = 0, []
    for name, cls in registered_passes().items():
        for option, hint in option_types(cls).items():
            for text in _bad_texts(hint):
                with pytest.raises(PipelineError, match=rf"^{name}\{{{option}="):
                    compile_model(
                        CHAIN,
                        passes=f"schedule,{name}{{{option}={text}}}",
                        on_pass_start=lambda _, item: started.append(item.name),
                    )
                checked += 1
            with pytest.raises(PipelineError, match=rf"^{name}\{{{option}="):
                cls(**{option: object()})  # built in code, not from a pipeline string
    assert started == []
    assert checked >= 40


def test_literal_choices_are_the_registered_engines() -> None:
    assert set(typing.get_args(Strategy)) == {"best", *PLACERS}
    assert typing.get_args(Solver) == SOLVERS


def test_partition_leaves_the_context_target_alone() -> None:
    passes = [
        "partition{devices=2}" if name == "partition" else name for name in default_pipeline()
    ]
    result = compile_model(CHAIN, passes=passes)
    assert result.context.target.devices == 1
    assert result.context.result(Partition).devices == 2
    assert result.target.devices == result.plan["target"]["devices"] == 2


def test_a_result_is_reached_by_pass_class() -> None:
    result = compile_model(CHAIN)
    assert set(result.context.result(Pack).regions) == set(result.plan["summary"]["peak_bytes"])
    alone = compile_model(CHAIN, passes="schedule,liveness")
    assert alone.context.find_result(Pack) is None
    with pytest.raises(PipelineError, match="pass 'pack' left no result"):
        alone.context.result(Pack)


# -- post-conditions (ensures) ---------------------------------------------------------


def test_a_broken_promise_names_the_pass_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    passes = "schedule,liveness,forgetful-pack,evaluate"
    argv = ["compile", str(CHAIN), "-o", str(out), "-q", "--plugin", str(BROKEN)]
    assert main([*argv, "--passes", passes]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "pass 'forgetful-pack' did not ensure what it promises: buffer" in err
    assert "after the passes: [schedule, liveness]" in err
    assert not out.exists()


def test_costly_promises_are_checked_under_verify_each_only() -> None:
    load_plugin(str(BROKEN))
    passes = "schedule,sloppy-count,liveness"
    compile_model(CHAIN, passes=passes)
    with pytest.raises(PostconditionError, match=r"'sloppy-count' did not ensure.*promised none"):
        compile_model(CHAIN, passes=passes, verify_each=True)


def test_builtin_promises_hold_under_verify_each() -> None:
    passes = [
        "partition{devices=2}" if name == "partition" else name for name in default_pipeline()
    ]
    result = compile_model(MODELS / "synthetic" / "diamond.onnx", passes=passes, verify_each=True)
    assert result.evaluation is not None


@register_pass
@dataclass(frozen=True)
class Unschedule(Schedule):
    """Test pass: a schedule (and its promise) that runs the last operator first."""

    name = "test-unschedule"

    def run(self, ir: IRGraph, context: PassContext) -> PassResult:
        super().run(ir, context)
        ops = ir.scheduled_operators()
        ops[0].step, ops[-1].step = ops[-1].step, ops[0].step
        return PassResult(changed=True)


def test_a_pass_may_take_a_builtin_promise() -> None:
    with pytest.raises(PostconditionError, match=r"'test-unschedule' did not ensure.*runs before"):
        compile_model(CHAIN, passes="test-unschedule")


# -- the README's pass, as a plugin ----------------------------------------------------


def _readme_pass(folder: Path) -> Path:
    """The README's annotating pass (the block that starts ``# my_passes.py``) as a file."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    code = readme.split("```python\n# my_passes.py\n", 1)[1].split("```", 1)[0]
    assert len(code.splitlines()) < 30
    path = folder / "my_passes.py"
    path.write_text(code)
    return path


def test_the_readme_pass_runs_as_a_plugin_with_its_notes_and_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plugin = str(_readme_pass(tmp_path))
    passes = "schedule,liveness,long-lived{steps=2 kinds=all},inplace,pack,evaluate"
    argv = ["compile", str(CHAIN), "-o", str(tmp_path / "out"), "--plugin", plugin, "-v"]
    assert main([*argv, "--verify-each", "--passes", passes]) == 0
    assert "4 long-lived tensors" in capsys.readouterr().out  # the chain's 4 weights
    result = compile_model(CHAIN, passes=passes, plugins=[plugin])
    long_lived = registered_passes()["long-lived"]
    assert result.context.result(long_lived) == [
        t.name for t in result.ir.tensors() if t.needs_buffer and (t.end or 0) - (t.start or 0) > 2
    ]
    activations = compile_model(CHAIN, passes=passes.replace(" kinds=all", ""), plugins=[plugin])
    assert activations.context.result(long_lived) == []
    assert main([*argv, "--passes", passes.replace("steps=2", "steps=0")]) == 2
    assert "long-lived{steps=0}: expected int >= 1" in capsys.readouterr().err
