"""Calibration of binary models: Brier score, log loss, ECE and the reliability curve.

Oracles: scikit-learn's ``brier_score_loss``, ``log_loss`` and ``calibration_curve``
(strategy "uniform") within a relative 1e-12 (their float sums round at every step), and
``fractions`` for the exact values: each statistic is the real value of its definition
over the float64 terms, rounded once. The state is integers, so merges and retractions
are checked with ``==`` and the statistics bit for bit.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import orjson
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, log_loss

from streamon.config import Settings
from streamon.core import catalogue
from streamon.core.events import Label, Prediction
from streamon.core.profile import FeatureSpec, ModelSpec, build_profile, profile_from_bytes, profile_to_bytes
from streamon.core.stages.evaluate import EvalSettings, calibration_metrics, evaluate_model
from streamon.core.stages.join import MemoryStore
from streamon.core.stages.stage1 import Partial, PartitionProcessor
from streamon.core.stages.stage2 import Aggregator, WindowSettings
from streamon.core.state.summary import (
    CALIBRATION_LABELLED,
    CALIBRATION_SCORES,
    FORMAT_VERSION,
    LOSSES,
    BucketSummary,
    merge_all,
)
from streamon.core.statistics.calibration import (
    LOG_LOSS_EPS,
    Calibration,
    log_loss_terms,
)
from streamon.engine import build_engine
from streamon.errors import ConfigError, InputError

CALIBRATION_METRICS = (
    "ml_model_brier_score",
    "ml_model_log_loss",
    "ml_model_expected_calibration_error",
    "ml_model_calibration_observed_rate",
    "ml_model_calibration_mean_score",
)
REL = 1e-12  # scikit-learn sums floats step by step; streamon's sums are exact
SCORE_BINS = 50


def stream(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, predicted, scores): continuous scores, miscalibrated labels, a few exact 0 and 1."""
    rng = np.random.default_rng(seed)
    scores = rng.beta(0.7, 1.8, n)
    scores[rng.choice(n, 4, replace=False)] = [0.0, 0.0, 1.0, 1.0]  # log loss clips these
    labels = (rng.random(n) < scores**1.4).astype(np.int64)
    labels[scores == 0.0] = [0, 1]  # one confident hit, one confident miss
    labels[scores == 1.0] = [1, 0]
    return labels, (scores >= 0.5).astype(np.int64), scores


def summary_of(labels: np.ndarray, predicted: np.ndarray, scores: np.ndarray, bins: int) -> BucketSummary:
    s = BucketSummary()
    for chunk in np.array_split(np.arange(len(labels)), 7):  # in batches, as stage 1 adds them
        s.add_labels(labels[chunk], predicted[chunk], scores[chunk], SCORE_BINS, calibration_bins=bins)
    return s


def sklearn_bins(scores: np.ndarray, bins: int) -> np.ndarray:
    """calibration_curve's bin of each score (a score on an inner edge goes to the lower bin)."""
    return np.searchsorted(np.linspace(0.0, 1.0, bins + 1)[1:-1], scores)


def bits(c: Calibration) -> list[str]:
    """Every value of ``c`` as exact hex (NaN included): bit-identical means equal lists."""
    return [float.hex(v) for v in (c.brier, c.log_loss, c.ece, *c.observed_rate, *c.mean_score)]


@pytest.mark.parametrize(("seed", "n", "bins"), [(1, 2000, 10), (2, 5000, 7), (3, 800, 25), (4, 30000, 10)])
def test_the_statistics_equal_scikit_learn(seed: int, n: int, bins: int) -> None:
    labels, predicted, scores = stream(seed, n)
    cal = calibration_metrics(summary_of(labels, predicted, scores, bins), bins)

    assert cal.brier == pytest.approx(brier_score_loss(labels, scores), rel=REL)
    assert cal.log_loss == pytest.approx(log_loss(labels, scores, labels=[0, 1]), rel=REL)

    # The reliability curve: calibration_curve drops empty bins; the observed rate is a ratio
    # of integers in both, so equal exactly. Continuous scores never sit on an inner edge,
    # where calibration_curve's bins (edge to the lower bin) and floor(B * score) differ.
    edges = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    assert np.min(np.abs(scores[:, None] - edges[None, :])) > 1e-9
    prob_true, prob_pred = calibration_curve(labels, scores, n_bins=bins, strategy="uniform")
    counts = np.bincount(sklearn_bins(scores, bins), minlength=bins)
    nonempty = counts > 0
    observed, mean = np.array(cal.observed_rate), np.array(cal.mean_score)
    assert np.array_equal(np.isnan(observed), ~nonempty) and np.array_equal(np.isnan(mean), ~nonempty)
    assert observed[nonempty].tolist() == prob_true.tolist()
    np.testing.assert_allclose(mean[nonempty], prob_pred, rtol=REL, atol=0)

    # ECE from calibration_curve's points, weighted by the bins' shares of the labelled.
    weights = counts[nonempty] / n
    oracle_ece = float(np.sum(weights * np.abs(prob_true - prob_pred)))
    assert cal.ece == pytest.approx(oracle_ece, rel=REL)
    assert 0.0 < cal.ece < 1.0


def test_each_statistic_is_the_exact_real_value_rounded_once() -> None:
    labels, predicted, scores = stream(5, 3000)
    bins = 10
    cal = calibration_metrics(summary_of(labels, predicted, scores, bins), bins)
    n = len(labels)
    sq = [Fraction(float(t)) for t in (scores - labels) ** 2]  # each term a float64, as defined
    assert cal.brier == float(sum(sq, Fraction(0)) / n)
    ll = [Fraction(t) for t in log_loss_terms(scores, labels)]
    assert cal.log_loss == float(sum(ll, Fraction(0)) / n)
    b = np.minimum((scores * bins).astype(np.int64), bins - 1)
    gap = Fraction(0)
    for k in range(bins):
        in_bin = b == k
        exact_sum = sum((Fraction(float(s)) for s in scores[in_bin]), Fraction(0))
        gap += abs(int(labels[in_bin].sum()) - exact_sum)
        if in_bin.any():
            assert cal.mean_score[k] == float(exact_sum / int(in_bin.sum()))
    assert cal.ece == float(gap / n)


def test_bins_are_floor_of_bins_times_score_with_one_in_the_last_bin() -> None:
    scores = np.array([0.0, 0.1, 0.5, 0.5, 0.95, 1.0])
    labels = np.array([0, 0, 1, 0, 1, 1])
    s = BucketSummary()
    s.add_labels(labels, labels, scores, SCORE_BINS, calibration_bins=10)
    # 0.1 * 10 == 1.0: bin 1 (calibration_curve would put it in bin 0); 0.5 in bin 5; 1.0 in bin 9.
    assert s.counts[CALIBRATION_LABELLED].tolist() == [1, 1, 0, 0, 0, 2, 0, 0, 0, 2]
    cal = calibration_metrics(s, 10)
    assert cal.observed_rate[5] == 0.5 and cal.mean_score[5] == 0.5
    assert cal.observed_rate[9] == 1.0 and cal.mean_score[9] == (0.95 + 1.0) / 2
    assert math.isnan(cal.observed_rate[2]) and math.isnan(cal.mean_score[2])


def test_log_loss_clips_as_scikit_learn() -> None:
    scores = np.array([0.0, 1.0, 0.0, 1.0, 1e-300, 1.0 - 1e-17])
    labels = np.array([1, 0, 0, 1, 1, 0])
    terms = log_loss_terms(scores, labels)
    worst = -math.log(LOG_LOSS_EPS)  # about 36.04
    assert terms[0] == terms[1] == terms[4] == worst
    assert terms[2] == terms[3] == -math.log(1.0 - LOG_LOSS_EPS)
    assert terms[5] == worst  # 1 - (1 - 1e-17) rounds to 0, then clips
    s = BucketSummary()
    s.add_labels(labels, labels, scores, SCORE_BINS)
    assert calibration_metrics(s, 10).log_loss == pytest.approx(log_loss(labels, scores), rel=REL)


def test_merged_parts_equal_the_whole_bit_for_bit() -> None:
    labels, predicted, scores = stream(6, 6000)
    bins = 10
    whole = summary_of(labels, predicted, scores, bins)
    rng = np.random.default_rng(7)
    part_of = rng.integers(0, 3, len(labels))
    parts = []
    for k in (2, 0, 1):  # another order than the whole's
        idx = rng.permutation(np.flatnonzero(part_of == k))
        part = summary_of(labels[idx], predicted[idx], scores[idx], bins)
        parts.append(BucketSummary.from_bytes(part.to_bytes()))  # through the wire, as stage 2 gets them
    merged = merge_all(parts)
    assert merged == whole
    assert merged.sums == whole.sums  # the very same integers
    assert bits(calibration_metrics(merged, bins)) == bits(calibration_metrics(whole, bins))
    # ... while a float sum would depend on the split.
    assert any(math.fsum(scores[part_of == k]) != sum(scores[part_of == k].tolist()) for k in range(3))
    # A window maintained by subtraction gives back exactly the remaining parts.
    window = merged.copy()
    window -= parts[0]
    assert window == parts[1] + parts[2]
    assert bits(calibration_metrics(window, bins)) == bits(calibration_metrics(parts[1] + parts[2], bins))


def test_a_retraction_restores_the_state_exactly() -> None:
    labels, predicted, scores = stream(8, 1000)
    base = summary_of(labels[:600], predicted[:600], scores[:600], 10)
    before = base.copy()
    batch = slice(600, 1000)
    base.add_labels(labels[batch], predicted[batch], scores[batch], SCORE_BINS)
    assert base != before
    base.add_labels(labels[batch], predicted[batch], scores[batch], SCORE_BINS, sign=-1)
    # OUTCOMES_ADDED only counts up (a monotonic counter); everything else is restored.
    base.counts.pop("outcomes_added")
    before.counts.pop("outcomes_added")
    assert base == before
    assert base.sums == before.sums
    assert bits(calibration_metrics(base, 10)) == bits(calibration_metrics(before, 10))

    # A corrected label: retract the old, add the new = the new label from the start.
    flipped = labels.copy()
    flipped[batch] = 1 - flipped[batch]
    corrected = summary_of(labels, predicted, scores, 10)
    corrected.add_labels(labels[batch], predicted[batch], scores[batch], SCORE_BINS, sign=-1)
    corrected.add_labels(flipped[batch], predicted[batch], scores[batch], SCORE_BINS)
    direct = summary_of(flipped, predicted, scores, 10)
    assert corrected.sums == direct.sums
    assert bits(calibration_metrics(corrected, 10)) == bits(calibration_metrics(direct, 10))


def test_wire_round_trip_keeps_every_sum() -> None:
    labels, predicted, scores = stream(9, 500)
    s = summary_of(labels, predicted, scores, 12)
    retraction = BucketSummary()  # negative sums, as in a delta that only corrects labels
    retraction.add_labels(labels[:50], predicted[:50], scores[:50], SCORE_BINS, sign=-1, calibration_bins=12)
    for summary in (s, retraction, s + retraction):
        back = BucketSummary.from_bytes(summary.to_bytes())
        assert back == summary and back.sums == summary.sums
    assert any(u < 0 for u in retraction.sums[LOSSES])
    # The sums are encoded without their trailing zero bits: small next to the int64 counts.
    doc = orjson.loads(s.to_bytes()[1:])
    assert set(doc["x"]) == {CALIBRATION_SCORES, LOSSES}
    assert len(orjson.dumps(doc["x"])) < 600


def test_summaries_without_sums_encode_and_decode_as_before() -> None:
    s = BucketSummary()
    s.add_predictions(np.array([0.2, 0.7]), np.array([0, 1]), score_bins=SCORE_BINS)
    doc = orjson.loads(s.to_bytes()[1:])
    assert set(doc) == {"c", "s", "k"}  # no labels: no sums key, the bytes of before
    # A summary written before the calibration state existed: labels but no "x" key.
    old = bytes([FORMAT_VERSION]) + orjson.dumps(
        {"c": {"confusion": [4, [0, 2], [60, 40]], "predictions": [2, [0, 1], [100, 55]]}, "s": {}, "k": {}}
    )
    decoded = BucketSummary.from_bytes(old)
    assert decoded.sums == {} and decoded.n_labelled == 100
    # Its labels are not covered by calibration state: the statistics are NaN, not made up.
    c = calibration_metrics(decoded, 10)
    assert all(math.isnan(v) for v in c.observed_rate)
    assert math.isnan(c.brier) and math.isnan(c.ece)
    # Merged with new summaries it still reads NaN (the old labels have no calibration terms).
    new = BucketSummary()
    new.add_labels(np.array([1, 0]), np.array([1, 0]), np.array([0.9, 0.1]), SCORE_BINS)
    assert math.isnan(calibration_metrics(decoded + new, 10).brier)
    assert calibration_metrics(new, 10).brier == pytest.approx(0.01, rel=REL)
    # Other calibration bins than the model's also read NaN.
    assert math.isnan(calibration_metrics(new, 20).brier)


def test_an_oversized_partial_split_into_messages_keeps_the_sums() -> None:
    labels, predicted, scores = stream(10, 3000)
    s = summary_of(labels, predicted, scores, 10)
    s.add_categorical_feature("c", [f"v{i}" for i in range(400)])  # big enough to be split
    p = Partial("m", "t:0", 120.0)
    p.buckets[("default", 60.0)] = s
    messages = p.to_messages(2000)
    assert len(messages) > 1
    merged = merge_all(Partial.from_bytes(m).buckets[("default", 60.0)] for m in messages)
    assert merged == s and merged.sums == s.sums


def test_evaluate_exports_the_series_with_their_labels() -> None:
    labels, predicted, scores = stream(11, 400)
    spec = ModelSpec("m", score_bins=SCORE_BINS, calibration_bins=5)
    cur = BucketSummary()
    cur.add_predictions(scores, predicted, SCORE_BINS)
    cur.add_labels(labels, predicted, scores, SCORE_BINS, calibration_bins=5)
    ref = BucketSummary()  # unlabelled reference: below min_labelled
    ref.add_predictions(scores, predicted, SCORE_BINS)
    samples = evaluate_model(spec, "all", cur, ref, EvalSettings(min_labelled=50))
    want = calibration_metrics(cur, 5)
    got = {(s.name, dict(s.labels)["window"], dict(s.labels).get("bin")): s.value for s in samples}
    assert got[("ml_model_brier_score", "current", None)] == want.brier
    assert got[("ml_model_log_loss", "current", None)] == want.log_loss
    assert got[("ml_model_expected_calibration_error", "current", None)] == want.ece
    for b in range(5):
        assert got[("ml_model_calibration_observed_rate", "current", str(b))] == want.observed_rate[b]
        assert got[("ml_model_calibration_mean_score", "current", str(b))] == want.mean_score[b]
        assert math.isnan(got[("ml_model_calibration_observed_rate", "reference", str(b))])
    assert ("ml_model_calibration_mean_score", "current", "5") not in got
    assert math.isnan(got[("ml_model_brier_score", "reference", None)])
    for s in samples:  # every sample is in the catalogue with exactly its labels
        if s.name in CALIBRATION_METRICS:
            assert tuple(k for k, _ in s.labels) == catalogue.METRICS[s.name].labels
    # Below min_labelled the current window reads NaN too, like the other performance gauges.
    few = evaluate_model(spec, "all", cur, ref, EvalSettings(min_labelled=401))
    assert all(math.isnan(s.value) for s in few if s.name == "ml_model_calibration_mean_score")
    off = evaluate_model(spec, "all", cur, ref, EvalSettings(performance_enabled=False))
    assert not [s for s in off if s.name == "ml_model_log_loss"]


T0, BUCKET = 1_700_000_000.0, 60.0


def pipeline_snapshot(preds: list[Prediction], labels: list[Label], n_partitions: int, spec: ModelSpec):
    """Stage 1 over ``n_partitions`` (co-partitioned by prediction id), then stage 2."""
    procs = [PartitionProcessor({"m": spec}, MemoryStore(), bucket_s=BUCKET) for _ in range(n_partitions)]
    agg = Aggregator(
        {"m": spec},
        WindowSettings(bucket_s=BUCKET, current_s=6 * 3600.0, reference_s=86400.0),
        EvalSettings(current_s=6 * 3600.0),
    )
    part = {p.prediction_id: int(p.prediction_id[1:]) % n_partitions for p in preds}
    for lo in range(4):  # four flushes, in time order
        for k, proc in enumerate(procs):
            bp = [(None, p) for p in preds if part[p.prediction_id] == k and (p.ts - T0) // 3600 == lo]
            bl = [(None, x) for x in labels if part[x.prediction_id] == k and (x.ts - T0) // 3600 == lo]
            assert proc.process_decoded(bp, bl) == []
        for proc in procs:
            for partial in proc.take_partials():
                agg.apply(Partial.from_bytes(partial.to_bytes()))
    return agg.evaluate(T0 + 4 * 3600.0 - 1.0)


def test_the_pipeline_with_corrections_on_1_and_3_workers() -> None:
    labels, _, scores = stream(12, 3000)
    rng = np.random.default_rng(13)
    ts = np.sort(rng.uniform(T0, T0 + 4 * 3600.0 - 700.0, len(scores)))
    preds = [
        Prediction(f"p{i}", "m", float(t), float(s), int(s >= 0.5))
        for i, (t, s) in enumerate(zip(ts, scores, strict=True))
    ]
    final = labels.copy()
    events = []
    for i, p in enumerate(preds):
        events.append(Label(p.prediction_id, int(labels[i]), ts=p.ts + 1.0))
        if i % 11 == 0:  # a correction, later (a retraction, then the new label)
            final[i] = 1 - labels[i]
            events.append(Label(p.prediction_id, int(final[i]), ts=p.ts + 600.0))
    events.sort(key=lambda x: x.ts)
    spec = ModelSpec("m", score_bins=SCORE_BINS, calibration_bins=10)
    one = pipeline_snapshot(preds, events, 1, spec)
    three = pipeline_snapshot(preds, events, 3, spec)
    for name in CALIBRATION_METRICS:
        a = [(s.labels, float.hex(s.value)) for s in one.series(name)]
        b = [(s.labels, float.hex(s.value)) for s in three.series(name)]
        assert a and a == b, name

    # And the values are the oracle's on the final labels (every prediction is in the window).
    def value(name: str, **labels: str) -> float:
        return one.value(name, model="m", variant="all", window="current", **labels)

    assert value("ml_model_brier_score") == pytest.approx(brier_score_loss(final, scores), rel=REL)
    assert value("ml_model_log_loss") == pytest.approx(log_loss(final, scores, labels=[0, 1]), rel=REL)
    prob_true, _ = calibration_curve(final, scores, n_bins=10, strategy="uniform")
    observed = [value("ml_model_calibration_observed_rate", bin=str(b)) for b in range(10)]
    assert [v for v in observed if not math.isnan(v)] == prob_true.tolist()


def test_a_profile_keeps_its_calibration_bins() -> None:
    labels, _, scores = stream(14, 300)
    preds = [Prediction(f"r{i}", "m", T0, float(s), int(s >= 0.5)) for i, s in enumerate(scores)]
    spec = build_profile(
        ModelSpec("m", calibration_bins=8),
        preds,
        {p.prediction_id: int(y) for p, y in zip(preds, labels, strict=True)},
    )
    loaded = profile_from_bytes(profile_to_bytes([spec]))["m"]
    assert loaded.calibration_bins == 8 and loaded.reference is not None
    assert loaded.reference.calibration_bins == 8
    cal = calibration_metrics(loaded.reference, 8)
    assert cal.brier == pytest.approx(brier_score_loss(labels, scores), rel=REL)


def test_the_engine_takes_calibration_bins_from_the_config_and_checks_the_profile(tmp_path: Path) -> None:
    labels, _, scores = stream(15, 200)
    preds = [
        Prediction(f"r{i}", "m", T0, float(s), int(s >= 0.5), features={"x": float(i)})
        for i, s in enumerate(scores)
    ]
    truth = {p.prediction_id: int(y) for p, y in zip(preds, labels, strict=True)}
    profile = tmp_path / "profile.json"
    built = build_profile(ModelSpec("m", features=[FeatureSpec("x", "numeric")]), preds, truth)
    profile.write_bytes(profile_to_bytes([built]))  # labels in the default 10 bins

    def config(**model: object) -> Settings:
        doc = {"name": "m", "features": [{"name": "x", "type": "numeric"}], **model}
        return Settings.from_dict({"models": [doc]})

    assert build_engine(config(calibration_bins=25)).models["m"].calibration_bins == 25
    assert build_engine(config()).models["m"].calibration_bins == 10
    pinned = build_engine(config(reference_profile=str(profile))).models["m"]
    assert pinned.calibration_bins == 10 and pinned.reference is not None
    assert calibration_metrics(pinned.reference, 10).brier == pytest.approx(
        brier_score_loss(labels, scores), rel=REL
    )
    with pytest.raises(InputError, match="in 10 calibration bins, the config asks for 20: rebuild it"):
        build_engine(config(reference_profile=str(profile), calibration_bins=20))
    with pytest.raises(ConfigError, match=r"models\.0\.calibration_bins: must be >= 2 \(got 1\)"):
        config(calibration_bins=1)
