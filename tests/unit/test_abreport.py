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

from streamon.cli import main
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
