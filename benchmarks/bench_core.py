"""Benchmarks of the core statistics engine (issue "Core statistics engine", performance section).

Run from the repository root::

    .venv/bin/python benchmarks/bench_core.py            # full run (a few minutes)
    .venv/bin/python benchmarks/bench_core.py --quick    # smaller inputs, fewer repeats

Prints one markdown table. The machine these run on is small and shared, so absolute
rates are noisy: every rate is the best of several repeats, and where a target is
relative to a ceiling (replay vs ``orjson.loads`` alone, evaluation vs its KS
tests) both are measured side by side, interleaved, in the same run, and the RATIO
is printed next to the absolute numbers. Nothing here asserts on timings.

What is measured (see docs/benchmarks.md for the discussion of the numbers):

a. adding a batch of 10k events x 10 features (8 numeric, 2 categorical) + labels to a
   :class:`BucketSummary`: the columnar part alone (arrays already built) and the same
   batch from :class:`Prediction` objects through :func:`summarise` (columns built from
   the objects);
b. one :meth:`Aggregator.evaluate` of a model with 100 features over a 24h window of
   1-minute buckets (rolling 7d reference), next to the same evaluation with the
   per-statistic drift code it replaced (interleaved, ratio printed), plus the share of it
   that is the feature drift (``evaluate.features_drift``) and river's ADWIN;
c. ``streamon replay`` (in process: :func:`replay_files`) over JSONL from
   :mod:`streamon.traffic`, against ``orjson.loads`` of the same lines;
d. state held by an :class:`Aggregator` after 10k / 100k / 1M (/ 10M) events over the same
   48h of event time;
e. :func:`evaluate_model` of a 4-feature model with the estimated-performance family on vs
   off (interleaved, ratio printed), and the estimation alone;
f. stage 1 (decode, join, summarise) with 0 vs 2 segment fields (interleaved, ratio printed).

``--against TREE`` (with b) also times b's evaluation in another checkout of the project
(e.g. the code before a change) and in this one, in alternating fresh processes, and prints
both with the ratio and whether every sample has the same bits::

    .venv/bin/python benchmarks/bench_core.py --only b --against ../streamon-before
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import math
import platform
import struct
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from scipy import special

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streamon.config import load_config  # noqa: E402
from streamon.core.events import Prediction  # noqa: E402
from streamon.core.profile import FeatureSpec, ModelSpec, SegmentSpec, numeric_edges, summarise  # noqa: E402
from streamon.core.stages.evaluate import EvalSettings, bucket_errors, estimation, evaluate_model  # noqa: E402
from streamon.core.stages.join import Joiner, LabelDelta, MemoryStore  # noqa: E402
from streamon.core.stages.stage1 import Partial, PartitionProcessor  # noqa: E402
from streamon.core.stages.stage2 import Aggregator, WindowSettings  # noqa: E402
from streamon.core.state.sketch import LogSketch  # noqa: E402
from streamon.core.state.summary import BucketSummary  # noqa: E402
from streamon.core.statistics.concept_drift import MAX_STREAM, detect_concept_drift_counts  # noqa: E402
from streamon.engine import build_engine  # noqa: E402
from streamon.replay import replay_files  # noqa: E402
from streamon.traffic import CATEGORIES, TrafficSpec, generate  # noqa: E402

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
CONFIG = ROOT / "configs" / "monitoring_config.yaml"


# ---------------------------------------------------------------------- timing helpers


def interleaved(fns: dict[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    """Best time (s) of each function; the functions take turns so they see the same noise."""
    best = dict.fromkeys(fns, math.inf)
    for _ in range(repeat):
        for name, fn in fns.items():
            gc.collect()
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    return best


Row = tuple[str, str, str, str]  # benchmark, measurement, value, target / note


# ---------------------------------------------------------------------- data


def feature_columns(rng: np.random.Generator, n: int, n_numeric: int, n_categorical: int) -> dict[str, Any]:
    """Numeric columns (some with 2% missing, one with negatives) and categorical lists."""
    cols: dict[str, Any] = {}
    for i in range(n_numeric):
        kind = i % 4
        if kind == 0:
            v = rng.lognormal(3.5, 1.0, n).round(2)
        elif kind == 1:
            v = rng.integers(0, 24, n).astype(np.float64)
        elif kind == 2:
            v = rng.normal(0.0, 5.0, n).round(3)
        else:
            v = rng.exponential(5.0, n).round(3)
        if i % 2 == 0:
            v[rng.random(n) < 0.02] = np.nan
        cols[f"num_{i}"] = v
    for i in range(n_categorical):
        cats = np.array(CATEGORIES, dtype=object)[rng.integers(0, len(CATEGORIES), n)]
        values: list[str | None] = list(cats)
        if i == 0:
            for j in np.flatnonzero(rng.random(n) < 0.01):
                values[j] = None
        cols[f"cat_{i}"] = values
    return cols


def spec_for(cols: dict[str, Any], name: str = "m", pinned: bool = True) -> ModelSpec:
    feats = [
        FeatureSpec(k, "numeric" if isinstance(v, np.ndarray) else "categorical") for k, v in cols.items()
    ]
    spec = ModelSpec(name, threshold=0.5, score_bins=200, features=feats)
    if pinned:
        spec.edges = {k: numeric_edges(v) for k, v in cols.items() if isinstance(v, np.ndarray)}
    return spec


# ---------------------------------------------------------------------- (a) summaries


def bench_summaries(quick: bool) -> list[Row]:
    rng = np.random.default_rng(1)
    n = 10_000
    cols = feature_columns(rng, n, n_numeric=8, n_categorical=2)
    spec = spec_for(cols)
    scores = rng.beta(1.2, 9.0, n)
    predicted = (scores >= 0.5).astype(np.int64)
    latency = rng.gamma(2.0, 8.0, n)
    label = (rng.random(n) < 0.05).astype(np.int64)
    numeric = [(k, v) for k, v in cols.items() if isinstance(v, np.ndarray)]
    categorical = [(k, v) for k, v in cols.items() if not isinstance(v, np.ndarray)]

    def columnar() -> BucketSummary:
        s = BucketSummary()
        s.add_predictions(scores, predicted, 200, latency)
        for k, v in numeric:
            s.add_numeric_feature(k, v, spec.edges[k], 0.01)
        for k, cat in categorical:
            s.add_categorical_feature(k, cat)
        s.add_labels(label, predicted, scores, 200)
        return s

    # The same events as objects, as stage 1 holds them (JSON-native Python values).
    preds = []
    for i in range(n):
        features = {k: (None if math.isnan(v[i]) else float(v[i])) for k, v in numeric}
        features.update({k: cat[i] for k, cat in categorical})
        preds.append(
            Prediction(f"p{i}", "m", T0 + i, float(scores[i]), int(predicted[i]), "A", "", "1", features,
                       float(latency[i]), math.nan)
        )  # fmt: skip
    deltas = [LabelDelta("m", "A", p.ts, p.score, p.predicted, int(label[i]), 1) for i, p in enumerate(preds)]

    def from_objects() -> BucketSummary:
        s = summarise(spec, preds)
        s.add_labels(
            np.fromiter((d.label for d in deltas), dtype=np.int64, count=n),
            np.fromiter((d.predicted for d in deltas), dtype=np.int64, count=n),
            np.fromiter((d.score for d in deltas), dtype=np.float64, count=n),
            200,
        )
        return s

    assert columnar() == from_objects()
    t = interleaved({"columnar": columnar, "objects": from_objects}, 5 if quick else 25)
    col_rate, obj_rate = n / t["columnar"], n / t["objects"]
    return [
        ("a. summaries", "10k events x 10 features + labels, columnar (arrays built)",
         f"{col_rate / 1e6:.2f} M events/s ({t['columnar'] * 1e3:.2f} ms)", ">= 2 M events/s"),
        ("a. summaries", "same batch from Prediction objects (summarise: build columns + add)",
         f"{obj_rate / 1e6:.2f} M events/s ({t['objects'] * 1e3:.2f} ms)",
         f"columnar share {t['columnar'] / t['objects']:.0%}"),
    ]  # fmt: skip


# ---------------------------------------------------------------------- (b) evaluation


def _stratified_columns(n: int, n_numeric: int, n_categorical: int, offset: float) -> dict[str, Any]:
    """Like :func:`feature_columns`, but from evenly spaced quantiles ``(i + offset) / n``.

    Templates with offsets spread over [0, 1) add up to one stratified sample of all
    their values, so windows built from a few dozen templates have the sampling noise of
    a real window of that size, not of one template.
    """
    u = (np.arange(n) + offset) / n
    cols: dict[str, Any] = {}
    for i in range(n_numeric):
        kind = i % 4
        if kind == 0:
            v = np.exp(3.5 + special.ndtri(u))
        elif kind == 1:
            v = np.floor(24.0 * u)
        elif kind == 2:
            v = 5.0 * special.ndtri(u)
        else:
            v = -5.0 * np.log1p(-u)
        if i % 2 == 0:
            v[25::50] = np.nan  # 2% missing, spread evenly over the quantiles
        cols[f"num_{i}"] = v
    shares = np.cumsum([0.30, 0.12, 0.08, 0.05, 0.15, 0.15, 0.10, 0.05])
    cats = np.array(CATEGORIES, dtype=object)[np.searchsorted(shares, u, side="right").clip(0, 7)]
    for i in range(n_categorical):
        cols[f"cat_{i}"] = list(cats)
    return cols


def _template(
    rng: np.random.Generator, spec: ModelSpec, n: int, offset: float, shift: dict[str, float]
) -> BucketSummary:
    cols = _stratified_columns(n, len(spec.numeric), len(spec.categorical), offset)
    s = BucketSummary()
    scores = rng.beta(1.2, 9.0, n)
    predicted = (scores >= 0.5).astype(np.int64)
    s.add_predictions(scores, predicted, spec.score_bins, rng.gamma(2.0, 8.0, n))
    for name in spec.numeric:
        s.add_numeric_feature(name, cols[name] * shift.get(name, 1.0), spec.edges.get(name))
    for name in spec.categorical:
        s.add_categorical_feature(name, cols[name])
    label = (rng.random(n) < np.where(scores > 0.3, 0.5, 0.01)).astype(np.int64)
    s.add_labels(label, predicted, scores, spec.score_bins)
    return s


def eval_fixture(per_minute: int, drifted: int, n_templates: int) -> tuple[Aggregator, float]:
    """A model with 90 numeric + 10 categorical features, one variant: 7 days of hourly
    reference buckets and 24h of 1-minute buckets (rolling reference, the default);
    ``drifted`` numeric features scaled by 1.05 in the current window (mild drift)."""
    rng = np.random.default_rng(2)
    spec = spec_for(feature_columns(rng, 10, 90, 10), pinned=False)
    shift = {name: 1.05 for name in spec.numeric[:drifted]}
    k_fine, k_coarse = n_templates, max(2, n_templates // 4)
    fine = [_template(rng, spec, per_minute, (k + 0.5) / k_fine, shift) for k in range(k_fine)]
    coarse = [_template(rng, spec, 60 * per_minute, (k + 0.5) / k_coarse, {}) for k in range(k_coarse)]
    agg = Aggregator({"m": spec}, WindowSettings(bucket_s=60, current_s=86400, reference_s=7 * 86400))
    start = T0 + 7 * 86400  # the current window is [start, start + 24h)
    end = start + 86400 - 60
    for h in range(7 * 24):
        agg.apply(Partial("m", "s:0", end, {("default", T0 + 3600 * h): coarse[h % k_coarse]}))
    for k in range(1440):
        agg.apply(Partial("m", "s:0", end, {("default", start + 60 * k): fine[k % k_fine]}))
    return agg, end + 59


def _old_evaluation() -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    """Run a function with the per-statistic drift code the one-pass version replaced.

    The frozen copy lives in tests/unit/test_drift_batch.py (the oracle that pins the new
    code's output bit for bit); here it is only swapped in to time it side by side.
    """
    from streamon.core.stages import evaluate as ev
    from streamon.core.stages import stage2
    from tests.unit.test_drift_batch import old_bucket_errors, old_features_drift

    def wrap(fn: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            saved = ev.features_drift, stage2.bucket_errors
            ev.features_drift, stage2.bucket_errors = old_features_drift, old_bucket_errors
            try:
                return fn()
            finally:
                ev.features_drift, stage2.bucket_errors = saved

        return run

    return wrap


def _live_evaluation(agg: Aggregator, now: float, repeat: int) -> float:
    """Best time (s) of an evaluation right after new predictions reached the current window.

    Repeated evaluations of an unchanged state reuse what each window sketch keeps
    (``LogSketch.derived``); a live worker merges new partials between evaluations, so
    every current-window sketch has changed and only the reference side is reused.
    """
    spec = agg.models["m"].spec
    rng = np.random.default_rng(9)
    deltas = [_template(rng, spec, 20, (k + 0.5) / repeat, {}) for k in range(repeat)]
    best = math.inf
    for delta in deltas:
        agg.apply(Partial("m", "s:0", now, {("default", now - 59): delta}))
        gc.collect()
        t = time.perf_counter()
        agg.evaluate(now)
        best = min(best, time.perf_counter() - t)
    return best


def bench_evaluate(quick: bool) -> list[Row]:
    from streamon.core.stages.evaluate import features_drift

    old = _old_evaluation()
    rows: list[Row] = []
    per_minute = 200
    for drifted in (0, 10):
        agg, now = eval_fixture(per_minute, drifted, 6 if quick else 24)
        state = agg.models["m"]
        spec, w = state.spec, state.windows["default"]
        agg.evaluate(now)  # warm up

        # The feature drift of one evaluation alone (PSI, JS, chi-square, KS, Wasserstein of
        # the 100 features), on the same summaries, new and old.
        feats = [(f.name, f.kind) for f in spec.features]
        cur = w.current.capped(spec.max_categories, spec.protected_categories)
        ref = w.reference.capped(spec.max_categories, spec.protected_categories)
        errors = bucket_errors(b.confusion for _, b in w.buckets())
        fed = int(sum(errors[1]))

        def drift_new(
            spec: ModelSpec = spec,
            feats: list[tuple[str, str]] = feats,
            cur: BucketSummary = cur,
            ref: BucketSummary = ref,
        ) -> None:
            features_drift(spec, feats, cur, ref, 10)

        def adwin(errors: tuple[list[int], list[int]] = errors) -> None:
            detect_concept_drift_counts(*errors)  # the error stream, as the evaluation feeds it

        def evaluate(agg: Aggregator = agg, now: float = now) -> None:
            agg.evaluate(now)

        def drift_old(
            spec: ModelSpec = spec,
            feats: list[tuple[str, str]] = feats,
            cur: BucketSummary = cur,
            ref: BucketSummary = ref,
        ) -> None:
            from tests.unit.test_drift_batch import old_features_drift

            old_features_drift(spec, feats, cur, ref, 10)

        repeat = 3 if quick else 9
        t = interleaved(
            {"evaluate": evaluate, "evaluate_old": old(evaluate), "drift": drift_new, "drift_old": drift_old,
             "adwin": adwin},
            repeat,
        )  # fmt: skip
        n_samples = len(agg.evaluate(now).samples)
        bits = [(x.name, x.labels, struct.pack("<d", x.value)) for x in agg.evaluate(now).samples]
        old_samples = old(lambda agg=agg, now=now: agg.evaluate(now).samples)()
        same = bits == [(x.name, x.labels, struct.pack("<d", x.value)) for x in old_samples]
        label = "no drift" if not drifted else f"{drifted} of 90 numeric features drifted 5%"
        ratio = t["evaluate_old"] / t["evaluate"]
        rows.append(
            ("b. evaluate", f"100 features, 24h x 1-min buckets, {per_minute}/min, {label}",
             f"{t['evaluate'] * 1e3:.1f} ms per evaluation ({n_samples} samples); "
             f"per-statistic code: {t['evaluate_old'] * 1e3:.1f} ms",
             f"<= 20 ms; {ratio:.2f}x faster; samples equal: {'yes' if same else 'NO'}")
        )  # fmt: skip
        rows.append(
            ("b. evaluate", "  of which feature drift (features_drift, 100 features, one pass)",
             f"{t['drift'] * 1e3:.1f} ms; per-statistic code: {t['drift_old'] * 1e3:.1f} ms",
             f"{t['drift_old'] / t['drift']:.2f}x; "
             f"evaluation minus it: {(t['evaluate'] - t['drift']) * 1e3:.1f} ms")
        )  # fmt: skip
        share = t["adwin"] / t["evaluate"]
        stream = min(fed, MAX_STREAM)
        rows.append(("b. evaluate", f"  of which river ADWIN over the error stream ({fed:,} labelled in "
                     f"1440 buckets, fed as {stream:,} 0/1 values)",
                     f"{t['adwin'] * 1e3:.2f} ms", f"{share:.1%} of an evaluation"))  # fmt: skip
        live = _live_evaluation(agg, now, repeat)
        rows.append(("b. evaluate", "  same, 20 new predictions in the newest bucket before each evaluation",
                     f"{live * 1e3:.1f} ms", "as a live worker sees it: the current window's sketches "
                     "changed, so what is kept with them is rebuilt"))  # fmt: skip
    return rows


# One process's timings of b on the tree it is given (its own code and its own bench_core):
# best of ``repeat`` evaluations of an unchanged state per scenario, the live case, and a
# digest of every sample's name, labels and bits.
_TIMING_CHILD = r"""
import gc, hashlib, json, math, struct, sys, time
tree, repeat, templates = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sys.path[:0] = [tree, tree + "/benchmarks"]
import bench_core as bc
out = {}
for drifted in (0, 10):
    agg, now = bc.eval_fixture(200, drifted, templates)
    samples = agg.evaluate(now).samples
    digest = hashlib.sha256()
    for x in samples:
        digest.update(repr((x.name, x.labels)).encode() + struct.pack("<d", x.value))
    best = math.inf
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        agg.evaluate(now)
        best = min(best, time.perf_counter() - t)
    out[f"drift{drifted}"] = {"static": best, "live": bc._live_evaluation(agg, now, repeat),
                              "samples": len(samples), "digest": digest.hexdigest()}
print(json.dumps(out))
"""


def bench_against(tree: Path, quick: bool, rounds: int = 3) -> list[Row]:
    """b's evaluation, static and live, in ``tree`` and in this checkout: alternating fresh
    processes (each one's own code via PYTHONPATH), best over the rounds."""
    import json
    import os

    repeat, templates = (5, 6) if quick else (15, 24)
    best: dict[str, dict[str, dict[str, float]]] = {}
    digests: dict[str, set[str]] = {}
    for _ in range(rounds):
        for side, root in (("before", tree.resolve()), ("after", ROOT)):
            env = {**os.environ, "PYTHONPATH": str(root)}
            cmd = [sys.executable, "-c", _TIMING_CHILD, str(root), str(repeat), str(templates)]
            result = json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True).stdout)
            for scenario, r in result.items():
                kept = best.setdefault(side, {}).setdefault(scenario, {"static": math.inf, "live": math.inf})
                kept["static"] = min(kept["static"], r["static"])
                kept["live"] = min(kept["live"], r["live"])
                digests.setdefault(scenario, set()).add(r["digest"])
    rows: list[Row] = []
    for scenario, label in (("drift0", "no drift"), ("drift10", "10 of 90 numeric features drifted 5%")):
        same = "yes" if len(digests[scenario]) == 1 else "NO"
        for case, what in (("static", "unchanged state"), ("live", "20 new predictions before each")):
            b, a = best["before"][scenario][case], best["after"][scenario][case]
            rows.append(("b. before/after", f"evaluation, {label}, {what} (best of {rounds} x {repeat})",
                         f"before {b * 1e3:.1f} ms, after {a * 1e3:.1f} ms",
                         f"{b / a:.2f}x; samples equal: {same}"))  # fmt: skip
    return rows


# ---------------------------------------------------------------------- (e) estimated performance


def bench_estimate(quick: bool) -> list[Row]:
    """evaluate_model of a 4-feature model with the estimated-performance family on vs off."""
    rng = np.random.default_rng(5)
    spec = spec_for(feature_columns(rng, 10, 4, 0), pinned=False)
    n_cur, n_ref = (60_000, 200_000) if quick else (288_000, 2_000_000)

    def window(n: int, labelled: float) -> BucketSummary:
        s = BucketSummary()
        scores = rng.beta(1.2, 9.0, n)
        predicted = (scores >= 0.5).astype(np.int64)
        s.add_predictions(scores, predicted, spec.score_bins)
        for name, values in feature_columns(rng, n, 4, 0).items():
            s.add_numeric_feature(name, values)
        label = (rng.random(n) < scores).astype(np.int64)
        some = rng.random(n) < labelled
        s.add_labels(label[some], predicted[some], scores[some], spec.score_bins)
        return s

    current, reference = window(n_cur, 0.15), window(n_ref, 1.0)
    on = EvalSettings()
    off = dataclasses.replace(on, estimation_enabled=False)
    t = interleaved(
        {
            "off": lambda: evaluate_model(spec, "all", current, reference, off),
            "on": lambda: evaluate_model(spec, "all", current, reference, on),
            "alone": lambda: estimation(spec, current, reference, on),
        },
        20 if quick else 100,
    )
    label = f"4 features, {n_cur:,} predictions (15% labelled), reference {n_ref:,} labelled"
    return [
        ("e. estimate", f"evaluate_model, estimation off, {label}", f"{t['off'] * 1e3:.2f} ms", ""),
        ("e. estimate", "  same, estimation on (21 more samples)", f"{t['on'] * 1e3:.2f} ms",
         f"on / off = {t['on'] / t['off']:.2f}"),
        ("e. estimate", "  the estimation alone (estimation_gauges, 200 score bins)",
         f"{t['alone'] * 1e3:.2f} ms", "<= 2 ms"),
    ]  # fmt: skip


# ---------------------------------------------------------------------- (f) segments


def bench_segments(quick: bool) -> list[Row]:
    """Stage 1 (decode + join + summarise, batches of 5000) with 0 vs 2 segment fields."""
    n = 20_000 if quick else 100_000
    preds, labels = generate(TrafficSpec(n=n, rate=10.0))
    countries = ("DE", "FR", "US", "BR", "IN", "JP")
    for i, p in enumerate(preds):
        p["features"]["country"] = countries[i % len(countries)]
    raw_p = [orjson.dumps(p) for p in preds]
    raw_l = [orjson.dumps(x) for x in labels]
    engine = build_engine(load_config(CONFIG))
    plain = engine.models
    segmented = {
        name: dataclasses.replace(spec, segments=[SegmentSpec("merchant_category"), SegmentSpec("country")])
        for name, spec in plain.items()
    }
    batch = 5000

    def stage1(models: dict[str, ModelSpec]) -> Callable[[], None]:
        def run() -> None:
            proc = PartitionProcessor(models, MemoryStore(), decoder=engine.decoder(check_time=False))
            for i in range(0, len(raw_p), batch):
                proc.process(raw_p[i : i + batch], raw_l[i : i + batch])
                proc.take_partials()

        return _no_gc(run)

    t = interleaved({"0": stage1(plain), "2": stage1(segmented)}, 1 if quick else 3)
    events = len(raw_p) + len(raw_l)
    rate = {k: events / v / 1e3 for k, v in t.items()}
    return [
        ("f. segments", f"stage 1 (decode, join, summarise), {events:,} events, no segment",
         f"{rate['0']:.0f} k events/s", ""),
        ("f. segments", "  same, 2 segment fields (merchant_category: 10 values, country: 6)",
         f"{rate['2']:.0f} k events/s", f"time 2 / 0 segments = {t['2'] / t['0']:.2f}"),
    ]  # fmt: skip


# ---------------------------------------------------------------------- (c) replay


def _no_gc(fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` with the cyclic GC paused, as :func:`replay_files` runs (a fair comparison)."""

    def run() -> Any:
        gc.disable()
        try:
            return fn()
        finally:
            gc.enable()

    return run


def bench_replay(quick: bool) -> list[Row]:
    n = 20_000 if quick else 100_000
    preds, labels = generate(TrafficSpec(n=n, rate=10.0))
    engine = build_engine(load_config(CONFIG))
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        p_path, l_path = Path(tmp) / "predictions.jsonl", Path(tmp) / "labels.jsonl"
        p_path.write_bytes(b"".join(orjson.dumps(p) + b"\n" for p in preds))
        l_path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in labels))
        events = len(preds) + len(labels)
        decoder = engine.decoder(check_time=False)
        # The join alone, over the decoded events in replay order (a ceiling: stage 1 must do it).
        decoded = sorted(
            [(p.ts, 0, i, p) for i, p in enumerate(map(decoder.prediction, p_path.read_bytes().splitlines()))]
            + [(x.ts, 1, i, x) for i, x in enumerate(map(decoder.label, l_path.read_bytes().splitlines()))],
            key=lambda e: e[:3],
        )

        def replay() -> None:
            result = replay_files(engine, p_path, l_path)
            assert result.predictions + result.labels == events

        def orjson_only() -> None:
            loads = orjson.loads
            for path in (p_path, l_path):
                for line in path.read_bytes().splitlines():
                    loads(line)

        def decode_only() -> None:
            kept = list(map(decoder.prediction, p_path.read_bytes().splitlines()))
            kept += map(decoder.label, l_path.read_bytes().splitlines())

        def join_only() -> None:
            joiner = Joiner(
                MemoryStore(), engine.settings.windows.label_horizon, engine.settings.windows.orphan_grace
            )
            for _, kind, _, ev in decoded:
                if kind == 0:
                    joiner.contains_prediction(ev.prediction_id)
                    joiner.add_prediction(ev)
                else:
                    joiner.add_label(ev)
            joiner.expire()

        fns = {
            "replay": replay,
            "orjson": orjson_only,
            "decode": _no_gc(decode_only),
            "join": _no_gc(join_only),
        }
        t = interleaved(fns, 1 if quick else 3)
        split = replay_split(lambda: replay_files(engine, p_path, l_path), 1 if quick else 3)

        # The command itself (a fresh interpreter: imports, config, metrics file included).
        cli = [
            str(Path(sys.executable).parent / "streamon"),
            "replay",
            "--config",
            str(CONFIG),
            "--predictions",
            str(p_path),
            "--labels",
            str(l_path),
            "--metrics-out",
            str(Path(tmp) / "m.prom"),
        ]
        started = time.perf_counter()
        subprocess.run(cli, check=True, capture_output=True)
        t_cli = time.perf_counter() - started
    rate = {k: events / v for k, v in t.items()}
    r = rate["replay"]
    rows += [
        ("c. replay", f"streamon replay in process (replay_files), {events:,} events JSONL",
         f"{r / 1e3:.0f} k events/s", ">= 200 k events/s"),
        ("c. replay", "  orjson.loads of the same lines (read + split + loads), same run",
         f"{rate['orjson'] / 1e3:.0f} k events/s", f"replay / orjson-only = {r / rate['orjson']:.2f}"),
        ("c. replay", "  decode + validate only (Decoder, fast path), same run",
         f"{rate['decode'] / 1e3:.0f} k events/s", f"replay / decode-only = {r / rate['decode']:.2f}"),
        ("c. replay", "  join store only (Joiner + MemoryStore over the decoded events), same run",
         f"{rate['join'] / 1e3:.0f} k events/s", f"replay / join-only = {r / rate['join']:.2f}"),
        ("c. replay", "  `streamon replay` command, wall clock incl. interpreter start",
         f"{events / t_cli / 1e3:.0f} k events/s ({t_cli:.1f} s)", ""),
    ]  # fmt: skip
    orj = events / rate["orjson"]
    floor = split["decode"] + split["evaluate"]
    rows += [
        ("c. replay", "  split of one replay_files (timers around its parts, best of each), total",
         f"{split['total'] * 1e3:.0f} ms", f"orjson.loads of the same lines: {orj * 1e3:.0f} ms"),
        ("c. replay", "    decoding + validation of both files (_decode_lines)",
         f"{split['decode'] * 1e3:.0f} ms", f"{split['decode'] / orj:.2f}x orjson.loads"),
        ("c. replay", f"    the evaluations ({split['evaluations']:.0f}, Replay.evaluate)",
         f"{split['evaluate'] * 1e3:.0f} ms", f"{split['evaluate'] / orj:.2f}x orjson.loads"),
        ("c. replay", "    stage 1 + join store (Replay._flush minus Aggregator.apply)",
         f"{(split['flush'] - split['apply']) * 1e3:.0f} ms", ""),
        ("c. replay", "    merging the partials into the windows (Aggregator.apply)",
         f"{split['apply'] * 1e3:.0f} ms", ""),
        ("c. replay", "  bound: replay / orjson-only if everything but decoding and evaluations cost nothing",
         f"{orj / floor:.2f}", "target 0.5"),
    ]  # fmt: skip
    return rows


def replay_split(run: Callable[[], Any], repeat: int) -> dict[str, float]:
    """Seconds a replay spends decoding, in stage 1 (``Replay._flush``, of it merging the
    partials: ``Aggregator.apply``) and evaluating: timers around those functions (a few
    hundred calls: no measurable overhead), best of ``repeat`` per part."""
    import streamon.replay as replay_module

    parts = {
        "decode": (replay_module, "_decode_lines"),
        "flush": (replay_module.Replay, "_flush"),
        "apply": (Aggregator, "apply"),
        "evaluate": (replay_module.Replay, "evaluate"),
    }
    best: dict[str, float] = {}
    saved = {name: getattr(owner, attr) for name, (owner, attr) in parts.items()}
    for _ in range(repeat):
        spent = dict.fromkeys(parts, 0.0)
        for name, (owner, attr) in parts.items():

            def timed(
                *a: Any, _fn: Any = saved[name], _name: str = name, _spent: dict = spent, **k: Any
            ) -> Any:
                t = time.perf_counter()
                try:
                    return _fn(*a, **k)
                finally:
                    _spent[_name] += time.perf_counter() - t

            setattr(owner, attr, timed)
        try:
            gc.collect()
            t0 = time.perf_counter()
            result = run()
            spent["total"] = time.perf_counter() - t0
        finally:
            for name, (owner, attr) in parts.items():
                setattr(owner, attr, saved[name])
        spent["evaluations"] = result.evaluations
        for k, v in spent.items():
            best[k] = min(best.get(k, math.inf), v)
    return best


# ---------------------------------------------------------------------- (d) memory


def state_nbytes(agg: Aggregator) -> tuple[int, int, int]:
    """(bytes of count vectors, bytes of sketches + category counters, summaries) an Aggregator keeps.

    Every kept summary: the fine (1-minute) and coarse (1-hour reference) buckets, the
    running current and reference aggregates and the monotonic totals. numpy ``nbytes``
    plus :attr:`LogSketch.nbytes` (which includes its object overhead) plus the
    ``sys.getsizeof`` of the category counters and their keys.
    """

    def size(s: BucketSummary) -> tuple[int, int]:
        counts = sum(v.nbytes for v in s.counts.values())
        other = sum(sk.nbytes for sk in s.sketches.values())
        other += sum(sys.getsizeof(c) + sum(sys.getsizeof(k) for k in c) for c in s.categories.values())
        return counts, other

    counts = other = n = 0
    for state in agg.models.values():
        kept: list[BucketSummary] = list(state.totals.values())
        for w in state.windows.values():
            kept += [*w._fine.values(), *w._coarse.values(), w.current, w.reference]
        for s in kept:
            c, o = size(s)
            counts, other, n = counts + c, other + o, n + 1
    return counts, other, n


def build_aggregator(n_events: int, span_s: float = 2 * 86400) -> Aggregator:
    """``n_events`` spread over ``span_s`` of event time, fed minute by minute, in time order."""
    rng = np.random.default_rng(3)
    spec = spec_for(feature_columns(rng, 10, 8, 2), pinned=False)
    agg = Aggregator({"m": spec}, WindowSettings())
    minutes = int(span_s // 60)
    per = np.full(minutes, n_events // minutes)
    per[: n_events % minutes] += 1
    for k in range(minutes):
        cols = feature_columns(rng, int(per[k]), 8, 2)
        s = BucketSummary()
        scores = rng.beta(1.2, 9.0, int(per[k]))
        predicted = (scores >= 0.5).astype(np.int64)
        s.add_predictions(scores, predicted, spec.score_bins, rng.gamma(2.0, 8.0, int(per[k])))
        for name in spec.numeric:
            s.add_numeric_feature(name, cols[name])
        for name in spec.categorical:
            s.add_categorical_feature(name, cols[name])
        s.add_labels((rng.random(int(per[k])) < 0.05).astype(np.int64), predicted, scores, spec.score_bins)
        start = T0 + 60 * k
        agg.apply(Partial("m", "s:0", start + 59, {("default", start): s}))
    agg.advance()
    return agg


def bench_memory(quick: bool) -> list[Row]:
    rows: list[Row] = []
    sizes = (10_000, 100_000, 1_000_000) if quick else (10_000, 100_000, 1_000_000, 10_000_000)
    first = None
    for n in sizes:
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        agg = build_aggregator(n)
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        counts, other, kept = state_nbytes(agg)
        total = counts + other
        first = first or total
        rows.append(
            ("d. memory", f"Aggregator after {n:,} events over 48h (10 features, {kept} summaries kept)",
             f"{total / 1e6:.1f} MB: counts {counts / 1e6:.1f} + sketches/categories {other / 1e6:.1f} "
             f"(tracemalloc {traced / 1e6:.1f} MB)",
             f"x{total / first:.2f} vs 10k events; {total / n:,.1f} B/event")
        )  # fmt: skip
        del agg
    return rows


# ---------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs and fewer repeats")
    parser.add_argument(
        "--only", choices=["a", "b", "c", "d", "e", "f"], action="append", help="run only these benchmarks"
    )
    parser.add_argument(
        "--against", type=Path, help="with b: also time b in this other checkout, alternating (before/after)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of --against")
    args = parser.parse_args(argv)
    benches = {
        "a": bench_summaries,
        "b": bench_evaluate,
        "c": bench_replay,
        "d": bench_memory,
        "e": bench_estimate,
        "f": bench_segments,
    }
    rows: list[Row] = []
    for key, bench in benches.items():
        if args.only and key not in args.only:
            continue
        print(f"running {bench.__name__} ...", file=sys.stderr, flush=True)
        rows.extend(bench(args.quick))
        if key == "b" and args.against is not None:
            print("running bench_against ...", file=sys.stderr, flush=True)
            rows.extend(bench_against(args.against, args.quick, args.rounds))
    print(
        f"\nPython {platform.python_version()}, numpy {np.__version__}, {platform.machine()}, "
        f"{len(__import__('os').sched_getaffinity(0))} cores, LogSketch alpha {LogSketch().relative_accuracy}"
        f"{', --quick' if args.quick else ''}\n"
    )
    print("| benchmark | measurement | result | target / ratio |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
