"""Benchmark: the HTML report of every real model: its size, the time to write it, and how
fast it answers in headless Chromium.

Per model: operators and buffers of the default plan, the report's bytes (the target is
under 5 MiB), the seconds to render it, the seconds Chromium takes to load it and run
its script (``--dump-dom``, process start included), and the milliseconds per scripted
interaction inside the page: a click on a tensor, a click on an operator row, a
free-space view at a step, a zoom step. The browser columns are empty without
``chromium`` on PATH.

Usage: ``python benchmarks/report.py [--out benchmarks/results/report.md]``
"""

from __future__ import annotations

import argparse
import platform
import re
import shutil
import subprocess
import tempfile
import time
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.table import Table
from tierplan.compiler import compile_model
from tierplan.compiler.report.data import PlanView
from tierplan.compiler.report.html import render_html
from tierplan.compiler.report.source import op_sources

ROOT = Path(__file__).resolve().parent.parent
DIMS = {"bert_base_dynamic": {"batch": 1, "seq": 128}}
REPEATS = 20
# Appended to the report: times each interaction REPEATS times and writes the means.
PROBE = """<script>(function(){var n=REPEATS,out=[],t;
var rects=document.querySelectorAll('svg.timeline rect[data-b]');
var rows=document.querySelectorAll('tr[data-step]');
var plot=document.querySelector('svg.plot'),box=plot.getBoundingClientRect();
function time(f){var t0=performance.now();for(var i=0;i<n;i++){f(i);}out.push((performance.now()-t0)/n);}
function click(e){e.dispatchEvent(new MouseEvent('click',{bubbles:true}));}
time(function(i){click(rects[Math.floor(i*rects.length/n)]);});
time(function(i){click(rows[Math.floor(i*rows.length/n)]);});
time(function(i){location.hash='';plot.dispatchEvent(new MouseEvent('click',{bubbles:true,
  clientX:box.left+box.width*i/n,clientY:box.top+1}));});
time(function(){plot.dispatchEvent(new WheelEvent('wheel',{deltaY:-100,bubbles:true,
  cancelable:true,clientX:box.left+box.width/2}));});
var pre=document.createElement('pre');pre.id='probe';
pre.textContent=out.map(function(x){return x.toFixed(2);}).join(' ');
document.body.appendChild(pre);})();</script>""".replace("REPEATS", str(REPEATS))


def _browser(document: str, folder: Path) -> tuple[float, list[float]] | None:
    """Seconds to load and script the page, and ms per interaction; None without Chromium."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        return None
    page = folder / "report.html"
    page.write_text(document.replace("</body>", PROBE + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={folder}/p"]
    start = time.perf_counter()
    run = subprocess.run(
        [browser, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=300
    )
    seconds = time.perf_counter() - start
    found = re.search(r'<pre id="probe">([^<]*)</pre>', run.stdout)
    return seconds, [float(x) for x in found.group(1).split()] if found else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/report.md")
    args = parser.parse_args()
    table = Table(title="HTML report per model (default pipeline, ascend-like)")
    for column in ("model", "operators", "buffers", "report", "render s", "browser s"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for column in ("tensor click ms", "operator click ms", "free space ms", "zoom ms"):
        table.add_column(column, justify="right")
    for model in sorted((ROOT / "models" / "real").glob("*.onnx")):
        result = compile_model(model, dims=DIMS.get(model.stem, {}))
        costs = result.evaluation.op_costs if result.evaluation else None
        view = PlanView(result.plan, costs, op_sources(model))
        start = time.perf_counter()
        document = render_html(view, model.name)
        render = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as folder:
            measured = _browser(document, Path(folder))
        browser = [f"{measured[0]:.2f}", *(f"{ms:.1f}" for ms in measured[1])] if measured else []
        table.add_row(
            model.stem,
            str(len(view.ops)),
            str(len(view.buffers)),
            f"{len(document.encode()) / 2**20:.2f} MiB",
            f"{render:.2f}",
            *(browser + ["-"] * (5 - len(browser))),
        )
    console = Console(record=True, width=160)
    console.print(table)
    header = f"# HTML report\n\n{date.today()}, {platform.processor() or platform.machine()}\n\n"
    args.out.write_text(header + "```\n" + console.export_text() + "```\n")


if __name__ == "__main__":
    main()
