"""Memory budgets: how ``--budget`` is spelled, what it limits, and how far a plan is from it.

Two spellings, combinable: ``SIZE`` limits each device's activations (everything
but the weights: activations, graph inputs and outputs, tile scratch) in all its
tiers together, as ``benchmarks/rewrites.py`` measures the activation peak;
``TIER=SIZE`` limits one tier on each device, weights included, as a smaller
capacity would (a card with 2 GiB: ``DDR=2GiB``). ``--budget 48MiB``,
``--budget L2=6MiB,DDR=512MiB``, ``--budget 48MiB,L2=4MiB``.

A budget is also given to the passes, through the tiers' ``reserve``: a tier above
device memory (L1, L2) may not be planned past its own limit or the device's, so
tiling makes smaller tiles and ``tiers`` puts fewer tensors in L2 (moving them to
the slower tier). Device memory itself is left at its capacity, so that every
combination gets a plan whose peaks can be compared with the budget.
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from tierplan.compiler.errors import InputError
from tierplan.compiler.inputs import shown
from tierplan.compiler.report.units import human_bytes
from tierplan.compiler.target import Target, parse_size

_TIER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
EXAMPLES = "e.g. --budget 48MiB or --budget L2=6MiB,DDR=512MiB"


@dataclass(frozen=True, slots=True)
class Limit:
    """One limit a plan must respect: ``region`` is ``"<device>"`` (the device's
    activations) or ``"<device>/<tier>"`` (the tier's peak, weights included);
    ``used`` and ``allowed`` are bytes."""

    region: str
    used: int
    allowed: int

    @property
    def ratio(self) -> float:
        """``used / allowed``: at most 1 when the limit is met."""
        return self.used / self.allowed

    def describe(self) -> str:
        """``device 0's activations need 9.4MiB; the budget is 8.0MiB``."""
        where = f"device {self.region}'s activations" if self.activations else self.region
        return f"{where} need {human_bytes(self.used)}; the budget is {human_bytes(self.allowed)}"

    @property
    def activations(self) -> bool:
        """A device's activation limit (weights do not count), not a tier's."""
        return "/" not in self.region


@dataclass(frozen=True, slots=True)
class Budget:
    """Bytes per device (``device``; None: no limit) and per tier on each device."""

    device: int | None = None
    tiers: Mapping[str, int] = dataclasses.field(default_factory=dict)

    @property
    def limited(self) -> bool:
        """True when the budget limits anything."""
        return self.device is not None or bool(self.tiers)

    @property
    def spelled(self) -> str:
        """As on the command line."""
        parts = [human_bytes(self.device)] if self.device is not None else []
        parts += [f"{name}={human_bytes(size)}" for name, size in sorted(self.tiers.items())]
        return ",".join(parts) or "none"

    def check_target(self, target: Target) -> None:
        """Every tier named must be one of the target's."""
        names = [tier.name for tier in target.tiers]
        unknown = sorted(set(self.tiers) - set(names))
        if unknown:
            raise InputError(
                f"--budget: target {target.name!r} has no tier {unknown[0]!r} "
                f"(its tiers: {', '.join(names)})"
            )

    def planning_target(self, target: Target) -> Target:
        """``target`` whose tiers above device memory reserve what the budget forbids."""
        tiers = []
        for tier in target.tiers:
            limits = [self.tiers.get(tier.name), self.device]
            allowed = min([tier.usable, *(limit for limit in limits if limit is not None)])
            if tier is not target.memory_tier and allowed < tier.usable:
                tier = dataclasses.replace(tier, reserve=tier.capacity - allowed)
            tiers.append(tier)
        return dataclasses.replace(target, tiers=tuple(tiers))

    def limits(
        self, peak_bytes: Mapping[str, int], activation_bytes: Mapping[str, int]
    ) -> list[Limit]:
        """Every limit of this budget against a plan's peaks per region (``"<device>/<tier>"``):
        all buffers (``summary.peak_bytes``) and activations only."""
        found = []
        for key, peak in sorted(peak_bytes.items()):
            tier = key.split("/", 1)[1]
            if tier in self.tiers:
                found.append(Limit(key, peak, self.tiers[tier]))
        if self.device is not None:
            found += [
                Limit(device, used, self.device)
                for device, used in sorted(device_totals(activation_bytes).items())
            ]
        return found

    def excess(self, peak_bytes: Mapping[str, int], activation_bytes: Mapping[str, int]) -> float:
        """The largest ``used / allowed`` over the limits (0 without any): at most 1 fits."""
        limits = self.limits(peak_bytes, activation_bytes)
        return max((limit.ratio for limit in limits), default=0.0)


def device_totals(region_bytes: Mapping[str, int]) -> dict[str, int]:
    """Bytes per device: the sum over its regions (``"<device>/<tier>"`` keys)."""
    totals: dict[str, int] = defaultdict(int)
    for key, count in region_bytes.items():
        totals[key.split("/", 1)[0]] += count
    return dict(sorted(totals.items()))


def parse_budget(text: str) -> Budget:
    """Read ``--budget``: ``SIZE`` and/or ``TIER=SIZE`` items separated by commas."""
    device: int | None = None
    tiers: dict[str, int] = {}
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise InputError(f"--budget: cannot read {shown(text)} ({EXAMPLES})")
    for item in items:
        name, sep, size = item.partition("=")
        if not sep:
            if device is not None:
                raise InputError(f"--budget: two sizes per device in {shown(text)} ({EXAMPLES})")
            device = _size(item, "--budget", text)
            continue
        name = name.strip()
        if not _TIER_NAME.match(name):
            raise InputError(f"--budget: {shown(name)} is not a tier name ({EXAMPLES})")
        if name in tiers:
            raise InputError(f"--budget: tier {name} is given twice in {shown(text)}")
        tiers[name] = _size(size, f"--budget {name}", text)
    return Budget(device, tiers)


def _size(value: str, what: str, text: str) -> int:
    try:
        return parse_size(value.strip(), what)
    except InputError:
        raise InputError(
            f"{what}: cannot read size {shown(value.strip())} in {shown(text)} ({EXAMPLES})"
        ) from None
