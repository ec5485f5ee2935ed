"""Progress on the CLI for steps that take seconds: loading (shape inference) and each pass.

A rich spinner on stderr names the current step, fed by the pass manager's
``on_pass_start`` hook. It is shown only when stderr is a terminal and the user did
not ask for ``--quiet``, so logs, pipes and tests see nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from tierplan.compiler.pass_manager import Pass

PassStart = Callable[[int, Pass], None]


def progress_wanted(quiet: bool) -> bool:
    """True when progress should be drawn: not quiet, and stdout and stderr are terminals."""
    return not quiet and sys.stderr.isatty() and sys.stdout.isatty()


@contextmanager
def compile_progress(enabled: bool, passes: int) -> Iterator[PassStart | None]:
    """Yield an ``on_pass_start`` callback that updates a spinner, or ``None`` when off.

    The spinner reads "loading model" until the first pass starts, which covers
    reading the file and shape inference.
    """
    if not enabled:
        yield None
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("loading model, inferring shapes", total=None)

        def on_pass_start(position: int, item: Pass) -> None:
            progress.update(task, description=f"pass {position}/{passes}: {item.spelled()}")

        yield on_pass_start
