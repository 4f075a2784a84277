"""The one-pass feature drift of an evaluation vs the per-statistic code it replaced, bit for bit.

``features_drift`` computes every feature of an evaluation in one pass (one grid and CDF pair
for KS and Wasserstein, input checks once, one vectorised p-value call per test). The oracle
below is a frozen copy of the per-feature, per-statistic functions it replaced (each statistic
checking its inputs, its own grid and one scipy call per feature); every sample of a full
evaluation must have the same bits with either. The statistics themselves are pinned against
scipy on the raw data in test_drift.py and test_evaluate.py.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping

import numpy as np
import numpy.typing as npt
import pytest
from scipy import special, stats
from scipy.special import rel_entr

from streamon.core.profile import FeatureSpec, ModelSpec, numeric_edges, top_categories
from streamon.core.stages import evaluate as ev
from streamon.core.stages.evaluate import EvalSettings, Sample
from streamon.core.stages.stage1 import Partial
from streamon.core.stages.stage2 import Aggregator, WindowSettings
from streamon.core.state.sketch import LogSketch
from streamon.core.state.summary import BucketSummary, category_counts
from streamon.core.statistics import drift

# --- the frozen oracle: the per-statistic code as it was ------------------------------------


def _old_counts(
    reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(reference_counts, dtype=np.float64)
    c = np.asarray(current_counts, dtype=np.float64)
    if r.ndim != 1 or r.shape != c.shape:
        raise ValueError(f"count arrays must be 1-D of equal length, got shapes {r.shape} and {c.shape}")
    if not (np.isfinite(r).all() and np.isfinite(c).all()) or (r < 0).any() or (c < 0).any():
        raise ValueError("counts must be finite and non-negative")
    return r, c


def old_psi(reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike, floor: float = 1e-4) -> float:
    r, c = _old_counts(reference_counts, current_counts)
    if r.sum() == 0 or c.sum() == 0:
        return math.nan
    rs = np.maximum(r / r.sum(), floor)
    cs = np.maximum(c / c.sum(), floor)
    return float(np.sum((cs - rs) * np.log(cs / rs)))


def old_js_distance(reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike) -> float:
    r, c = _old_counts(reference_counts, current_counts)
    if r.sum() == 0 or c.sum() == 0:
        return math.nan
    p, q = r / r.sum(), c / c.sum()
    m = (p + q) / 2.0
    js = (np.sum(rel_entr(p, m)) + np.sum(rel_entr(q, m))) / math.log(2.0)
    return math.sqrt(max(float(js) / 2.0, 0.0))


def old_chi_square(
    reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike, floor: float = 1e-4
) -> tuple[float, float]:
    r, c = _old_counts(reference_counts, current_counts)
    n = c.sum()
    if r.sum() == 0 or n == 0:
        return math.nan, math.nan
    shares = np.maximum(r / r.sum(), floor)
    expected = shares / shares.sum() * n
    statistic = float(np.sum((c - expected) ** 2 / expected))
    dof = r.size - 1
    p_value = float(stats.chi2.sf(statistic, dof)) if dof > 0 else math.nan
    return statistic, p_value


def _old_common_grid(ref: LogSketch, cur: LogSketch) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    if ref.relative_accuracy != cur.relative_accuracy:
        raise ValueError("sketches must have the same relative accuracy to be compared")
    if ref.is_empty or cur.is_empty:
        return None
    grid = np.union1d(ref.buckets()[0], cur.buckets()[0])
    return grid, ref.cdf(grid), cur.cdf(grid)


def old_ks_from_sketches(ref: LogSketch, cur: LogSketch) -> tuple[float, float]:
    common = _old_common_grid(ref, cur)
    if common is None:
        return math.nan, math.nan
    _, f_ref, f_cur = common
    d = float(np.max(np.abs(f_ref - f_cur)))
    n, m = sorted([float(ref.count), float(cur.count)], reverse=True)
    n_eff = np.round(n * m / (n + m))
    if n_eff < 1:
        return d, math.nan
    if n_eff > 100_000:  # noqa: SIM108 (kept as it was)
        p = float(special.kolmogorov(math.sqrt(n_eff) * d))
    else:
        p = float(stats.kstwo.sf(d, n_eff))
    return d, float(np.clip(p, 0.0, 1.0))


def old_wasserstein_from_sketches(ref: LogSketch, cur: LogSketch) -> float:
    common = _old_common_grid(ref, cur)
    if common is None:
        return math.nan
    grid, f_ref, f_cur = common
    return float(np.sum(np.abs(f_ref - f_cur)[:-1] * np.diff(grid)))


def _old_frozen(sketch: LogSketch | None, relative_accuracy: float) -> LogSketch:
    out = LogSketch(sketch.relative_accuracy if sketch is not None else relative_accuracy)
    if sketch is not None:
        out += sketch
    return out


def _old_sketch_bins(ref: LogSketch, cur: LogSketch, bins: int) -> tuple[np.ndarray, np.ndarray]:
    edges = np.unique(ref.quantile(np.linspace(0.0, 1.0, bins + 1)[1:-1]))

    def counts(sk: LogSketch) -> np.ndarray:
        values, cnt = sk.buckets()
        cum = np.concatenate([[0], np.cumsum(cnt)])
        below = cum[np.searchsorted(values, edges, side="right")]
        return np.diff(np.concatenate([[0], below, [sk.count]]))

    return counts(ref), counts(cur)


def old_feature_drift(
    spec: ModelSpec, name: str, kind: str, cur: BucketSummary, ref: BucketSummary, bins: int
) -> dict[str, float]:
    out: dict[str, float] = {}
    if kind == "categorical":
        cats = spec.categories.get(name)
        ref_counter: Mapping[str, int] = ref.categories.get(name, {})
        if cats is None:
            cats = [
                k
                for k, _ in sorted(ref_counter.items(), key=lambda kv: (-kv[1], kv[0]))
                if not k.startswith("__")
            ]
        r = category_counts(ref_counter, cats)
        c = category_counts(cur.categories.get(name, {}), cats)
        out["chi2_p"] = old_chi_square(r, c)[1] if r.sum() and c.sum() else math.nan
        total = c.sum()
        out["missing"] = c[-1] / total if total else math.nan
    else:
        cur_sk = _old_frozen(cur.sketches.get(name), spec.relative_accuracy)
        ref_sk = _old_frozen(ref.sketches.get(name), spec.relative_accuracy)
        if name in spec.edges:
            r = ref.vector(f"bins:{name}", len(spec.edges[name]) + 1)
            c = cur.vector(f"bins:{name}", len(spec.edges[name]) + 1)
        elif not ref_sk.is_empty:
            r, c = _old_sketch_bins(ref_sk, cur_sk, bins)
        else:
            r = c = np.zeros(1, dtype=np.int64)
        miss_r = ref.vector(f"missing:{name}", 2)
        miss_c = cur.vector(f"missing:{name}", 2)
        r = np.append(r, miss_r[0])
        c = np.append(c, miss_c[0])
        out["missing"] = miss_c[0] / miss_c[1] if miss_c[1] else math.nan
        if ref_sk.is_empty or cur_sk.is_empty:
            out["ks"] = out["ks_p"] = out["wasserstein"] = math.nan
        else:
            out["ks"], out["ks_p"] = old_ks_from_sketches(ref_sk, cur_sk)
            out["wasserstein"] = old_wasserstein_from_sketches(ref_sk, cur_sk)
            values, counts = ref_sk.buckets()
            mean = float(np.average(values, weights=counts))
            out["ref_std"] = float(np.sqrt(np.average((values - mean) ** 2, weights=counts)))
    if r.sum() == 0 or c.sum() == 0:
        out["psi"] = out["js"] = math.nan
    else:
        out["psi"] = old_psi(r, c)
        out["js"] = old_js_distance(r, c)
    return out


def old_features_drift(
    spec: ModelSpec,
    features: list[tuple[str, str]],
    cur: BucketSummary,
    ref: BucketSummary,
    bins: int,
    methods: object = None,
) -> list[dict[str, float]]:
    # Every value, whatever the methods: evaluate_model emits only the enabled methods' samples.
    return [old_feature_drift(spec, name, kind, cur, ref, bins) for name, kind in features]


# --- a seeded stream ---------------------------------------------------------------------------

T0 = 1_767_225_600.0
CATS = ["grocery", "fuel", "travel", "gaming", "pharmacy"]
FEATURES = [
    FeatureSpec("amount", "numeric"),
    FeatureSpec("hour", "numeric"),
    FeatureSpec("signed", "numeric"),
    FeatureSpec("sparse", "numeric"),  # absent from the reference in the rolling world
    FeatureSpec("category", "categorical"),
    FeatureSpec("channel", "categorical"),
]


def _columns(rng: np.random.Generator, n: int, drifted: bool) -> dict[str, object]:
    amount = np.round(rng.lognormal(3.5, 1.0, n) * (1.3 if drifted else 1.0), 2)
    amount[rng.random(n) < (0.1 if drifted else 0.03)] = np.nan
    hour = rng.integers(0, 24, n).astype(np.float64)
    signed = rng.normal(0.3 if drifted else 0.0, 3.0, n)
    signed[rng.random(n) < 0.05] = 0.0  # the zero bucket
    sparse = np.full(n, np.nan)
    if drifted:
        sparse[rng.random(n) < 0.5] = rng.exponential(2.0)
    p = [0.2] * 5 if drifted else [0.4, 0.3, 0.15, 0.1, 0.05]
    cat: list[str | None] = [str(v) for v in rng.choice(CATS, n, p=p)]
    for i in np.flatnonzero(rng.random(n) < 0.03):
        cat[i] = None if i % 2 else "crypto"  # missing values and an unseen category
    channel = [str(v) for v in rng.choice(["web", "app", "pos"], n, p=[0.5, 0.3, 0.2])]
    return {
        "amount": amount,
        "hour": hour,
        "signed": signed,
        "sparse": sparse,
        "category": cat,
        "channel": channel,
    }


def _summary(spec: ModelSpec, rng: np.random.Generator, n: int, drifted: bool) -> BucketSummary:
    cols = _columns(rng, n, drifted)
    s = BucketSummary()
    scores = np.round(rng.beta(1.2, 6.0, n), 6)
    predicted = (scores >= spec.threshold).astype(np.int64)
    s.add_predictions(scores, predicted, spec.score_bins, rng.gamma(2.0, 8.0, n))
    for name in spec.numeric:
        s.add_numeric_feature(name, cols[name], spec.edges.get(name))  # type: ignore[arg-type]
    for name in spec.categorical:
        s.add_categorical_feature(name, cols[name])  # type: ignore[arg-type]
    labelled = rng.random(n) < 0.7
    label = (rng.random(n) < np.where(scores > 0.3, 0.5, 0.02)).astype(np.int64)
    s.add_labels(label[labelled], predicted[labelled], scores[labelled], spec.score_bins)
    return s


def _pinned(spec: ModelSpec, rng: np.random.Generator, n: int) -> ModelSpec:
    cols = _columns(rng, n, False)
    spec.edges = {k: numeric_edges(cols[k]) for k in spec.numeric}  # type: ignore[arg-type]
    spec.categories = {k: top_categories(cols[k]) for k in spec.categorical}  # type: ignore[arg-type]
    spec.reference = _summary(spec, rng, n, False)
    return spec


def aggregator(
    pinned: bool, variants: tuple[str, ...], per_bucket: int, seed: int
) -> tuple[Aggregator, float]:
    """A model over 3h of 1-minute buckets (current window 1h), one or more variants."""
    rng = np.random.default_rng(seed)
    spec = ModelSpec("m", threshold=0.5, score_bins=50, features=list(FEATURES))
    if pinned:
        spec = _pinned(spec, rng, 20 * per_bucket)
    agg = Aggregator(
        {"m": spec},
        WindowSettings(bucket_s=60.0, current_s=3600.0, reference_s=2 * 3600.0, reference_bucket_s=600.0),
        EvalSettings(current_s=3600.0, min_labelled=20, min_business_labelled=20, min_estimation_labelled=20),
    )
    for k in range(180):
        start = T0 + 60.0 * k
        buckets = {(v, start): _summary(spec, rng, per_bucket, k >= 120) for v in variants}
        agg.apply(Partial("m", "s:0", start + 59.0, buckets))
    return agg, T0 + 180 * 60.0 - 1.0


def _bits(samples: list[Sample]) -> list[tuple[str, tuple[tuple[str, str], ...], bytes]]:
    return [(s.name, s.labels, struct.pack("<d", s.value)) for s in samples]


def _evaluate_both(agg: Aggregator, now: float, monkeypatch: pytest.MonkeyPatch) -> tuple[list, list]:
    new = agg.evaluate(now).samples
    with monkeypatch.context() as m:
        m.setattr(ev, "features_drift", old_features_drift)
        old = agg.evaluate(now).samples
    return new, old


@pytest.mark.parametrize(
    ("pinned", "variants", "per_bucket"),
    [
        (True, ("default",), 40),  # pinned profile, KS p-values from the exact series
        (False, ("default",), 40),  # rolling reference
        (False, ("a", "b"), 30),  # two variants and "all" (merged summaries, memo per pair)
        (True, ("a", "b"), 30),
    ],
)
def test_evaluation_is_bit_identical_to_the_per_statistic_code(
    pinned: bool, variants: tuple[str, ...], per_bucket: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    agg, now = aggregator(pinned, variants, per_bucket, seed=11)
    new, old = _evaluate_both(agg, now, monkeypatch)
    drift_series = [s for s in new if s.name.startswith(("ml_data_drift", "streamon_feature"))]
    assert len(drift_series) > 20 * len(variants)
    assert any(s.name == "ml_data_drift_ks_p_value" and 0.0 < s.value < 1.0 for s in new)
    assert any(s.name == "ml_data_drift_chi2_p_value" and 0.0 < s.value < 1.0 for s in new)
    assert any(math.isnan(s.value) for s in drift_series)  # the sparse feature: no reference values
    assert _bits(new) == _bits(old)


def test_large_windows_take_the_limiting_ks_branch_bit_identically(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above an effective n of 100,000 the KS p-value is the limiting distribution, vectorised too."""
    agg, now = aggregator(False, ("default",), 4000, seed=5)
    state = agg.models["m"]
    w = state.windows["default"]
    n_eff = w.current.sketches["amount"].count * w.reference.sketches["amount"].count
    n_eff /= w.current.sketches["amount"].count + w.reference.sketches["amount"].count
    assert n_eff > drift.KS_LIMIT_N
    new, old = _evaluate_both(agg, now, monkeypatch)
    assert _bits(new) == _bits(old)


def test_evaluate_model_without_memo_and_with_a_feature_subset(monkeypatch: pytest.MonkeyPatch) -> None:
    agg, _ = aggregator(True, ("default",), 30, seed=3)
    state = agg.models["m"]
    spec, w = state.spec, state.windows["default"]
    assert spec.reference is not None
    for wanted in (None, ("signed", "channel")):
        settings = EvalSettings(current_s=3600.0, drift_features=wanted)
        new = ev.evaluate_model(spec, "default", w.current, spec.reference, settings)
        with monkeypatch.context() as m:
            m.setattr(ev, "features_drift", old_features_drift)
            old = ev.evaluate_model(spec, "default", w.current, spec.reference, settings)
        assert _bits(new) == _bits(old)


@pytest.mark.parametrize(
    "methods",
    [("psi",), ("psi", "js_divergence", "chi_square"), ("wasserstein",), ("ks_test", "psi"), ()],
)
def test_drift_tests_left_out_change_no_other_value(methods: tuple[str, ...]) -> None:
    """features_drift with some methods gives the full computation's values for those (bit for
    bit) and leaves out only the values of the others."""
    agg, _ = aggregator(False, ("default",), 30, seed=4)
    state = agg.models["m"]
    spec, w = state.spec, state.windows["default"]
    feats = [(f.name, f.kind) for f in spec.features]
    full = ev.features_drift(spec, feats, w.current, w.reference, 10)
    part = ev.features_drift(spec, feats, w.current, w.reference, 10, methods)
    ks_pass = {"ks_test", "wasserstein"} & set(methods)
    for (_, kind), whole, some in zip(feats, full, part, strict=True):
        dropped = set(whole) - set(some)
        expect = set()
        if kind == "categorical" and "chi_square" not in methods:
            expect = {"chi2_p"}
        elif kind == "numeric" and not ks_pass:
            expect = {"ks", "ks_p", "wasserstein", "ref_std"} & set(whole)
        assert dropped == expect
        for key, value in some.items():
            if kind == "numeric" and key == "ks_p" and "ks_test" not in methods:
                assert math.isnan(value)  # the KS pass sets it NaN; its p-value is not computed
                continue
            assert struct.pack("<d", value) == struct.pack("<d", whole[key]), key


def test_vectorised_p_values_equal_one_call_per_test() -> None:
    rng = np.random.default_rng(8)
    d = rng.uniform(0.0, 0.2, 60)
    sizes = np.concatenate([rng.uniform(0.2, 3.0, 5), rng.uniform(10, 5e5, 55), [math.nan]])
    d = np.append(d, 0.1)
    got = drift.ks_p_values(d, sizes)
    for di, si, gi in zip(d, sizes, got, strict=True):
        n_eff = np.round(si)
        if not n_eff >= 1:
            assert math.isnan(gi)
            continue
        p = special.kolmogorov(math.sqrt(n_eff) * di) if n_eff > 100_000 else stats.kstwo.sf(di, n_eff)
        assert struct.pack("<d", gi) == struct.pack("<d", float(np.clip(p, 0.0, 1.0)))
    statistic = rng.uniform(0.0, 40.0, 20)
    dof = rng.integers(0, 12, 20)
    chi = drift.chi2_p_values(statistic, dof)
    for s, k, p in zip(statistic, dof, chi, strict=True):
        want = float(stats.chi2.sf(s, k)) if k > 0 else math.nan
        assert struct.pack("<d", p) == struct.pack("<d", want)


def test_one_check_per_evaluation_still_rejects_bad_counts() -> None:
    with pytest.raises(ValueError, match="finite and non-negative"):
        drift.check_counts(np.array([1, 2]), np.array([3, -1]))
    with pytest.raises(ValueError, match="finite and non-negative"):
        drift.check_counts(np.array([1.0, math.inf]))
    drift.check_counts(np.array([0, 2]), np.array([0.0, 1.5]))
    drift.check_counts()


def old_bucket_errors(confusions: Iterable[np.ndarray]) -> tuple[list[int], list[int]]:
    """The per-bucket loop ``bucket_errors`` replaced (the oracle for the concept-drift input)."""
    errors: list[int] = []
    labelled: list[int] = []
    for c in confusions:
        errors.append(int(c[1]) + int(c[3]))  # FP + FN
        labelled.append(int(c.sum()))
    return errors, labelled


def test_bucket_errors_equal_the_per_bucket_loop() -> None:
    rng = np.random.default_rng(4)
    rows = [rng.integers(0, 50, 4) for _ in range(300)] + [np.zeros(4, dtype=np.int64)]
    got = ev.bucket_errors(iter(rows))
    assert got == old_bucket_errors(rows)
    assert all(type(v) is int for v in got[0] + got[1])
    assert ev.bucket_errors([]) == ([], [])


@pytest.mark.parametrize("length", [1, 2, 7, 8, 9, 11, 12, 17, 40, 130])
def test_psi_and_js_of_rows_equal_the_one_dimensional_functions(length: int) -> None:
    rng = np.random.default_rng(length)
    r = rng.integers(0, 1000, (25, length)).astype(np.float64)
    c = rng.integers(0, 100, (25, length)).astype(np.float64)
    r[rng.random(r.shape) < 0.2] = 0.0
    c[3] = 0.0  # an empty current side
    r[4] = 0.0  # an empty reference side
    c[5] = r[5]  # equal shares: JS rounds to ~0
    psi_rows, js_rows = drift.psi_js_rows(r, c)
    for k in range(r.shape[0]):
        assert struct.pack("<d", psi_rows[k]) == struct.pack("<d", old_psi(r[k], c[k]))
        assert struct.pack("<d", js_rows[k]) == struct.pack("<d", old_js_distance(r[k], c[k]))


def test_count_vectors_of_different_lengths_are_rejected_as_before() -> None:
    spec = ModelSpec("m", features=[FeatureSpec("x", "numeric")], edges={"x": np.array([1.0, 2.0])})
    ref, cur = BucketSummary(), BucketSummary()
    ref.add_numeric_feature("x", np.array([0.5, 1.5, 2.5]), np.array([1.0, 2.0]))
    cur.add_numeric_feature("x", np.array([0.5, 1.5, 2.5]), np.array([1.0, 2.0, 3.0]))  # other edges
    for fn in (ev.features_drift, old_features_drift):
        with pytest.raises(ValueError, match="equal length"):
            fn(spec, [("x", "numeric")], cur, ref, 10)


def test_what_is_kept_with_the_window_sketches_follows_late_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """Quantile bins, bucket arrays and the reference std are kept with a window's sketches
    between evaluations; a late delta into the reference (and new current data) must be seen."""
    agg, now = aggregator(False, ("default",), 40, seed=21)
    first, _ = _evaluate_both(agg, now, monkeypatch)
    rng = np.random.default_rng(22)
    state = agg.models["m"]
    late = _summary(state.spec, rng, 400, True)  # a late delta, drifted: moves the reference
    agg.apply(Partial("m", "s:0", now, {("default", T0 + 30 * 60.0): late}))
    agg.apply(Partial("m", "s:0", now, {("default", now - 30.0): _summary(state.spec, rng, 400, True)}))
    new, old = _evaluate_both(agg, now, monkeypatch)  # the old code reads fresh copies only
    assert _bits(new) == _bits(old)
    assert _bits(new) != _bits(first)  # the deltas did change the drift values
