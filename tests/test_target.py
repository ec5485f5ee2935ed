"""Targets: presets, user TOML files, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from tierplan.compiler import InputError, compile_model, load_target
from tierplan.compiler.cli import main
from tierplan.compiler.target import preset_names

from tests.conftest import MODELS


def test_presets_follow_the_design() -> None:
    assert preset_names() == ["ascend-like", "inference-card"]
    default = load_target()
    assert default.name == "ascend-like"
    assert [(t.name, t.capacity) for t in default.tiers] == [
        ("L1", 256 * 2**10),
        ("L2", 8 * 2**20),
        ("DDR", 32 * 2**30),
    ]
    assert default.alignment == 64
    other = load_target("inference-card")
    assert [t.capacity for t in other.tiers] == [512 * 2**10, 16 * 2**20, 16 * 2**30]


def test_user_target_file_changes_the_plan(tmp_path: Path) -> None:
    toml = tmp_path / "mine.toml"
    toml.write_text(
        'name = "mine"\nalignment = 4096\n[[tiers]]\nname = "HBM"\ncapacity = "64MiB"\n'
        "bandwidth = 3e12\nlatency = 1e-7\n"
    )
    result = compile_model(MODELS / "synthetic" / "diamond.onnx", target=toml)
    assert result.plan["target"]["name"] == "mine"
    assert {b["tier"] for b in result.plan["buffers"]} == {"HBM"}
    assert all(b["offset"] % 4096 == 0 for b in result.plan["buffers"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name = 'x'\n", "needs at least one [[tiers]]"),
        ("[[tiers]]\nname='A'\ncapacity='-5KiB'\nbandwidth=1.0\n", "cannot read size"),
        ("[[tiers]]\nname='A'\ncapacity=0\nbandwidth=1.0\n", "size must be positive"),
        ("alignment = 48\n[[tiers]]\nname='A'\ncapacity=10\nbandwidth=1.0\n", "power of two"),
        ("[[tiers]]\nname='A'\ncapacity=10\n", "bandwidth: expected a number, got None"),
        ("[[tiers\n", "not valid TOML"),
    ],
)
def test_invalid_target_files_get_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text(text)
    with pytest.raises(InputError, match=message.replace("[", r"\[")):
        load_target(toml)


def test_tiny_memory_does_not_fit_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = tmp_path / "tiny.toml"
    toml.write_text("[[tiers]]\nname='DDR'\ncapacity='64KiB'\nbandwidth=1e9\n")
    out = tmp_path / "out"
    code = main(
        ["compile", str(MODELS / "synthetic" / "unet.onnx"), "--target", str(toml), "-o", str(out)]
    )
    assert code == 1
    assert "does not fit: device 0 DDR needs" in capsys.readouterr().err
    assert not out.exists()


def test_targets_command_lists_presets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    assert "ascend-like" in out and "inference-card" in out
