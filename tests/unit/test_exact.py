"""Exact float sums (streamon.core.state.exact): the oracle is Python's ``fractions``."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamon.core.state import exact

finite = st.floats(-1e300, 1e300, allow_nan=False, width=64)  # sums that fit a float


@settings(max_examples=300, derandomize=True)
@given(st.lists(finite, max_size=40), st.data())
def test_a_total_is_the_real_sum_and_ignores_how_the_terms_are_split(
    values: list[float], data: st.DataObject
) -> None:
    whole = exact.total(values)
    assert Fraction(whole, 2**exact.ULP_SHIFT) == sum(map(Fraction, values), Fraction(0))
    assert exact.to_float(whole) == math.fsum(values)
    cut = data.draw(st.integers(0, len(values)))
    assert exact.total(values[:cut]) + exact.total(values[cut:][::-1]) == whole
    # Retracting the terms (a corrected label) gives back exactly nothing.
    assert whole - exact.total(values) == 0


@settings(max_examples=200, derandomize=True)
@given(st.lists(st.floats(-1e150, 1e150, allow_nan=False), max_size=30))
def test_a_square_total_is_the_real_sum_of_squares(values: list[float]) -> None:
    got = exact.square_total(values)
    assert Fraction(got, 2**exact.SQUARE_SHIFT) == sum((Fraction(v) ** 2 for v in values), Fraction(0))
    assert exact.to_float(got, exact.SQUARE_SHIFT) == float(
        sum((Fraction(v) ** 2 for v in values), Fraction(0))
    )


def test_subnormals_and_extremes_are_exact() -> None:
    values = [5e-324, -7 * 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -1.7976931348623157e308]
    assert exact.units(values)[:2] == [1, -7]
    assert exact.to_float(exact.total(values)) == math.fsum(values)


def test_per_bin_totals_and_in_place_retraction() -> None:
    rng = np.random.default_rng(3)
    x, bins = rng.random(500), rng.integers(0, 7, 500)
    per_bin = exact.totals_by_bin(x, bins, 7)
    for b in range(7):
        assert exact.to_float(per_bin[b]) == math.fsum(x[bins == b])
    acc = list(per_bin)
    exact.add_into(acc, per_bin, sign=-1)
    assert acc == [0] * 7


def test_a_sum_past_the_largest_float_reads_as_infinity() -> None:
    assert exact.to_float(exact.total([1.7e308, 1.7e308])) == math.inf
    assert exact.to_float(exact.total([-1.7e308, -1.7e308])) == -math.inf


def test_non_finite_values_are_refused() -> None:
    for bad in (math.nan, math.inf):
        try:
            exact.total([1.0, bad])
        except ValueError as e:
            assert "finite" in str(e)
        else:
            raise AssertionError("a non-finite value was summed")


KINDS = ["uniform", "wide", "zeros", "subnormal", "signed", "extremes", "nan"]


@pytest.mark.parametrize("kind", KINDS)
def test_the_vectorised_per_bin_totals_are_the_per_value_integers(kind: str) -> None:
    rng = np.random.default_rng(KINDS.index(kind))
    for n in (0, 1, 127, 128, 129, 1000, 5000):
        x = rng.random(n)
        if kind == "wide":  # every exponent class, positive
            x = np.abs(rng.normal(0.0, 1.0, n)) * 10.0 ** rng.integers(-307, 308, n)
        elif kind == "zeros":
            x[rng.random(n) < 0.3] = 0.0
            x[rng.random(n) < 0.1] = -0.0
        elif kind == "subnormal" and n:
            x[0] = 7 * 5e-324
        elif kind == "signed":
            x = rng.normal(0.0, 1.0, n)
        elif kind == "extremes" and n:
            x[: min(n, 2)] = [1.7976931348623157e308, 2.2250738585072014e-308][: min(n, 2)]
        elif kind == "nan" and n:
            x[-1] = math.nan
        for n_bins in (1, 12, 1000):  # 1000 bins: sparse (bin, exponent) keys
            where = rng.integers(0, n_bins, n)
            if kind == "nan" and n:
                with pytest.raises(ValueError, match="finite"):
                    exact.totals_by_bin(x, where, n_bins)
            else:
                assert exact.totals_by_bin(x, where, n_bins) == exact._totals_by_bin_each(x, where, n_bins)
