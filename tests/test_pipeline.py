"""The pass manager: registry, plugins, pipeline strings, requirement checks, instruments."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

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
from tierplan.compiler.pass_manager import PassManager, load_plugin, parse_pipeline

from tests.byte_owners import corrupted_reads
from tests.conftest import MODELS

PLUGIN = Path(__file__).parent / "plugins" / "count_ops_plugin.py"
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
    large = result.context.results["tag-large-tensors"]
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
    with pytest.raises(PipelineError, match="cannot read 'big' as int"):
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
