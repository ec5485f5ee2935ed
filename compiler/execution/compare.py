"""How close a planned run's values are to the reference's."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Difference:
    """Largest errors of ``actual`` against ``expected``, and whether they are within tolerance.

    ``max_rel`` is the largest absolute error over the largest reference magnitude
    (an element-wise ratio is meaningless where the reference is near zero).
    Floats match when every element satisfies ``|a - e| <= atol + rtol * |e|`` and
    NaN stands where the reference has NaN; other types match exactly.
    """

    max_abs: float
    max_rel: float
    matches: bool


def difference(actual: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> Difference:
    """Compare two arrays of one shape (a shape mismatch never matches)."""
    if actual.shape != expected.shape:
        return Difference(float("inf"), float("inf"), False)
    if expected.dtype.kind not in "fc" and actual.dtype.kind not in "fc":
        unequal = actual != expected
        count = float(np.count_nonzero(unequal))
        return Difference(count, count / max(1, unequal.size), count == 0)
    got = actual.astype(np.float64)
    want = expected.astype(np.float64)
    both_nan = np.isnan(got) & np.isnan(want)
    errors = np.where(both_nan | (got == want), 0.0, np.abs(got - want))
    errors = np.where(np.isnan(errors), np.inf, errors)
    finite = want[np.isfinite(want)]
    scale = float(np.abs(finite).max()) if finite.size else 0.0
    max_abs = float(errors.max()) if errors.size else 0.0
    matches = bool(np.all(errors <= atol + rtol * np.abs(np.nan_to_num(want))))
    return Difference(max_abs, max_abs / scale if scale else max_abs, matches)
