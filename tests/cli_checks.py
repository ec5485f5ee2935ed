"""Checks shared by the bad-input tests: a CLI run fails cleanly, or compiles."""

from __future__ import annotations

import builtins
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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


def fails_in_one_line(
    capsys: pytest.CaptureFixture[str], argv: Sequence[str], code: int = 2
) -> str:
    """Run any command; assert it fails with one ``tierplan: error:`` line; return it."""
    capsys.readouterr()
    exit_code = main(list(argv))
    captured = capsys.readouterr()
    assert exit_code == code, captured.err
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("tierplan: error: "), captured.err
    return lines[0]


def opened_paths(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every path opened from Python (builtins.open, io.open, os.open)."""
    opened: list[str] = []

    def recording(original: Any) -> Any:
        def wrapper(file: Any, *args: Any, **kwargs: Any) -> Any:
            opened.append(os.fsdecode(file) if isinstance(file, str | bytes | os.PathLike) else "")
            return original(file, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(builtins, "open", recording(builtins.open))
    monkeypatch.setattr(io, "open", recording(io.open))
    monkeypatch.setattr(os, "open", recording(os.open))
    return opened
