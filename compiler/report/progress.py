"""Progress on the CLI for steps that take seconds: loading (shape inference), each pass,
and the exact packing engines inside the ``pack`` pass or ``tierplan pack``.

A rich spinner on stderr names the current step, fed by the pass manager's
``on_pass_start`` hook and by what passes tell ``PassContext.status`` (the pack pass:
which region and section, the engine, the peak against the bound) or, for
``tierplan pack``, :func:`~tierplan.compiler.packing.solve`'s progress callback. It is
shown only when stdout and stderr are terminals and the user did not ask for
``--quiet``, so logs, pipes and tests see nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from tierplan.compiler.packing import exact
from tierplan.compiler.pass_manager import Pass

PassStart = Callable[[int, Pass], None]


def progress_wanted(quiet: bool) -> bool:
    """True when progress should be drawn: not quiet, and stdout and stderr are terminals."""
    return not quiet and sys.stderr.isatty() and sys.stdout.isatty()


@contextmanager
def _spinner(description: str) -> Iterator[Callable[[str], None]]:
    """A transient spinner on stderr; yields a function that replaces its text."""
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(description, total=None)
        yield lambda text: progress.update(task, description=text)


@dataclass(frozen=True, slots=True)
class CompileHooks:
    """The callbacks :func:`~tierplan.compiler.api.compile_model` takes for a progress
    display (both None when it is off)."""

    on_pass_start: PassStart | None = None
    on_status: Callable[[str], None] | None = None


@contextmanager
def compile_progress(enabled: bool, passes: int) -> Iterator[CompileHooks]:
    """Yield callbacks that update a spinner: the pass that starts, and what a long
    pass says it is doing (the pack pass: region, section, peak against bound).

    The spinner reads "loading model" until the first pass starts, which covers
    reading the file and shape inference.
    """
    if not enabled:
        yield CompileHooks()
        return
    with _spinner("loading model, inferring shapes") as show:
        current = [""]

        def on_pass_start(position: int, item: Pass) -> None:
            current[0] = f"pass {position}/{passes}: {item.spelled()}"
            show(current[0])

        yield CompileHooks(on_pass_start, lambda text: show(f"{current[0]}: {text}"))


@contextmanager
def solve_progress(enabled: bool, title: str) -> Iterator[exact.OnProgress | None]:
    """Yield a progress callback for :func:`~tierplan.compiler.packing.solve` that
    shows ``title`` and the solve's state on a spinner, or ``None`` when off."""
    if not enabled:
        yield None
        return
    with _spinner(title) as show:
        yield lambda step: show(f"{title}: {step.describe()}")
