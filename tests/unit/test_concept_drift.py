"""Concept drift detection on per-bucket error rates with river's ADWIN and Page-Hinkley."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamon.core.statistics.concept_drift import detect_concept_drift

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


def _public_loop(values: list[float], method: str, **params: float) -> tuple[int | None, int]:
    """River's detector fed every value through its public API (the reference behaviour)."""
    from river import drift

    detector = drift.ADWIN(**params) if method == "adwin" else drift.PageHinkley(**params)
    first, seen = None, 0
    for i, v in enumerate(values):
        if math.isnan(v):
            continue
        seen += 1
        detector.update(v)
        if first is None and detector.drift_detected:
            first = i
    return first, seen


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("method", ["adwin", "page_hinkley"])
def test_same_first_detection_as_feeding_every_value_publicly(seed: int, method: str) -> None:
    # Feeding stops at the first detection and ADWIN is driven through its compiled helper:
    # the result must be the one of river's public loop over the whole sequence.
    rng = np.random.default_rng(seed)
    after = (0.05, 0.08, 0.30)[seed % 3]
    seq = error_rates(seed, 0.05, after, n=1500)
    seq = [math.nan if rng.random() < 0.1 else v for v in seq]
    params = {"threshold": 1.0} if method == "page_hinkley" else {"delta": float(rng.choice([0.002, 0.05]))}
    result = detect_concept_drift(seq, method, **params)  # type: ignore[arg-type]
    assert (result.index, result.n) == _public_loop(seq, method, **params)
    assert result.detected == (result.index is not None)


@pytest.mark.parametrize("seed", range(4))
def test_counts_path_matches_the_public_loop_over_its_error_stream(seed: int) -> None:
    from streamon.core.statistics.concept_drift import detect_concept_drift_counts, error_stream

    rng = np.random.default_rng(seed)
    labelled = rng.integers(0, 40, 600)
    rate = np.where(np.arange(600) < 400, 0.05, 0.05 + 0.1 * seed)
    errors = rng.binomial(labelled, rate)
    values, bucket = error_stream(errors.tolist(), labelled.tolist())
    first, seen = _public_loop(values.tolist(), "adwin")
    result = detect_concept_drift_counts(errors.tolist(), labelled.tolist())
    assert result.n == seen == values.size
    assert result.index == (int(bucket[first]) if first is not None else None)
