"""Passes, their registry, and the pass manager that runs a pipeline of them.

A pass is a small frozen dataclass: its class variables say what it is
(``name``, ``requires``, ``provides``, ``invalidates``), its fields are options
that a pipeline string can set (``pack{strategy=greedy-size}``). It mutates the IR
in place and returns a :class:`PassResult`.

The manager checks, before anything runs, that every pass's requirements are
provided by an earlier pass (it never reorders the pipeline), then runs the passes
in order with instruments around each (dump after, verify each, timing). A pass
that fails is reported with the passes that ran before it.

Example
-------
>>> from dataclasses import dataclass
>>> @register_pass
... @dataclass(frozen=True)
... class CountOps(Pass):
...     '''Log how many operators the graph has.'''
...     name = "count-ops"
...     def run(self, ir, context):
...         return PassResult(changed=False, notes=[f"{ir.operator_count()} ops"])
>>> "count-ops" in registered_passes()
True
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import logging
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

from tierplan.compiler.errors import InputError, PipelineError, TierplanError
from tierplan.compiler.inputs import bounded_int, finite_number
from tierplan.compiler.ir import IRGraph
from tierplan.compiler.target import Target, parse_size

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "tierplan.passes"

# Facts the frontend establishes before any pass runs.
INITIAL_FACTS = frozenset({"shapes"})
# The fact the ``evaluate`` pass provides (a validated, costed plan); passes that
# change the plan invalidate it.
EVALUATION_FACT = "evaluation"
# Every fact a pass derives from the graph: a pass that rewrites the graph invalidates them all.
GRAPH_FACTS = frozenset(
    {
        "schedule",
        "liveness",
        "aliasing",
        "tiling",
        "partition",
        "tiers",
        "placement",
        EVALUATION_FACT,
    }
)


@dataclass(frozen=True, slots=True)
class PassResult:
    """What a pass did: whether it changed the IR, and one-line notes for the user."""

    changed: bool
    notes: Sequence[str] = ()


@dataclass(slots=True)
class PassContext:
    """What passes may read besides the IR: the target, results meant for the user,
    and ``on_status``, where a long pass says what it is doing (a front end's progress
    display; None: nobody listens)."""

    target: Target
    results: dict[str, Any] = field(default_factory=dict)
    on_status: Callable[[str], None] | None = None

    def status(self, text: str) -> None:
        """Tell the front end what the running pass is doing now."""
        if self.on_status is not None:
            self.on_status(text)


@dataclass(frozen=True)
class Pass:
    """Base class of every pass. Subclasses are frozen dataclasses; fields are options.

    Class variables
    ---------------
    name:
        The name used in pipelines (``--passes``) and on ``tierplan passes``.
    requires:
        Facts that must hold before the pass runs (``schedule``, ``liveness`` ...).
    provides:
        Facts that hold after it ran.
    invalidates:
        Facts it destroys when it changes the graph (they must be provided again).
    """

    name: ClassVar[str]
    requires: ClassVar[frozenset[str]] = frozenset()
    provides: ClassVar[frozenset[str]] = frozenset()
    invalidates: ClassVar[frozenset[str]] = frozenset()

    def run(self, ir: IRGraph, context: PassContext) -> PassResult:
        """Transform or annotate ``ir`` in place."""
        raise NotImplementedError

    @classmethod
    def description(cls) -> str:
        """One line: the first line of the class docstring."""
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""

    def spelled(self) -> str:
        """This pass as a pipeline element, with the options that differ from defaults."""
        changed = [
            f"{f.name}={getattr(self, f.name)}"
            for f in dataclasses.fields(self)
            if f.default is not dataclasses.MISSING and getattr(self, f.name) != f.default
        ]
        return f"{self.name}{{{' '.join(changed)}}}" if changed else self.name


PassType = TypeVar("PassType", bound=type[Pass])

_REGISTRY: dict[str, type[Pass]] = {}
_discovered = False


def register_pass(cls: PassType) -> PassType:
    """Class decorator: make a pass available by its ``name`` in pipelines."""
    name = getattr(cls, "name", None)
    if (
        not isinstance(name, str)
        or not name
        or not name.replace("-", "").replace("_", "").isalnum()
    ):
        raise PipelineError(
            f"pass class {cls.__name__} needs a name made of letters, digits, - or _"
        )
    existing = _REGISTRY.get(name)
    if existing is not None and existing.__qualname__ != cls.__qualname__:
        raise PipelineError(
            f"two passes are called {name!r}: {existing.__module__} and {cls.__module__}"
        )
    _REGISTRY[name] = cls
    return cls


def registered_passes() -> dict[str, type[Pass]]:
    """Every registered pass by name: built-ins, then installed plugins."""
    _discover()
    return dict(sorted(_REGISTRY.items()))


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    importlib.import_module("tierplan.passes")
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry.load()
        except Exception as error:
            log.warning("cannot load pass plugin %s: %s", entry.name, error)


def load_plugin(spec: str) -> None:
    """Import a plugin that registers passes: a module name, or a path to a ``.py`` file."""
    _discover()
    try:
        if spec.endswith(".py"):
            path = Path(spec)
            module_name = f"tierplan_plugin_{path.stem}"
            loader_spec = importlib.util.spec_from_file_location(module_name, path)
            if loader_spec is None or loader_spec.loader is None or not path.is_file():
                raise InputError(f"cannot load plugin {spec!r}: no such file")
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[module_name] = module
            loader_spec.loader.exec_module(module)
        else:
            importlib.import_module(spec)
    except TierplanError:
        raise
    except Exception as error:
        raise InputError(f"cannot load plugin {spec!r}: {type(error).__name__}: {error}") from None


# -- pipelines ------------------------------------------------------------------


def parse_pipeline(text: str | Sequence[str]) -> list[Pass]:
    """Build passes from ``"schedule,liveness,pack{strategy=greedy-size},evaluate"``.

    A sequence of such elements works too. Options go in braces, separated by
    spaces or commas; values are converted to the option's type (sizes such as
    ``512KiB`` are accepted for integer options).
    """
    elements = _split_pipeline(text) if isinstance(text, str) else list(text)
    passes = [_make_pass(element.strip()) for element in elements if element.strip()]
    if not passes:
        raise PipelineError("the pipeline is empty")
    return passes


def _split_pipeline(text: str) -> list[str]:
    elements, depth, current = [], 0, ""
    for char in text:
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth < 0 or depth > 1:
            raise PipelineError(f"unbalanced braces in pipeline {text!r}")
        if char == "," and depth == 0:
            elements.append(current)
            current = ""
        else:
            current += char
    if depth:
        raise PipelineError(f"unbalanced braces in pipeline {text!r}")
    return [*elements, current]


def _make_pass(element: str) -> Pass:
    name, _, rest = element.partition("{")
    name = name.strip()
    passes = registered_passes()
    if name not in passes:
        known = ", ".join(passes)
        raise PipelineError(f"unknown pass {name!r} (registered: {known})")
    cls = passes[name]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    options: dict[str, Any] = {}
    for item in rest.rstrip("}").replace(",", " ").split():
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            allowed = ", ".join(fields) or "none"
            raise PipelineError(f"pass {name!r} has no option {key!r} (options: {allowed})")
        options[key] = _convert(value, fields[key], name)
    return cls(**options)


def _convert(value: str, option: dataclasses.Field[Any], pass_name: str) -> Any:
    kind = option.type if isinstance(option.type, str) else getattr(option.type, "__name__", "str")
    what = f"option {option.name!r} of pass {pass_name!r}"
    try:
        if kind == "bool":
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("true", "1", "yes")
        if kind == "int":
            if not value.lstrip("-").isdigit():
                return parse_size(value, what)
            return bounded_int(int(value), what, -(2**63), 2**63 - 1)
        if kind == "float":
            return finite_number(float(value), what, positive=False)
    except (ValueError, InputError):
        raise PipelineError(f"{what}: cannot read {value!r} as {kind}") from None
    return value


def check_pipeline(passes: Sequence[Pass], facts: Iterable[str] = INITIAL_FACTS) -> None:
    """Fail with a clear message if a pass needs a fact no earlier pass provides."""
    available = set(facts)
    ran: list[str] = []
    for item in passes:
        missing = sorted(item.requires - available)
        if missing:
            providers = sorted(
                name for name, cls in registered_passes().items() if missing[0] in cls.provides
            )
            hint = f"; add {' or '.join(repr(p) for p in providers)} before it" if providers else ""
            raise PipelineError(
                f"pass {item.name!r} requires {missing[0]!r}, which no earlier pass provides "
                f"(pipeline: {', '.join(p.name for p in passes)}){hint}"
            )
        available = (available - item.invalidates) | item.provides
        ran.append(item.name)
    _check_evaluation_is_last(passes)


def _check_evaluation_is_last(passes: Sequence[Pass]) -> None:
    """Refuse a pass that changes the plan after the last pass that evaluated (and validated)
    it: plan.json and the annotated model would describe a plan nobody checked."""
    evaluated = [i for i, item in enumerate(passes) if EVALUATION_FACT in item.provides]
    if not evaluated:
        return
    later = [item for item in passes[evaluated[-1] + 1 :] if EVALUATION_FACT in item.invalidates]
    if later:
        names = ", ".join(p.name for p in passes)
        raise PipelineError(
            f"pass {later[0].name!r} changes the plan after {passes[evaluated[-1]].name!r} "
            f"validated it; run {passes[evaluated[-1]].name!r} again after it "
            f"(pipeline: {names})"
        )


# -- instruments -----------------------------------------------------------------


class PassInstrument(Protocol):
    """Code run around every pass (TVM's idea): dumps, verification, timing."""

    def after_pass(
        self, position: int, item: Pass, ir: IRGraph, result: PassResult, seconds: float
    ) -> None:
        """Called after pass number ``position`` (1-based) ran."""


@dataclass
class DumpAfter:
    """Write the IR after the named passes (``all`` for every pass) as ``NNN_<pass>.json``."""

    names: frozenset[str]
    folder: Path

    def after_pass(
        self, position: int, item: Pass, ir: IRGraph, result: PassResult, seconds: float
    ) -> None:
        """Dump the IR when this pass is one of ``names``."""
        if item.name in self.names or "all" in self.names:
            ir.dump(self.folder / f"{position:03d}_{item.name}.json")


class VerifyEach:
    """Check the IR invariants after every pass (``--verify-each``)."""

    def after_pass(
        self, position: int, item: Pass, ir: IRGraph, result: PassResult, seconds: float
    ) -> None:
        """Raise :class:`InvariantError` naming the pass that broke the IR."""
        try:
            ir.verify()
        except TierplanError as error:
            raise type(error)(f"IR invariant broken after pass {item.name!r}: {error}") from None


@dataclass
class PassTimer:
    """Record how long each pass took (``--time-passes``)."""

    seconds: list[tuple[str, float]] = field(default_factory=list)

    def after_pass(
        self, position: int, item: Pass, ir: IRGraph, result: PassResult, seconds: float
    ) -> None:
        """Append (pass name, seconds)."""
        self.seconds.append((item.name, seconds))


class PassCrash(TierplanError):
    """A pass raised an unexpected exception: a bug, reported with its context."""

    exit_code = 3


@dataclass
class PassManager:
    """Runs a checked pipeline of passes over one IR."""

    passes: list[Pass]
    instruments: list[PassInstrument] = field(default_factory=list)
    on_pass_start: Callable[[int, Pass], None] | None = None

    def __post_init__(self) -> None:
        check_pipeline(self.passes)

    def run(self, ir: IRGraph, context: PassContext) -> list[PassResult]:
        """Run every pass in order; errors name the failing pass and those before it."""
        results = []
        for position, item in enumerate(self.passes, start=1):
            if self.on_pass_start:
                self.on_pass_start(position, item)
            began = time.perf_counter()
            try:
                result = item.run(ir, context)
            except TierplanError as error:
                raise type(error)(
                    f"{error} [in pass {item.name!r}{self._after(position)}]"
                ) from error
            except Exception as error:
                raise PassCrash(
                    f"pass {item.name!r} crashed with {type(error).__name__}: {error}{self._after(position)}"
                ) from error
            if not isinstance(result, PassResult):
                raise PassCrash(
                    f"pass {item.name!r} returned {type(result).__name__}, not a PassResult"
                )
            elapsed = time.perf_counter() - began
            log.info(
                "pass %s: %.3f s%s", item.name, elapsed, "" if result.changed else " (no change)"
            )
            for instrument in self.instruments:
                instrument.after_pass(position, item, ir, result, elapsed)
            results.append(result)
        return results

    def _after(self, position: int) -> str:
        before = [p.name for p in self.passes[: position - 1]]
        return f", after the passes: [{', '.join(before)}]" if before else ""
