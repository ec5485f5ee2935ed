"""The HTML report and the PNG timeline: content, escaping, size, and a real browser."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper
from tierplan.compiler import compile_model
from tierplan.compiler.cli import main
from tierplan.compiler.report.data import PlanView
from tierplan.compiler.report.html import render_html
from tierplan.compiler.report.plot import timeline_png

from models.synthetic import random_dag
from tests.conftest import MODELS, model_files

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
HOSTILE = ['<script>alert("x")</script>', "a&b 'q' \"dq\"", "<img src=x onerror=alert(1)>"]


class _Collector(HTMLParser):
    """Text and element counts of a document, as a browser would parse them."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: dict[str, int] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(document: str) -> _Collector:
    collector = _Collector()
    collector.feed(document)
    return collector


def hostile_model(path: Path) -> Path:
    """Relu -> Add -> Relu whose node and tensor names are HTML."""
    x, a, b, y = "x" + HOSTILE[1], HOSTILE[0], HOSTILE[2], "out" + HOSTILE[1]
    nodes = [
        helper.make_node("Relu", [x], [a], name=HOSTILE[0]),
        helper.make_node("Add", [a, x], [b], name=HOSTILE[1]),
        helper.make_node("Relu", [b], [y], name=HOSTILE[2]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [4, 64])],
        [helper.make_tensor_value_info(y, TensorProto.FLOAT, [4, 64])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _report(model: Path) -> tuple[PlanView, str]:
    result = compile_model(model)
    assert result.evaluation is not None
    view = PlanView(result.plan, result.evaluation.op_costs)
    return view, render_html(view, model.name)


def test_view_matches_the_plan_summary() -> None:
    result = compile_model(MODELS / "synthetic" / "transformer_block.onnx")
    view = PlanView(result.plan)
    summary = result.plan["summary"]
    for region in view.regions:
        assert region.peak == summary["peak_bytes"][region.key]
        assert region.bound == summary["lower_bound_bytes"][region.key]
        assert view.live_curve(region.key)[region.peak_step] == region.bound
        shares = view.top_consumers(region.key, "op type", limit=1000)
        assert sum(s.bytes for s in shares) == region.bound


def test_report_compares_runtime_allocators(tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    assert main(["report", str(MODELS / "real" / "resnet18.onnx"), "-o", str(out)]) == 0
    text = out.read_text()
    section = text[text.index("Runtime allocators") :]
    for row in ("<td>static plan</td>", "<td>pool</td>", "<td>buddy</td>"):
        assert section.count(row) == section.count("<td>static plan</td>") >= 1


def test_report_has_every_section(tmp_path: Path) -> None:
    view, document = _report(MODELS / "real" / "resnet18.onnx")
    parsed = _parse(document)
    text = " ".join(parsed.text)
    for heading in ("memory timeline", "live bytes per step", "top memory consumers", "Tiling"):
        assert heading in text
    # Two charts per region, each an outer frame and a zoomable plot.
    assert parsed.tags["svg"] == 4 * len(view.regions)
    # One rectangle per drawn (non-weight) buffer.
    drawn = sum(1 for b in view.buffers if b.kind != "weight")
    assert document.count("<rect data-b=") == drawn
    assert "Conv" in text and "peak step" in text
    # Self-contained: nothing is fetched.
    assert "http://" not in document and "https://" not in document and "@import" not in document


def test_hostile_names_show_as_text(tmp_path: Path) -> None:
    model = hostile_model(tmp_path / "hostile.onnx")
    _, document = _report(model)
    parsed = _parse(document)
    assert parsed.tags["script"] == 2  # our data and code; none from the model
    assert parsed.tags.get("img", 0) == 0
    text = "".join(parsed.text)
    for name in HOSTILE:
        assert name in text


def test_report_of_a_plan_file_finds_its_model(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["compile", str(MODELS / "synthetic" / "diamond.onnx"), "-o", str(out), "-q"]) == 0
    report = tmp_path / "r.html"
    assert main(["report", str(out / "plan.json"), "-o", str(report), "-q"]) == 0
    assert "Latency by op type" in report.read_text()
    assert "No per-operator costs" not in report.read_text()
    (out / "diamond.planned.onnx").unlink()
    assert main(["report", str(out / "plan.json"), "-o", str(report), "-q"]) == 2
    model = MODELS / "synthetic" / "diamond.onnx"
    assert main(["report", str(out / "plan.json"), "--model", str(model), "-q"]) == 0
    assert (out / "report.html").is_file()


@pytest.mark.slow
def test_report_of_2000_operators_is_under_5_mb(tmp_path: Path) -> None:
    path = tmp_path / "dag2k.onnx"
    onnx.save(random_dag(2000, seed=1), path)
    _, document = _report(path)
    assert len(document.encode()) < 5 * 2**20


def test_multi_device_and_tier_plan_renders() -> None:
    """Views are generic over devices and tiers (scratch tiles in L1, copies in L2)."""
    tiers = [
        {"name": n, "capacity": c, "bandwidth": 1e12, "latency": 1e-8}
        for n, c in (("L1", 1024), ("L2", 4096), ("DDR", 2**20))
    ]
    buffer = {"alias_of": None}
    plan = {
        "format": "tierplan-plan/1",
        "model": {"path": "m.onnx", "sha256": ""},
        "target": {"name": "t", "alignment": 64, "devices": 2, "tiers": tiers},
        "schedule": ["a", "copy", "b"],
        "ops": [
            {
                "node": "a",
                "op_type": "MatMul",
                "device": 0,
                "step": 0,
                "inputs": ["x"],
                "outputs": ["t"],
                "tiles": {"axes": {"M": 8}, "count": 4, "l1_bytes": 512, "traffic_bytes": 2048},
            },
            {
                "node": "copy",
                "op_type": "Transfer",
                "device": 1,
                "step": 1,
                "inputs": ["t"],
                "outputs": ["u"],
                "tiles": None,
                "inserted": True,
            },
            {
                "node": "b",
                "op_type": "Relu",
                "device": 1,
                "step": 2,
                "inputs": ["u"],
                "outputs": ["y"],
                "tiles": None,
            },
        ],
        "buffers": [
            {
                **buffer,
                "tensor": "x",
                "kind": "input",
                "bytes": 256,
                "device": 0,
                "tier": "DDR",
                "offset": 0,
                "start": 0,
                "end": 0,
            },
            {
                **buffer,
                "tensor": "a.tile",
                "kind": "scratch",
                "bytes": 512,
                "device": 0,
                "tier": "L1",
                "offset": 0,
                "start": 0,
                "end": 0,
            },
            {
                **buffer,
                "tensor": "t",
                "kind": "activation",
                "bytes": 256,
                "device": 0,
                "tier": "L2",
                "offset": 0,
                "start": 0,
                "end": 1,
            },
            {
                **buffer,
                "tensor": "u",
                "kind": "activation",
                "bytes": 256,
                "device": 1,
                "tier": "L2",
                "offset": 64,
                "start": 1,
                "end": 2,
            },
            {
                **buffer,
                "tensor": "y",
                "kind": "output",
                "bytes": 256,
                "device": 1,
                "tier": "DDR",
                "offset": 0,
                "start": 2,
                "end": 2,
            },
        ],
        "summary": {"peak_bytes": {}, "lower_bound_bytes": {}},
    }
    view = PlanView(plan)
    assert [r.key for r in view.regions] == ["0/L1", "0/L2", "0/DDR", "1/L2", "1/DDR"]
    assert [d.inserted_ops for d in view.devices()] == [0, 1]
    (tiled,) = view.tiled_ops()
    assert tiled.compulsory_bytes == 512 and tiled.ratio == 4.0
    document = render_html(view, "m.onnx")
    assert document.count('class="timeline"') == 5
    assert [b.tensor for b in view.upper_tier_buffers()] == ["a.tile", "t", "u"]
    assert timeline_png(view, "m").startswith(b"\x89PNG")


def test_plot_writes_a_png(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["compile", str(MODELS / "synthetic" / "unet.onnx"), "-o", str(out), "-q"]) == 0
    assert main(["plot", str(out / "plan.json"), "-q"]) == 0
    png = (out / "timeline.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def _load_in_browser(report: Path, profile: Path) -> tuple[str, list[str]]:
    """The DOM after scripts ran, and every console message of the page."""
    assert BROWSER is not None
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
    flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    flags += [f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--dump-dom"]
    run = subprocess.run(
        [BROWSER, *flags, report.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout, [line for line in run.stderr.splitlines() if ":CONSOLE" in line]


def _check_in_browser(model: Path, tmp_path: Path) -> None:
    report = tmp_path / f"{model.stem}.html"
    report.write_text(_report(model)[1])
    dom, console = _load_in_browser(report, tmp_path / "profile")
    assert console == []
    assert 'class="timeline"' in dom and 'data-hover="on"' in dom  # the script ran
    assert "<rect" in dom


@pytest.mark.skipif(BROWSER is None, reason="no chromium installed: browser test skipped")
@pytest.mark.parametrize("model", ["real/resnet18.onnx", "hostile"])
def test_report_loads_in_a_browser(model: str, tmp_path: Path) -> None:
    path = hostile_model(tmp_path / "h.onnx") if model == "hostile" else MODELS / model
    _check_in_browser(path, tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(BROWSER is None, reason="no chromium installed: browser test skipped")
@pytest.mark.parametrize("path", model_files(), ids=lambda p: p.stem)
def test_every_model_report_loads_in_a_browser(path: Path, tmp_path: Path) -> None:
    _check_in_browser(path, tmp_path)
