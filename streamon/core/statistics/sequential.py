"""Always-valid sequential A/B tests: the mixture sequential probability ratio test (mSPRT).

A fixed-horizon test (:mod:`streamon.core.statistics.ab`) is valid at ONE look decided in advance;
checking it after every batch and stopping at the first ``p < alpha`` rejects a true null
far more often than ``alpha``. The mSPRT of Johari, Pekelis & Walsh, "Always valid
inference: continuous monitoring of A/B tests" (Operations Research 70(3), 2022;
arXiv:1512.04922) stays valid however often it is looked at.

The difference ``d = B - A`` (of two rates, or of two means) is approximately normal with
variance ``V = s_A^2 / n_A + s_B^2 / n_B`` (plug-in, unpooled, as the fixed-horizon CI).
Mixing the alternative ``theta ~ N(theta0, T^2)`` gives the likelihood ratio in closed form::

    Lambda(theta0) = sqrt(V / (V + T^2)) * exp(T^2 (d - theta0)^2 / (2 V (V + T^2)))

Under ``theta = theta0`` it is a (nonnegative) martingale over the looks with mean 1, so by
Ville's inequality ``P(Lambda >= 1/alpha at ANY look) <= alpha``. Hence:

- the always-valid p-value is the running minimum over looks of ``min(1, 1/Lambda(0))``;
  one look's ``min(1, 1/Lambda(0))`` alone is still a valid test when compared with
  ``alpha`` at every look (that is what rejecting at the first crossing means);
- the confidence sequence is ``{theta0 : Lambda(theta0) < 1/alpha}``, i.e.
  ``d +- sqrt(V (V + T^2) / T^2 * (2 ln(1/alpha) + ln((V + T^2) / V)))``, covering the true
  difference at every look simultaneously with probability ``>= 1 - alpha``; its running
  intersection over looks is also one.

The mixing standard deviation is given in units of the per-unit standard deviation,
``T = tau * s`` with ``s^2`` the pooled per-unit variance (``p (1 - p)`` of the pooled rate
for proportions, the pooled sample variance for means), so one ``tau`` is a standardised
effect size that fits rates and money alike. The test is most powerful for effects near
``tau`` standard deviations; :data:`DEFAULT_TAU` = 0.1 suits the few-points-of-a-rate
effects of model experiments.

Everything is computed from sufficient statistics (counts; n, mean, variance), so it
merges across workers exactly as the fixed-horizon test does, and it is deterministic.
The array functions accept numpy arrays (one element per experiment or look).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from streamon.core.statistics.ab import MIN_SAMPLES, Status

DEFAULT_TAU = 0.1

FloatArray = npt.NDArray[np.float64]


def _check(alpha: float, tau: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if not (tau > 0 and math.isfinite(tau)):
        raise ValueError(f"tau must be a positive number, got {tau!r}")


def proportion_moments(
    x_a: npt.ArrayLike, n_a: npt.ArrayLike, x_b: npt.ArrayLike, n_b: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(d, V, s^2)`` of the rate difference ``x_b/n_b - x_a/n_a`` (NaN where an arm is empty).

    >>> d, v, s2 = proportion_moments(50, 1000, 80, 1000)
    >>> round(float(d), 3), round(float(v), 8), round(float(s2), 6)
    (0.03, 0.0001211, 0.060775)
    """
    xa, na, xb, nb = (np.asarray(v, dtype=np.float64) for v in (x_a, n_a, x_b, n_b))
    with np.errstate(invalid="ignore", divide="ignore"):
        ra, rb = xa / na, xb / nb
        pooled = (xa + xb) / (na + nb)
        var = ra * (1 - ra) / na + rb * (1 - rb) / nb
    return rb - ra, var, pooled * (1 - pooled)


def mean_moments(
    n_a: npt.ArrayLike,
    mean_a: npt.ArrayLike,
    var_a: npt.ArrayLike,
    n_b: npt.ArrayLike,
    mean_b: npt.ArrayLike,
    var_b: npt.ArrayLike,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(d, V, s^2)`` of the mean difference from per-arm count, mean and sample variance (ddof=1).

    >>> d, v, s2 = mean_moments(40, 1.0, 1.0, 40, 1.5, 1.0)
    >>> float(d), float(v), float(s2)
    (0.5, 0.05, 1.0)
    """
    arrays = (np.asarray(v, dtype=np.float64) for v in (n_a, mean_a, var_a, n_b, mean_b, var_b))
    na, ma, va, nb, mb, vb = arrays
    with np.errstate(invalid="ignore", divide="ignore"):
        var = va / na + vb / nb
        pooled = ((na - 1) * va + (nb - 1) * vb) / (na + nb - 2)
    return mb - ma, var, pooled


def log_mixture_lr(
    diff: npt.ArrayLike, var: npt.ArrayLike, mix_var: npt.ArrayLike, theta0: npt.ArrayLike = 0.0
) -> FloatArray:
    """``ln Lambda(theta0)``: likelihood ratio of ``d ~ N(theta, V)`` mixed over ``theta ~ N(theta0, T^2)``.

    NaN where ``V`` or ``T^2`` is not positive (no variation: nothing to test).

    >>> round(float(log_mixture_lr(0.03, 0.0001211, 0.0006)), 4)
    2.1998
    """
    d, v, t2, th = (np.asarray(x, dtype=np.float64) for x in (diff, var, mix_var, theta0))
    ok = (v > 0) & (t2 > 0)
    v, t2 = np.where(ok, v, np.nan), np.where(ok, t2, np.nan)
    out: FloatArray = 0.5 * np.log(v / (v + t2)) + t2 * (d - th) ** 2 / (2 * v * (v + t2))
    return out


def cs_halfwidth(var: npt.ArrayLike, mix_var: npt.ArrayLike, alpha: float) -> FloatArray:
    """Half-width of the ``1 - alpha`` confidence sequence ``{theta0 : Lambda(theta0) < 1/alpha}``.

    >>> round(float(cs_halfwidth(0.0001211, 0.0006, 0.05)), 5)
    0.03364
    """
    v, t2 = (np.asarray(x, dtype=np.float64) for x in (var, mix_var))
    ok = (v > 0) & (t2 > 0)
    v, t2 = np.where(ok, v, np.nan), np.where(ok, t2, np.nan)
    out: FloatArray = np.sqrt(v * (v + t2) / t2 * (2 * math.log(1 / alpha) + np.log((v + t2) / v)))
    return out


@dataclass(frozen=True)
class SequentialResult:
    """One look of an mSPRT; ``diff`` and the confidence sequence are for ``B - A``.

    ``p_value`` and ``cs_low``/``cs_high`` are the instantaneous values of this look until
    :func:`running` folds them over the looks (``looks`` counts the looks folded in).

    >>> r = sequential_proportions(50, 1000, 80, 1000)
    >>> round(r.diff, 3), round(r.p_value, 4), r.significant, r.status
    (0.03, 0.1107, False, 'ok')
    """

    diff: float
    log_lr: float  # ln Lambda(0)
    p_value: float  # always valid: min(1, 1/Lambda(0)), running minimum after running()
    cs_low: float
    cs_high: float
    significant: bool
    status: Status
    alpha: float
    tau: float
    looks: int = 1


def msprt(
    diff: float, var: float, scale_var: float, status: Status, alpha: float, tau: float
) -> SequentialResult:
    """The mSPRT of one look from ``d``, its variance ``V`` and the per-unit variance ``s^2``."""
    _check(alpha, tau)
    mix_var = tau * tau * scale_var
    llr = float(log_mixture_lr(diff, var, mix_var))
    half = float(cs_halfwidth(var, mix_var, alpha))
    p_value = min(1.0, math.exp(-llr)) if not math.isnan(llr) else math.nan
    return SequentialResult(
        diff=float(diff),
        log_lr=llr,
        p_value=p_value,
        cs_low=float(diff) - half,
        cs_high=float(diff) + half,
        significant=status == "ok" and p_value <= alpha,  # False for a NaN p-value
        status=status,
        alpha=alpha,
        tau=tau,
    )


def _status(n_a: float, n_b: float) -> Status:
    return "insufficient_data" if n_a < MIN_SAMPLES or n_b < MIN_SAMPLES else "ok"


def sequential_proportions(
    x_a: int, n_a: int, x_b: int, n_b: int, alpha: float = 0.05, tau: float = DEFAULT_TAU
) -> SequentialResult:
    """Always-valid test of equal rates ``x_a/n_a`` and ``x_b/n_b`` (the sequential two-proportion z-test).

    >>> r = sequential_proportions(500, 10000, 700, 10000)
    >>> f"{r.p_value:.2g}", r.significant, round(r.cs_low, 4), round(r.cs_high, 4)
    ('2e-07', True, 0.0093, 0.0307)
    """
    for x, n in ((x_a, n_a), (x_b, n_b)):
        if not 0 <= x <= n:
            raise ValueError(f"need 0 <= successes <= trials, got {x} of {n}")
    d, v, s2 = proportion_moments(x_a, n_a, x_b, n_b)
    return msprt(float(d), float(v), float(s2), _status(n_a, n_b), alpha, tau)


def sequential_means(
    n_a: int,
    mean_a: float,
    var_a: float,
    n_b: int,
    mean_b: float,
    var_b: float,
    alpha: float = 0.05,
    tau: float = DEFAULT_TAU,
) -> SequentialResult:
    """Always-valid test of equal means (the sequential counterpart of Welch's t-test).

    Normal approximation with the Welch standard error; NaN below 2 values in an arm.

    >>> r = sequential_means(4000, 1.0, 1.0, 4000, 1.1, 1.0)
    >>> round(r.p_value, 4), r.significant
    (0.0003, True)
    """
    if n_a < 2 or n_b < 2:
        nan = math.nan
        return msprt(mean_b - mean_a, nan, nan, _status(n_a, n_b), alpha, tau)
    d, v, s2 = mean_moments(n_a, mean_a, var_a, n_b, mean_b, var_b)
    return msprt(float(d), float(v), float(s2), _status(n_a, n_b), alpha, tau)


def running(looks: Iterable[SequentialResult]) -> SequentialResult | None:
    """Fold looks in time order: running minimum p-value and intersected confidence sequence.

    Looks with insufficient data, or with nothing to test (NaN), are not folded in; the
    result carries the last look's estimate and status. ``None`` without any looks. If the
    intersection ever becomes empty (the normal approximation failing), the last look's
    own interval is kept.

    >>> a = sequential_proportions(50, 1000, 80, 1000)
    >>> b = sequential_proportions(100, 2000, 150, 2000)
    >>> r = running([a, b])
    >>> r.looks, r.p_value == min(a.p_value, b.p_value), r.cs_high == min(a.cs_high, b.cs_high)
    (2, True, True)
    """
    out: SequentialResult | None = None
    folded = 0
    p, low, high = math.inf, -math.inf, math.inf
    for look in looks:
        out = look
        if look.status != "ok" or math.isnan(look.p_value):
            continue
        folded += 1
        p = min(p, look.p_value)
        if max(low, look.cs_low) <= min(high, look.cs_high):
            low, high = max(low, look.cs_low), min(high, look.cs_high)
        else:
            low, high = look.cs_low, look.cs_high
    if out is None:
        return None
    if not folded:
        return replace(out, looks=0)
    return replace(
        out,
        p_value=p,
        cs_low=low,
        cs_high=high,
        significant=out.status == "ok" and p <= out.alpha,
        looks=folded,
    )
