"""Concept drift on the labelled error stream, with river's detectors.

The caller passes per-time-bucket error rates in bucket order; a fresh detector is
run over them, so the result depends only on the sequence (deterministic, and the
same on every worker). River's own defaults are kept. Mind their units: ADWIN's
``delta`` is a confidence and works on any scale, but Page-Hinkley's ``threshold``
(default 50) is in the units of the input, i.e. a cumulative excess error rate of 50;
on rates in [0, 1] pass e.g. ``threshold=1`` for a reaction within tens of buckets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

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
    detector: drift.ADWIN | drift.PageHinkley
    if method == "adwin":
        detector = drift.ADWIN(**params)
    elif method == "page_hinkley":
        detector = drift.PageHinkley(**params)
    else:
        raise ValueError(f"method must be 'adwin' or 'page_hinkley', got {method!r}")
    first: int | None = None
    seen = 0
    for index, rate in enumerate(error_rates):
        if math.isnan(rate):
            continue
        seen += 1
        detector.update(rate)
        if first is None and detector.drift_detected:
            first = index
    return ConceptDriftResult(detected=first is not None, index=first, n=seen)
