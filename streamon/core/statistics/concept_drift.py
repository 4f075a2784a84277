"""Concept drift on the labelled error stream, with river's detectors.

Stage 2 passes each time bucket's (errors, labelled predictions) counts, in bucket
order: :func:`detect_concept_drift_counts` feeds the detector one 0/1 value per
labelled prediction (:func:`error_stream`), the stream ADWIN is designed for. Its
bound needs many values in each sub-window to see a change of a rate in [0, 1]:
fed one rate per bucket, a 30-bucket window could never reach it (and ADWIN tests
only every ``clock`` = 32 values). A fresh detector is run over the stream at every
evaluation, so the result depends only on the merged counts (deterministic, and the
same on every worker).

:func:`detect_concept_drift` runs a detector over a plain sequence of values (one rate
per bucket). River's own defaults are kept. Mind their units: ADWIN's ``delta`` is a
confidence and works on any scale, but Page-Hinkley's ``threshold`` (default 50) is in
the units of the input, i.e. a cumulative excess error rate of 50; on rates in [0, 1]
pass e.g. ``threshold=1`` for a reaction within tens of buckets.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from river import drift

Method = Literal["adwin", "page_hinkley"]


@dataclass(frozen=True)
class ConceptDriftResult:
    """``index`` is the position in the input of the first value at which drift was signalled.

    ``n`` is the number of values the detector saw (the non-NaN ones).

    >>> ConceptDriftResult(detected=False, index=None, n=0).detected
    False
    """

    detected: bool
    index: int | None
    n: int


def detect_concept_drift(
    error_rates: Sequence[float], method: Method = "adwin", **params: Any
) -> ConceptDriftResult:
    """Run ``river.drift.ADWIN`` or ``river.drift.PageHinkley`` over ``error_rates`` in order.

    ``params`` go to the detector's constructor unchanged. NaN rates (buckets without
    labels) are skipped rather than fed as a value, but ``index`` still counts them,
    so it points into ``error_rates``. Only the first detection is reported.

    >>> detect_concept_drift([0.05] * 200 + [0.30] * 200).index  # ADWIN checks every 32 values
    255
    >>> detect_concept_drift([0.05] * 400, method="page_hinkley")
    ConceptDriftResult(detected=False, index=None, n=400)
    """
    detector = _detector(method, params)
    position: list[int] = []  # input index of each value fed
    fed: list[float] = []
    for index, rate in enumerate(error_rates):
        if not math.isnan(rate):
            position.append(index)
            fed.append(rate)
    at = _first_detection(detector, fed)
    first = position[at] if at is not None else None
    return ConceptDriftResult(detected=first is not None, index=first, n=len(fed))


def _detector(method: str, params: dict[str, Any]) -> drift.ADWIN | drift.PageHinkley:
    if method == "adwin":
        return drift.ADWIN(**params)
    if method == "page_hinkley":
        return drift.PageHinkley(**params)
    raise ValueError(f"method must be 'adwin' or 'page_hinkley', got {method!r}")


def _first_detection(detector: drift.ADWIN | drift.PageHinkley, values: list[float]) -> int | None:
    """Position of the first value after which ``detector`` signals drift (None if never).

    Only the first detection is reported, so feeding stops there: what comes after it
    cannot change the result. Until then river's ``ADWIN.update`` is exactly its
    compiled helper's ``update`` (it resets only after a detection), which is called
    directly, in C, instead of through two Python-level calls per value.
    """
    helper = getattr(detector, "_helper", None) if type(detector) is drift.ADWIN else None
    update = getattr(helper, "update", None)
    if update is None:  # Page-Hinkley, or a river whose ADWIN is built otherwise
        for i, value in enumerate(values):
            detector.update(value)
            if detector.drift_detected:
                return i
        return None
    # compress() pulls one update per value and stops at the first True one.
    return next(itertools.compress(itertools.count(), map(update, values)), None)


# Values fed per evaluation at most (a few ms of ADWIN): enough to see an error rate move
# by a few points. Above it every bucket is thinned in proportion (rates kept), which only
# makes the test more conservative.
MAX_STREAM = 20_000


def error_stream(
    errors: Sequence[int], labelled: Sequence[int], max_values: int = MAX_STREAM
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """(0/1 error per labelled prediction, its bucket's index), bucket after bucket.

    Within a bucket the order of predictions is not kept (a bucket is a sum), so its
    ``errors`` are spread evenly over its ``labelled`` slots: deterministic, with the
    bucket's exact rate. Above ``max_values`` in all, every bucket is thinned to its
    share of ``max_values`` (at least 1 value), its rate rounded to that count.

    >>> values, bucket = error_stream([1, 2], [4, 4])
    >>> values.tolist(), bucket.tolist()
    ([0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0], [0, 0, 0, 0, 1, 1, 1, 1])
    >>> error_stream([500, 0], [1000, 1000], max_values=8)[0].tolist()
    [0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    """
    e = np.asarray(errors, dtype=np.int64)
    n = np.asarray(labelled, dtype=np.int64)
    if e.shape != n.shape or (e < 0).any() or (e > n).any():
        raise ValueError("need 0 <= errors <= labelled, bucket by bucket")
    total = int(n.sum())
    if total > max_values:
        # Integer arithmetic: the same thinning on every machine.
        thin = np.where(n > 0, np.maximum((n * max_values) // total, 1), 0)
        e = (e * thin + n // 2) // np.maximum(n, 1)  # the rate, rounded to the thinned count
        n = thin
    bucket = np.repeat(np.arange(n.size, dtype=np.int64), n)
    starts = np.cumsum(n) - n
    i = np.arange(bucket.size, dtype=np.int64) - starts[bucket]  # slot within its bucket
    ek, nk = e[bucket], n[bucket]
    # Slot i is an error when floor((i+1) e / n) steps up: e errors, evenly spaced.
    values = (((i + 1) * ek) // nk - (i * ek) // nk).astype(np.float64)
    return values, bucket


def detect_concept_drift_counts(
    errors: Sequence[int],
    labelled: Sequence[int],
    method: Method = "adwin",
    max_values: int = MAX_STREAM,
    **params: Any,
) -> ConceptDriftResult:
    """:func:`detect_concept_drift` over the :func:`error_stream` of per-bucket counts.

    ``index`` is the bucket in which the change was first signalled; ``n`` the number of
    0/1 values fed.

    >>> errs = [5] * 20 + [30] * 10  # 5% then 30% errors, 100 labelled per bucket
    >>> r = detect_concept_drift_counts(errs, [100] * 30)
    >>> r.detected, 20 <= r.index < 30
    (True, True)
    >>> detect_concept_drift_counts([5] * 30, [100] * 30).detected
    False
    """
    values, bucket = error_stream(errors, labelled, max_values)
    # 0/1 values, never NaN: fed as they are, without detect_concept_drift's NaN filter.
    at = _first_detection(_detector(method, params), values.tolist())
    index = int(bucket[at]) if at is not None else None
    return ConceptDriftResult(detected=index is not None, index=index, n=int(values.size))
