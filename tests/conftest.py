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


def model_files() -> list[Path]:
    """Every bundled .onnx model (synthetic and real), sorted."""
    return sorted(MODELS.glob("synthetic/*.onnx")) + sorted(
        p for p in MODELS.glob("real/*.onnx") if "dynamic" not in p.name
    )


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
