"""Make it fit: the fastest plan within a memory budget (``compile --budget``, ``tierplan fit``).

:mod:`.budget` reads ``--budget`` and measures a plan against it; :mod:`.knobs`
lists what the search may change (each option a change of the pass pipeline);
:mod:`.runner` runs many pipelines over one model, sharing common prefixes;
:mod:`.search` chooses, :mod:`.explain` says why nothing fits; :mod:`.command`
is the command line.
"""

from tierplan.compiler.fitting.budget import Budget, parse_budget
from tierplan.compiler.fitting.search import FitResult, Point, Search, frontier

__all__ = ["Budget", "FitResult", "Point", "Search", "frontier", "parse_budget"]
