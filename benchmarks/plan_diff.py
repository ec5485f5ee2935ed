"""Benchmark: compile every model with two source trees and compare the plans.

For a change that must not alter plans (or only some of them, in a known way): each
model of models/real and models/synthetic is compiled with the default pipeline by
each tree's own code (``PYTHONPATH=TREE/.typecheck``, one process per compile), the
plan.json files are compared byte for byte, and each plan that differs is checked
with the head tree's ``tierplan check``. The table shows each differing model's peak
per region (``device/tier``) before and after and how many buffers moved.

Usage: ``python benchmarks/plan_diff.py BASE_TREE [--head HEAD_TREE] [--out DIR] [--keep-base]``
(a base tree: ``git worktree add /tmp/base COMMIT``, with its .typecheck links).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
# Models with symbolic dimensions, and the values the benchmark binds.
DIMS = {"bert_base_dynamic": ["batch=1", "seq=128"], "gpt2_dynamic": ["seq=128"]}
FOLDERS = ("real", "synthetic")


def cli(tree: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """Run ``tierplan ARGUMENTS`` with the code of ``tree``."""
    environment = {**os.environ, "PYTHONPATH": str(tree / ".typecheck")}
    command = [sys.executable, "-m", "tierplan.compiler.cli", *arguments]
    return subprocess.run(command, env=environment, capture_output=True, text=True, check=False)


def compile_with(tree: Path, model: Path, out: Path) -> Path | None:
    """The plan.json ``tree`` writes for ``model`` into ``out``, None if it failed."""
    dims = [f"--dim={value}" for value in DIMS.get(model.stem, [])]
    done = cli(tree, "compile", str(model), "-o", str(out), "-q", *dims)
    return out / "plan.json" if done.returncode == 0 else None


def summary(plan: Path) -> tuple[dict[str, int], dict[str, tuple[str, int | None]]]:
    """A plan's peak per region and each buffer's (tier, offset)."""
    data = json.loads(plan.read_text())
    places = {b["tensor"]: (b["tier"], b["offset"]) for b in data["buffers"]}
    return data["summary"]["peak_bytes"], places


def main() -> None:
    """Compile, compare and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("base", type=Path, help="the source tree before the change")
    parser.add_argument("--head", type=Path, default=ROOT, help="the tree after (this one)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/plan_diff"))
    parser.add_argument(
        "--keep-base", action="store_true", help="reuse the base plans a previous run wrote"
    )
    args = parser.parse_args()
    table = Table("model", "plan", "region: peak before -> after", "buffers moved", "check")
    for folder in FOLDERS:
        for model in sorted((ROOT / "models" / folder).glob("*.onnx")):
            kept = args.out / "base" / model.stem / "plan.json"
            before = (
                kept
                if args.keep_base and kept.exists()
                else compile_with(args.base.resolve(), model, args.out / "base" / model.stem)
            )
            after = compile_with(args.head.resolve(), model, args.out / "head" / model.stem)
            if before is None or after is None:
                table.add_row(model.stem, f"failed: base {before}, head {after}", "", "", "")
                continue
            if filecmp.cmp(before, after, shallow=False):
                table.add_row(model.stem, "identical", "", "", "")
                continue
            (peaks_before, places_before), (peaks_after, places_after) = (
                summary(before),
                summary(after),
            )
            peaks = ", ".join(
                f"{region}: {peaks_before.get(region)} -> {peaks_after.get(region)}"
                for region in sorted(peaks_before.keys() | peaks_after.keys())
                if peaks_before.get(region) != peaks_after.get(region)
            )
            moved = sum(places_after.get(k) != v for k, v in places_before.items())
            checked = cli(args.head.resolve(), "check", str(model), str(after))
            verdict = "valid" if checked.returncode == 0 else checked.stderr.strip()[-120:]
            table.add_row(model.stem, "differs", peaks or "same peaks", str(moved), verdict)
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
