"""How close a planned run's values are to the reference's."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Difference:
    """Largest errors of ``actual`` against ``expected``, and whether they are within tolerance.

    ``max_rel`` is the largest absolute error over the largest reference magnitude
    (an element-wise ratio is meaningless where the reference is near zero);
    ``cosine`` is the cosine similarity of the two as vectors (1 for two zero
    vectors, NaN when ``actual`` holds a NaN or an infinity the reference has not).
    Floats match when every element satisfies ``|a - e| <= atol + rtol * |e|`` and
    NaN stands where the reference has NaN, or, for a computation in fewer bits than
    the reference (16-bit activations), when ``cosine`` is at least the floor given;
    other types match exactly.
    """

    max_abs: float
    max_rel: float
    matches: bool
    cosine: float = 1.0


def difference(
    actual: np.ndarray,
    expected: np.ndarray,
    rtol: float,
    atol: float,
    cosine_floor: float | None = None,
) -> Difference:
    """Compare two arrays of one shape (a shape mismatch never matches); with
    ``cosine_floor``, floats match by cosine similarity instead of tolerances."""
    if actual.shape != expected.shape:
        return Difference(float("inf"), float("inf"), False, float("nan"))
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
    cosine = _cosine(got, want)
    if cosine_floor is None:
        matches = bool(np.all(errors <= atol + rtol * np.abs(np.nan_to_num(want))))
    else:
        matches = cosine >= cosine_floor
    return Difference(max_abs, max_abs / scale if scale else max_abs, matches, cosine)


def _cosine(got: np.ndarray, want: np.ndarray) -> float:
    """Cosine similarity of two float64 arrays as vectors (NaN and infinity: NaN)."""
    if not (np.isfinite(got).all() and np.isfinite(want).all()):
        same = np.array_equal(got, want, equal_nan=True)
        return 1.0 if same else float("nan")
    norms = float(np.linalg.norm(got)) * float(np.linalg.norm(want))
    if norms == 0.0:
        return 1.0 if not got.any() and not want.any() else 0.0
    return float(np.dot(got.ravel(), want.ravel()) / norms)
