"""Running many pipelines over one model, sharing what they have in common.

The model is lowered once. Pipelines that begin with the same passes on the same
target share that prefix: the IR and the pass context after it are kept (a copy)
and the next pipeline starts from the longest kept prefix, so a search that varies
the last passes (tiers, devices) does not rewrite, reschedule and tile again. A
copy of a 10,000-operator graph costs about as much as scheduling it, so a state is
kept only for a prefix that a pipeline announced by :meth:`PipelineRunner.expect`
and not yet run begins with. The kept states are bounded in number (oldest dropped
first); what is kept changes how long a run takes, never its result.
"""

from __future__ import annotations

import copy
import pickle
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tierplan.compiler.api import CompileResult
from tierplan.compiler.frontend import LoadedModel
from tierplan.compiler.ir import IRGraph
from tierplan.compiler.pass_manager import Pass, PassContext, PassResult, run_pass
from tierplan.compiler.target import Target

# Passes after which the state is kept: the ones whose output the most pipelines share.
KEEP_AFTER = frozenset(
    {"sequence", "attention", "recompute", "precision", "inplace", "tiling", "partition"}
)
MAX_KEPT = 24


@dataclass
class _State:
    ir: IRGraph
    context: PassContext
    results: list[PassResult]


@dataclass
class PipelineRunner:
    """Runs pipelines on ``model`` (never modified), reusing common prefixes."""

    model: LoadedModel
    kept: dict[tuple[object, ...], bytes] = field(default_factory=dict)
    runs: int = 0
    pending: Counter[tuple[object, ...]] = field(default_factory=Counter)
    expected: Counter[tuple[object, ...]] = field(default_factory=Counter)

    def expect(self, pipelines: Iterable[tuple[Sequence[Pass], Target]]) -> None:
        """Announce pipelines to run next (replacing the last announcement): their
        shared prefixes are kept when first run."""
        announced = [(passes, target) for passes, target in pipelines]
        self.pending = Counter(_prefixes(passes, target)[-1] for passes, target in announced)
        self.expected = Counter(
            key for passes, target in announced for key in _prefixes(passes, target)[:-1]
        )

    def run(self, passes: Sequence[Pass], target: Target) -> CompileResult:
        """Run ``passes`` (a checked pipeline) on a copy of the model for ``target``.

        Raises :class:`TierplanError` from the failing pass, as ``compile_model`` does.
        """
        began = time.perf_counter()
        self.runs += 1
        spelled = tuple(item.spelled() for item in passes)
        *prefixes, whole = _prefixes(passes, target)
        if self.pending[whole] > 0:  # announced: one run fewer expected to share its prefixes
            self.pending[whole] -= 1
            self.expected -= Counter(prefixes)
        start, state = self._longest_prefix(target, spelled)
        for position in range(start, len(passes)):
            item = passes[position]
            state.results.append(run_pass(item, state.ir, state.context))
            key = (_key(target), *spelled[: position + 1])
            if item.name in KEEP_AFTER and self.expected[key] > 0:
                self._keep(key, state)
        return CompileResult(
            ir=state.ir,
            model=self.model.proto,
            model_path=self.model.path,
            target=state.context.planned_target(),
            passes=list(passes),
            pass_results=state.results,
            pass_seconds=[],
            seconds=time.perf_counter() - began,
            context=state.context,
        )

    def _longest_prefix(self, target: Target, spelled: tuple[str, ...]) -> tuple[int, _State]:
        for length in range(len(spelled) - 1, 0, -1):
            kept = self.kept.get((_key(target), *spelled[:length]))
            if kept is not None:
                state: _State = pickle.loads(kept)
                return length, state
        fresh = _State(copy.deepcopy(self.model.ir), PassContext(target=target), [])
        return 0, fresh

    def _keep(self, key: tuple[object, ...], state: _State) -> None:
        if key in self.kept:
            return
        if len(self.kept) >= MAX_KEPT:
            del self.kept[next(iter(self.kept))]
        self.kept[key] = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def _prefixes(passes: Sequence[Pass], target: Target) -> list[tuple[object, ...]]:
    """The keys of the prefixes of ``passes`` after which a state may be kept, then the
    key of the whole pipeline."""
    spelled = tuple(item.spelled() for item in passes)
    kept = [
        (_key(target), *spelled[: position + 1])
        for position, item in enumerate(passes[:-1])
        if item.name in KEEP_AFTER
    ]
    return [*kept, (_key(target), *spelled)]


def _key(target: Target) -> tuple[object, ...]:
    """What of a target can differ between the runs of one search (budget and tile reserves)."""
    return (target.name, target.tiers, target.devices)
