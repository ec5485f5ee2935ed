"""Shared fixtures: the model files every end-to-end test runs on."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings

# Bounded in CI; `pytest --hypothesis-profile thorough` explores much further.
settings.register_profile("default", max_examples=60, deadline=None)
settings.register_profile("thorough", max_examples=2000, deadline=None)
# Issue 20's acceptance run of the input fuzzers (tests/test_fuzz_inputs.py).
settings.register_profile("fuzz", max_examples=500, deadline=None)
settings.load_profile("default")

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"


#: Real models that take over ~5 s to compile and check (gpt2_seq1024: about 7 s, its
#: 1024x1024 attention maps); every end-to-end test runs model_files(), so they would slow
#: the fast suite. tests/test_compile.py still compiles them under --run-slow.
LARGE_MODELS = frozenset({"gpt2_seq1024"})


def model_files() -> list[Path]:
    """Every bundled .onnx model (synthetic and real) but the large ones, sorted."""
    return sorted(MODELS.glob("synthetic/*.onnx")) + sorted(
        p
        for p in MODELS.glob("real/*.onnx")
        if "dynamic" not in p.name and p.stem not in LARGE_MODELS
    )


def large_model_files() -> list[Path]:
    """The bundled real models left out of model_files() for their compile time."""
    return sorted(MODELS / "real" / f"{name}.onnx" for name in LARGE_MODELS)


@pytest.fixture
def run_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from tmp_path so a default output folder would show up as a stray file."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TIERPLAN_DEBUG", raising=False)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
