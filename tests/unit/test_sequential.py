"""Always-valid sequential A/B tests (mSPRT): simulation acceptance, oracles, merging, report and stage 2.

Simulations (seeded, vectorised over experiments): each of E experiments is watched
continuously, a look after every batch of units per arm, and "rejects" at the first look
where the test does. Monte Carlo tolerance: 3 binomial standard errors of the rate.

Measured with the seeds below (E = 2000, alpha = 0.05, tau = 0.1; docs/statistics.md):

- null, error rate 5% in both arms, 100 looks of 50 units per arm: sequential mSPRT rejects
  2.2% of experiments, the naive repeated z-test (stop at the first p < 0.05) 36.6%, the
  z-test at the last look only 5.0%;
- null, business value per prediction (4-valued, the configured costs), same looks: mSPRT
  1.8%, naive repeated Welch test 35.7%;
- effect, 5% vs 7%, 100 looks of 100 units per arm: mSPRT detects it in 99.8% of
  experiments by the last look (median first rejection at look 23), and its confidence
  sequence covers the true difference (+0.02) at every look in 97.6%.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from scipy import integrate, stats

from streamon.cli import main
from streamon.config import Settings
from streamon.core.statistics.ab import two_proportion_ztest
from streamon.core.statistics.abmetrics import ABSettings, ab_samples, compare, outcome_values, value_moments
from streamon.core.statistics.business import BusinessCosts
from streamon.core.statistics.sequential import (
    cs_halfwidth,
    log_mixture_lr,
    mean_moments,
    proportion_moments,
    running,
    sequential_means,
    sequential_proportions,
)
from streamon.engine import build_engine
from streamon.simulate import SimulationSpec, TrafficSource
from streamon.traffic import TrafficSpec, generate

ALPHA = 0.05
TAU = 0.1
E = 2000  # simulated experiments
TOL = 3 * math.sqrt(ALPHA * (1 - ALPHA) / E)  # 3 Monte Carlo standard errors of a rate near alpha
LOG_BOUND = math.log(1 / ALPHA)
Z_CRIT = float(stats.norm.ppf(1 - ALPHA / 2))
COSTS = BusinessCosts(50, 1000, 25, 1000, 200, 10000)
ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "monitoring_config.yaml"


def _binary_looks(
    rng: np.random.Generator, p_a: float, p_b: float, looks: int, batch: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative successes per arm at every look, shape (E, looks), and units per arm at each look."""
    x_a = rng.binomial(batch, p_a, (E, looks)).cumsum(axis=1)
    x_b = rng.binomial(batch, p_b, (E, looks)).cumsum(axis=1)
    n = np.broadcast_to(batch * np.arange(1, looks + 1), (E, looks))
    return x_a, x_b, n


def _naive_z_rejects(x_a: np.ndarray, x_b: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Repeated fixed-horizon pooled z-test: does any look have p < alpha? (direct formula)"""
    pooled = (x_a + x_b) / (2 * n)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (x_b - x_a) / n / np.sqrt(pooled * (1 - pooled) * 2 / n)
    return (np.abs(np.nan_to_num(z)) > Z_CRIT).any(axis=1)


def _seq_llr(x_a: np.ndarray, x_b: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d, v, s2 = proportion_moments(x_a, n, x_b, n)
    return d, v, TAU * TAU * s2


# ---------------------------------------------------------------------- simulation acceptance


def test_null_rates_sequential_keeps_alpha_naive_does_not() -> None:
    rng = np.random.default_rng(20261127)
    x_a, x_b, n = _binary_looks(rng, 0.05, 0.05, looks=100, batch=50)
    d, v, t2 = _seq_llr(x_a, x_b, n)
    seq = float((np.nan_to_num(log_mixture_lr(d, v, t2), nan=-np.inf) >= LOG_BOUND).any(axis=1).mean())
    naive = float(_naive_z_rejects(x_a, x_b, n).mean())
    print(f"null error rate 5%: sequential rejects {seq:.4f}, naive repeated z-test {naive:.4f}")
    assert seq <= ALPHA + TOL
    assert naive >= 2.5 * ALPHA
    # The naive test at the LAST look only is a valid fixed-horizon test: near alpha.
    last = float(_naive_z_rejects(x_a[:, -1:], x_b[:, -1:], n[:, -1:]).mean())
    print(f"null error rate 5%: the z-test at the last look only rejects {last:.4f}")
    assert abs(last - ALPHA) <= TOL


def test_null_business_value_sequential_keeps_alpha_naive_does_not() -> None:
    """Means: per-prediction value of the configured costs (4 values), outcomes drawn per batch."""
    rng = np.random.default_rng(7)
    probs = np.array([0.025, 0.02, 0.95, 0.005])  # tp, fp, tn, fn
    looks, batch = 100, 50
    values = np.array(list(outcome_values(COSTS).values()))
    c_a = rng.multinomial(batch, probs, (E, looks)).cumsum(axis=1)
    c_b = rng.multinomial(batch, probs, (E, looks)).cumsum(axis=1)

    def moments(c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = c.sum(axis=-1).astype(np.float64)
        mean = (c @ values) / n
        var = (c * (values - mean[..., None]) ** 2).sum(axis=-1) / (n - 1)
        return n, mean, var

    n_a, m_a, v_a = moments(c_a)
    n_b, m_b, v_b = moments(c_b)
    d, v, s2 = mean_moments(n_a, m_a, v_a, n_b, m_b, v_b)
    seq = float((np.nan_to_num(log_mixture_lr(d, v, TAU * TAU * s2), nan=-np.inf) >= LOG_BOUND).any(1).mean())
    with np.errstate(invalid="ignore", divide="ignore"):  # no variation yet in an arm: NaN, no rejection
        t = d / np.sqrt(v)
        dof = v**2 / ((v_a / n_a) ** 2 / (n_a - 1) + (v_b / n_b) ** 2 / (n_b - 1))
    naive = float((2 * stats.t.sf(np.abs(t), dof) < ALPHA).any(axis=1).mean())
    print(f"null business value: sequential rejects {seq:.4f}, naive repeated Welch test {naive:.4f}")
    assert seq <= ALPHA + TOL
    assert naive >= 2.5 * ALPHA


def test_real_effect_is_detected_and_covered_at_every_look() -> None:
    rng = np.random.default_rng(11)
    x_a, x_b, n = _binary_looks(rng, 0.05, 0.07, looks=100, batch=100)
    d, v, t2 = _seq_llr(x_a, x_b, n)
    llr = np.nan_to_num(log_mixture_lr(d, v, t2), nan=-np.inf)
    power = float((llr >= LOG_BOUND).any(axis=1).mean())
    half = cs_halfwidth(v, t2, ALPHA)
    covered = np.where(np.isfinite(half), np.abs(d - 0.02) < half, True).all(axis=1)
    coverage = float(covered.mean())
    first = np.argmax(llr >= LOG_BOUND, axis=1)[(llr >= LOG_BOUND).any(axis=1)]
    print(
        f"5% vs 7%: power {power:.4f} by look 100 "
        f"(median first rejection at look {np.median(first) + 1:.0f}), "
        f"coverage of the confidence sequence at all looks {coverage:.4f}"
    )
    assert power >= 0.95
    assert coverage >= 1 - ALPHA - TOL


# ---------------------------------------------------------------------- oracles


@pytest.mark.parametrize(
    ("diff", "var", "mix_var", "theta0"),
    [
        (0.03, 1.2e-4, 6e-4, 0.0),
        (-0.01, 4e-5, 2.5e-5, 0.0),
        (0.02, 2e-5, 5e-4, 0.015),
        (5.0, 9.0, 100.0, -2.0),
    ],
)
def test_mixture_lr_matches_numeric_integration(
    diff: float, var: float, mix_var: float, theta0: float
) -> None:
    """Closed form == integral of N(d; theta, V) / N(d; theta0, V) over theta ~ N(theta0, T^2), rel 1e-7."""
    sd, mix_sd = math.sqrt(var), math.sqrt(mix_var)

    def integrand(theta: float) -> float:
        ratio = math.exp((-((diff - theta) ** 2) + (diff - theta0) ** 2) / (2 * var))
        return ratio * float(stats.norm.pdf(theta, theta0, mix_sd))

    lo, hi = theta0 - 12 * mix_sd, theta0 + 12 * mix_sd
    numeric, _ = integrate.quad(integrand, lo, hi, points=[diff], epsabs=0, epsrel=1e-11, limit=200)
    closed = math.exp(float(log_mixture_lr(diff, var, mix_var, theta0)))
    assert closed == pytest.approx(numeric, rel=1e-7)
    assert sd > 0


def test_confidence_sequence_bounds_are_where_the_ratio_crosses_one_over_alpha() -> None:
    d, v, t2 = 0.02, 3e-5, 4e-4
    half = float(cs_halfwidth(v, t2, ALPHA))
    for theta0 in (d - half, d + half):
        assert float(log_mixture_lr(d, v, t2, theta0)) == pytest.approx(LOG_BOUND, rel=1e-10)
    assert float(log_mixture_lr(d, v, t2, d)) < LOG_BOUND


def test_p_value_decision_and_confidence_sequence_agree() -> None:
    for x_b in range(40, 140, 7):
        r = sequential_proportions(50, 1000, x_b, 1000, ALPHA, TAU)
        assert r.p_value == pytest.approx(min(1.0, math.exp(-r.log_lr)))
        assert r.significant == (not r.cs_low < 0 < r.cs_high)


def test_fixed_p_value_is_the_manual_pooled_z_test() -> None:
    counts_a, counts_b = [40, 60, 880, 20], [30, 90, 850, 30]
    (err, det, val) = compare(counts_a, counts_b, outcome_values(COSTS), ALPHA, TAU)
    x_a, n_a, x_b, n_b = 80, 1000, 120, 1000
    pooled = (x_a + x_b) / (n_a + n_b)
    z = (x_b / n_b - x_a / n_a) / math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    assert err.fixed_p_value == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-12)
    assert det.fixed_p_value == two_proportion_ztest(40, 60, 30, 60).p_value
    assert err.sequential == sequential_proportions(x_a, n_a, x_b, n_b, ALPHA, TAU)
    # Business value moments from counts == numpy on the expanded values.
    values = outcome_values(COSTS)
    expanded = np.repeat(list(values.values()), counts_b)
    n, mean, var = value_moments(counts_b, values)
    assert (n, mean, var) == (1000, pytest.approx(expanded.mean()), pytest.approx(expanded.var(ddof=1)))
    assert val.sequential.diff == pytest.approx(
        expanded.mean() - np.repeat(list(values.values()), counts_a).mean()
    )


def test_vector_and_scalar_paths_agree() -> None:
    x_a, n_a, x_b, n_b = (
        np.array([5, 50, 500]),
        np.array([100, 1000, 10000]),
        np.array([9, 70, 610]),
        np.array([110, 990, 10100]),
    )
    d, v, s2 = proportion_moments(x_a, n_a, x_b, n_b)
    llr = log_mixture_lr(d, v, TAU * TAU * s2)
    for i in range(3):
        r = sequential_proportions(int(x_a[i]), int(n_a[i]), int(x_b[i]), int(n_b[i]), ALPHA, TAU)
        assert r.log_lr == llr[i]


def test_insufficient_and_degenerate_data_are_never_significant() -> None:
    few = sequential_proportions(1, 29, 28, 29)
    assert few.status == "insufficient_data" and not few.significant and few.p_value < ALPHA
    flat = sequential_proportions(0, 500, 0, 500)
    assert math.isnan(flat.p_value) and not flat.significant
    one = sequential_means(1, 1.0, math.nan, 50, 2.0, 1.0)
    assert math.isnan(one.p_value) and not one.significant
    with pytest.raises(ValueError, match="tau"):
        sequential_proportions(5, 100, 9, 100, tau=0)
    with pytest.raises(ValueError, match="alpha"):
        sequential_means(40, 1.0, 1.0, 40, 1.5, 1.0, alpha=1.5)


def test_running_fold_is_monotone_and_nested() -> None:
    rng = np.random.default_rng(3)
    x_a = rng.binomial(200, 0.1, 30).cumsum()
    x_b = rng.binomial(200, 0.1, 30).cumsum()
    looks = [
        sequential_proportions(int(a), 200 * (i + 1), int(b), 200 * (i + 1))
        for i, (a, b) in enumerate(zip(x_a, x_b, strict=True))
    ]
    prev = None
    for k in range(1, len(looks) + 1):
        r = running(looks[:k])
        assert r is not None and r.looks == k
        assert r.p_value == min(x.p_value for x in looks[:k])
        assert r.cs_low == max(x.cs_low for x in looks[:k]) and r.cs_high == min(x.cs_high for x in looks[:k])
        if prev is not None:
            assert r.p_value <= prev.p_value and prev.cs_low <= r.cs_low <= r.cs_high <= prev.cs_high
        prev = r
    assert running([]) is None


# ---------------------------------------------------------------------- mergeability


def test_merged_counts_of_three_splits_give_the_whole() -> None:
    rng = np.random.default_rng(5)
    whole = {"A": rng.integers(0, 400, 4), "B": rng.integers(0, 400, 4), "default": rng.integers(0, 9, 4)}
    cuts = {
        k: np.sort(rng.integers(0, 1, (2, 4)) + rng.integers(0, v + 1, (2, 4)), axis=0)
        for k, v in whole.items()
    }
    parts = [{k: (c[0], c[1] - c[0], whole[k] - c[1])[i] for k, c in cuts.items()} for i in range(3)]
    merged = {k: sum(p[k] for p in parts) for k in whole}
    assert all((merged[k] == whole[k]).all() for k in whole)
    assert ab_samples("m", merged, ABSettings(), COSTS) == ab_samples("m", whole, ABSettings(), COSTS)
    # "default" (predictions without a variant) is no arm of the experiment.
    assert {dict(s.labels)["variant"] for s in ab_samples("m", whole, ABSettings(), COSTS)} == {"B"}


def test_variants_folded_by_the_cardinality_cap_are_no_arm() -> None:
    totals = {"A": [40, 60, 880, 20], "B": [30, 90, 850, 30], "__other__": [5, 5, 80, 1]}
    assert {dict(s.labels)["variant"] for s in ab_samples("m", totals, ABSettings(), COSTS)} == {"B"}
    del totals["B"]
    assert ab_samples("m", totals, ABSettings(), COSTS) == []


# ---------------------------------------------------------------------- stage 2


def test_stage2_exports_the_sequential_metrics_per_treatment_arm() -> None:
    settings = Settings.from_dict(
        {
            "models": [
                {"name": "fraud-detector", "features": [{"name": "transaction_amount", "type": "numeric"}]}
            ],
            "windows": {"bucket": "5m", "current": "2h", "reference": "2h"},
            "ab_testing": {"control": "B", "alpha": 0.01, "sequential_tau": 0.2},
        }
    )
    engine = build_engine(settings)
    preds, labels = generate(TrafficSpec(n=3000, rate=0.5, variants=("A", "B"), label_delay_s=60, seed=3))
    proc = engine.partition_processor()
    proc.process([orjson.dumps(p) for p in preds], [orjson.dumps(lab) for lab in labels])
    agg = engine.aggregator()
    for partial in proc.take_partials():
        agg.apply(partial)
    snap = agg.evaluate(max(p["ts"] for p in preds))
    names = (
        "streamon_ab_difference", "streamon_ab_sequential_p_value", "streamon_ab_confidence_sequence_lower",
        "streamon_ab_confidence_sequence_upper", "streamon_ab_significant", "streamon_ab_fixed_p_value",
    )  # fmt: skip
    for name in names:
        series = snap.series(name)
        assert {tuple(sorted(dict(s.labels).items())) for s in series} == {
            (("metric", m), ("model", "fraud-detector"), ("variant", "A"))
            for m in ("error_rate", "detection_rate", "business_value")
        }, name
    # The numbers are the tests of the exported outcome counters (control B from the config).
    counts = {
        v: [
            snap.value("ml_predictions_total", variant=v, outcome=o)
            for o in ("true_positive", "false_positive", "true_negative", "false_negative")
        ]
        for v in ("A", "B")
    }
    err = sequential_proportions(
        int(counts["B"][1] + counts["B"][3]), int(sum(counts["B"])),
        int(counts["A"][1] + counts["A"][3]), int(sum(counts["A"])), 0.01, 0.2,
    )  # fmt: skip
    which = {"variant": "A", "metric": "error_rate"}
    assert sum(counts["A"]) > 1000
    assert snap.value("streamon_ab_sequential_p_value", **which) == err.p_value
    assert snap.value("streamon_ab_difference", **which) == err.diff
    assert snap.value("streamon_ab_confidence_sequence_lower", **which) == err.cs_low
    assert snap.value("streamon_ab_significant", **which) == float(err.significant)
    # Equal arms (same generator): nothing significant at alpha 0.01.
    assert all(s.value == 0.0 for s in snap.series("streamon_ab_significant"))


# ---------------------------------------------------------------------- ab report


def _files(tmp_path: Path, seconds: float, **kw: Any) -> tuple[Path, Path, list[dict], list[dict]]:
    spec = SimulationSpec(rate=20, variants=("A", "B"), experiment="exp", label_fraction=0.7, **kw)
    preds, labels = TrafficSource(spec, 1_800_000_000.0, id_prefix="s").between(
        1_800_000_000.0, 1_800_000_000.0 + seconds
    )
    pp, lp = tmp_path / "p.jsonl", tmp_path / "l.jsonl"
    pp.write_bytes(b"\n".join(orjson.dumps(p) for p in preds))
    lp.write_bytes(b"\n".join(orjson.dumps(lab) for lab in labels))
    return pp, lp, preds, labels


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(["ab", "report", "--experiment", "exp", "--config", str(CONFIG), *args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_report_replays_looks_in_event_time_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pp, lp, preds, labels = _files(tmp_path, 1800, drift=("degrade",), drift_after_s=0, drift_variants=("B",))
    code, out, err = _run(
        capsys, "--predictions", str(pp), "--labels", str(lp), "--json", "--look-every", "5m"
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["sequential"] == {"method": "msprt", "tau": 0.1, "look_every_s": 300.0}
    (test,) = report["tests"]
    # Oracle: per 5-minute look of prediction event time, the counts of labelled errors per arm.
    truth = {lab["prediction_id"]: lab["label"] for lab in labels}
    start = math.floor(min(p["ts"] for p in preds) / 300) * 300
    looks = []
    for k in range(1, 7):
        errs, n = {"A": 0, "B": 0}, {"A": 0, "B": 0}
        for p in preds:
            if p["prediction_id"] in truth and p["ts"] < start + 300 * k:
                n[p["variant"]] += 1
                errs[p["variant"]] += int(p["score"] >= 0.5) != truth[p["prediction_id"]]
        looks.append(sequential_proportions(errs["A"], n["A"], errs["B"], n["B"], ALPHA, TAU))
    seq = test["error_rate"]["sequential"]
    assert seq["looks"] == 6
    assert seq["p_value"] == pytest.approx(min(r.p_value for r in looks), rel=1e-12)
    assert seq["cs_low"] == pytest.approx(max(r.cs_low for r in looks), rel=1e-12)
    assert seq["cs_high"] == pytest.approx(min(r.cs_high for r in looks), rel=1e-12)
    assert seq["significant"] is True and test["error_rate"]["significant"] is True
    for key in ("detection_rate", "business_value"):
        s = test[key]["sequential"]
        assert s["test"] == "msprt" and s["looks"] == 6 and s["cs_low"] <= s["diff"] <= s["cs_high"]


def test_report_prints_the_sequential_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pp, lp, _, _ = _files(tmp_path, 600)
    code, out, err = _run(capsys, "--predictions", str(pp), "--labels", str(lp), "--sequential-tau", "0.3")
    assert code == 0, err
    assert "Sequential tests, valid under continuous monitoring (mSPRT, tau 0.3, a look every 1h" in out
    assert "always-valid p" in out and "95% conf. sequence" in out
    # three fixed-horizon rows, three sequential rows (the sample-size lines name the pair too)
    assert out.count("│ B vs A") == 6


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--look-every", "soon"), "--look-every 'soon': not a duration"),
        (("--look-every", "0"), "--look-every must be a positive duration"),
        (("--sequential-tau", "-1"), "--sequential-tau must be a positive number"),
        (("--look-every", "1ms"), "use a longer interval"),
    ],
)
def test_report_option_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    pp, lp, _, _ = _files(tmp_path, 200)
    code, _, err = _run(capsys, "--predictions", str(pp), "--labels", str(lp), *args)
    assert code != 0
    assert message in err and len(err.strip().splitlines()) == 1, err
