"""The pass manager: registry, plugins, pipeline strings, requirement checks, instruments."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

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
from tierplan.compiler.errors import InvariantError, PipelineError
from tierplan.compiler.pass_manager import PassManager, load_plugin, parse_pipeline

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
