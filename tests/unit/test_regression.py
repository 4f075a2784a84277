"""Regression statistics (streamon.core.statistics.regression).

Oracles: scikit-learn's ``mean_absolute_error``, ``mean_squared_error`` (RMSE = its square
root), ``mean_absolute_percentage_error`` and ``r2_score`` at a relative tolerance of 1e-12
on ordinary data; Python's ``fractions`` (the exact real value, rounded once) wherever float
summation loses digits; ``np.quantile`` for the residual quantiles, within the sketch's
relative accuracy.
"""

from __future__ import annotations

import json
import math
import sys
from fractions import Fraction

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    r2_score,
)

from streamon.core.state import exact
from streamon.core.state.sketch import LogSketch
from streamon.core.statistics import regression as reg
from streamon.core.statistics.regression import RegressionState

REL = 1e-12  # against scikit-learn, whose float summation rounds at every step

Floats = npt.NDArray[np.float64]


def _state(p: npt.ArrayLike, y: npt.ArrayLike) -> RegressionState:
    s = RegressionState()
    s.add(p, y)
    return s


def _data(seed: int, n: int = 2000, scale: float = 1.0) -> tuple[Floats, Floats]:
    rng = np.random.default_rng(seed)
    y = rng.lognormal(2.0, 1.0, n) * scale * rng.choice([-1.0, 1.0], n)
    p = y + rng.normal(0.5, 3.0, n) * scale
    return p, y


def _rounded(x: Fraction) -> float:
    """``x`` rounded once to a float; past the largest float, the largest float (the MAPE rule)."""
    try:
        return float(x)
    except OverflowError:
        return sys.float_info.max


def _exact(p: Floats, y: Floats) -> dict[str, Fraction]:
    """The real values of the statistics, from Fractions of the float inputs (without the
    undefined ones: MAPE with every label 0, R² with a constant label)."""
    fp, fy = [Fraction(v) for v in p], [Fraction(v) for v in y]
    n = len(fp)
    d = [a - b for a, b in zip(fp, fy, strict=True)]
    mean_y = sum(fy, Fraction(0)) / n
    ss_tot = sum(((b - mean_y) ** 2 for b in fy), Fraction(0))
    ss_res = sum((e * e for e in d), Fraction(0))
    # MAPE's terms are rounded once per row (the documented rule), then summed exactly.
    rel = [Fraction(_rounded(abs(e) / abs(b))) for e, b in zip(d, fy, strict=True) if b]
    real = {
        "mae": sum(map(abs, d), Fraction(0)) / n,
        "mse": ss_res / n,
        "mean_error": sum(d, Fraction(0)) / n,
    }
    if rel:
        real["mape"] = sum(rel, Fraction(0)) / len(rel)
    if ss_tot:
        real["r2"] = 1 - ss_res / ss_tot
    return real


def _is_correctly_rounded_sqrt(value: float, square: Fraction) -> bool:
    """``value`` is the float nearest to ``sqrt(square)``: the midpoints to its neighbours bracket it."""
    lo = (Fraction(value) + Fraction(math.nextafter(value, 0.0))) / 2
    hi = (Fraction(value) + Fraction(math.nextafter(value, math.inf))) / 2
    return lo * lo <= square <= hi * hi


# ---------------------------------------------------------------------- oracles


@pytest.mark.parametrize(("seed", "scale"), [(0, 1.0), (1, 1e-6), (2, 1e9), (3, 1.0)])
def test_statistics_match_scikit_learn(seed: int, scale: float) -> None:
    p, y = _data(seed, scale=scale)
    s = _state(p, y)
    assert s.n == len(y) and s.zero_labels == 0
    assert reg.mae(s) == pytest.approx(mean_absolute_error(y, p), rel=REL)
    assert reg.rmse(s) == pytest.approx(math.sqrt(mean_squared_error(y, p)), rel=REL)
    assert reg.mape(s) == pytest.approx(mean_absolute_percentage_error(y, p), rel=REL)
    assert reg.r2(s) == pytest.approx(r2_score(y, p), rel=REL)
    assert reg.mean_error(s) == pytest.approx(np.mean(p - y), rel=1e-9)  # a mean near 0: cancellation
    assert reg.regression_metrics(s) == {
        "mae": reg.mae(s),
        "rmse": reg.rmse(s),
        "mape": reg.mape(s),
        "r2": reg.r2(s),
        "mean_error": reg.mean_error(s),
    }


@settings(max_examples=150, derandomize=True)
@given(
    st.lists(
        st.tuples(st.floats(-1e6, 1e6, allow_nan=False), st.floats(-1e6, 1e6, allow_nan=False)),
        min_size=1,
        max_size=30,
    )
)
def test_every_statistic_is_its_real_value_rounded_once(rows: list[tuple[float, float]]) -> None:
    p, y = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
    s = _state(p, y)
    real = _exact(p, y)
    assert reg.mae(s) == float(real["mae"])
    assert reg.mean_error(s) == float(real["mean_error"])
    assert _is_correctly_rounded_sqrt(reg.rmse(s), real["mse"])
    if "mape" in real:
        assert reg.mape(s) == float(real["mape"])
    else:
        assert math.isnan(reg.mape(s)) and s.zero_labels == s.n
    if "r2" in real:
        assert reg.r2(s) == float(real["r2"])
    else:
        assert math.isnan(reg.r2(s))


@settings(max_examples=300, derandomize=True)
@given(st.integers(0, 2**4000), st.integers(1, 2**70), st.integers(0, 1074))
def test_the_square_root_is_correctly_rounded(num: int, den: int, shift: int) -> None:
    got = reg._sqrt_div(num, den, shift)
    square = Fraction(num, den) / 4**shift
    if math.isinf(got):
        assert square > Fraction(1.7976931348623157e308) ** 2
    elif got == 0.0:
        assert square <= Fraction(5e-324 / 2) ** 2
    else:
        assert _is_correctly_rounded_sqrt(got, square)


# ---------------------------------------------------------------------- exactness


def test_any_split_in_any_order_gives_identical_ints_and_bit_identical_floats() -> None:
    p, y = _data(7, n=3000)
    whole = _state(p, y)
    rng = np.random.default_rng(11)
    for workers in (1, 3, 7):
        order = rng.permutation(len(y))
        parts = np.array_split(order, np.sort(rng.choice(np.arange(1, len(y)), workers - 1, replace=False)))
        states = [_state(p[idx], y[idx]) for idx in parts]
        merged = RegressionState()
        for i in rng.permutation(len(states)):
            merged += states[i]
        assert merged == whole  # every int and every sketch count
        assert merged.to_json() == whole.to_json()
        for name, value in reg.regression_metrics(merged).items():
            assert value.hex() == reg.regression_metrics(whole)[name].hex(), name
        assert reg.residual_quantiles(merged) == reg.residual_quantiles(whole)


def test_a_corrected_label_is_retracted_exactly() -> None:
    p, y = _data(5, n=500)
    s = _state(p, y)
    fixed = y.copy()
    fixed[:40] = y[:40] * 1.5 + 1.0  # 40 labels corrected after the fact
    s.add(p[:40], y[:40], sign=-1)
    assert s == _state(p[40:], y[40:])
    s.add(p[:40], fixed[:40])
    assert s == _state(p, fixed)
    assert reg.mae(s) == reg.mae(_state(p, fixed))
    s.add(p, fixed, sign=-1)
    assert s == RegressionState()


def test_merge_and_subtract_operators() -> None:
    p, y = _data(9, n=200)
    a, b = _state(p[:120], y[:120]), _state(p[120:], y[120:])
    assert a + b == _state(p, y) == b + a
    assert (a + b) - b == a
    c = a.copy()
    c += b
    c -= a
    assert c == b and a == _state(p[:120], y[:120])  # copy() is independent


def test_retracting_what_was_never_added_raises_and_leaves_the_state_unchanged() -> None:
    s = _state([1.0, 2.0], [1.5, 2.5])
    before = s.copy()
    with pytest.raises(ValueError, match="not contained"):
        s.add([1.0, 2.0, 3.0], [1.5, 2.5, 3.5], sign=-1)  # one row too many
    with pytest.raises(ValueError, match="not contained"):
        s.add([9.0], [1.5], sign=-1)  # the count allows it, the residual sketch does not
    assert s == before
    with pytest.raises(ValueError, match="not contained"):
        s -= _state([1.0], [0.0])  # a zero label that was never added
    bigger = RegressionState(n=1, abs_error_sum=1 << 1080)  # a sum the state cannot hold
    with pytest.raises(ValueError, match="not contained"):
        s -= bigger
    assert s == before


def test_invalid_input_is_rejected() -> None:
    s = RegressionState()
    with pytest.raises(ValueError, match="finite"):
        s.add([1.0, math.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        s.add([1.0], [math.inf])
    with pytest.raises(ValueError, match="2 predictions but 1 labels"):
        s.add([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="sign"):
        s.add([1.0], [1.0], sign=2)
    with pytest.raises(ValueError, match="relative accuracy"):
        s += RegressionState(residuals=LogSketch(0.02))
    assert s == RegressionState()


# ---------------------------------------------------------------------- magnitudes


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # scikit-learn's squares
def test_huge_and_tiny_magnitudes_keep_every_digit() -> None:
    # Terms from 1e-200 to 1e200: float summation drops the small ones entirely.
    y = np.array([1e200, 3.0, -1e200, 1e-200, 2.5e-200, 7.0])
    p = np.array([0.0, 1.0, 0.0, 0.0, 0.0, 7.0 + 2**-50])
    s = _state(p, y)
    real = _exact(p, y)
    assert reg.mean_error(s) == float(real["mean_error"])
    assert float(np.mean(p - y)) != float(real["mean_error"])  # what float summation gives instead
    assert reg.mae(s) == float(real["mae"])
    assert reg.mape(s) == float(real["mape"])
    assert reg.r2(s) == float(real["r2"])
    # The squares (1e400) overflow a float; the root of the exact mean does not.
    assert _is_correctly_rounded_sqrt(reg.rmse(s), real["mse"])
    assert 5e199 < reg.rmse(s) < 1e200
    assert math.isinf(math.sqrt(mean_squared_error(y, p)))


def test_tiny_errors_whose_squares_underflow_a_float() -> None:
    y = np.array([1e-200, 2e-200, 3e-200, 4e-200])
    p = y + np.array([1e-210, -3e-210, 2e-210, 0.0])
    s = _state(p, y)
    real = _exact(p, y)
    assert mean_squared_error(y, p) == 0.0  # every square underflows
    assert _is_correctly_rounded_sqrt(reg.rmse(s), real["mse"]) and reg.rmse(s) > 0
    assert reg.r2(s) == float(real["r2"])
    assert reg.mae(s) == float(real["mae"]) and reg.mape(s) == float(real["mape"])


def test_sums_past_the_largest_float_read_as_infinities() -> None:
    big = 1.7976931348623157e308
    s = _state([big, big], [-big, -big])  # each difference alone exceeds the largest float
    assert reg.mae(s) == math.inf and reg.mean_error(s) == math.inf and reg.rmse(s) == math.inf
    assert reg.mape(s) == pytest.approx(2.0, rel=1e-15)
    assert reg.residual_quantiles(s)["0.5"] > 0.98e15  # the sketch's top bucket, near 1e15
    t = _state([1.0], [5e-324])  # a relative error beyond the largest float counts as the largest
    assert reg.mape(t) == big


# ---------------------------------------------------------------------- MAPE and NaN rules


def test_mape_excludes_zero_labels_and_counts_them() -> None:
    y = np.array([100.0, 0.0, 50.0, 0.0, -20.0])
    p = np.array([110.0, 3.0, 40.0, -1.0, -25.0])
    s = _state(p, y)
    assert s.zero_labels == 2
    assert reg.mape(s) == pytest.approx((0.1 + 0.2 + 0.25) / 3, rel=1e-15)  # by hand, over 3 rows
    assert reg.mae(s) == pytest.approx((10 + 3 + 10 + 1 + 5) / 5, rel=1e-15)  # MAE keeps every row
    # scikit-learn divides by max(|y|, eps) instead: a zero label dominates its value.
    assert mean_absolute_percentage_error(y, p) > 1e14
    assert math.isnan(reg.mape(_state([1.0, 2.0], [0.0, 0.0])))  # no row left to average


def test_undefined_statistics_are_nan() -> None:
    empty = RegressionState()
    assert all(math.isnan(v) for v in reg.regression_metrics(empty).values())
    assert all(math.isnan(v) for v in reg.residual_quantiles(empty).values())
    one = _state([2.0], [1.0])
    assert reg.mae(one) == 1.0 and math.isnan(reg.r2(one))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scikit-learn's 0/0 with force_finite=False
def test_r2_with_a_constant_label_is_nan_where_scikit_learn_makes_up_a_value() -> None:
    y = np.full(5, 3.0)
    perfect, off = _state(y, y), _state(y + 1.0, y)
    assert math.isnan(reg.r2(perfect)) and math.isnan(reg.r2(off))
    assert r2_score(y, y) == 1.0 and r2_score(y, y + 1.0) == 0.0  # force_finite=True, the default
    assert math.isnan(r2_score(y, y, force_finite=False))
    assert r2_score(y, y + 1.0, force_finite=False) == -math.inf


def test_r2_of_labels_far_from_zero_has_no_cancellation() -> None:
    # Σy² − (Σy)²/n in floats cancels almost every digit here; the integers do not.
    y = 1e9 + np.array([0.0, 1.0, 2.0, 3.0])
    p = y + np.array([0.5, -0.5, 0.25, 0.0])
    s = _state(p, y)
    assert reg.r2(s) == float(_exact(p, y)["r2"]) == 1 - 0.5625 / 5.0


# ---------------------------------------------------------------------- residual quantiles


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_residual_quantiles_are_within_the_sketch_accuracy_of_numpy(seed: int) -> None:
    p, y = _data(seed, n=10_000)
    s = _state(p, y)
    errors = np.abs(p - y)
    alpha = s.residuals.relative_accuracy
    got = reg.residual_quantiles(s)
    assert list(got) == ["0.5", "0.9", "0.99"]
    for q in reg.RESIDUAL_QUANTILES:
        lower = float(np.quantile(errors, q, method="lower"))
        assert abs(got[str(q)] - lower) <= alpha * lower * (1 + 1e-12)
        # numpy's default (linear) lies between neighbouring order statistics: add their gap.
        higher = float(np.quantile(errors, q, method="higher"))
        assert abs(got[str(q)] - float(np.quantile(errors, q))) <= alpha * lower + (higher - lower)


def test_a_coarser_sketch_reads_coarser_quantiles() -> None:
    p, y = _data(4, n=5000)
    s = RegressionState(residuals=LogSketch(0.05))
    s.add(p, y)
    lower = float(np.quantile(np.abs(p - y), 0.9, method="lower"))
    assert abs(reg.residual_quantiles(s, [0.9])["0.9"] - lower) <= 0.05 * lower * (1 + 1e-12)
    assert RegressionState.from_json(s.to_json()).residuals.relative_accuracy == 0.05


# ---------------------------------------------------------------------- JSON form


def test_the_json_form_round_trips_through_json_text() -> None:
    p, y = _data(6, n=300)
    y[:5] = 0.0
    s = _state(p, y)
    back = RegressionState.from_json(json.loads(json.dumps(s.to_json())))
    assert back == s and back.zero_labels == 5
    assert reg.regression_metrics(back) == reg.regression_metrics(s)
    emptied = _state(p[:10], y[:10]) - _state(p[:10], y[:10])
    assert RegressionState.from_json(emptied.to_json()) == RegressionState()
    negative_sum = _state([1.0], [3.0])
    assert negative_sum.to_json()["error_sum"].startswith("-0x")
    assert RegressionState.from_json(negative_sum.to_json()) == negative_sum


@pytest.mark.parametrize(
    "change",
    [
        {"v": 2},
        {"n": -1},
        {"n": "3"},
        {"error_sum": "zz"},
        {"abs_error_sum": 5},
        {"residuals": "00"},
        {"zero_labels": 10},
        {"n": 4},  # the sketch holds 3 residuals
    ],
)
def test_a_malformed_json_form_is_rejected(change: dict[str, object]) -> None:
    doc = _state([1.0, 2.0, 3.0], [1.0, 0.0, 2.0]).to_json() | change
    with pytest.raises(ValueError, match="RegressionState"):
        RegressionState.from_json(doc)
    missing = _state([1.0], [1.0]).to_json()
    del missing["label_sum"]
    with pytest.raises(ValueError, match="malformed"):
        RegressionState.from_json(missing)


def test_unit_sums_are_the_exact_module_s_totals() -> None:
    p, y = _data(8, n=50)
    s = _state(p, y)
    assert s.label_sum == exact.total(y) and s.label_square_sum == exact.square_total(y)
    assert s.error_sum == exact.total(p) - exact.total(y)
    real = sum((abs(Fraction(a) - Fraction(b)) for a, b in zip(p, y, strict=True)), Fraction(0))
    assert Fraction(s.abs_error_sum, 2**exact.ULP_SHIFT) == real


# ---------------------------------------------------------------------- degradation


def test_degradation_is_positive_when_worse_in_each_direction() -> None:
    base = {"mae": 2.0, "rmse": 3.0, "mape": 0.1, "r2": 0.8, "mean_error": -0.5}
    worse = {"mae": 2.3, "rmse": 3.15, "mape": 0.1, "r2": 0.6, "mean_error": 0.6}
    d = reg.regression_degradation(worse, base)
    assert d["mae"].relative_drop == pytest.approx(0.15) and d["mae"].severity == "high"
    assert d["rmse"].relative_drop == pytest.approx(0.05, rel=1e-9)
    assert d["mape"].relative_drop == 0.0 and d["mape"].severity == "none"
    assert d["r2"].relative_drop == pytest.approx(0.25) and d["r2"].severity == "high"
    # The bias is compared by magnitude, in units of the baseline MAE: |-0.5| -> |0.6| is 0.1 / 2.0.
    assert d["mean_error"].relative_drop == pytest.approx(0.05)
    assert (d["mean_error"].current, d["mean_error"].baseline) == (0.6, 0.5)
    better = reg.regression_degradation(base, worse)
    assert all(v.relative_drop < 0 or k == "mape" for k, v in better.items())
    assert all(v.severity == "none" for v in better.values())


def test_the_bias_of_an_unbiased_baseline_is_judged_against_its_mae() -> None:
    # A baseline bias of exactly 0 (well calibrated) still gives a defined, small change.
    d = reg.regression_degradation({"mean_error": 0.03}, {"mae": 1.5, "mean_error": 0.0})["mean_error"]
    assert d.relative_drop == pytest.approx(0.02) and d.severity == "none"
    assert math.isnan(
        reg.regression_degradation({"mean_error": 0.3}, {"mean_error": 0.1})["mean_error"].relative_drop
    )


def test_degradation_of_an_undefined_or_zero_baseline_is_nan() -> None:
    d = reg.regression_degradation(
        {"mae": 1.0, "r2": math.nan, "mean_error": 0.3}, {"mae": 0.0, "r2": 0.5, "mean_error": 0.1}
    )
    assert all(math.isnan(v.relative_drop) and v.severity == "none" for v in d.values())
    # An R² baseline below zero: worse is still positive.
    neg = reg.regression_degradation({"r2": -0.3}, {"r2": -0.2})["r2"]
    assert neg.relative_drop == pytest.approx(0.5) and neg.severity == "high"
