"""A/B testing: deterministic routing and the two tests of design.md §3 "A/B".

Differences are always ``B - A`` (treatment minus control). Both tests need only
sufficient statistics (counts, or n / sum / sum of squares via :class:`Moments`), so
the per-arm state is mergeable across workers and windows. Below ``MIN_SAMPLES``
labelled samples in either arm the status is "insufficient_data" and the result is
never significant; the numbers are still reported where they are defined.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import stats

MIN_SAMPLES = 30

Status = Literal["ok", "insufficient_data"]


def assign_variant(unit_id: str, experiment: str, split: float = 0.5) -> str:
    """Arm "A" or "B" for a unit: md5 of ``"<unit_id>_<experiment>"``, mod 100, / 100 < split -> "A".

    Deterministic across processes and restarts (unlike ``hash()``), and independent
    between experiments because the experiment name is part of the hashed key.

    >>> assign_variant("user-42", "new-threshold")
    'B'
    >>> assign_variant("user-42", "new-threshold", split=1.0)
    'A'
    """
    if not 0 <= split <= 1:
        raise ValueError(f"split must be in [0, 1], got {split!r}")
    digest = hashlib.md5(f"{unit_id}_{experiment}".encode()).hexdigest()
    return "A" if (int(digest, 16) % 100) / 100 < split else "B"


def _status(n_a: float, n_b: float) -> Status:
    return "insufficient_data" if n_a < MIN_SAMPLES or n_b < MIN_SAMPLES else "ok"


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")


@dataclass(frozen=True)
class ProportionTestResult:
    """Result of :func:`two_proportion_ztest`; ``diff`` and the CI are for ``rate_b - rate_a``.

    >>> two_proportion_ztest(50, 1000, 80, 1000).status
    'ok'
    """

    rate_a: float
    rate_b: float
    diff: float
    z: float
    p_value: float
    ci_low: float
    ci_high: float
    effect_size: float  # Cohen's h
    significant: bool
    status: Status


def two_proportion_ztest(x_a: int, n_a: int, x_b: int, n_b: int, alpha: float = 0.05) -> ProportionTestResult:
    """Two-sided z-test of equal rates ``x_a/n_a`` and ``x_b/n_b``.

    z uses the pooled standard error (the null hypothesis is equal rates); the
    ``1 - alpha`` confidence interval of the difference uses the unpooled one (it is
    not conditioned on the null). Effect size is Cohen's h,
    ``2 asin(sqrt(rate_b)) - 2 asin(sqrt(rate_a))``. z and the p-value are NaN when the
    pooled rate is 0 or 1 (no variation: nothing to test).

    >>> r = two_proportion_ztest(50, 1000, 80, 1000)
    >>> round(r.diff, 3), round(r.z, 3), round(r.p_value, 4), r.significant
    (0.03, 2.721, 0.0065, True)
    >>> two_proportion_ztest(1, 10, 5, 10).status
    'insufficient_data'
    """
    _check_alpha(alpha)
    for x, n in ((x_a, n_a), (x_b, n_b)):
        if not 0 <= x <= n:
            raise ValueError(f"need 0 <= successes <= trials, got {x} of {n}")
    rate_a = x_a / n_a if n_a else math.nan
    rate_b = x_b / n_b if n_b else math.nan
    diff = rate_b - rate_a
    pooled = (x_a + x_b) / (n_a + n_b) if n_a + n_b else math.nan
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b)) if n_a and n_b else math.nan
    z = diff / se_pooled if se_pooled > 0 else math.nan
    p_value = float(2 * stats.norm.sf(abs(z)))
    se = math.sqrt(rate_a * (1 - rate_a) / n_a + rate_b * (1 - rate_b) / n_b) if n_a and n_b else math.nan
    half = float(stats.norm.ppf(1 - alpha / 2)) * se
    h = 2 * math.asin(math.sqrt(rate_b)) - 2 * math.asin(math.sqrt(rate_a)) if n_a and n_b else math.nan
    status = _status(n_a, n_b)
    return ProportionTestResult(
        rate_a=rate_a,
        rate_b=rate_b,
        diff=diff,
        z=z,
        p_value=p_value,
        ci_low=diff - half,
        ci_high=diff + half,
        effect_size=h,
        significant=status == "ok" and p_value < alpha,  # False for a NaN p-value
        status=status,
    )


@dataclass(frozen=True)
class MeanTestResult:
    """Result of :func:`welch_ttest_from_moments`; ``diff``, ``t`` and the CI are for ``mean_b - mean_a``.

    >>> welch_ttest_from_moments(40, 1.0, 1.0, 40, 1.5, 1.0).status
    'ok'
    """

    mean_a: float
    mean_b: float
    diff: float
    t: float
    dof: float
    p_value: float
    ci_low: float
    ci_high: float
    effect_size: float  # Cohen's d with the pooled standard deviation
    significant: bool
    status: Status


def welch_ttest_from_moments(
    n_a: int,
    mean_a: float,
    var_a: float,
    n_b: int,
    mean_b: float,
    var_b: float,
    alpha: float = 0.05,
) -> MeanTestResult:
    """Two-sided Welch t-test from per-arm count, mean and sample variance (ddof=1).

    Same statistic as ``scipy.stats.ttest_ind(b, a, equal_var=False)`` on the raw
    values, with Welch-Satterthwaite degrees of freedom; the ``1 - alpha`` CI uses the
    same standard error and dof. Effect size is Cohen's d,
    ``diff / sqrt(((n_a-1) var_a + (n_b-1) var_b) / (n_a + n_b - 2))``. NaN where
    undefined (fewer than 2 values in an arm, or zero variance in both).

    >>> r = welch_ttest_from_moments(40, 1.0, 1.0, 40, 1.5, 1.0)
    >>> round(r.t, 4), round(r.dof, 1), round(r.effect_size, 2), r.significant
    (2.2361, 78.0, 0.5, True)
    """
    _check_alpha(alpha)
    diff = mean_b - mean_a
    t = dof = p_value = half = d = math.nan
    if n_a >= 2 and n_b >= 2:
        va, vb = var_a / n_a, var_b / n_b
        se = math.sqrt(va + vb)
        if se > 0:
            t = diff / se
            dof = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
            p_value = float(2 * stats.t.sf(abs(t), dof))
            half = float(stats.t.ppf(1 - alpha / 2, dof)) * se
        pooled_sd = math.sqrt(((n_a - 1) * var_a + (n_b - 1) * var_b) / (n_a + n_b - 2))
        d = diff / pooled_sd if pooled_sd > 0 else math.nan
    status = _status(n_a, n_b)
    return MeanTestResult(
        mean_a=mean_a,
        mean_b=mean_b,
        diff=diff,
        t=t,
        dof=dof,
        p_value=p_value,
        ci_low=diff - half,
        ci_high=diff + half,
        effect_size=d,
        significant=status == "ok" and p_value < alpha,  # False for a NaN p-value
        status=status,
    )


@dataclass
class Moments:
    """Mergeable count, sum and sum of squares of per-prediction values (e.g. amounts).

    ``+=`` merges two summaries and ``-=`` retracts one (a bucket leaving the window).
    Sum / sum of squares is exact to merge and subtract; its variance loses precision
    only when the mean is huge relative to the spread, which per-prediction business
    values and latencies are not.

    >>> m = Moments()
    >>> m.update(np.array([1.0, 2.0, 3.0]))
    >>> other = Moments()
    >>> other.update(np.array([4.0]))
    >>> m += other
    >>> m.n, m.mean, round(m.var, 6)
    (4, 2.5, 1.666667)
    """

    n: int = 0
    total: float = 0.0
    total_sq: float = 0.0

    def update(self, values: npt.ArrayLike) -> None:
        """Add finite values (NaNs are a caller bug: filter missing values first)."""
        v = np.asarray(values, dtype=np.float64).ravel()
        if not np.isfinite(v).all():
            raise ValueError("Moments.update needs finite values")
        self.n += int(v.size)
        self.total += float(v.sum())
        self.total_sq += float(v @ v)

    def __iadd__(self, other: Moments) -> Moments:
        self.n += other.n
        self.total += other.total
        self.total_sq += other.total_sq
        return self

    def __isub__(self, other: Moments) -> Moments:
        if other.n > self.n:
            raise ValueError(f"cannot retract {other.n} values from a summary of {self.n}")
        self.n -= other.n
        self.total -= other.total
        self.total_sq -= other.total_sq
        return self

    @property
    def mean(self) -> float:
        """Mean of the values, NaN when empty."""
        return self.total / self.n if self.n else math.nan

    @property
    def var(self) -> float:
        """Sample variance (ddof=1), NaN below 2 values."""
        if self.n < 2:
            return math.nan
        # Clamp the rounding residue of equal values at 0: a variance is never negative.
        return max(self.total_sq - self.total * self.total / self.n, 0.0) / (self.n - 1)
