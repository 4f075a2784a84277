"""``streamon ab report``: numbers against direct formulas and scipy, insufficient data, JSON shape."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from scipy import stats

from streamon.abreport import (
    OUTCOMES,
    Arm,
    ExperimentData,
    _narrower_note,
    analyse,
    fixed_sample_size,
    print_report,
)
from streamon.cli import main
from streamon.core.statistics.abmetrics import outcome_values
from streamon.core.statistics.business import BusinessCosts
from streamon.simulate import SimulationSpec, TrafficSource

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "monitoring_config.yaml"
START = 1_800_000_000.0
# configs/monitoring_config.yaml: FP 50, FN 1000, review 25, prevented fraud 1000, retained customer 200.
VALUE = {"tp": 1000 - 25, "fp": -50 - 25, "tn": 200, "fn": -1000}


def _traffic(
    tmp_path: Path, seconds: float, rate: float = 200, **kw: Any
) -> tuple[Path, Path, list[dict], list[dict]]:
    spec = SimulationSpec(rate=rate, variants=("A", "B"), experiment="exp", label_fraction=0.7, **kw)
    src = TrafficSource(spec, START, id_prefix="e")
    preds, labels = src.between(START, START + seconds)
    pp, lp = tmp_path / "p.jsonl", tmp_path / "l.jsonl"
    pp.write_bytes(b"\n".join(orjson.dumps(p) for p in preds))
    lp.write_bytes(b"\n".join(orjson.dumps(lab) for lab in labels))
    return pp, lp, preds, labels


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(["ab", "report", *args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _report(capsys: pytest.CaptureFixture[str], pp: Path, lp: Path, *extra: str) -> dict[str, Any]:
    code, out, err = _run(
        capsys, "--experiment", "exp", "--config", str(CONFIG), "--predictions", str(pp), "--labels", str(lp),
        "--json", *extra,
    )  # fmt: skip
    assert code == 0, err
    return dict(json.loads(out))


def _oracle(preds: list[dict], labels: list[dict]) -> dict[str, dict[str, Any]]:
    truth = {lab["prediction_id"]: lab["label"] for lab in labels}
    arms: dict[str, dict[str, Any]] = {}
    for p in preds:
        a = arms.setdefault(p["variant"], {"n": 0, "tp": 0, "fp": 0, "tn": 0, "fn": 0, "values": []})
        a["n"] += 1
        if p["prediction_id"] not in truth:
            continue
        y, yhat = truth[p["prediction_id"]], int(p["score"] >= 0.5)
        kind = {(1, 1): "tp", (1, 0): "fp", (0, 0): "tn", (0, 1): "fn"}[(yhat, y)]
        a[kind] += 1
        a["values"].append(VALUE[kind])
    return arms


def _ztest(x_a: int, n_a: int, x_b: int, n_b: int) -> tuple[float, float, float, float]:
    """Direct two-proportion formula: z (pooled SE), p-value, CI of the difference (unpooled SE)."""
    pa, pb = x_a / n_a, x_b / n_b
    pool = (x_a + x_b) / (n_a + n_b)
    z = (pb - pa) / math.sqrt(pool * (1 - pool) * (1 / n_a + 1 / n_b))
    p = 2 * (1 - stats.norm.cdf(abs(z)))
    se = math.sqrt(pa * (1 - pa) / n_a + pb * (1 - pb) / n_b)
    return z, p, pb - pa - 1.959963984540054 * se, pb - pa + 1.959963984540054 * se


def test_numbers_match_direct_formulas_and_scipy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Arm B's model is degraded: more errors, lower detection, lower value per prediction.
    pp, lp, preds, labels = _traffic(tmp_path, 60, drift=("degrade",), drift_after_s=0, drift_variants=("B",))
    report = _report(capsys, pp, lp)
    oracle = _oracle(preds, labels)
    assert report["status"] == "ok" and report["control"] == "A"
    arms = {a["variant"]: a for a in report["arms"]}
    for name, o in oracle.items():
        a = arms[name]
        labelled = o["tp"] + o["fp"] + o["tn"] + o["fn"]
        assert (a["n"], a["labelled"]) == (o["n"], labelled)
        assert (a["true_positive"], a["false_positive"], a["true_negative"], a["false_negative"]) == (
            o["tp"], o["fp"], o["tn"], o["fn"],
        )  # fmt: skip
        assert a["accuracy"] == pytest.approx((o["tp"] + o["tn"]) / labelled)
        assert a["precision"] == pytest.approx(o["tp"] / (o["tp"] + o["fp"]))
        assert a["recall"] == a["detection_rate"] == pytest.approx(o["tp"] / (o["tp"] + o["fn"]))
        assert a["mean_value"] == pytest.approx(np.mean(o["values"]))
    (test,) = report["tests"]
    assert (test["control"], test["treatment"], test["status"]) == ("A", "B", "ok")
    a, b = oracle["A"], oracle["B"]
    n_a, n_b = len(a["values"]), len(b["values"])

    z, p, lo, hi = _ztest(a["fp"] + a["fn"], n_a, b["fp"] + b["fn"], n_b)
    err = test["error_rate"]
    assert err["statistic"] == pytest.approx(z, rel=1e-9)
    assert err["p_value"] == pytest.approx(p, rel=1e-6, abs=1e-12)
    assert (err["ci_low"], err["ci_high"]) == pytest.approx((lo, hi), rel=1e-6)
    assert err["significant"] is True and err["diff"] > 0

    z, p, lo, hi = _ztest(a["tp"], a["tp"] + a["fn"], b["tp"], b["tp"] + b["fn"])
    det = test["detection_rate"]
    assert det["statistic"] == pytest.approx(z, rel=1e-9)
    assert det["p_value"] == pytest.approx(p, rel=1e-6, abs=1e-12)
    assert (det["ci_low"], det["ci_high"]) == pytest.approx((lo, hi), rel=1e-6)
    assert det["effect_size"] == pytest.approx(
        2 * math.asin(math.sqrt(b["tp"] / (b["tp"] + b["fn"])))
        - 2 * math.asin(math.sqrt(a["tp"] / (a["tp"] + a["fn"])))
    )

    welch = stats.ttest_ind(b["values"], a["values"], equal_var=False)
    val = test["business_value"]
    assert val["statistic"] == pytest.approx(welch.statistic, rel=1e-9)
    assert val["p_value"] == pytest.approx(welch.pvalue, rel=1e-6, abs=1e-12)
    assert val["dof"] == pytest.approx(welch.df, rel=1e-9)
    ci = welch.confidence_interval(0.95)
    assert (val["ci_low"], val["ci_high"]) == pytest.approx((ci.low, ci.high), rel=1e-6)
    assert val["diff"] == pytest.approx(np.mean(b["values"]) - np.mean(a["values"]))
    assert val["significant"] is True and val["diff"] < 0


def test_equal_arms_are_not_significant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pp, lp, preds, labels = _traffic(tmp_path, 30, seed=21)
    report = _report(capsys, pp, lp)
    (test,) = report["tests"]
    welch = stats.ttest_ind(
        _oracle(preds, labels)["B"]["values"], _oracle(preds, labels)["A"]["values"], equal_var=False
    )
    assert test["business_value"]["p_value"] == pytest.approx(welch.pvalue, rel=1e-6)
    assert test["error_rate"]["ci_low"] < 0 < test["error_rate"]["ci_high"]


def test_insufficient_data_below_30_labelled_per_arm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pp, lp, _, _ = _traffic(tmp_path, 0.25)  # 50 predictions, ~35 labelled: < 30 in each arm
    report = _report(capsys, pp, lp)
    assert all(a["labelled"] < 30 for a in report["arms"])
    assert report["status"] == "insufficient_data"
    assert all(a["status"] == "insufficient_data" for a in report["arms"])
    (test,) = report["tests"]
    assert test["status"] == "insufficient_data"
    for key in ("error_rate", "detection_rate", "business_value"):
        assert test[key]["status"] == "insufficient_data" and test[key]["significant"] is False
    assert any("fewer than 30 labelled" in n for n in report["notes"])


def test_json_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pp, lp, _, _ = _traffic(tmp_path, 10)
    report = _report(capsys, pp, lp)
    assert set(report) >= {
        "experiment",
        "control",
        "alpha",
        "status",
        "min_labelled_per_arm",
        "arms",
        "tests",
    }
    assert report["experiment"] == "exp" and report["min_labelled_per_arm"] == 30
    arm_keys = {"variant", "n", "labelled", "accuracy", "precision", "recall", "detection_rate", "error_rate"}
    arm_keys |= {"mean_value", "true_positive", "false_positive", "true_negative", "false_negative", "status"}
    for arm in report["arms"]:
        assert set(arm) >= arm_keys
    test_keys = {"test", "control", "treatment", "diff", "statistic", "p_value", "ci_low", "ci_high",
                 "effect_size", "effect_size_kind", "significant", "status"}  # fmt: skip
    (test,) = report["tests"]
    for key in ("error_rate", "detection_rate", "business_value"):
        assert set(test[key]) >= test_keys
    assert test["business_value"]["effect_size_kind"] == "cohens_d"


def test_a_corrected_label_replaces_the_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pp, lp, preds, labels = _traffic(tmp_path, 10)
    first = labels[0]
    flipped = {**first, "label": 1 - first["label"], "ts": first["ts"] + 1}
    lp.write_bytes(lp.read_bytes() + b"\n" + orjson.dumps(flipped))
    report = _report(capsys, pp, lp)
    oracle = _oracle(preds, [*labels, flipped])  # dict keeps the last label per prediction
    for arm in report["arms"]:
        o = oracle[arm["variant"]]
        assert arm["labelled"] == o["tp"] + o["fp"] + o["tn"] + o["fn"]
        assert arm["true_positive"] == o["tp"] and arm["false_negative"] == o["fn"]


def test_table_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pp, lp, _, _ = _traffic(tmp_path, 10)
    code, out, err = _run(capsys, "--experiment", "exp", "--config", str(CONFIG), "--predictions", str(pp),
                          "--labels", str(lp))  # fmt: skip
    assert code == 0, err
    for fragment in ("A/B report", "exp", "accuracy", "detection rate", "error rate (z)", "Welch", "p-value"):
        assert fragment in out


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--experiment", "nope"], "no predictions with experiment 'nope'"),
        (["--experiment", "exp", "--control", "Z"], "control arm 'Z' not found"),
    ],
)
def test_bad_arguments_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], fragment: str
) -> None:
    pp, lp, _, _ = _traffic(tmp_path, 2)
    code, out, err = _run(
        capsys, *args, "--config", str(CONFIG), "--predictions", str(pp), "--labels", str(lp)
    )
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and fragment in err


# --------------------------------------------------------------------------- decision aids


def _arm(name: str, tp: int, fp: int, tn: int, fn: int) -> Arm:
    """An arm whose labelled predictions were all made at one time: one look."""
    values = outcome_values(COSTS)
    arm = Arm(name)
    arm.counts = dict(zip(OUTCOMES, (tp, fp, tn, fn), strict=True))
    arm.n = sum(arm.counts.values())
    per: list[float] = []
    for kind, count in arm.counts.items():
        per += [values[kind]] * count
        arm.labelled_at += [(START, OUTCOMES.index(kind))] * count
    arm.value.update(np.array(per))
    return arm


def _analyse(a: Arm, b: Arm) -> dict[str, Any]:
    return analyse(ExperimentData("exp", None, "test", {"A": a, "B": b}), COSTS, alpha=0.05)


COSTS = BusinessCosts(50, 1000, 25, 1000, 200, 10000)  # = configs/monitoring_config.yaml


def test_recommendation_follows_the_always_valid_test_never_the_fixed_one() -> None:
    a = _arm("A", 60, 20, 1900, 20)
    # B misses 30 more frauds: the fixed-horizon Welch test calls it (p = 0.007), the always-valid
    # one does not yet (p = 0.12): keep collecting.
    test = _analyse(a, _arm("B", 60, 20, 1900, 50))["tests"][0]
    value = test["business_value"]
    assert value["significant"] and value["p_value"] < 0.01
    assert not value["sequential"]["significant"] and value["sequential"]["p_value"] > 0.05
    rec = test["recommendation"]
    assert rec["decision"] == "keep_collecting" and rec["arm"] is None
    size = value["sample_size"]
    assert rec["line"].startswith("keep collecting: the always-valid test has not separated B from A")
    assert f"needs {size['needed_per_arm']:,} labelled predictions per arm" in rec["line"]
    # Clearly worse, or clearly better: keep the control, or ship the treatment.
    worse = _analyse(a, _arm("B", 60, 20, 1900, 60))["tests"][0]["recommendation"]
    assert worse["decision"] == "keep" and worse["arm"] == "A" and worse["line"].startswith("keep A: ")
    better = _analyse(_arm("A", 60, 20, 1900, 60), _arm("B", 60, 20, 1900, 20))["tests"][0]["recommendation"]
    assert better["decision"] == "ship" and better["arm"] == "B" and better["line"].startswith("ship B: ")
    # Too few labels: nothing is decided, whatever the numbers.
    tiny = _analyse(_arm("A", 1, 1, 20, 1), _arm("B", 1, 1, 20, 5))["tests"][0]["recommendation"]
    assert tiny["decision"] == "keep_collecting" and "fewer than 30 labelled" in tiny["line"]


def test_sample_size_gives_the_requested_power_at_the_observed_effect() -> None:
    z = stats.norm.ppf(0.975)
    # Means: at n per arm the Welch-like z-test has 80% power against the observed difference.
    n = fixed_sample_size(False, 221.3, 219.3, 140.0**2, 145.0**2, 0.05)
    assert stats.norm.cdf(2.0 / math.sqrt((140.0**2 + 145.0**2) / n) - z) == pytest.approx(0.8, abs=1e-9)
    # Rates: the pooled-null z-test (as two_proportion_ztest) has 80% power at n per arm.
    pa, pb = 0.05, 0.07
    n = fixed_sample_size(True, pa, pb, 0.0, 0.0, 0.05)
    pbar = (pa + pb) / 2
    power = stats.norm.cdf(
        (abs(pb - pa) * math.sqrt(n) - z * math.sqrt(2 * pbar * (1 - pbar)))
        / math.sqrt(pa * (1 - pa) + pb * (1 - pb))
    )
    assert power == pytest.approx(0.8, abs=1e-9)
    assert fixed_sample_size(True, 0.05, 0.05, 0.0, 0.0, 0.05) == math.inf

    test = _analyse(_arm("A", 60, 20, 1900, 20), _arm("B", 60, 20, 1900, 50))["tests"][0]
    size = test["business_value"]["sample_size"]
    assert size["needed_per_arm"] == math.ceil(
        fixed_sample_size(
            False,
            test["business_value"]["control"],
            test["business_value"]["treatment"],
            test["business_value"]["var_control"],
            test["business_value"]["var_treatment"],
            0.05,
        )
    )
    assert size["more"] == {"A": size["needed_per_arm"] - 2000, "B": size["needed_per_arm"] - 2030}
    assert size["negligible_effect"] is False
    # An effect of about zero is flagged as such, with the (huge) number still given.
    same = _analyse(_arm("A", 60, 20, 1900, 20), _arm("B", 60, 20, 1901, 20))["tests"][0]
    flat = same["business_value"]["sample_size"]
    assert flat["negligible_effect"] is True and flat["needed_per_arm"] > 1_000_000
    assert "about zero" in same["recommendation"]["line"]
    # Exactly no difference: no sample size detects it.
    equal = _analyse(_arm("A", 60, 20, 1900, 20), _arm("B", 60, 20, 1900, 20))["tests"][0]
    assert equal["error_rate"]["sample_size"]["needed_per_arm"] is None


def test_a_confidence_sequence_narrower_than_the_fixed_ci_is_explained(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Arm B degrades half-way: early looks (no difference) cut the sequence of later ones.
    pp, lp, _, _ = _traffic(
        tmp_path, 600, rate=30, drift=("degrade",), drift_after_s=300, drift_variants=("B",), seed=2
    )
    report = _report(capsys, pp, lp, "--look-every", "1m")
    (test,) = report["tests"]
    explained = 0
    for key in ("error_rate", "detection_rate", "business_value"):
        r, seq = test[key], test[key]["sequential"]
        narrower = seq["cs_high"] - seq["cs_low"] < r["ci_high"] - r["ci_low"]
        assert (r["narrower_note"] is not None) == narrower, key
        # At the last look alone the sequence is wider than the fixed CI (2 ln(1/alpha) >= z^2).
        assert seq["last_look_cs_high"] - seq["last_look_cs_low"] > r["ci_high"] - r["ci_low"]
        if narrower:
            explained += 1
            assert f"intersection of the intervals of all {seq['looks']} looks" in r["narrower_note"]
    assert explained >= 1  # the error rate's and the detection rate's, in this stream
    print_report(report)
    flat = " ".join(capsys.readouterr().out.split())
    assert "why: error rate: the confidence sequence is narrower than the fixed CI" in flat
    assert "recommendation: keep A: value/pred" in flat
    assert "sample size: B vs A: detection rate: the fixed-horizon test needs" in flat


def test_a_sequence_that_excludes_the_latest_estimate_says_the_difference_changed() -> None:
    fixed = {"diff": -51.4, "ci_low": -54.0, "ci_high": -48.7}
    seq = {
        "looks": 20,
        "cs_low": -47.02,
        "cs_high": -46.89,
        "last_look_cs_low": -55.8,
        "last_look_cs_high": -46.9,
    }
    note = _narrower_note("business_value", fixed, seq, 0.05)
    assert note is not None and "excludes the latest estimate -51.40" in note
    assert "the difference changed during the experiment" in note
    wide = {**seq, "cs_low": -60.0, "cs_high": -40.0}
    assert _narrower_note("business_value", fixed, wide, 0.05) is None
