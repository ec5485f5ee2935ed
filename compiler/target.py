"""The target machine: memory tiers, alignment, compute peaks, devices.

A target is data, not code: a TOML file. Presets ship in ``tierplan.compiler.targets``
(``tierplan targets`` lists them); users pass their own file with ``--target FILE``.
Capacities accept integers (bytes) or strings with a binary unit (``"256KiB"``).
The tiers are listed fastest first; the first is where tiles live, the last is the
device memory that holds everything that is not placed elsewhere.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from tierplan.compiler.errors import InputError
from tierplan.compiler.inputs import (
    MAX_BYTES,
    MAX_DEVICES,
    MAX_TARGET_FILE,
    bounded_int,
    finite_number,
    read_text,
    shown,
)

DEFAULT_TARGET = "ascend-like"

_UNITS = {"": 1, "B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]iB|B)?\s*$")


@dataclass(frozen=True, slots=True)
class Tier:
    """One memory tier: ``capacity`` in bytes, ``bandwidth`` in bytes/s, ``latency`` in s.

    ``reserve`` (optional ``reserve = "16KiB"`` in the TOML) is kept free for the
    runtime: tiling and tier assignment plan within ``usable = capacity - reserve``.
    """

    name: str
    capacity: int
    bandwidth: float
    latency: float
    reserve: int = 0

    @property
    def usable(self) -> int:
        """Bytes the planner may fill: the capacity minus the reserve."""
        return self.capacity - self.reserve


@dataclass(frozen=True, slots=True)
class Target:
    """A target machine (see the module docstring for the file format)."""

    name: str
    tiers: tuple[Tier, ...]
    alignment: int = 64
    devices: int = 1
    link_bandwidth: float = 56e9
    compute: dict[str, float] = field(default_factory=lambda: {"default": 128e12})
    description: str = ""

    def tier(self, name: str) -> Tier:
        """The tier called ``name``."""
        for tier in self.tiers:
            if tier.name == name:
                return tier
        raise KeyError(name)

    @property
    def memory_tier(self) -> Tier:
        """The last, largest tier: where buffers live unless a pass moves them."""
        return self.tiers[-1]

    def align_up(self, nbytes: int) -> int:
        """``nbytes`` rounded up to a multiple of the alignment."""
        return -(-nbytes // self.alignment) * self.alignment

    def peak_flops(self, dtype: str) -> float:
        """Peak FLOP/s for operations on ``dtype``."""
        return self.compute.get(dtype, self.compute.get("default", 1e12))

    def to_json(self) -> dict[str, Any]:
        """The ``target`` object of the plan file."""
        return {
            "name": self.name,
            "alignment": self.alignment,
            "devices": self.devices,
            "tiers": [
                {
                    "name": t.name,
                    "capacity": t.capacity,
                    "bandwidth": t.bandwidth,
                    "latency": t.latency,
                }
                for t in self.tiers
            ],
        }


def parse_size(value: object, what: str) -> int:
    """Bytes from an integer or a string such as ``"256KiB"``, from 1 to ``MAX_BYTES``."""
    if isinstance(value, bool):
        raise InputError(f"{what}: expected a size, got {value!r}")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.match(str(value))
        if not match or len(match.group(1)) > 30:
            raise InputError(f"{what}: cannot read size {shown(value)} (e.g. 262144 or '256KiB')")
        size = int(float(match.group(1)) * _UNITS[match.group(2) or ""])
    if size <= 0:
        raise InputError(f"{what}: size must be positive, got {shown(value)}")
    return bounded_int(size, what, 1, MAX_BYTES)


def preset_names() -> list[str]:
    """Names of the shipped presets, sorted."""
    folder = resources.files("tierplan.compiler.targets")
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_target(name_or_path: str | Path | None = None) -> Target:
    """Load a preset by name, or a user's TOML file by path (default: ``ascend-like``)."""
    spec = str(name_or_path or DEFAULT_TARGET)
    if spec in preset_names():
        text = (resources.files("tierplan.compiler.targets") / f"{spec}.toml").read_text()
        return parse_target(text, spec)
    path = Path(spec)
    if not path.suffix and not path.exists():
        known = ", ".join(preset_names())
        raise InputError(f"unknown target {spec!r} (presets: {known}; or give a .toml file)")
    return parse_target(read_text(path, "target file", MAX_TARGET_FILE), spec)


def parse_target(text: str, source: str) -> Target:
    """Build a :class:`Target` from TOML text; ``source`` names it in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"target {source!r} is not valid TOML: {error}") from None
    where = f"target {source!r}"
    tiers_data = data.get("tiers")
    if not isinstance(tiers_data, list) or not tiers_data:
        raise InputError(f"{where}: needs at least one [[tiers]] table")
    tiers = []
    for index, entry in enumerate(tiers_data):
        if not isinstance(entry, dict) or "name" not in entry:
            raise InputError(f"{where}: tier {index} needs a name")
        tier_where = f"{where}, tier {entry['name']!r}"
        tiers.append(
            Tier(
                name=str(entry["name"]),
                capacity=parse_size(entry.get("capacity"), f"{tier_where} capacity"),
                bandwidth=finite_number(
                    entry.get("bandwidth"), f"{tier_where} bandwidth", positive=True
                ),
                latency=finite_number(
                    entry.get("latency", 0.0), f"{tier_where} latency", positive=False
                ),
                reserve=parse_size(entry["reserve"], f"{tier_where} reserve")
                if "reserve" in entry and entry["reserve"] != 0
                else 0,
            )
        )
        if tiers[-1].reserve >= tiers[-1].capacity:
            raise InputError(f"{tier_where}: reserve must be smaller than the capacity")
    if len({t.name for t in tiers}) != len(tiers):
        raise InputError(f"{where}: tier names must be unique")
    alignment = bounded_int(data.get("alignment", 64), f"{where} alignment", 1, MAX_BYTES)
    if alignment & (alignment - 1):
        raise InputError(f"{where}: alignment must be a power of two, got {alignment!r}")
    devices = bounded_int(data.get("devices", 1), f"{where} devices", 1, MAX_DEVICES)
    compute = data.get("compute", {"default": 128e12})
    if not isinstance(compute, dict):
        raise InputError(f"{where}: [compute] must be a table of FLOP/s per dtype")
    return Target(
        name=str(data.get("name", Path(source).stem)),
        description=str(data.get("description", "")),
        tiers=tuple(tiers),
        alignment=alignment,
        devices=devices,
        link_bandwidth=finite_number(
            data.get("link_bandwidth", 56e9), f"{where} link_bandwidth", positive=True
        ),
        compute={
            str(k): finite_number(v, f"{where} compute.{k}", positive=True)
            for k, v in compute.items()
        },
    )
