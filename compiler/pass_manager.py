"""Passes, their registry, and the pass manager that runs a pipeline of them.

A pass is a small frozen dataclass: its class variables say what it is
(``name``, ``requires``, ``provides``, ``invalidates``), its fields are typed options
that a pipeline string can set (``pack{strategy=greedy-size}``): ``bool``, ``int``,
``float``, ``str``, ``Literal[...]`` choices, unions of them, and
``Annotated[int, Bounds(1)]`` for a range. Every option is checked when the pass is
built, before any pass runs. A pass mutates the IR in place, returns a
:class:`PassResult`, may leave a typed result in the context
(``context.set_result(self, ...)``, read back with ``context.result(PassClass)``), and
may declare post-conditions (``ensures``, checked after every run; ``ensures_costly``,
under ``--verify-each``).

The manager checks, before anything runs, that every pass's options are valid and
its requirements are provided by an earlier pass. It never reorders the pipeline and
never re-runs a pass by itself: a fact a pass invalidates must be provided again by
a later pass the pipeline names. It then runs the passes in order with instruments
around each (dump after, verify each, timing). A pass that fails is reported with
the passes that ran before it.

Example
-------
>>> from dataclasses import dataclass
>>> @register_pass
... @dataclass(frozen=True)
... class CountOps(ResultPass[int]):
...     '''Log how many operators the graph has.'''
...     name = "count-ops"
...     def run(self, ir, context):
...         context.set_result(self, ir.operator_count())
...         return PassResult(changed=False, notes=[f"{ir.operator_count()} ops"])
>>> "count-ops" in registered_passes()
True
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import logging
import math
import sys
import time
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import (
    Annotated,
    Any,
    ClassVar,
    Generic,
    Literal,
    Protocol,
    TypeVar,
    runtime_checkable,
)

from tierplan.compiler.errors import InputError, InvariantError, PipelineError, TierplanError
from tierplan.compiler.inputs import bounded_int, finite_number, shown
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

ResultT = TypeVar("ResultT")


@dataclass(frozen=True, slots=True)
class PassResult:
    """What a pass did: whether it changed the IR, and one-line notes for the user."""

    changed: bool
    notes: Sequence[str] = ()


@runtime_checkable
class Retargets(Protocol):
    """A pass result that changes the target the plan is for (``partition``'s device
    count): the context's own target never changes."""

    def planned_target(self, target: Target) -> Target:
        """``target`` as the plan uses it."""
        ...


@dataclass(slots=True)
class PassContext:
    """What passes may read besides the IR: the target (no pass changes it), the typed
    results passes leave (:meth:`set_result`, :meth:`result`), and ``on_status``, where
    a long pass says what it is doing (a front end's progress display; None: nobody
    listens)."""

    target: Target
    on_status: Callable[[str], None] | None = None
    _results: dict[str, object] = field(default_factory=dict, init=False, repr=False)

    def status(self, text: str) -> None:
        """Tell the front end what the running pass is doing now."""
        if self.on_status is not None:
            self.on_status(text)

    def set_result(self, item: ResultPass[ResultT], result: ResultT) -> None:
        """Keep ``result`` as the result of ``item``'s pass (a later run replaces it)."""
        self._results[item.name] = result

    def result(self, kind: type[ResultPass[ResultT]]) -> ResultT:
        """The result the pass ``kind`` left; :class:`PipelineError` if it left none."""
        if kind.name not in self._results:
            raise PipelineError(f"pass {kind.name!r} left no result (it did not run, or has none)")
        return typing.cast(ResultT, self._results[kind.name])

    def find_result(self, kind: type[ResultPass[ResultT]]) -> ResultT | None:
        """The result the pass ``kind`` left, or ``None``."""
        return typing.cast(ResultT | None, self._results.get(kind.name))

    def planned_target(self) -> Target:
        """The target the plan is for: :attr:`target` as the results that retarget it
        (:class:`Retargets`: ``partition``'s device count) leave it."""
        target = self.target
        for result in self._results.values():
            if isinstance(result, Retargets):
                target = result.planned_target(target)
        return target


# -- typed options ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bounds:
    """The range of a numeric option: ``Annotated[int, Bounds(1)]`` is a count."""

    low: float
    high: float = math.inf

    def holds(self, value: float) -> bool:
        """True when ``value`` is within the bounds."""
        return self.low <= value <= self.high

    def text(self) -> str:
        """``>= 1``, or ``1..64``."""
        low = _number_text(self.low)
        return f">= {low}" if self.high == math.inf else f"{low}..{_number_text(self.high)}"


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


_OPTION_TYPES: dict[type[Pass], dict[str, Any]] = {}


def option_types(cls: type[Pass]) -> dict[str, Any]:
    """The type of each option (dataclass field) of ``cls``, its annotation resolved."""
    if cls not in _OPTION_TYPES:
        hints = typing.get_type_hints(cls, include_extras=True)
        _OPTION_TYPES[cls] = {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    return _OPTION_TYPES[cls]


def type_text(hint: Any) -> str:
    """An option's type as ``tierplan passes`` shows it: ``rows|online``, ``int >= 1``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        limits = " ".join(m.text() for m in hint.__metadata__ if isinstance(m, Bounds))
        return f"{type_text(args[0])} {limits}".strip()
    if origin is Literal:
        return "|".join(str(arg) for arg in args)
    if origin in (typing.Union, types.UnionType):
        return "|".join(type_text(arg) for arg in args)
    return str(getattr(hint, "__name__", hint))


def _matches(value: object, hint: Any) -> bool:
    """True when ``value`` is of the option type ``hint``, within its bounds."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        bounds = [m for m in hint.__metadata__ if isinstance(m, Bounds)]
        return _matches(value, args[0]) and all(b.holds(value) for b in bounds)  # type: ignore[arg-type]
    if origin is Literal:
        return any(type(value) is type(arg) and value == arg for arg in args)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return math.isfinite(value)
    return not isinstance(hint, type) or isinstance(value, hint)


def _convert(text: str, hint: Any) -> object:
    """``text`` read as a value of the option type ``hint``; ``ValueError`` if it is none.

    Integers may be written as sizes (``512KiB``); booleans as true/false, 1/0 or
    yes/no; a union takes the first of its types that reads the text.
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        return _convert(text, args[0])
    if origin is Literal:
        for arg in args:
            if str(arg) == text:
                return arg
        raise ValueError(text)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            try:
                return _convert(text, arg)
            except (ValueError, InputError):
                continue
        raise ValueError(text)
    if hint is bool:
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(text)
        return text.lower() in ("true", "1", "yes")
    if hint is int:
        if not text.lstrip("-").isdigit():
            return parse_size(text, "option")
        return bounded_int(int(text), "option", -(2**63), 2**63 - 1)
    if hint is float:
        return finite_number(float(text), "option", positive=False)
    return text


def option_error(pass_name: str, option: str, value: object, hint: Any) -> PipelineError:
    """``pack{workers=0}: expected int >= 1``: the one line for a bad option value."""
    written = value if isinstance(value, str) else shown(value)
    expected = type_text(hint)
    if typing.get_origin(hint) is Literal:
        *first, last = [repr(str(arg)) for arg in typing.get_args(hint)]
        expected = f"{', '.join(first)} or {last}" if first else last
    return PipelineError(f"{pass_name}{{{option}={written}}}: expected {expected}")


# -- passes ---------------------------------------------------------------------------


class PostconditionError(InvariantError):
    """A pass did not deliver what its ``ensures`` promises: a bug in that pass."""


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
        Facts it destroys when it changes the graph (a later pass must provide them
        again: the manager refuses a pipeline that needs them and does not).
    """

    name: ClassVar[str]
    requires: ClassVar[frozenset[str]] = frozenset()
    provides: ClassVar[frozenset[str]] = frozenset()
    invalidates: ClassVar[frozenset[str]] = frozenset()

    def __post_init__(self) -> None:
        """Options are checked when the pass is built, before any pass runs."""
        self.validate_options()

    def validate_options(self) -> None:
        """Raise :class:`PipelineError` if an option is not of its type (within its
        bounds), or :meth:`check_options` refuses it."""
        for option, hint in option_types(type(self)).items():
            value = getattr(self, option)
            if not _matches(value, hint):
                raise option_error(self.name, option, value, hint)
        self.check_options()

    def check_options(self) -> None:
        """What the option types cannot say (a spelling, options that exclude each
        other): raise :class:`PipelineError`. By default there is nothing more."""

    def run(self, ir: IRGraph, context: PassContext) -> PassResult:
        """Transform or annotate ``ir`` in place."""
        raise NotImplementedError

    def ensures(self, ir: IRGraph, context: PassContext) -> None:
        """Post-condition checked after every run of the pass, so keep it cheap: raise
        :class:`PostconditionError` saying what the pass did not deliver."""

    def ensures_costly(self, ir: IRGraph, context: PassContext) -> None:
        """Post-condition checked only under ``--verify-each`` (it may cost as much as
        the pass itself): raise :class:`PostconditionError`."""

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


@dataclass(frozen=True)
class ResultPass(Pass, Generic[ResultT]):
    """A pass that leaves a typed result for the user: it calls
    ``context.set_result(self, result)``, and ``context.result(ThePass)`` returns it
    as a ``ResultT``."""


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
    spaces or commas; values are read as the option's type (sizes such as
    ``512KiB`` are accepted for integer options) and checked as the pass is built.
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
    options: dict[str, str] = {}
    for item in rest.rstrip("}").replace(",", " ").split():
        key, sep, value = item.partition("=")
        if not sep:
            raise PipelineError(f"pass {name!r}: option {key!r} needs a value ({key}=...)")
        options[key] = value
    return _built(passes[name], options)


def _built(cls: type[Pass], written: Mapping[str, object], base: Pass | None = None) -> Pass:
    """A ``cls`` pass with the options ``written`` (text is read as the option's type)
    over ``base``'s (or the defaults)."""
    types_of = option_types(cls)
    values: dict[str, object] = {}
    for option, value in written.items():
        if option not in types_of:
            allowed = ", ".join(types_of) or "none"
            raise PipelineError(f"pass {cls.name!r} has no option {option!r} (options: {allowed})")
        hint = types_of[option]
        try:
            values[option] = _convert(value, hint) if isinstance(value, str) else value
        except (ValueError, InputError):
            raise option_error(cls.name, option, value, hint) from None
    return dataclasses.replace(base, **values) if base is not None else cls(**values)


def with_options(item: Pass, options: Mapping[str, object]) -> Pass:
    """``item`` with ``options`` changed (text is read as each option's type, as in a
    pipeline string), checked like any pass."""
    return _built(type(item), options, item)


def check_pipeline(passes: Sequence[Pass], facts: Iterable[str] = INITIAL_FACTS) -> None:
    """Fail with a clear message if a pass has a bad option, or needs a fact no earlier
    pass provides (facts a pass invalidates are gone until a later pass provides them)."""
    for item in passes:
        item.validate_options()  # again: a pass may override __post_init__
    available = set(facts)
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


# -- running passes --------------------------------------------------------------------


class PassCrash(TierplanError):
    """A pass raised an unexpected exception: a bug, reported with its context."""

    exit_code = 3


def run_pass(
    item: Pass, ir: IRGraph, context: PassContext, before: Sequence[str] = ()
) -> PassResult:
    """Run ``item``, then check its :meth:`~Pass.ensures`; errors name the pass (and
    ``before``, the passes that ran before it)."""
    after = _after(before)
    try:
        result = item.run(ir, context)
    except TierplanError as error:
        raise type(error)(f"{error} [in pass {item.name!r}{after}]") from error
    except Exception as error:
        raise PassCrash(
            f"pass {item.name!r} crashed with {type(error).__name__}: {error}{after}"
        ) from error
    if not isinstance(result, PassResult):
        raise PassCrash(f"pass {item.name!r} returned {type(result).__name__}, not a PassResult")
    _ensure(item.ensures, item, ir, context, after)
    return result


def _after(before: Sequence[str]) -> str:
    return f", after the passes: [{', '.join(before)}]" if before else ""


def _ensure(
    check: Callable[[IRGraph, PassContext], None],
    item: Pass,
    ir: IRGraph,
    context: PassContext,
    after: str = "",
) -> None:
    """Run one of ``item``'s post-conditions; a broken one names the pass."""
    try:
        check(ir, context)
    except PostconditionError as error:
        raise PostconditionError(
            f"pass {item.name!r} did not ensure what it promises: {error}{after}"
        ) from None
    except Exception as error:
        raise PassCrash(
            f"the post-condition of pass {item.name!r} crashed with "
            f"{type(error).__name__}: {error}{after}"
        ) from error


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


@dataclass
class VerifyEach:
    """After every pass (``--verify-each``), check the IR invariants and the pass's
    costly post-condition (:meth:`Pass.ensures_costly`)."""

    context: PassContext

    def after_pass(
        self, position: int, item: Pass, ir: IRGraph, result: PassResult, seconds: float
    ) -> None:
        """Raise :class:`InvariantError` naming the pass that broke the IR."""
        try:
            ir.verify()
        except TierplanError as error:
            raise type(error)(f"IR invariant broken after pass {item.name!r}: {error}") from None
        _ensure(item.ensures_costly, item, ir, self.context)


@dataclass
class PassTimer:
    """Record how long each pass took (``--time-passes``)."""

    seconds: list[tuple[str, float]] = field(default_factory=list)

    def after_pass(
        self, position: int, item: Pass, ir: IRGraph, result: PassResult, seconds: float
    ) -> None:
        """Append (pass name, seconds)."""
        self.seconds.append((item.name, seconds))


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
            before = [p.name for p in self.passes[: position - 1]]
            result = run_pass(item, ir, context, before)
            elapsed = time.perf_counter() - began
            log.info(
                "pass %s: %.3f s%s", item.name, elapsed, "" if result.changed else " (no change)"
            )
            for instrument in self.instruments:
                instrument.after_pass(position, item, ir, result, elapsed)
            results.append(result)
        return results
