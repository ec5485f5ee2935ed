"""Compile every ONNX backend node-test model: no crash, and only known, one-line errors.

The corpus is ``onnx.backend.test.loader.load_model_tests(kind="node")`` (~1900 tiny
models, one per operator variant); the run takes ~50 s on 2 cores, which CI affords, so it is not
marked slow. The work is done by ``benchmarks/onnx_corpus.py``, which also
regenerates ``tests/onnx_corpus_unsupported.txt`` (``--write-unsupported``) when a
model that used to fail now compiles or a new, deliberate limitation appears.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
BENCHMARK = ROOT / "benchmarks" / "onnx_corpus.py"
UNSUPPORTED = Path(__file__).resolve().parent / "onnx_corpus_unsupported.txt"


def _load_benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tierplan_bench_onnx_corpus", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class body runs.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_onnx_node_corpus() -> None:
    bench = _load_benchmark()
    outcomes = bench.run_corpus(jobs=1)
    assert outcomes, "the ONNX node-test corpus is empty"

    crashes = [o for o in outcomes if o.kind == "crash"]
    assert not crashes, f"{len(crashes)} corpus models crashed the compiler:\n" + "\n".join(
        f"  {o.name}: {o.error_type}: {o.message.splitlines()[0] if o.message else ''} "
        f"[at {o.where}]"
        for o in crashes
    )

    errors = [o for o in outcomes if o.kind == "error"]
    not_tierplan = [o.name for o in errors if not o.is_tierplan_error]
    assert not not_tierplan, f"errors that are not TierplanError: {not_tierplan}"
    multiline = [
        f"{o.name}: {o.message!r}" for o in errors if "\n" in o.message or "\r" in o.message
    ]
    assert not multiline, "error messages must be one line:\n" + "\n".join(multiline)

    known = bench.read_unsupported(UNSUPPORTED)
    new = sorted(o.name for o in errors if o.name not in known)
    assert not new, (
        f"{len(new)} corpus models now fail that are not in {UNSUPPORTED.name} "
        "(a regression, or run `python benchmarks/onnx_corpus.py --write-unsupported`):\n"
        + "\n".join(f"  {o.name}: {o.message}" for o in errors if o.name in set(new))
    )
