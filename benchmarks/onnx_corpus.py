"""Benchmark: compile every ONNX backend node-test model and classify the outcome.

The corpus is ``onnx.backend.test.loader.load_model_tests(kind="node")`` (one small
model per operator variant). Each model is written to a temporary ``.onnx`` file and
compiled with the default pipeline and target. Outcomes:

* ``ok``: compiled, and ``result.evaluation`` is not None (the evaluate pass
  already validated the plan);
* ``error``: a :class:`TierplanError` (type, exit code, one-line message);
* ``crash``: any other exception (a bug): type, message and the last traceback
  frame inside tierplan.

Prints the counts, the errors grouped by a normalized message pattern (tensor,
node and file names stripped) and every crash, and writes a Markdown report.

Usage: ``python benchmarks/onnx_corpus.py [--jobs 2] [--out benchmarks/results/onnx_corpus.md]
[--target NAME] [--verify-each] [--write-unsupported]``. ``--write-unsupported``
rewrites ``tests/onnx_corpus_unsupported.txt`` (``name<TAB>reason`` per erroring test),
which ``tests/test_onnx_corpus.py`` checks against.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import onnx

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "onnx_corpus.md"
UNSUPPORTED = ROOT / "tests" / "onnx_corpus_unsupported.txt"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What compiling one corpus model did."""

    name: str
    kind: str  # "ok", "error" or "crash"
    error_type: str = ""
    exit_code: int | None = None
    message: str = ""
    where: str = ""  # crash only: "path:line in function" of the last tierplan frame
    is_tierplan_error: bool = False

    @property
    def pattern(self) -> str:
        """The normalized message (names and numbers stripped) errors are grouped by."""
        return f"{self.error_type}: {normalize(self.message)}"


_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_LIST = re.compile(r"\[[^\[\]]*\]|\([\d\s,?-]*\)")
_NUMBER = re.compile(r"(?<![A-Za-z_])-?\d+(?:\.\d+)?(?![A-Za-z_])")
_SPACES = re.compile(r"\s+")
# Names that appear unquoted: CLI hints and ONNX shape-inference node names.
_UNQUOTED_NAMES = [
    (re.compile(r"--input-shape \S+?:D1"), "--input-shape <name>:D1"),
    (re.compile(r"--dim \S+?="), "--dim <name>="),
    (re.compile(r"node name: [^)]*\)"), "node name: <name>)"),
]


def normalize(message: str) -> str:
    """Strip tensor, node and file names (quoted), shapes and numbers from a message."""
    text = message.splitlines()[0] if message else ""
    text = _QUOTED.sub("<name>", text)
    for pattern, replacement in _UNQUOTED_NAMES:
        text = pattern.sub(replacement, text)
    previous = None
    while previous != text:
        previous, text = text, _LIST.sub("<list>", text)
    text = _NUMBER.sub("<n>", text)
    return _SPACES.sub(" ", text).strip()


def short_reason(outcome: Outcome, limit: int = 160) -> str:
    """A one-line reason for tests/onnx_corpus_unsupported.txt."""
    # The hint after "; " (which flag to pass) is dropped: it says nothing about the cause.
    reason = outcome.pattern.replace("\t", " ").split("; ")[0]
    return reason if len(reason) <= limit else reason[: limit - 3] + "..."


def unsupported_lines(outcomes: list[Outcome]) -> list[str]:
    """``name<TAB>reason`` for every erroring test, sorted (tests/onnx_corpus_unsupported.txt)."""
    return sorted(f"{o.name}\t{short_reason(o)}" for o in outcomes if o.kind == "error")


def read_unsupported(path: Path = UNSUPPORTED) -> dict[str, str]:
    """The names (and reasons) listed in tests/onnx_corpus_unsupported.txt."""
    entries: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, reason = line.partition("\t")
            entries[name.strip()] = reason
    return entries


def corpus() -> list[tuple[str, onnx.ModelProto]]:
    """(name, model) for every node test case, sorted by name."""
    from onnx.backend.test.loader import load_model_tests

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = load_model_tests(kind="node")
    models: list[tuple[str, onnx.ModelProto]] = []
    for case in cases:
        model = case.model
        if model is None or isinstance(model, str | os.PathLike):
            # Older onnx releases ship the node tests as files, not in-memory protos.
            path = Path(model) if model is not None else Path(case.model_dir) / "model.onnx"
            model = onnx.load(str(path), load_external_data=False)
        models.append((case.name, model))
    return sorted(models, key=lambda item: item[0])


def _tierplan_dirs() -> tuple[str, ...]:
    import tierplan.compiler
    import tierplan.passes

    return tuple(
        str(Path(module.__file__).resolve().parent) + os.sep
        for module in (tierplan.compiler, tierplan.passes)
        if module.__file__
    )


def _last_tierplan_frame(error: BaseException) -> str:
    dirs = _tierplan_dirs()
    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if str(Path(frame.filename).resolve()).startswith(dirs)
    ]
    if not frames:
        return "<no tierplan frame>"
    frame = frames[-1]
    try:
        where = Path(frame.filename).resolve().relative_to(ROOT)
    except ValueError:
        where = Path(frame.filename)
    return f"{where}:{frame.lineno} in {frame.name}: {(frame.line or '').strip()}"


def compile_one(
    name: str,
    model: onnx.ModelProto,
    workdir: str | Path,
    target: str | None = None,
    verify_each: bool = False,
) -> Outcome:
    """Save ``model`` under ``workdir`` and compile it; classify what happened."""
    from tierplan.compiler import TierplanError, compile_model

    path = Path(workdir) / f"{name}.onnx"
    onnx.save(model, str(path))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = compile_model(path, target=target, verify_each=verify_each)
    except TierplanError as error:
        return Outcome(
            name,
            "error",
            type(error).__name__,
            error.exit_code,
            str(error),
            is_tierplan_error=True,
        )
    except Exception as error:
        return Outcome(
            name, "crash", type(error).__name__, None, str(error), _last_tierplan_frame(error)
        )
    finally:
        path.unlink(missing_ok=True)
    if result.evaluation is None:
        return Outcome(name, "crash", "NoEvaluation", None, "compile returned no evaluation")
    return Outcome(name, "ok")


def _compile_batch(
    batch: list[tuple[str, bytes]], target: str | None, verify_each: bool
) -> list[Outcome]:
    with tempfile.TemporaryDirectory(prefix="tierplan-onnx-corpus-") as workdir:
        return [
            compile_one(name, onnx.load_from_string(data), workdir, target, verify_each)
            for name, data in batch
        ]


def run_corpus(
    jobs: int = 1, target: str | None = None, verify_each: bool = False
) -> list[Outcome]:
    """Compile the whole corpus (in ``jobs`` worker processes when > 1); sorted by name."""
    cases = corpus()
    if jobs <= 1:
        with tempfile.TemporaryDirectory(prefix="tierplan-onnx-corpus-") as workdir:
            return [compile_one(name, model, workdir, target, verify_each) for name, model in cases]
    serialized = [(name, model.SerializeToString()) for name, model in cases]
    batches = [serialized[i :: jobs * 8] for i in range(jobs * 8)]
    outcomes: list[Outcome] = []
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        n = len(batches)
        for batch_outcomes in pool.map(_compile_batch, batches, [target] * n, [verify_each] * n):
            outcomes.extend(batch_outcomes)
    return sorted(outcomes, key=lambda outcome: outcome.name)


def error_groups(outcomes: list[Outcome]) -> list[tuple[str, list[Outcome]]]:
    """Errors grouped by normalized pattern, largest group first."""
    groups: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        if outcome.kind == "error":
            groups[outcome.pattern].append(outcome)
    return sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))


def crash_groups(outcomes: list[Outcome]) -> list[tuple[str, list[Outcome]]]:
    """Crashes grouped by (type, normalized message, failing tierplan line)."""
    groups: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        if outcome.kind == "crash":
            groups[f"{outcome.pattern} @ {outcome.where}"].append(outcome)
    return sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def report(outcomes: list[Outcome], seconds: float, jobs: int) -> str:
    """The Markdown report."""
    counts = Counter(outcome.kind for outcome in outcomes)
    lines = [
        "# onnx_corpus: last results",
        "",
        f"{date.today()} on {platform.machine()}, CPython {platform.python_version()}, "
        f"onnx {onnx.__version__}; `python benchmarks/onnx_corpus.py --jobs {jobs}` "
        f"took {seconds:.1f} s.",
        "",
        "| outcome | count |",
        "|---|---|",
        f"| total | {len(outcomes)} |",
        *(f"| {kind} | {counts.get(kind, 0)} |" for kind in ("ok", "error", "crash")),
        "",
        "## Error groups",
        "",
        "| count | exit | pattern | example test | example message |",
        "|---|---|---|---|---|",
    ]
    for pattern, members in error_groups(outcomes):
        first = members[0]
        lines.append(
            f"| {len(members)} | {first.exit_code} | {_md(pattern)} | {first.name} | "
            f"{_md(first.message)} |"
        )
    internal = [o for o in outcomes if o.kind == "error" and o.exit_code == 3]
    lines += [
        "",
        f"Errors with exit code 3 (PassCrash/InvariantError: bugs reported as errors): "
        f"{len(internal)}"
        + (f" ({', '.join(o.name for o in internal)})" if internal else "")
        + ".",
    ]
    lines += ["", "## Crashes", ""]
    crashes = crash_groups(outcomes)
    if not crashes:
        lines.append("None.")
    for _pattern, members in crashes:
        first = members[0]
        lines += [
            f"### {_md(first.error_type)} ({len(members)})",
            "",
            f"- where: `{first.where}`",
            f"- message: `{_md(first.message)}`",
            f"- reproducer: `{first.name}`",
            f"- all: {', '.join(m.name for m in members)}",
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--target", default=None, help="target preset or TOML (default: ascend-like)"
    )
    parser.add_argument(
        "--verify-each", action="store_true", help="check IR invariants after each pass"
    )
    parser.add_argument(
        "--write-unsupported",
        action="store_true",
        help=f"rewrite {UNSUPPORTED.relative_to(ROOT)} from this run's errors",
    )
    args = parser.parse_args(argv)

    began = time.perf_counter()
    outcomes = run_corpus(args.jobs, args.target, args.verify_each)
    seconds = time.perf_counter() - began

    counts = Counter(outcome.kind for outcome in outcomes)
    print(f"{len(outcomes)} models in {seconds:.1f} s (jobs={args.jobs})")
    for kind in ("ok", "error", "crash"):
        print(f"  {kind:5} {counts.get(kind, 0)}")
    print("\nerror groups:")
    for pattern, members in error_groups(outcomes):
        print(f"  {len(members):5}  {pattern}  (e.g. {members[0].name})")
    print("\ncrashes:")
    for pattern, members in crash_groups(outcomes):
        print(f"  {len(members):5}  {pattern}")
        for member in members:
            print(
                f"         {member.name}: {member.error_type}: {member.message.splitlines()[0] if member.message else ''}"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report(outcomes, seconds, args.jobs))
    print(f"\nwrote {args.out}")
    if args.write_unsupported:
        UNSUPPORTED.write_text("".join(f"{line}\n" for line in unsupported_lines(outcomes)))
        print(f"wrote {UNSUPPORTED}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
