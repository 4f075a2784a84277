"""Concept drift detection on per-bucket error rates with river's ADWIN and Page-Hinkley."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamon.core.concept_drift import detect_concept_drift

CHANGE_AT = 600


def error_rates(seed: int, before: float, after: float, n: int = 1000) -> list[float]:
    """Per-bucket error rates of 500 labelled predictions each, with a step at CHANGE_AT."""
    rng = np.random.default_rng(seed)
    rate = np.where(np.arange(n) < CHANGE_AT, before, after)
    return (rng.binomial(500, rate) / 500).tolist()


@pytest.mark.parametrize("seed", range(10))
def test_adwin_detects_a_step_soon_after_it(seed: int) -> None:
    result = detect_concept_drift(error_rates(seed, 0.05, 0.20))
    assert result.detected and result.index is not None
    # ADWIN (river defaults) checks every 32 values: allow up to 100 buckets of delay.
    assert CHANGE_AT <= result.index <= CHANGE_AT + 100
    assert result.n == 1000


@pytest.mark.parametrize("seed", range(10))
def test_page_hinkley_detects_a_step_soon_after_it(seed: int) -> None:
    # threshold is in error-rate units: 1.0 = a cumulative excess of one full error rate.
    result = detect_concept_drift(error_rates(seed, 0.05, 0.20), "page_hinkley", threshold=1.0)
    assert result.detected and result.index is not None
    assert CHANGE_AT <= result.index <= CHANGE_AT + 30


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("method", ["adwin", "page_hinkley"])
def test_no_detection_on_a_stationary_sequence(seed: int, method: str) -> None:
    params = {"threshold": 1.0} if method == "page_hinkley" else {}
    result = detect_concept_drift(error_rates(seed, 0.05, 0.05, n=2000), method, **params)  # type: ignore[arg-type]
    assert not result.detected and result.index is None and result.n == 2000


def test_deterministic() -> None:
    seq = error_rates(3, 0.05, 0.15)
    assert detect_concept_drift(seq) == detect_concept_drift(seq)


def test_nan_buckets_are_skipped_but_indices_point_into_the_input() -> None:
    seq = error_rates(1, 0.05, 0.20)
    with_gaps = [math.nan if i % 2 else v for i, v in enumerate(seq)]  # every other bucket unlabelled
    dense = [v for v in with_gaps if not math.isnan(v)]
    sparse_result, dense_result = detect_concept_drift(with_gaps), detect_concept_drift(dense)
    assert sparse_result.n == dense_result.n == 500
    assert dense_result.index is not None
    assert sparse_result.index == 2 * dense_result.index  # the same value, found at its own position


def test_unknown_method() -> None:
    with pytest.raises(ValueError, match="method"):
        detect_concept_drift([0.1], "ddm")  # type: ignore[arg-type]
