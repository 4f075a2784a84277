"""Performance degradation against a baseline (design.md §3 "Degradation")."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Literal

Severity = Literal["none", "medium", "high"]


@dataclass(frozen=True)
class Degradation:
    """One metric's relative drop against its baseline and the resulting severity.

    >>> Degradation("auc_roc", 0.85, 0.90, 0.05 / 0.90, "medium").severity
    'medium'
    """

    metric: str
    current: float
    baseline: float
    relative_drop: float
    severity: Severity


def _severity(drop: float, medium: float, high: float) -> Severity:
    # Comparisons with NaN are False, so an undefined drop is "none": it never alerts.
    if drop > high:
        return "high"
    if drop > medium:
        return "medium"
    return "none"


def degradation(
    current: Mapping[str, float],
    baseline: Mapping[str, float],
    medium: float = 0.05,
    high: float = 0.10,
    *,
    lower_is_better: Collection[str] = (),
) -> dict[str, Degradation]:
    """Relative drop of every metric present in both ``current`` and ``baseline``.

    ``relative_drop = (baseline - current) / |baseline|`` for metrics where higher is
    better (all of the performance metrics); for names in ``lower_is_better`` (e.g. a
    cost) the sign is flipped. Dividing by ``|baseline|`` keeps a worse value a positive
    drop when the baseline is negative (a net benefit can be). Severity is "high" when
    the drop is above ``high``, "medium" above ``medium``, else "none"; an improvement
    is a negative drop. NaN-safe: a NaN value or a zero baseline gives a NaN drop and
    severity "none".

    >>> d = degradation({"auc_roc": 0.80, "recall": 0.58, "f1": math.nan}, {"auc_roc": 0.90, "recall": 0.60})
    >>> round(d["auc_roc"].relative_drop, 4), d["auc_roc"].severity, d["recall"].severity
    (0.1111, 'high', 'none')
    >>> sorted(d)
    ['auc_roc', 'recall']
    """
    if not 0 <= medium <= high:
        raise ValueError(f"need 0 <= medium <= high, got medium={medium!r}, high={high!r}")
    result: dict[str, Degradation] = {}
    for name, now in current.items():
        if name not in baseline:
            continue
        base = baseline[name]
        worse_by = (now - base) if name in lower_is_better else (base - now)
        drop = worse_by / abs(base) if base != 0 and math.isfinite(base) else math.nan
        result[name] = Degradation(name, now, base, drop, _severity(drop, medium, high))
    return result
