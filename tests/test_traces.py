"""Lifetime traces: reading both formats, writing offsets back, ``tierplan pack``."""

from __future__ import annotations

from pathlib import Path

import pytest
from tierplan.compiler.cli import main
from tierplan.compiler.errors import InputError
from tierplan.compiler.packing import check_placement, max_live
from tierplan.compiler.packing.instances import rectangle_cuts
from tierplan.compiler.packing.traces import read_trace, write_trace

CSV = "id,lower,upper,size\nb0,0,3,64\nb1,1,4,128\n# a comment\nb2,3,6,64\n"
PLAIN = "64 0 2\n128 1 3\n\n64 3 5\n"


def test_both_formats_give_the_same_items(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text(CSV)
    (tmp_path / "t.txt").write_text(PLAIN)
    from_csv, plain = read_trace(tmp_path / "t.csv"), read_trace(tmp_path / "t.txt")
    assert from_csv.csv and not plain.csv
    assert [(i.start, i.end, i.size) for i in from_csv.items] == [
        (i.start, i.end, i.size) for i in plain.items
    ]
    assert [i.key for i in plain.items] == ["0", "1", "2"]


@pytest.mark.parametrize("name", ["t.csv", "t.txt"])
def test_write_round_trips_with_offsets(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(CSV if name.endswith(".csv") else PLAIN)
    trace = read_trace(path)
    offsets = {item.key: 64 * index for index, item in enumerate(trace.items)}
    out = tmp_path / f"out{path.suffix}"
    write_trace(out, trace, offsets)
    again = read_trace(out)
    assert again.items == trace.items
    last = out.read_text().splitlines()[-1]
    fields = last.split(",") if trace.csv else last.split()
    assert fields[-1] == str(offsets[trace.items[-1].key])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id,lower,upper\nb0,0,3\n", "needs the columns"),
        ("id,lower,upper,size\nb0,3,3,64\n", "must exceed"),
        ("id,lower,upper,size\nb0,0,x,64\n", "not an integer"),
        ("id,lower,upper,size\nb0,0,2,64\nb0,1,2,64\n", "twice"),
        ("64 5 2\n", "before first"),
        ("64 5\n", "expected 'size first last'"),
        ("# only a comment\n", "no buffers"),
    ],
)
def test_bad_traces_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        read_trace(path)


@pytest.mark.parametrize("solver", ["greedy", "auto"])
def test_pack_command_writes_a_valid_placement(
    tmp_path: Path, solver: str, capsys: pytest.CaptureFixture[str]
) -> None:
    items = rectangle_cuts(40, 1, steps=16, height=32)  # the heuristics stay above max-live
    trace = tmp_path / "cuts.txt"
    trace.write_text("".join(f"{i.size} {i.start} {i.end}\n" for i in items))
    assert main(["pack", str(trace), "--solver", solver, "--solver-budget", "1"]) == 0
    packed = tmp_path / "cuts.packed.txt"
    rows = [line.split() for line in packed.read_text().splitlines()]
    placed = read_trace(trace).items
    offsets = {item.key: int(row[3]) for item, row in zip(placed, rows, strict=True)}
    assert not check_placement(placed, offsets)
    arena = max(offsets[i.key] + i.size for i in placed)
    assert (arena == max_live(placed)) == (solver == "auto")
    assert f"arena {arena} bytes" in capsys.readouterr().out


def test_pack_command_bad_input_exits_2(tmp_path: Path) -> None:
    assert main(["pack", str(tmp_path / "missing.csv")]) == 2
    trace = tmp_path / "t.txt"
    trace.write_text(PLAIN)
    assert main(["pack", str(trace), "--workers", "0"]) == 2
