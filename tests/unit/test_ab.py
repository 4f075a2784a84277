"""A/B routing and tests (design.md §3) against scipy oracles."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from streamon.core.statistics.ab import (
    MIN_SAMPLES,
    Moments,
    assign_variant,
    two_proportion_ztest,
    welch_ttest_from_moments,
)

# --- routing ---------------------------------------------------------------------------


def test_assign_variant_is_the_documented_hash() -> None:
    for unit in ("u1", "user-42", "ünïcode", ""):
        bucket = int(hashlib.md5(f"{unit}_exp".encode()).hexdigest(), 16) % 100
        assert assign_variant(unit, "exp", 0.37) == ("A" if bucket / 100 < 0.37 else "B")


def test_assign_variant_is_deterministic() -> None:
    ids = [f"user-{i}" for i in range(1000)]
    assert [assign_variant(i, "exp") for i in ids] == [assign_variant(i, "exp") for i in ids]


@pytest.mark.parametrize("split", [0.5, 0.2, 0.9])
def test_assign_variant_share_follows_split(split: float) -> None:
    arms = [assign_variant(f"user-{i}", "checkout-v2", split) for i in range(10_000)]
    # Binomial sd of the share on 10k units is at most 0.005; allow 4 sd.
    assert arms.count("A") / len(arms) == pytest.approx(split, abs=0.02)


def test_assign_variant_edges_and_independent_experiments() -> None:
    ids = [f"user-{i}" for i in range(10_000)]
    assert {assign_variant(i, "e", 1.0) for i in ids} == {"A"}
    assert {assign_variant(i, "e", 0.0) for i in ids} == {"B"}
    same = sum(assign_variant(i, "e1") == assign_variant(i, "e2") for i in ids) / len(ids)
    assert same == pytest.approx(0.5, abs=0.02)  # arms of two experiments are uncorrelated
    with pytest.raises(ValueError):
        assign_variant("u", "e", 1.5)


# --- two-proportion z-test -------------------------------------------------------------


@pytest.mark.parametrize("seed", range(10))
def test_ztest_against_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_a, n_b = (int(v) for v in rng.integers(100, 20_000, 2))
    x_a, x_b = int(rng.binomial(n_a, 0.05)), int(rng.binomial(n_b, rng.uniform(0.03, 0.08)))
    r = two_proportion_ztest(x_a, n_a, x_b, n_b, alpha=0.05)
    ra, rb = x_a / n_a, x_b / n_b
    pooled = (x_a + x_b) / (n_a + n_b)
    z = (rb - ra) / math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    assert r.z == pytest.approx(z, rel=1e-12)
    assert r.p_value == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-9)
    # Independent oracle: z^2 is the Pearson chi-square of the 2x2 table (no continuity correction).
    chi2, p, _, _ = stats.chi2_contingency([[x_a, n_a - x_a], [x_b, n_b - x_b]], correction=False)
    assert r.z**2 == pytest.approx(chi2, rel=1e-9)
    assert r.p_value == pytest.approx(p, rel=1e-9)
    se = math.sqrt(ra * (1 - ra) / n_a + rb * (1 - rb) / n_b)
    q = stats.norm.ppf(0.975)
    assert (r.ci_low, r.ci_high) == pytest.approx((rb - ra - q * se, rb - ra + q * se), rel=1e-12)
    assert r.effect_size == pytest.approx(2 * math.asin(math.sqrt(rb)) - 2 * math.asin(math.sqrt(ra)))
    assert r.significant == (r.p_value < 0.05)
    assert r.status == "ok"


def test_ztest_clear_effect_and_no_effect() -> None:
    r = two_proportion_ztest(500, 10_000, 700, 10_000)
    assert r.significant and r.diff == pytest.approx(0.02) and r.ci_low > 0
    r = two_proportion_ztest(500, 10_000, 505, 10_000)
    assert not r.significant and r.ci_low < 0 < r.ci_high


def test_ztest_insufficient_data_below_30() -> None:
    r = two_proportion_ztest(0, MIN_SAMPLES - 1, 29, 29)  # a huge effect, but too few samples
    assert r.status == "insufficient_data" and not r.significant
    assert two_proportion_ztest(3, 30, 10, 30).status == "ok"
    assert two_proportion_ztest(3, 30, 10, 29).status == "insufficient_data"
    r = two_proportion_ztest(0, 0, 0, 0)
    assert r.status == "insufficient_data" and math.isnan(r.rate_a) and math.isnan(r.p_value)


def test_ztest_no_variation_is_nan_not_significant() -> None:
    r = two_proportion_ztest(0, 1000, 0, 1000)
    assert math.isnan(r.z) and math.isnan(r.p_value) and not r.significant
    assert r.diff == 0.0 and r.effect_size == 0.0


def test_ztest_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        two_proportion_ztest(11, 10, 1, 10)
    with pytest.raises(ValueError):
        two_proportion_ztest(1, 10, 1, 10, alpha=0.0)


# --- Welch t-test ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(10))
def test_welch_against_scipy_on_raw_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.lognormal(3.0, 1.0, int(rng.integers(30, 3000)))  # e.g. transaction amounts
    b = rng.lognormal(3.05, 1.2, int(rng.integers(30, 3000)))
    ma, mb = Moments(), Moments()
    ma.update(a)
    mb.update(b)
    r = welch_ttest_from_moments(ma.n, ma.mean, ma.var, mb.n, mb.mean, mb.var, alpha=0.05)
    ref = stats.ttest_ind(b, a, equal_var=False)  # b first: our differences are B - A
    ci = ref.confidence_interval(0.95)
    # rtol 1e-9: the streaming moments differ from scipy's two-pass ones by float rounding only.
    assert r.t == pytest.approx(ref.statistic, rel=1e-9)
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert r.dof == pytest.approx(ref.df, rel=1e-9)
    assert (r.ci_low, r.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert r.diff == pytest.approx(b.mean() - a.mean(), rel=1e-9)
    pooled = math.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2))
    assert r.effect_size == pytest.approx((b.mean() - a.mean()) / pooled, rel=1e-9)
    assert r.status == "ok" and r.significant == (ref.pvalue < 0.05)


def test_welch_insufficient_data_below_30() -> None:
    r = welch_ttest_from_moments(29, 0.0, 1.0, 500, 5.0, 1.0)
    assert r.status == "insufficient_data" and not r.significant
    assert r.p_value < 1e-10  # still reported
    assert welch_ttest_from_moments(30, 0.0, 1.0, 30, 5.0, 1.0).significant


def test_welch_undefined_cases_are_nan() -> None:
    r = welch_ttest_from_moments(1, 1.0, math.nan, 40, 2.0, 1.0)
    assert math.isnan(r.t) and math.isnan(r.p_value) and math.isnan(r.effect_size) and not r.significant
    r = welch_ttest_from_moments(40, 1.0, 0.0, 40, 1.0, 0.0)
    assert math.isnan(r.t) and math.isnan(r.p_value) and not r.significant


# --- Moments ---------------------------------------------------------------------------

# Integer-valued floats keep every sum exact (< 2**53), so merged must equal whole exactly.
exact_values = st.lists(st.integers(-(10**6), 10**6).map(float), max_size=200)


@given(exact_values, st.data())
def test_moments_merge_of_any_split_equals_the_whole(values: list[float], data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(values)))
    whole, left, right = Moments(), Moments(), Moments()
    whole.update(np.array(values))
    left.update(np.array(values[:cut]))
    right.update(np.array(values[cut:]))
    merged = Moments()
    merged += left
    merged += right
    assert merged == whole
    merged -= right  # retracting a part gives the other part back
    assert merged == left


@given(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=200))
def test_moments_mean_and_var_match_numpy(values: list[float]) -> None:
    m = Moments()
    m.update(np.array(values))
    x = np.array(values)
    assert m.mean == pytest.approx(x.mean(), rel=1e-9, abs=1e-6)
    # Sum of squares loses precision when the spread is tiny relative to the values: abs tolerance
    # scaled by the mean square (relative cancellation error of ~n * eps).
    assert m.var == pytest.approx(x.var(ddof=1), rel=1e-9, abs=1e-9 * float(np.mean(x * x)) + 1e-12)


def test_moments_empty_and_invalid() -> None:
    m = Moments()
    assert math.isnan(m.mean) and math.isnan(m.var)
    m.update(np.array([5.0]))
    assert m.mean == 5.0 and math.isnan(m.var)
    with pytest.raises(ValueError):
        m.update(np.array([math.nan]))
    big = Moments()
    big.update(np.arange(3.0))
    with pytest.raises(ValueError):
        m -= big
