"""What tierplan accepts from outside: files, numbers and names, and their documented limits.

Every file tierplan reads (model, target, plan, trace) goes through :func:`read_bytes`:
a regular file (a FIFO or a device would block or never end), no larger than its
limit. Every number read from a file or an option goes through :func:`bounded_int`,
:func:`integer_text` or :func:`finite_number`, so sizes, offsets, steps and counts
fit in int64 and below the limits here, and no NaN or infinity enters a cost model.
A failure is an :class:`InputError` naming the file or option, the field and the value.
"""

from __future__ import annotations

import math
import os
import re
import stat
from pathlib import Path

from tierplan.compiler.errors import InputError

# A tensor, buffer, offset or capacity larger than this is malformed input (256 TiB).
MAX_BYTES = 2**48
# Steps of a schedule or a trace: per-step arrays of this length stay under 100 MB.
MAX_STEPS = 10**7
# Devices of a target or of --devices: partitioning work grows with the count.
MAX_DEVICES = 1024
# File sizes: protobuf's own limit for models; plans of 10^6 buffers fit in 1 GiB.
MAX_MODEL_FILE = 2**31
MAX_PLAN_FILE = 2**30
MAX_TRACE_FILE = 2**30
MAX_TARGET_FILE = 2**20

_DIGITS = re.compile(r"[0-9]{1,20}")
_SHOWN = 60
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")


def shown(value: object) -> str:
    """``repr`` of a value, cut to a readable length (a 5,000-digit number stays one short line)."""
    text = repr(value)
    return text if len(text) <= _SHOWN else f"{text[: _SHOWN - 5]}...{text[-2:]}"


def escape_controls(text: str, keep: str = "") -> str:
    """``text`` with control characters (C0, DEL, C1: ESC, NUL, newline ...) but those
    in ``keep`` written as ``\\xNN``: names from a model or a plan shown on a terminal
    or in XML cannot then move the cursor, set a window title or break the file."""

    def escaped(match: re.Match[str]) -> str:
        char = match.group()
        return char if char in keep else f"\\x{ord(char):02x}"

    return _CONTROLS.sub(escaped, text)


def read_bytes(path: Path, what: str, limit: int) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes.

    ``what`` names the file in errors (``"plan file"``). The file is opened
    non-blocking and checked with ``fstat`` on that descriptor, so a FIFO swapped in
    after a check cannot block and a device such as ``/dev/zero`` is never read.
    """
    where = f"{what} {str(path)!r}"
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise InputError(f"{where} does not exist") from None
    except OSError as error:
        raise InputError(f"cannot read {where}: {error.strerror or error}") from None
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            kind = (
                "a folder: it is not a file"
                if stat.S_ISDIR(status.st_mode)
                else "not a regular file"
            )
            raise InputError(f"{where} is {kind}")
        if status.st_size > limit:
            raise InputError(f"{where} has {status.st_size} bytes, more than the limit {limit}")
        with os.fdopen(descriptor, "rb", closefd=False) as stream:
            data = stream.read(limit + 1)
    except OSError as error:
        raise InputError(f"cannot read {where}: {error.strerror or error}") from None
    finally:
        os.close(descriptor)
    if len(data) > limit:
        raise InputError(f"{where} grew past the limit of {limit} bytes while read")
    return data


def read_text(path: Path, what: str, limit: int) -> str:
    """:func:`read_bytes` decoded as UTF-8."""
    try:
        return read_bytes(path, what, limit).decode()
    except UnicodeDecodeError as error:
        raise InputError(f"{what} {str(path)!r} is not UTF-8 text (byte {error.start})") from None


def bounded_int(value: object, what: str, low: int, high: int) -> int:
    """``value`` if it is an integer (not a bool) in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{what}: expected an integer, got {shown(value)}")
    if not low <= value <= high:
        raise InputError(f"{what}: {shown(value)} is outside {low}..{high}")
    return value


def integer_text(text: str, what: str, low: int, high: int) -> int:
    """An integer written in ASCII digits (no sign, no ``²``), in ``[low, high]``."""
    stripped = text.strip()
    if not _DIGITS.fullmatch(stripped):
        raise InputError(f"{what}: expected a whole number, got {shown(text)}")
    return bounded_int(int(stripped), what, low, high)


def finite_number(value: object, what: str, positive: bool) -> float:
    """``value`` as a float if it is a finite number, positive (or non-negative)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{what}: expected a number, got {shown(value)}")
    number = float(value) if not isinstance(value, int) or abs(value) < 2**1000 else math.inf
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        sign = "positive" if positive else "non-negative"
        raise InputError(f"{what}: expected a finite {sign} number, got {shown(value)}")
    return number
