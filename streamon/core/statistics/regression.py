"""Regression performance (design.md §6): the mergeable state and the statistics read from it.

:class:`RegressionState` holds, for a set of labelled predictions ``p`` with labels ``y``,
exact integer sums (see :mod:`streamon.core.state.exact`): the count, ``Σ(p−y)``,
``Σ|p−y|``, ``Σ(p−y)²``, ``Σy``, ``Σy²``, ``Σ|p−y|/|y|`` over ``y ≠ 0`` with the count of
``y = 0`` rows, and a :class:`~streamon.core.state.sketch.LogSketch` of ``|p−y|``. The
difference ``p − y`` is never rounded: it is the difference of the two exact unit counts,
so every sum over it is the real sum. The state merges by integer addition, so 1 and N
workers hold identical ints and read bit-identical floats, and ``add(..., sign=-1)``
retracts a corrected label exactly.

Each statistic rounds once, at the read: MAE, RMSE (a correctly rounded square root of the
exact mean square), MAPE (a fraction, as scikit-learn's), R² and the mean error
(prediction − label, the bias). Undefined values are NaN (see :func:`r2` for
``SS_tot = 0``). :func:`regression_degradation` compares them with a baseline in the
convention of :mod:`streamon.core.statistics.degradation` (positive = worse).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from streamon.core.state import exact
from streamon.core.state.sketch import LogSketch
from streamon.core.statistics.degradation import Degradation, Severity, degradation

__all__ = [
    "LOWER_IS_BETTER",
    "RESIDUAL_QUANTILES",
    "RegressionState",
    "mae",
    "mape",
    "mean_error",
    "r2",
    "regression_degradation",
    "regression_metrics",
    "residual_quantiles",
    "rmse",
]

RESIDUAL_QUANTILES = (0.5, 0.9, 0.99)
LOWER_IS_BETTER = frozenset({"mae", "rmse", "mape", "mean_error"})  # mean_error: by its magnitude

_VERSION = 1
_ONE = 1 << exact.ULP_SHIFT  # one, in units of 2**-1074
_MAX_FLOAT = sys.float_info.max
# The exact sums, in units of 2**-1074 except the squares (2**-2148).
_SUMS = (
    "error_sum",
    "abs_error_sum",
    "squared_error_sum",
    "label_sum",
    "label_square_sum",
    "relative_error_sum",
)
_COUNTS = ("n", "zero_labels")
_NON_NEGATIVE = ("abs_error_sum", "squared_error_sum", "label_square_sum", "relative_error_sum")


def _div(num: int, den: int) -> float:
    """``num / den`` rounded once (Python's int true division); past the largest float, an infinity."""
    try:
        return num / den
    except OverflowError:
        return math.inf if (num > 0) == (den > 0) else -math.inf


def _sqrt_div(num: int, den: int, shift: int) -> float:
    """``sqrt(num / den) * 2**-shift`` correctly rounded, for ``num >= 0`` and ``den > 0``.

    ``r = isqrt(num * 4**k // den)`` is the floor of ``2**k * sqrt(num / den)``; with ``k``
    chosen so that ``r`` has at least 55 bits, setting its last bit when the root is inexact
    keeps the round bit and makes the sticky bit right, so the one division rounds correctly.

    >>> _sqrt_div(2, 1, 0) == math.sqrt(2), _sqrt_div(9, 4, 1)
    (True, 0.75)
    """
    k = max(0, 56 - (num.bit_length() - den.bit_length()) // 2)
    scaled = num << (2 * k)
    r = math.isqrt(scaled // den)
    if r * r * den != scaled:
        r |= 1
    return _div(r, 1 << (k + shift))


def _relative_units(abs_diff: list[int], abs_label: list[int]) -> int:
    """Exact sum of ``|p−y| / |y|``, each row's ratio rounded once to a float (from the exact
    difference), so that a row's term does not depend on the batch it came in."""
    ratios = []
    for d, y in zip(abs_diff, abs_label, strict=True):
        try:
            ratios.append(d / y)
        except OverflowError:  # a relative error beyond the largest float (a label near 0)
            ratios.append(_MAX_FLOAT)
    return exact.total(ratios)


@dataclass(eq=True)
class RegressionState:
    """Mergeable, exact state of regression performance over labelled predictions.

    Unit sums are Python ints: ``error_sum``, ``abs_error_sum``, ``label_sum`` and
    ``relative_error_sum`` in units of ``2**-1074``; ``squared_error_sum`` and
    ``label_square_sum`` in units of ``2**-2148``. ``relative_error_sum`` covers the rows
    with a non-zero label; ``zero_labels`` counts the others. ``residuals`` sketches ``|p−y|``.

    >>> s = RegressionState(); s.add([3.0, 5.0, 2.5], [2.5, 5.0, 3.0])
    >>> s.n, exact.to_float(s.abs_error_sum), mae(s)
    (3, 1.0, 0.3333333333333333)
    >>> t = s.copy(); t.add([3.0], [2.5], sign=-1); t.n, t == s
    (2, False)
    >>> t.add([3.0], [2.5]); t == s  # retracting and adding back restores the very same ints
    True
    >>> RegressionState.from_json(s.to_json()) == s
    True
    """

    n: int = 0
    error_sum: int = 0
    abs_error_sum: int = 0
    squared_error_sum: int = 0
    label_sum: int = 0
    label_square_sum: int = 0
    relative_error_sum: int = 0
    zero_labels: int = 0
    residuals: LogSketch = field(default_factory=LogSketch)

    @property
    def is_empty(self) -> bool:
        """True when no labelled prediction is held.

        >>> RegressionState().is_empty
        True
        """
        return self.n == 0

    def add(self, predictions: npt.ArrayLike, labels: npt.ArrayLike, sign: int = 1) -> None:
        """Add (``sign=1``) or retract (``sign=-1``) labelled predictions, row by row.

        Values must be finite (ValueError otherwise). Retracting rows that were never added
        raises ValueError when a count, a non-negative sum or the sketch would go negative;
        the state is then unchanged.

        >>> s = RegressionState(); s.add([1.0, 2.0], [1.5, 0.0]); s.zero_labels, mape(s)
        (1, 0.3333333333333333)
        >>> s.add([1.0, 2.0], [1.5, 0.0], sign=-1); s == RegressionState()
        True
        """
        if sign not in (1, -1):
            raise ValueError(f"sign must be 1 or -1, got {sign!r}")
        p = np.asarray(predictions, dtype=np.float64).ravel()
        y = np.asarray(labels, dtype=np.float64).ravel()
        if p.shape != y.shape:
            raise ValueError(f"{p.size} predictions but {y.size} labels")
        batch = RegressionState(residuals=LogSketch(self.residuals.relative_accuracy))
        up, uy = exact.units(p), exact.units(y)
        diff = [a - b for a, b in zip(up, uy, strict=True)]
        abs_diff = [abs(d) for d in diff]
        nonzero = [(d, abs(b)) for d, b in zip(abs_diff, uy, strict=True) if b]
        batch.n = p.size
        batch.error_sum = sum(diff)
        batch.abs_error_sum = sum(abs_diff)
        batch.squared_error_sum = sum(d * d for d in diff)
        batch.label_sum = sum(uy)
        batch.label_square_sum = sum(b * b for b in uy)
        batch.relative_error_sum = _relative_units([d for d, _ in nonzero], [b for _, b in nonzero])
        batch.zero_labels = p.size - len(nonzero)
        with np.errstate(over="ignore"):  # a difference past the largest float: the top bucket
            # One rounding of the exact difference, the same value as abs_diff's float.
            batch.residuals.add(np.abs(p - y))
        if sign > 0:
            self += batch
        else:
            self -= batch

    def _combine(self, other: RegressionState, sign: int) -> None:
        counts = {name: getattr(self, name) + sign * getattr(other, name) for name in _COUNTS}
        if min(counts.values()) < 0 or counts["zero_labels"] > counts["n"]:
            raise ValueError("cannot subtract a RegressionState that is not contained in this one")
        sums = {name: getattr(self, name) + sign * getattr(other, name) for name in _SUMS}
        if min(sums[name] for name in _NON_NEGATIVE) < 0:
            raise ValueError("cannot subtract a RegressionState that is not contained in this one")
        if sign > 0:
            self.residuals += other.residuals  # raises (unchanged) on a different relative accuracy
        else:
            self.residuals -= other.residuals  # raises (unchanged) when not contained
        for name, value in (counts | sums).items():
            setattr(self, name, value)

    def __iadd__(self, other: RegressionState) -> RegressionState:
        if not isinstance(other, RegressionState):
            return NotImplemented
        self._combine(other, 1)
        return self

    def __isub__(self, other: RegressionState) -> RegressionState:
        if not isinstance(other, RegressionState):
            return NotImplemented
        self._combine(other, -1)
        return self

    def __add__(self, other: RegressionState) -> RegressionState:
        result = self.copy()
        result += other
        return result

    def __sub__(self, other: RegressionState) -> RegressionState:
        result = self.copy()
        result -= other
        return result

    def copy(self) -> RegressionState:
        """An independent copy (ints are immutable; the sketch is copied)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["residuals"] = self.residuals.copy()
        return RegressionState(**values)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form: counts as numbers, unit sums as hex strings, the sketch as hex bytes.

        >>> s = RegressionState(); s.add([1.0], [0.5]); d = s.to_json()
        >>> d["n"], d["abs_error_sum"] == hex(1 << 1073)
        (1, True)
        """
        doc: dict[str, Any] = {"v": _VERSION}
        doc |= {name: getattr(self, name) for name in _COUNTS}
        doc |= {name: hex(getattr(self, name)) for name in _SUMS}
        doc["residuals"] = self.residuals.to_bytes().hex()
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> RegressionState:
        """Decode :meth:`to_json` output; ValueError on a malformed document.

        >>> RegressionState.from_json({"v": 2})
        Traceback (most recent call last):
        ...
        ValueError: unsupported RegressionState format version 2 (this build reads 1)
        """
        if doc.get("v") != _VERSION:
            raise ValueError(
                f"unsupported RegressionState format version {doc.get('v')!r} (this build reads 1)"
            )
        try:
            values: dict[str, Any] = {name: doc[name] for name in _COUNTS}
            if not all(type(v) is int and v >= 0 for v in values.values()):
                raise ValueError("counts must be non-negative integers")
            values |= {name: int(doc[name], 16) for name in _SUMS}
            values["residuals"] = LogSketch.from_bytes(bytes.fromhex(doc["residuals"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed RegressionState: {exc}") from exc
        state = cls(**values)
        if state.zero_labels > state.n or state.residuals.count != state.n:
            raise ValueError("malformed RegressionState: inconsistent counts")
        return state


def mae(state: RegressionState) -> float:
    """Mean absolute error ``Σ|p−y| / n``; NaN when empty.

    >>> s = RegressionState(); s.add([1.0, 4.0], [2.0, 2.0]); mae(s)
    1.5
    """
    return _div(state.abs_error_sum, state.n * _ONE) if state.n else math.nan


def rmse(state: RegressionState) -> float:
    """Root mean squared error, the correctly rounded ``sqrt(Σ(p−y)² / n)``; NaN when empty.

    The root is taken of the exact mean, so it stays finite where the mean square alone
    would overflow a float (errors near ``1e200``).

    >>> s = RegressionState(); s.add([1.0, 4.0], [2.0, 2.0]); rmse(s) == math.sqrt(2.5)
    True
    """
    if not state.n:
        return math.nan
    return _sqrt_div(state.squared_error_sum, state.n, exact.ULP_SHIFT)


def mape(state: RegressionState) -> float:
    """Mean absolute percentage error as a fraction: ``Σ|p−y|/|y| / m`` over the ``m`` rows with
    ``y ≠ 0`` (the others are excluded and counted in ``zero_labels``); NaN when ``m = 0``.

    scikit-learn instead divides by ``max(|y|, eps)``, so its value explodes with a zero label.

    >>> s = RegressionState(); s.add([110.0, 90.0, 5.0], [100.0, 100.0, 0.0]); mape(s), s.zero_labels
    (0.1, 1)
    """
    m = state.n - state.zero_labels
    return _div(state.relative_error_sum, m * _ONE) if m else math.nan


def mean_error(state: RegressionState) -> float:
    """Mean of ``prediction − label`` (the bias; positive = over-prediction); NaN when empty.

    >>> s = RegressionState(); s.add([1.0, 4.0], [2.0, 2.0]); mean_error(s)
    0.5
    """
    return _div(state.error_sum, state.n * _ONE) if state.n else math.nan


def r2(state: RegressionState) -> float:
    """Coefficient of determination ``1 − SS_res / SS_tot``, rounded once from exact integers.

    ``SS_tot = Σy² − (Σy)²/n`` is formed as the integer ``n·Σy² − (Σy)²`` (no cancellation),
    so R² is ``(n·Σy² − (Σy)² − n·SS_res) / (n·Σy² − (Σy)²)`` in one division. NaN when
    ``SS_tot = 0`` (fewer than two rows, or a constant label): it is undefined there, whereas
    scikit-learn's ``r2_score`` returns 1.0 (perfect predictions) or 0.0 by default
    (``force_finite=True``) and NaN / ``-inf`` with ``force_finite=False``.

    >>> s = RegressionState(); s.add([2.5, 0.0, 2.0, 8.0], [3.0, -0.5, 2.0, 7.0]); round(r2(s), 6)
    0.948608
    >>> t = RegressionState(); t.add([1.0, 2.0], [3.0, 3.0]); r2(t)
    nan
    """
    tot = state.n * state.label_square_sum - state.label_sum * state.label_sum  # n · SS_tot, exact
    if not state.n or tot == 0:
        return math.nan
    return _div(tot - state.n * state.squared_error_sum, tot)


def residual_quantiles(
    state: RegressionState, quantiles: Iterable[float] = RESIDUAL_QUANTILES
) -> dict[str, float]:
    """Quantiles of the absolute error from the sketch, keyed by ``str(q)`` (``"0.5"``, ...).

    Each is ``np.quantile(|p−y|, q, method="lower")`` within the sketch's relative accuracy
    (default 1%) for errors in ``[1e-9, 1e15]``; smaller errors read as 0, larger ones as
    the sketch's top bucket. NaN when empty.

    >>> s = RegressionState(); s.add(np.arange(100.0), np.zeros(100)); q = residual_quantiles(s)
    >>> sorted(q), abs(q["0.9"] - 89.0) <= 0.01 * 89.0
    (['0.5', '0.9', '0.99'], True)
    """
    qs = [float(q) for q in quantiles]
    values = state.residuals.quantile(np.array(qs))
    return {str(q): float(v) for q, v in zip(qs, values, strict=True)}


def regression_metrics(state: RegressionState) -> dict[str, float]:
    """Every regression statistic of ``state``: ``mae``, ``rmse``, ``mape``, ``r2``, ``mean_error``.

    >>> s = RegressionState(); s.add([1.0, 2.0, 3.0], [1.0, 2.0, 4.0]); m = regression_metrics(s)
    >>> sorted(m), m["mae"], m["r2"]
    (['mae', 'mape', 'mean_error', 'r2', 'rmse'], 0.3333333333333333, 0.7857142857142857)
    """
    return {
        "mae": mae(state),
        "rmse": rmse(state),
        "mape": mape(state),
        "r2": r2(state),
        "mean_error": mean_error(state),
    }


def regression_degradation(
    current: Mapping[str, float], baseline: Mapping[str, float], medium: float = 0.05, high: float = 0.10
) -> dict[str, Degradation]:
    """Relative change against a baseline, positive = worse (the degradation convention).

    ``(current − baseline) / |baseline|`` for ``mae``, ``rmse`` and ``mape`` (lower is
    better); ``(baseline − current) / |baseline|`` for ``r2`` and any other metric. The
    bias (``mean_error``) is compared by its growth in units of the baseline's MAE,
    ``(|bias| − |bias₀|) / MAE₀``, and its record holds the magnitudes: a well-calibrated
    baseline has a bias near 0, and a change relative to that would be noise (and NaN at
    exactly 0). NaN (severity "none") with a NaN value or a zero baseline; for the bias,
    without a baseline MAE.

    >>> now = {"mae": 1.2, "r2": 0.74, "mean_error": -0.3}
    >>> d = regression_degradation(now, {"mae": 1.0, "r2": 0.8, "mean_error": 0.2})
    >>> [(k, round(v.relative_drop, 3), v.severity) for k, v in sorted(d.items())]
    [('mae', 0.2, 'high'), ('mean_error', 0.1, 'medium'), ('r2', 0.075, 'medium')]
    """
    rest = {k: v for k, v in current.items() if k != "mean_error"}
    out = degradation(rest, baseline, medium, high, lower_is_better=LOWER_IS_BETTER)
    if "mean_error" in current and "mean_error" in baseline:
        now, base = abs(current["mean_error"]), abs(baseline["mean_error"])
        scale = baseline.get("mae", math.nan)
        drop = (now - base) / scale if scale > 0 and math.isfinite(scale) else math.nan
        severity: Severity = "high" if drop > high else "medium" if drop > medium else "none"
        out["mean_error"] = Degradation("mean_error", now, base, drop, severity)
    return out


# ---------------------------------------------------------------------- in a BucketSummary
# A regression model's state lives in the generic containers of a BucketSummary, so it
# merges, subtracts, travels in partials and windows exactly like a binary model's:
SUMS_KEY = "regression"  # summary.sums: the exact sums of _SUMS, in that order
COUNTS_KEY = "regression"  # summary.counts: [n, zero_labels] of the labelled predictions
RESIDUALS = "output:residual"  # summary.sketches: |prediction - label| (residual quantiles)
PREDICTION = "output:prediction"  # summary.sketches: every prediction's value (prediction drift)
TARGET = "output:target"  # summary.sketches: every label's value (target drift)
RETRACTED = ":retracted"  # suffix: the values a corrected label took back (see add_labelled)


def add_labelled(summary: Any, predictions: npt.ArrayLike, labels: npt.ArrayLike, sign: int = 1) -> None:
    """Count labelled predictions of a regression model into ``summary`` (``sign=-1`` retracts).

    A retraction's values go to the ``:retracted`` sketches rather than out of the sketches:
    the summary may be a partial that never held the labels it retracts (they were counted
    into an earlier one), and a sketch holds no negative counts. Read the sketches through
    :func:`effective_sketch`. Within one bucket's summary, or any sum of them, every retracted
    value was added before, so the difference is exact.

    >>> from streamon.core.state.summary import BucketSummary
    >>> whole, a, b = BucketSummary(), BucketSummary(), BucketSummary()
    >>> add_labelled(whole, [3.0, 5.0, 2.5], [2.5, 5.0, 0.0])
    >>> add_labelled(a, [3.0], [2.5]); add_labelled(b, [5.0, 2.5], [5.0, 0.0])
    >>> a += b; a == whole, state_of(whole).zero_labels, mae(state_of(whole))
    (True, 1, 1.0)
    >>> later = BucketSummary(); add_labelled(later, [3.0], [2.5], sign=-1)  # corrected later
    >>> a += later; state_of(a).n, mae(state_of(a)), effective_sketch(a, TARGET).count
    (2, 1.25, 2)
    """
    part = RegressionState()
    part.add(predictions, labels)
    summary._add_sums(SUMS_KEY, [getattr(part, name) for name in _SUMS], sign)
    summary._add(COUNTS_KEY, np.array([sign * part.n, sign * part.zero_labels], dtype=np.int64))
    suffix = "" if sign > 0 else RETRACTED
    residuals = summary.sketches.get(RESIDUALS + suffix)
    if residuals is None:
        residuals = summary.sketches[RESIDUALS + suffix] = LogSketch(part.residuals.relative_accuracy)
    target = summary.sketches.get(TARGET + suffix)
    if target is None:
        target = summary.sketches[TARGET + suffix] = LogSketch(part.residuals.relative_accuracy)
    residuals += part.residuals
    target.add(np.asarray(labels, dtype=np.float64))


def effective_sketch(summary: Any, name: str) -> LogSketch | None:
    """The sketch ``name`` of ``summary`` less its retracted values (None when it has none)."""
    sketch = summary.sketches.get(name)
    retracted = summary.sketches.get(name + RETRACTED)
    if sketch is None or retracted is None or retracted.is_empty:
        return sketch
    return sketch - retracted


def readable(summary: Any) -> Any:
    """``summary`` with its retracted values taken out of its sketches, for reading by code that
    knows sketches only (feature-drift statistics); ``summary`` itself when nothing was retracted.
    Counts, sums and categories are shared, not copied."""
    retracted = [n for n in (RESIDUALS, TARGET) if n + RETRACTED in summary.sketches]
    if not retracted:
        return summary
    sketches = dict(summary.sketches)
    for name in retracted:
        del sketches[name + RETRACTED]
        sketch = effective_sketch(summary, name)
        if sketch is not None:
            sketches[name] = sketch
    return replace(summary, sketches=sketches)


def state_of(summary: Any) -> RegressionState:
    """The :class:`RegressionState` a summary holds (empty when it holds none)."""
    sums = summary.sums.get(SUMS_KEY)
    counts = summary.counts.get(COUNTS_KEY)
    if sums is None or counts is None:
        return RegressionState()
    state = RegressionState(n=int(counts[0]), zero_labels=int(counts[1]))
    for name, value in zip(_SUMS, sums, strict=True):
        setattr(state, name, value)
    sketch = effective_sketch(summary, RESIDUALS)
    if sketch is not None:
        state.residuals = sketch
    return state
