"""Checks shared by the bad-input tests: a CLI run fails cleanly, or compiles."""

from __future__ import annotations

from pathlib import Path

import pytest
from tierplan.compiler.cli import main


def listing(folder: Path) -> set[str]:
    """Every path under ``folder``, relative to it."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def fails_cleanly(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    model: Path,
    *options: str,
    code: int = 2,
) -> str:
    """Compile ``model``; assert a clean one-line failure; return the message."""
    out = tmp_path / "out"
    before = listing(tmp_path)
    capsys.readouterr()
    exit_code = main(["compile", str(model), "-o", str(out), *options])
    captured = capsys.readouterr()
    assert exit_code == code, captured.err
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("tierplan: error: "), captured.err
    assert "Traceback" not in captured.err
    assert captured.out == ""
    assert not out.exists()
    assert listing(tmp_path) == before
    return lines[0]


def compiles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], model: Path, *options: str
) -> Path:
    """Compile ``model``; assert success; return the plan file."""
    out = tmp_path / "out"
    exit_code = main(["compile", str(model), "-o", str(out), "-q", *options])
    captured = capsys.readouterr()
    assert exit_code == 0, captured.err
    assert captured.err == ""
    plan = out / "plan.json"
    assert plan.is_file()
    return plan
