"""The HTML report and the PNG timeline: content, escaping, size, and a real browser."""

from __future__ import annotations

import copy
import html
import itertools
import json
import math
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from tierplan.compiler import compile_model
from tierplan.compiler.cli import main
from tierplan.compiler.plan import read_plan
from tierplan.compiler.report.colours import PALETTE, colour_of, label_colours
from tierplan.compiler.report.compare import compare
from tierplan.compiler.report.data import PlanView
from tierplan.compiler.report.html import render_html
from tierplan.compiler.report.plot import timeline_figure, timeline_png
from tierplan.compiler.report.source import op_sources, view_of_plan_file
from tierplan.compiler.report.units import human_bytes

from models.synthetic import random_dag
from tests.conftest import MODELS, model_files

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
SYNTHETIC = ["transformer_block.onnx", "residual_block.onnx"]
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
    # A report of a model names its operators' source modules too.
    sources = op_sources(MODELS / "real" / "resnet18.onnx")
    assert sources and all(f"<td>{html.escape(s)}</td>" in text for s in sources.values())


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


def test_report_of_a_plan_file_uses_its_costs_else_finds_its_model(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["compile", str(MODELS / "synthetic" / "diamond.onnx"), "-o", str(out), "-q"]) == 0
    (out / "diamond.planned.onnx").unlink()
    report = tmp_path / "r.html"
    assert main(["report", str(out / "plan.json"), "-o", str(report), "-q"]) == 0
    assert "Latency by op type" in report.read_text()  # the plan carries its costs
    plan = json.loads((out / "plan.json").read_text())
    for op in plan["ops"]:
        del op["cost"]  # an older plan: costed again from its model
    (out / "plan.json").write_text(json.dumps(plan))
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


# -- pictures: ticks, legend, colours, order, devices ---------------------------------

RESNET18 = MODELS / "real" / "resnet18.onnx"


@pytest.fixture(scope="module")
def resnet18() -> tuple[PlanView, str]:
    return _report(RESNET18)


def _y_axes(document: str) -> list[str]:
    """The y axis of every chart (drawn first, before the step axis)."""
    return re.findall(r'<svg class="(?:timeline|curve)"[^>]*>(.*?)<g class="xaxis"', document)


def test_byte_axes_have_round_ticks(resnet18: tuple[PlanView, str]) -> None:
    axes = _y_axes(resnet18[1])
    assert len(axes) == 2 * len(resnet18[0].regions)
    for chart in axes:
        labels = re.findall(r'text-anchor="end">([\d.]+)(B|KiB|MiB|GiB)</text>', chart)
        assert len(labels) >= 2 and len({unit for _, unit in labels}) == 1
        values = [float(value) for value, _ in labels]
        steps = {round(b - a, 6) for a, b in itertools.pairwise(values)}
        (step,) = steps
        mantissa = step / 10 ** math.floor(math.log10(step))
        assert round(mantissa, 6) in (1, 2, 5), labels


def test_png_legend_does_not_cover_the_live_curve(resnet18: tuple[PlanView, str]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    view = resnet18[0]
    figure = timeline_figure(view, "resnet18")
    FigureCanvasAgg(figure).draw()
    curves = [axis for axis in figure.axes if axis.get_legend() is not None]
    assert len(curves) == len(view.regions)
    for axis in curves:
        box = axis.get_legend().get_window_extent()
        for line in axis.get_lines():
            xs, ys = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
            if len(xs) == len(ys) == 2 and xs[0] == 0 and xs[1] == 1:  # axhline: spans the axis
                xs = np.linspace(*axis.get_xlim(), 200)
                ys = np.full(200, ys[0])
            dense_x = np.repeat(xs, 2)[1:]  # the step curve's corners
            dense_y = np.repeat(ys, 2)[:-1]
            points = axis.transData.transform(np.column_stack([dense_x, dense_y]))
            assert not any(box.contains(x, y) for x, y in points), line.get_label()


def test_op_type_colours_are_the_same_in_every_model() -> None:
    views = [PlanView(compile_model(MODELS / "synthetic" / m).plan) for m in SYNTHETIC]
    colours = [label_colours(view) for view in views]
    shared = set(colours[0]) & set(colours[1])
    assert "Add" in shared or "MatMul" in shared
    for label in shared:
        assert colours[0][label] == colours[1][label] == colour_of(label)
    graph_input = colour_of("(graph input)")
    assert graph_input not in PALETTE and colour_of("Transpose") != graph_input
    assert colour_of("(weight)") not in PALETTE


def test_regions_come_most_used_first_and_tiles_last(resnet18: tuple[PlanView, str]) -> None:
    view, document = resnet18
    ordered = view.regions_by_importance()
    assert ordered[-1].scratch_only and ordered[-1].tier == "L1"
    uses = [r.use for r in ordered if not r.scratch_only]
    assert uses == sorted(uses, reverse=True)
    timelines = re.findall(r'<svg class="timeline" id="timeline-([^"]+)"', document)
    assert timelines == [r.key for r in ordered]


def test_devices_table_shows_tier_peaks_within_capacity(resnet18: tuple[PlanView, str]) -> None:
    view, document = resnet18
    (device,) = view.devices()
    for region in view.regions:
        assert device.peak_by_tier[region.tier] == region.peak <= region.capacity
    section = document[document.index("<h2>Devices</h2>") :]
    assert "L1 peak / capacity" in section and "256.0KiB / 256.0KiB" in section


def test_operator_table_names_source_modules(resnet18: tuple[PlanView, str]) -> None:
    view, document = _report_of_plan_file(RESNET18)
    assert len(view.sources) > len(view.ops) / 2
    op = next(op for op in view.ops if op["node"] in view.sources)
    source = view.sources[op["node"]]
    assert "(" in source  # module path and class, e.g. "layer1.0.conv1 (Conv2d)"
    assert f"<td>{html.escape(source)}</td>" in document


def _report_of_plan_file(model: Path) -> tuple[PlanView, str]:
    out = Path(tempfile.mkdtemp())
    assert main(["compile", str(model), "-o", str(out), "-q"]) == 0
    view = view_of_plan_file(out / "plan.json")
    return view, render_html(view, model.name)


# -- comparison -----------------------------------------------------------------------


def test_compare_finds_moved_vanished_and_appeared_tensors() -> None:
    plan = compile_model(MODELS / "synthetic" / "diamond.onnx").plan
    changed = copy.deepcopy(plan)
    buffers = [b for b in changed["buffers"] if b["kind"] == "activation"]
    moved, gone = buffers[0], buffers[1]
    moved["offset"] += 4096
    changed["buffers"].remove(gone)
    changed["buffers"].append({**gone, "tensor": "new tensor"})
    a, b = PlanView(plan), PlanView(changed)
    diff = compare(a, b)
    assert [(m.tensor, m.tiers) for m in diff.moved] == [(moved["tensor"], False)]
    assert [x.tensor for x in diff.vanished] == [gone["tensor"]]
    assert [x.tensor for x in diff.appeared] == ["new tensor"]
    region = next(d for d in diff.regions if d.key == f"0/{moved['tier']}")
    assert region.peak_a == a.region(region.key).peak
    assert region.change == b.region(region.key).peak - a.region(region.key).peak
    same = compare(a, PlanView(plan))
    assert not same.moved and not same.vanished and not same.appeared
    assert all(d.change == 0 for d in same.regions)


def test_report_compare_of_two_plans(tmp_path: Path) -> None:
    model = MODELS / "synthetic" / "transformer_block.onnx"
    first, second = tmp_path / "a", tmp_path / "b"
    assert main(["compile", str(model), "-o", str(first), "-q"]) == 0
    no_inplace = "schedule,liveness,tiling,partition,tiers,pack,evaluate"
    assert main(["compile", str(model), "--passes", no_inplace, "-o", str(second), "-q"]) == 0
    out = tmp_path / "compare.html"
    args = ["report", str(first / "plan.json"), "--compare", str(second / "plan.json")]
    assert main([*args, "-o", str(out), "-q"]) == 0
    document = out.read_text()
    diff = compare(
        view_of_plan_file(first / "plan.json"), PlanView(read_plan(second / "plan.json"))
    )
    section = document[document.index('<section id="comparison">') : document.index("</section>")]
    for delta in diff.regions:
        assert f"<td>{delta.key}</td><td>{human_bytes(delta.peak_a)}</td>" in section
    assert f"<h3>{len(diff.moved)} tensors moved" in section
    assert diff.moved or diff.regions[0].change  # the two pipelines differ somewhere


# -- interaction in a real browser ------------------------------------------------------


def _clicked(document: str, buffer: int) -> str:
    """The report with a script that clicks buffer ``buffer``'s rectangle, then zooms."""
    click = (
        "<script>(function(){var r=document.querySelector('rect[data-b=\""
        + str(buffer)
        + "\"]');r.dispatchEvent(new MouseEvent('click',{bubbles:true}));"
        "var p=document.querySelector('svg.plot'),box=p.getBoundingClientRect();"
        "p.dispatchEvent(new WheelEvent('wheel',{deltaY:-100,clientX:box.left+box.width/2,"
        "bubbles:true,cancelable:true}));})();</script>"
    )
    return document.replace("</body>", click + "</body>")


def _check_click_in_browser(view: PlanView, document: str, tmp_path: Path) -> None:
    # A tensor with a producer and the most readers, drawn in a chart.
    index, tensor = max(
        ((i, b) for i, b in enumerate(view.buffers) if view.producer(b) and b.kind != "weight"),
        key=lambda item: (len(view.readers.get(item[1].tensor, [])), -item[0]),
    )
    readers = view.readers[tensor.tensor]
    assert readers
    report = tmp_path / "clicked.html"
    report.write_text(_clicked(document, index))
    dom, console = _load_in_browser(report, tmp_path / "profile")
    assert console == []
    assert f'data-selected="{html.escape(tensor.tensor)}"' in dom
    assert re.search(rf'<rect data-b="{index}"[^>]*class="sel"', dom)
    details = dom[dom.index('<div id="details"') :]
    details = details[: details.index("</div>")]
    assert f"tensor {html.escape(tensor.tensor)}" in details
    assert f'class="producer">producer: <a href="#op-{tensor.start}">' in details
    for reader in readers:
        assert f"{html.escape(reader)} (" in details
    zoomed = re.search(r'<svg class="plot"[^>]*viewBox="([^"]+)"', dom)
    assert zoomed and zoomed.group(1) != f"0 0 {view.steps} 320"  # the wheel zoomed in


@pytest.mark.skipif(BROWSER is None, reason="no chromium installed: browser test skipped")
def test_click_on_a_tensor_shows_producer_and_readers(
    resnet18: tuple[PlanView, str], tmp_path: Path
) -> None:
    _check_click_in_browser(*resnet18, tmp_path)


@pytest.mark.skipif(BROWSER is None, reason="no chromium installed: browser test skipped")
def test_click_on_an_operator_row_marks_its_tensors_on_the_charts(
    resnet18: tuple[PlanView, str], tmp_path: Path
) -> None:
    view, document = resnet18
    step = next(i for i, op in enumerate(view.ops) if op["op_type"] == "Add")
    click = (
        f"<script>document.getElementById('op-{step}')"
        ".dispatchEvent(new MouseEvent('click',{bubbles:true}));</script>"
    )
    report = tmp_path / "row.html"
    report.write_text(document.replace("</body>", click + "</body>"))
    dom, console = _load_in_browser(report, tmp_path / "profile")
    assert console == []
    assert f'<tr id="op-{step}" data-step="{step}" class="cur">' in dom
    selected = {int(i) for i in re.findall(r'<rect data-b="(\d+)"[^>]*class="sel"', dom)}
    op = view.ops[step]
    touched = {*op["inputs"], *op["outputs"]}
    drawn = {i for i, b in enumerate(view.buffers) if b.tensor in touched and b.kind != "weight"}
    assert selected == drawn and drawn
    # Every chart marks the step.
    assert dom.count(f'<rect x="{step}" y="0" width="1" height="320" class="mcur">') == 2 * len(
        view.regions
    )


@pytest.mark.skipif(BROWSER is None, reason="no chromium installed: browser test skipped")
def test_step_address_shows_free_space(resnet18: tuple[PlanView, str], tmp_path: Path) -> None:
    view, document = resnet18
    step = view.regions_by_importance()[0].peak_step
    report = tmp_path / "r.html"
    report.write_text(document)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path}/p"]
    run = subprocess.run(
        [BROWSER or "", *flags, "--dump-dom", f"{report.as_uri()}#step={step}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    details = run.stdout[run.stdout.index('<div id="details"') :]
    assert f"free space at step {step}" in details
    for region in view.regions:
        assert f"<h4>{region.key}</h4>" in details
    assert details.count('class="freebar"') == len(view.regions)


@pytest.mark.slow
@pytest.mark.skipif(BROWSER is None, reason="no chromium installed: browser test skipped")
@pytest.mark.parametrize("name", ["resnet50", "randwire_ws"])
def test_big_reports_are_small_and_interactive(name: str, tmp_path: Path) -> None:
    view, document = _report(MODELS / "real" / f"{name}.onnx")
    assert len(document.encode()) < 5 * 2**20
    _check_click_in_browser(view, document, tmp_path)
