"""Oracle tests: the pipeline's numbers vs numpy / scipy / scikit-learn on the RAW events.

Events go through the real path (stage-1 PartitionProcessor -> Partial -> stage-2 Aggregator,
pinned reference profile from ``build_profile``); the oracles only see the raw values of the
events whose 1-minute bucket lies in the current window, and the raw reference values.

Tolerances:
* PSI, JS, chi-square p, accuracy/precision/recall/specificity/F1, ROI: EXACT up to float
  rounding (rtol 1e-12) — every input is an integer count.
* AUC-ROC / AUC-PR: exact (rtol 1e-12) vs sklearn on the BINNED scores (what the histograms
  can know); vs the raw scores within a bound computed from the histograms:
  AUC-ROC: a pos/neg pair in the same bin counts 1/2 instead of 0 or 1, so
  ``|d| <= 0.5 * sum_i pos_i*neg_i / (P*N)``;
  AUC-PR: each positive's precision in the raw ranking lies in
  ``[(TPb+1)/(Fb+n_i), (TPb+p_i)/(Fb+p_i)]`` (TPb/Fb: positives/all in higher bins, p_i/n_i: positives/all
  in its bin) while the binned AP uses ``(TPb+p_i)/(Fb+n_i)``; the bound sums the worst case.
* KS: ``0 <= KS_raw - KS_sketch <= largest single-bucket share of either sample`` (drift.py);
  Wasserstein: ``|W_sketch - W_raw| <= alpha*(mean|x|_ref + mean|x|_cur) + 2e-9``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import orjson
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from streamon.core.events import Label, Prediction
from streamon.core.profile import FeatureSpec, ModelSpec, build_profile
from streamon.core.stages.evaluate import EvalSettings, Snapshot
from streamon.core.stages.join import MemoryStore
from streamon.core.stages.stage1 import PartitionProcessor
from streamon.core.stages.stage2 import Aggregator, WindowSettings
from streamon.core.state.sketch import LogSketch
from streamon.core.state.summary import AUC_BINS, auc_bin
from streamon.core.statistics.business import BusinessCosts

EXACT = 1e-12
FLOOR = 1e-4  # design.md: zero shares floored at 1e-4
BUCKET = 60.0
CURRENT = 6 * 3600.0
T0 = 1_767_225_600.0
NOW = T0 + 8 * 3600.0 - 17.0  # evaluation time; events span [T0, NOW]
SCORE_BINS = 200
THRESHOLD = 0.5
COSTS = BusinessCosts(
    false_positive_cost=7.0,
    false_negative_cost=310.0,
    investigation_cost=3.5,
    fraud_prevention_value=455.0,
    customer_retention_value=1.25,
    system_operating_cost_monthly=12_345.0,
)
CATS = ["grocery", "fuel", "travel", "gaming", "pharmacy"]

SPEC = ModelSpec(
    name="m",
    threshold=THRESHOLD,
    score_bins=SCORE_BINS,
    features=[
        FeatureSpec("amount", "numeric"),
        FeatureSpec("hour", "numeric"),
        FeatureSpec("signed", "numeric"),
        FeatureSpec("category", "categorical"),
        FeatureSpec("channel", "categorical"),
    ],
)


def features(rng: np.random.Generator, n: int, drifted: bool) -> dict[str, list]:
    amount = rng.lognormal(3.5, 1.0, n) * (2.0 if drifted else 1.0)
    amount = np.round(amount, 2)
    miss = rng.random(n) < (0.15 if drifted else 0.05)
    hour = rng.integers(0, 24, n) if not drifted else np.minimum(rng.integers(0, 30, n), 23)
    signed = rng.normal(0.5 if drifted else 0.0, 3.0, n)
    p = [0.4, 0.3, 0.15, 0.1, 0.05] if not drifted else [0.2, 0.2, 0.2, 0.2, 0.2]
    cat: list[str | None] = list(rng.choice(CATS, n, p=p))
    if drifted:  # unseen categories and missing values
        for i in np.flatnonzero(rng.random(n) < 0.03):
            cat[i] = "crypto"
        for i in np.flatnonzero(rng.random(n) < 0.02):
            cat[i] = None
    # A mildly shifted categorical feature without unseen values: a chi-square p-value far from 0.
    channel = rng.choice(["web", "app", "pos"], n, p=[0.49, 0.305, 0.205] if drifted else [0.5, 0.3, 0.2])
    return {
        "channel": [str(v) for v in channel],
        "amount": [None if m else float(a) for a, m in zip(amount, miss, strict=True)],
        "hour": [int(h) for h in hour],
        "signed": [float(s) for s in signed],
        "category": cat,
    }


def scores_for(rng: np.random.Generator, fraud: np.ndarray, degraded: bool) -> np.ndarray:
    good = np.where(fraud, rng.beta(5.0, 2.0, fraud.size), rng.beta(1.3, 7.0, fraud.size))
    if degraded:
        good = 0.5 * good + 0.5 * rng.beta(2.0, 2.0, fraud.size)
    return np.round(good, 6)


def make_predictions(rng: np.random.Generator, n: int, ts: np.ndarray, drifted: bool, prefix: str):
    fraud = rng.random(n) < 0.08
    score = scores_for(rng, fraud, degraded=drifted)
    feats = features(rng, n, drifted)
    preds = [
        Prediction(
            prediction_id=f"{prefix}{i}",
            model="m",
            ts=float(ts[i]),
            score=float(score[i]),
            predicted=int(score[i] >= THRESHOLD),
            features={k: v[i] for k, v in feats.items()},
            latency_ms=float(rng.gamma(2.0, 8.0)),
        )
        for i in range(n)
    ]
    return preds, fraud.astype(int)


class World:
    """Reference events, current events with labels (and corrections), and the pipeline's snapshot."""

    def __init__(self) -> None:
        rng = np.random.default_rng(2024)
        self.ref_preds, ref_truth = make_predictions(rng, 6000, np.full(6000, T0 - 86400.0), False, "r")
        self.ref_labels = {p.prediction_id: int(y) for p, y in zip(self.ref_preds, ref_truth, strict=True)}
        self.spec = build_profile(SPEC, self.ref_preds, self.ref_labels, bins=10)

        n = 9000
        ts = np.sort(rng.uniform(T0, NOW, n))
        self.preds, truth = make_predictions(rng, n, ts, True, "c")
        labels: list[Label] = []
        self.final_label: dict[str, int] = {}
        for p, y in zip(self.preds, truth, strict=True):
            if rng.random() < 0.8:  # 20% never labelled
                labels.append(Label(p.prediction_id, int(y), ts=min(p.ts + rng.exponential(900.0), NOW)))
                self.final_label[p.prediction_id] = int(y)
        for lab in list(labels[::37]):  # corrections: a flipped second label, later
            labels.append(Label(lab.prediction_id, 1 - lab.label, ts=min(lab.ts + 600.0, NOW)))
            self.final_label[lab.prediction_id] = 1 - lab.label
        labels.sort(key=lambda lab: lab.ts)

        proc = PartitionProcessor({"m": self.spec}, MemoryStore(), bucket_s=BUCKET)
        self.agg = Aggregator(
            {"m": self.spec},
            WindowSettings(bucket_s=BUCKET, current_s=CURRENT, reference_s=86400.0),
            EvalSettings(current_s=CURRENT, drift_bins=10, costs=COSTS),
        )
        # Stage 1 in hourly batches, as a worker would flush.
        edges = np.arange(T0, NOW + 3600.0, 3600.0)
        for lo, hi in itertools.pairwise(edges):
            bp = [(None, p) for p in self.preds if lo <= p.ts < hi]
            bl = [(None, lab) for lab in labels if lo <= lab.ts < hi]
            assert proc.process_decoded(bp, bl) == []
            for partial in proc.take_partials():
                self.agg.apply(partial)
        assert proc.joiner.stats.corrections > 0
        self.snap: Snapshot = self.agg.evaluate(NOW)

        # The oracle's view: which events are in the current window (by their 1-minute bucket).
        cur_start = math.floor(NOW / BUCKET) * BUCKET - CURRENT + BUCKET
        self.current = [p for p in self.preds if math.floor(p.ts / BUCKET) * BUCKET >= cur_start]
        assert 0 < len(self.current) < len(self.preds)  # some events have left the window

    def value(self, name: str, **labels: str) -> float:
        return self.snap.value(name, model="m", variant="all", window="current", **labels)

    def raw(self, preds: list[Prediction], feature: str) -> list:
        return [p.features[feature] for p in preds]


@pytest.fixture(scope="module")
def world() -> World:
    return World()


def numeric(values: list) -> np.ndarray:
    return np.array([math.nan if v is None else v for v in values], dtype=np.float64)


def psi_oracle(r: np.ndarray, c: np.ndarray) -> float:
    rs = np.maximum(r / r.sum(), FLOOR)
    cs = np.maximum(c / c.sum(), FLOOR)
    return float(np.sum((cs - rs) * np.log(cs / rs)))


def numeric_counts(ref: np.ndarray, cur: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Counts over quantile bins of the reference (outer bins open) + a missing bin."""
    present = ref[~np.isnan(ref)]
    edges = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1))[1:-1])
    full = np.concatenate([[-np.inf], edges, [np.inf]])

    def counts(x: np.ndarray) -> np.ndarray:
        h, _ = np.histogram(x[~np.isnan(x)], bins=full)  # [a, b) bins: a value on an edge goes up
        return np.append(h, np.count_nonzero(np.isnan(x)))

    return counts(ref), counts(cur)


def categorical_counts(ref: list, cur: list) -> tuple[np.ndarray, np.ndarray]:
    """One bin per reference category, one for unseen, one for missing."""
    cats = sorted({v for v in ref if v is not None})

    def counts(vals: list) -> np.ndarray:
        out = [sum(1 for v in vals if v == c) for c in cats]
        out.append(sum(1 for v in vals if v is not None and v not in cats))
        out.append(sum(1 for v in vals if v is None))
        return np.array(out, dtype=np.float64)

    return counts(ref), counts(cur)


@pytest.mark.parametrize("feature", ["amount", "hour", "signed"])
def test_numeric_psi_and_js_exact(world: World, feature: str) -> None:
    r, c = numeric_counts(
        numeric(world.raw(world.ref_preds, feature)), numeric(world.raw(world.current, feature))
    )
    assert r.sum() == len(world.ref_preds) and c.sum() == len(world.current)
    psi = world.value("ml_data_drift_psi_score", feature=feature)
    js = world.value("ml_data_drift_js_divergence", feature=feature)
    assert psi == pytest.approx(psi_oracle(r, c), rel=EXACT, abs=0)
    assert js == pytest.approx(jensenshannon(r, c, base=2), rel=EXACT, abs=1e-15)
    missing = world.value("streamon_feature_missing_ratio", feature=feature)
    assert missing == c[-1] / c.sum()


def test_amount_drift_is_large(world: World) -> None:
    """Sanity: the injected drift is visible (so the exact tests above compare non-trivial numbers)."""
    assert world.value("ml_data_drift_psi_score", feature="amount") > 0.2
    assert world.value("ml_data_drift_psi_score", feature="signed") > 0.01


@pytest.mark.parametrize("feature", ["category", "channel"])
def test_categorical_psi_js_chi_square_exact(world: World, feature: str) -> None:
    r, c = categorical_counts(world.raw(world.ref_preds, feature), world.raw(world.current, feature))
    if feature == "category":
        assert c[-2] > 0 and c[-1] > 0 and r[-2] == 0 and r[-1] == 0  # unseen and missing bins in play
    assert world.value("ml_data_drift_psi_score", feature=feature) == pytest.approx(
        psi_oracle(r, c), rel=EXACT, abs=0
    )
    assert world.value("ml_data_drift_js_divergence", feature=feature) == pytest.approx(
        jensenshannon(r, c, base=2), rel=EXACT, abs=1e-15
    )
    # Chi-square: expected = reference shares floored at 1e-4, renormalised, scaled to the current total.
    shares = np.maximum(r / r.sum(), FLOOR)
    expected = shares / shares.sum() * c.sum()
    p = stats.chisquare(c, f_exp=expected).pvalue  # dof = k - 1
    got = world.value("ml_data_drift_chi2_p_value", feature=feature)
    assert got == pytest.approx(p, rel=1e-9, abs=1e-300)  # rtol 1e-9: scipy's sf vs chi2.sf, same formula
    if feature == "channel":
        assert 1e-10 < p < 0.5  # a p-value in the informative range, not a saturated 0
    assert world.value("streamon_feature_missing_ratio", feature=feature) == c[-1] / c.sum()


def test_chi_square_p_value_on_a_mild_shift() -> None:
    """A p-value far from 0 (the drifted world gives p ~ 0): drift.chi_square vs scipy, rtol 1e-12."""
    from streamon.core.statistics.drift import chi_square

    r = np.array([400.0, 300.0, 200.0, 100.0, 0.0, 0.0])
    c = np.array([98.0, 80.0, 45.0, 27.0, 1.0, 0.0])
    shares = np.maximum(r / r.sum(), FLOOR)
    expected = shares / shares.sum() * c.sum()
    stat, p = chi_square(r, c)
    ref = stats.chisquare(c, f_exp=expected)
    assert stat == pytest.approx(ref.statistic, rel=EXACT)
    assert p == pytest.approx(ref.pvalue, rel=1e-9)


@pytest.mark.parametrize("feature", ["amount", "signed"])
def test_ks_and_wasserstein_within_sketch_bounds(world: World, feature: str) -> None:
    ref = numeric(world.raw(world.ref_preds, feature))
    cur = numeric(world.raw(world.current, feature))
    ref, cur = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    alpha = world.spec.relative_accuracy
    # The pipeline's window holds exactly the raw current values (a fresh sketch of them is equal).
    fresh = LogSketch(alpha)
    fresh.add(cur)
    window = world.agg.models["m"].windows["default"].current
    assert window.sketches[feature] == fresh

    ks = world.value("ml_data_drift_ks_statistic", feature=feature)
    raw = stats.ks_2samp(ref, cur)
    ref_sk = world.spec.reference.sketches[feature]  # type: ignore[union-attr]
    max_share = max(ref_sk.buckets()[1].max() / ref.size, fresh.buckets()[1].max() / cur.size)
    assert 0.0 <= raw.statistic - ks <= max_share + 1e-12
    # p-value: the asymptotic two-sided Kolmogorov distribution at the sketch statistic (documented),
    # never smaller than scipy's p at the raw statistic.
    n, m = max(ref.size, cur.size), min(ref.size, cur.size)
    p = world.value("ml_data_drift_ks_p_value", feature=feature)
    assert p == pytest.approx(stats.kstwo.sf(ks, round(n * m / (n + m))), rel=1e-9, abs=1e-300)
    assert p >= stats.ks_2samp(ref, cur, method="asymp").pvalue * (1 - 1e-9)

    w = world.value("ml_data_drift_wasserstein_distance", feature=feature)
    w_raw = stats.wasserstein_distance(ref, cur)
    bound = alpha * (np.abs(ref).mean() + np.abs(cur).mean()) + 2e-9
    assert abs(w - w_raw) <= bound
    assert w_raw > 10 * bound or feature == "signed"  # the bound is informative for amounts


def labelled_current(world: World) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lab = [p for p in world.current if p.prediction_id in world.final_label]
    y = np.array([world.final_label[p.prediction_id] for p in lab])
    score = np.array([p.score for p in lab])
    return y, (score >= THRESHOLD).astype(int), score


def test_threshold_metrics_exact_vs_sklearn(world: World) -> None:
    y, yhat, _ = labelled_current(world)
    assert y.sum() > 50 and (1 - y).sum() > 50
    assert world.value("streamon_labelled_in_window") == len(y)
    assert world.value("streamon_predictions_in_window") == len(world.current)
    expected = {
        "ml_model_accuracy": accuracy_score(y, yhat),
        "ml_model_precision": precision_score(y, yhat),
        "ml_model_recall": recall_score(y, yhat),
        "ml_model_specificity": recall_score(y, yhat, pos_label=0),
        "ml_model_f1_score": f1_score(y, yhat),
    }
    for name, want in expected.items():
        assert world.value(name) == pytest.approx(want, rel=EXACT), name


def test_auc_vs_sklearn(world: World) -> None:
    y, _, score = labelled_current(world)
    binned = auc_bin(score)  # the fixed fine grid of the threshold-free metrics
    auc = world.value("ml_model_auc_roc")
    ap = world.value("ml_model_auc_pr")
    # Exact on the binned scores: ties within a bin count half (= sklearn's tie handling).
    assert auc == pytest.approx(roc_auc_score(y, binned), rel=EXACT)

    pos = np.bincount(binned[y == 1], minlength=AUC_BINS).astype(float)
    neg = np.bincount(binned[y == 0], minlength=AUC_BINS).astype(float)
    n_pos, n_neg = pos.sum(), neg.sum()
    auc_bound = 0.5 * float(pos @ neg) / (n_pos * n_neg)
    assert abs(auc - roc_auc_score(y, score)) <= auc_bound + 1e-12
    # AP bound: top bin first. In any order of a bin's items each positive's precision lies
    # in [lo, hi], for the raw scores' order as for the expectation the metric reports.
    p_, t_ = pos[::-1], (pos + neg)[::-1]
    tp_before = np.concatenate([[0.0], np.cumsum(p_)[:-1]])
    all_before = np.concatenate([[0.0], np.cumsum(t_)[:-1]])
    nz = p_ > 0
    hi = (tp_before + p_)[nz] / (all_before + p_)[nz]
    lo = (tp_before + 1)[nz] / (all_before + t_)[nz]
    ap_bound = float(np.sum(p_[nz] * (hi - lo)) / n_pos)
    assert abs(ap - average_precision_score(y, score)) <= ap_bound + 1e-12
    assert ap_bound < 0.05 and auc_bound < 0.01  # the bounds are tight enough to mean something


def test_business_roi_exact(world: World) -> None:
    y, yhat, _ = labelled_current(world)
    tp = int(np.sum((y == 1) & (yhat == 1)))
    fp = int(np.sum((y == 0) & (yhat == 1)))
    tn = int(np.sum((y == 0) & (yhat == 0)))
    fn = int(np.sum((y == 1) & (yhat == 0)))
    # design.md §3 "Business", with the configured costs.
    fp_cost = fp * COSTS.false_positive_cost
    fn_cost = fn * COSTS.false_negative_cost
    investigation = (tp + fp) * COSTS.investigation_cost
    benefit = tp * COSTS.fraud_prevention_value + tn * COSTS.customer_retention_value
    net = benefit - (fp_cost + fn_cost + investigation)
    operating = COSTS.system_operating_cost_monthly * CURRENT / (30 * 86400)
    roi = (net - operating) / operating
    assert world.value("ml_business_roi") == pytest.approx(roi, rel=EXACT)
    assert world.value("ml_fraud_expected_value") == pytest.approx(net / (tp + fp + tn + fn), rel=EXACT)
    assert world.value("ml_business_processing_volume") == len(world.current)
    assert world.value("ml_business_alert_volume") == sum(p.predicted for p in world.current)
    counters = {
        o: world.snap.value("ml_predictions_total", model="m", variant="all", outcome=o)
        for o in ("true_positive", "false_positive", "true_negative", "false_negative")
    }
    # The counter is monotonic over ALL labels ever added (corrections add the new outcome, never subtract).
    assert sum(counters.values()) >= tp + fp + tn + fn


def test_reference_window_is_the_pinned_profile(world: World) -> None:
    ref = world.ref_preds
    y = np.array([world.ref_labels[p.prediction_id] for p in ref])
    yhat = np.array([p.predicted for p in ref])
    acc = world.snap.value("ml_model_accuracy", model="m", variant="all", window="reference")
    assert acc == pytest.approx(accuracy_score(y, yhat), rel=EXACT)
    assert world.snap.value(
        "streamon_predictions_in_window", model="m", variant="all", window="reference"
    ) == len(ref)


def test_every_configurable_baseline_metric_gives_a_degradation_series() -> None:
    """Each key `models[].baseline` accepts is compared (f1_score is the evaluation's f1)."""
    from streamon.config import BASELINE_METRICS, parse_config_text
    from streamon.engine import build_engine

    baseline = ", ".join(f"{k}: 0.9" for k in BASELINE_METRICS)
    settings = parse_config_text(
        "models: [{name: m, baseline: {" + baseline + "}, features: [{name: x, type: numeric}]}]\n"
    )
    engine = build_engine(settings)
    pp = engine.partition_processor()
    rng = np.random.default_rng(3)
    preds, labels = [], []
    for i in range(400):
        score = float(rng.random())
        preds.append(
            orjson.dumps(
                {
                    "prediction_id": f"p{i}",
                    "model": "m",
                    "ts": 1000 + i,
                    "score": score,
                    "features": {"x": float(rng.normal())},
                }
            )
        )
        labels.append(
            orjson.dumps({"prediction_id": f"p{i}", "label": int(rng.random() < score), "ts": 2000})
        )
    # Event times in 1970: the decoder's wall-clock age check does not apply to this replay-like run.
    assert [r.reason for r in pp.process(preds, labels, now=None)] == []
    agg = engine.aggregator()
    for partial in pp.take_partials():
        agg.apply(partial)
    snap = agg.evaluate(now=1400.0)
    compared = {dict(s.labels)["metric"] for s in snap.series("streamon_model_degradation_ratio")}
    assert compared == {"f1" if k == "f1_score" else k for k in BASELINE_METRICS}
