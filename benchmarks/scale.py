"""Benchmark: compile time and compiler peak RSS as graphs grow, against the issue's targets.

Cases (``models.synthetic``, ``models.scale_shapes`` and ``models.llama`` builders,
weights external and absent): random DAGs and transformer stacks of about 1k, 10k
and 100k operators; a Llama-7B-style decoder at full width with 32 layers; one
graph per shape (chain, fan-out, many outputs, deep nest, wide layers) at 1k, 2k,
4k and 8k operators, to see how each pass grows, and at 50k (fan-out and many
outputs also at 10k); pipeline-partitioned cases (``--devices K``). Each case is built in
this process, saved to a temporary folder, and compiled end to end (default
pipeline and target, plan and annotated model written) in a **fresh child
process**, so its peak RSS (``ru_maxrss``) is the compiler's alone. A case that
exceeds its time cap is stopped and reported as such.

Targets (issue 8): 10k operators < 30 s, 100k < 300 s, the 7B decoder < 60 s with
peak RSS < 1 GiB; time per operator close to flat (n log n). Issue 20: every shape
at 50k operators (fan-out and many outputs at 10k) < 120 s and 4 GiB. Issue 16:
``--devices 4`` on 20k operators < 60 s and 2 GiB.

Usage: ``python benchmarks/scale.py [--cases NAME ...] [--cap-factor 2] [--profile CASE]
[--out benchmarks/results/scale.md] [--png benchmarks/results/scale.png]``.
``--profile CASE`` runs that one case under cProfile in the child and prints the 25
most expensive functions by cumulative and by own time. The column "RSS grew in"
names the pass during which the peak RSS grew most.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import partial
from pathlib import Path

import onnx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.llama import llama  # noqa: E402
from models.scale_shapes import SHAPES  # noqa: E402
from models.synthetic import random_dag, transformer_stack  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "scale.md"
GiB = 1 << 30


@dataclass(frozen=True, slots=True)
class Case:
    """One model to compile, with the issue's targets for it (None: no target)."""

    name: str
    build: Callable[[], onnx.ModelProto]
    target_seconds: float | None = None
    target_rss: int | None = None
    cap_seconds: float = 120.0  # the child is stopped after this (before --cap-factor)
    devices: int = 1  # --devices (pipeline partition) when above 1


# transformer_stack has 33 operators per layer (plus a few).
CASES = [
    Case("random_dag_1k", lambda: random_dag(1_000, seed=0)),
    Case("transformer_1k", lambda: transformer_stack(30)),
    Case("random_dag_10k", lambda: random_dag(10_000, seed=0), 30.0, cap_seconds=30.0),
    Case("transformer_10k", lambda: transformer_stack(303), 30.0, cap_seconds=30.0),
    Case("random_dag_100k", lambda: random_dag(100_000, seed=0), 300.0, cap_seconds=300.0),
    Case("transformer_100k", lambda: transformer_stack(3030), 300.0, cap_seconds=300.0),
    Case("llama_7b_32l", lambda: llama(32), 60.0, GiB, cap_seconds=60.0),
    *(
        Case(f"{shape}_{n // 1000}k", partial(build, n))
        for shape, build in SHAPES.items()
        for n in (1_000, 2_000, 4_000, 8_000)
    ),
    *(
        Case(f"{shape}_{n // 1000}k", partial(SHAPES[shape], n), 120.0, 4 * GiB, 120.0)
        for shape, n in (("fan_out", 10_000), ("many_outputs", 10_000))
    ),
    *(
        Case(f"{shape}_50k", partial(build, 50_000), 120.0, 4 * GiB, 120.0)
        for shape, build in SHAPES.items()
    ),
    Case("random_dag_20k_k4", lambda: random_dag(20_000, seed=0), 60.0, 2 * GiB, 60.0, 4),
    Case("transformer_20k_k4", lambda: transformer_stack(606), 60.0, 2 * GiB, 60.0, 4),
    Case("chain_50k_k1000", partial(SHAPES["chain"], 50_000), 120.0, 4 * GiB, 120.0, 1000),
]

# Runs in the child: compile, write, report seconds per phase and peak RSS as JSON.
CHILD = """
import json, resource, sys, time
began = time.perf_counter()
from tierplan.compiler import compile_model, default_pipeline
from tierplan.compiler.pass_manager import PassTimer
imported = time.perf_counter()
timer = PassTimer()
def maxrss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
rss = {"import": maxrss()}
class RssAfterPass:
    def after_pass(self, position, item, ir, result, seconds):
        rss[item.name] = maxrss()
devices = int(sys.argv[3])
passes = [
    f"partition{{devices={devices}}}" if name == "partition" and devices > 1 else name
    for name in default_pipeline()
]
def run():
    result = compile_model(
        sys.argv[1], passes=passes, instruments=[timer, RssAfterPass()],
        on_pass_start=lambda position, item: rss.setdefault("frontend", maxrss()),
    )
    compiled = time.perf_counter()
    result.write(sys.argv[2])
    return result, compiled
if len(sys.argv) > 4:
    import cProfile, pstats
    profile = cProfile.Profile()
    result, compiled = profile.runcall(run)
    stats = pstats.Stats(profile, stream=sys.stderr)
    stats.sort_stats("cumulative").print_stats(25)
    stats.sort_stats("tottime").print_stats(25)
else:
    result, compiled = run()
done = time.perf_counter()
passes = dict(timer.seconds)
print(json.dumps({
    "ops": result.ir.operator_count(),
    "tensors": sum(1 for _ in result.ir.tensors()),
    "import": imported - began,
    "frontend": compiled - imported - sum(passes.values()),
    "passes": passes,
    "rss_after": rss,
    "write": done - compiled,
    "total": done - imported,
    "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
}))
"""


@dataclass(slots=True)
class Measurement:
    """What one child reported (or why it did not)."""

    case: Case
    ops: int = 0
    tensors: int = 0
    frontend: float = 0.0
    passes: dict[str, float] | None = None
    write: float = 0.0
    total: float | None = None  # compile + write, seconds; None when stopped or failed
    rss: int | None = None
    rss_after: dict[str, int] | None = None  # ru_maxrss after each pass
    failure: str = ""
    cap: float | None = None  # seconds after which the child was stopped

    @property
    def verdict(self) -> str:
        """``ok``, ``MISSED`` (a target) or ``-`` (no target)."""
        if self.failure:
            # Stopped before its target time: not measured far enough to judge.
            reached = self.cap is not None and self.cap >= (self.case.target_seconds or 0)
            return "MISSED" if self.case.target_seconds and reached else "not measured"
        if self.case.target_seconds is None and self.case.target_rss is None:
            return "-"
        slow = self.case.target_seconds is not None and (self.total or 0) > self.case.target_seconds
        big = self.case.target_rss is not None and (self.rss or 0) > self.case.target_rss
        return "MISSED" if slow or big else "ok"


def measure(case: Case, workdir: Path, cap_factor: float, profile: bool = False) -> Measurement:
    """Build the case's model, compile it in a child process, and collect the numbers."""
    path = workdir / f"{case.name}.onnx"
    onnx.save(case.build(), str(path))
    output = workdir / f"{case.name}.out"
    command = [sys.executable, "-c", CHILD, str(path), str(output), str(case.devices)]
    cap = case.cap_seconds * cap_factor
    try:
        child = subprocess.run(
            command + (["profile"] if profile else []),
            capture_output=True,
            text=True,
            timeout=cap,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Measurement(case, failure=f"stopped after {cap:.0f} s", cap=cap)
    if profile:
        print(child.stderr)
    if child.returncode != 0:
        last = (child.stderr.strip().splitlines() or ["?"])[-1]
        return Measurement(case, failure=f"exit {child.returncode}: {last}")
    data = json.loads(child.stdout.strip().splitlines()[-1])
    return Measurement(
        case,
        ops=data["ops"],
        tensors=data["tensors"],
        frontend=data["frontend"],
        passes=data["passes"],
        write=data["write"],
        total=data["total"],
        rss=data["rss"],
        rss_after=data["rss_after"],
    )


def _target(case: Case) -> str:
    parts = []
    if case.target_seconds is not None:
        parts.append(f"< {case.target_seconds:.0f} s")
    if case.target_rss is not None:
        parts.append(f"RSS < {case.target_rss / GiB:.0f} GiB")
    return ", ".join(parts) or "-"


def _grew_most(rss_after: dict[str, int]) -> str:
    """The pass during which the peak RSS grew most (``frontend``: before any pass)."""
    grown, before = {}, 0
    for name, rss in rss_after.items():
        grown[name], before = rss - before, rss
    grown.pop("import", None)
    return max(grown, key=lambda key: grown[key], default="-")


def table(results: list[Measurement]) -> list[str]:
    """The Markdown table: one row per case."""
    # Passes in pipeline order (the order the children reported them).
    pass_names = list(dict.fromkeys(name for r in results for name in (r.passes or {})))
    lines = [
        "| case | ops | total s | µs/op | peak RSS MiB | RSS grew in | frontend s | "
        + " | ".join(f"{name} s" for name in pass_names)
        + " | write s | target | verdict |",
        "|---" * (10 + len(pass_names)) + "|",
    ]
    for r in results:
        if r.total is None:
            cells = [r.case.name, "-", r.failure, "-", "-", "-", "-"]
            cells += [*("-" for _ in pass_names), "-"]
        else:
            cells = [
                r.case.name,
                str(r.ops),
                f"{r.total:.2f}",
                f"{r.total / max(r.ops, 1) * 1e6:.0f}",
                f"{(r.rss or 0) / 2**20:.0f}",
                _grew_most(r.rss_after or {}),
                f"{r.frontend:.2f}",
                *(f"{(r.passes or {}).get(name, 0.0):.2f}" for name in pass_names),
                f"{r.write:.2f}",
            ]
        lines.append("| " + " | ".join([*cells, _target(r.case), r.verdict]) + " |")
    return lines


def plot(results: list[Measurement], path: Path) -> None:
    """Time per operator against operator count, one line per model family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for family in ("random_dag", "transformer"):
        points = [
            (r.ops, r.total / r.ops * 1e6)
            for r in results
            if r.case.name.startswith(family) and r.total is not None and r.ops
        ]
        if points:
            axes.plot(*zip(*points, strict=True), marker="o", label=family)
    axes.set_xscale("log")
    axes.set_xlabel("operators")
    axes.set_ylabel("compile time per operator (µs)")
    axes.set_title("tierplan compile time per operator")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cases", nargs="*", default=[c.name for c in CASES])
    parser.add_argument(
        "--cap-factor", type=float, default=2.0, help="stop a case after cap x this (default 2)"
    )
    parser.add_argument("--profile", default=None, help="profile one case (cProfile)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--png", type=Path, default=None)
    args = parser.parse_args(argv)
    by_name = {case.name: case for case in CASES}
    unknown = [name for name in args.cases if name not in by_name]
    if unknown:
        parser.error(f"unknown case {unknown[0]!r} (cases: {', '.join(by_name)})")

    with tempfile.TemporaryDirectory(prefix="tierplan-scale-") as folder:
        if args.profile:
            measure(by_name[args.profile], Path(folder), args.cap_factor, profile=True)
            return 0
        results = []
        for name in args.cases:
            began = time.perf_counter()
            result = measure(by_name[name], Path(folder), args.cap_factor)
            results.append(result)
            print(
                f"{name}: {result.failure or f'{result.total:.2f} s'} "
                f"({time.perf_counter() - began:.1f} s with the build)",
                flush=True,
            )
    lines = table(results)
    print("\n".join(lines))
    report = [
        "# scale: last results",
        "",
        f"{date.today()} on {platform.machine()}, CPython {platform.python_version()}; "
        f"`python benchmarks/scale.py --cases {' '.join(args.cases)}`. "
        "Each case compiled end to end (default pipeline, ascend-like target, plan and "
        "annotated model written) in its own process; peak RSS is the child's ru_maxrss. "
        "The machine is shared (2 cores, several concurrent jobs): times are upper bounds.",
        "",
        *lines,
    ]
    if args.png:
        plot(results, args.png)
        report += ["", f"![time per operator]({args.png.name})"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(report) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
