"""Regression models on the input side: config, decoding, the join and stage 1.

A model with ``task: regression`` sends a predicted ``value`` and numeric labels; its
labelled predictions land in a bucket summary as :mod:`streamon.core.statistics.regression`
lays it out. Oracles: scikit-learn's regression metrics on the joined pairs (1e-12), exact
equality of summaries for splits, retractions and partitions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from streamon.config import parse_config_text
from streamon.core.events import Decoder, FieldMap, Label, Prediction
from streamon.core.profile import FeatureSpec, ModelSpec
from streamon.core.stages.join import Joiner, MemoryStore
from streamon.core.stages.stage1 import PartitionProcessor
from streamon.core.state.summary import BucketSummary
from streamon.core.statistics import regression
from streamon.engine import build_engine
from streamon.errors import ConfigError
from streamon.replay import replay_lines
from streamon.traffic import TrafficSpec, generate
from tests.unit.partitions import buckets_over_partitions, merged

FEATURES = (
    "[{name: income, type: numeric}, {name: utilisation, type: numeric}, {name: region, type: categorical}]"
)
REGRESSION = f"{{name: credit-limit, task: regression, features: {FEATURES}}}"
BINARY = "{name: fraud, features: [{name: x, type: numeric}]}"


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config_text(text, source="x.yaml")
    message = str(info.value)
    assert "\n" not in message, message
    return message


# --------------------------------------------------------------------------- config


def test_task_defaults_to_binary_and_a_regression_model_validates_without_binary_keys() -> None:
    settings = parse_config_text(f"models: [{BINARY}, {REGRESSION}]")
    assert [m.task for m in settings.models] == ["binary", "regression"]
    engine = build_engine(settings)
    assert engine.models["credit-limit"].task == "regression"
    assert engine.decoder().regression == {"credit-limit"}


@pytest.mark.parametrize(
    ("extra", "path", "fragment"),
    [
        ("threshold: 0.5", "models.0.threshold", "regression models have no threshold"),
        ("score_bins: 100", "models.0.score_bins", "regression models have no score_bins"),
        ("calibration_bins: 10", "models.0.calibration_bins", "regression models have no calibration_bins"),
        ("baseline: {accuracy: 0.9}", "models.0.baseline.accuracy", "mae, rmse, mape, r2, mean_error"),
        ("baseline: {mea: 10.0}", "models.0.baseline.mea", "did you mean 'mae'"),
        ("baseline: {mae: 0}", "models.0.baseline.mae", "must be > 0"),
        ("baseline: {r2: 1.5}", "models.0.baseline.r2", "at most 1"),
        # The bias is judged in units of the baseline MAE: without one its degradation is NaN.
        ("baseline: {mean_error: 0.5}", "models.0.baseline.mean_error", "needs mae"),
    ],
)
def test_regression_config_errors_are_one_line_naming_the_key(extra: str, path: str, fragment: str) -> None:
    message = _error(f"models: [{{name: r, task: regression, {extra}, features: {FEATURES}}}]")
    assert f"{path}: " in message and fragment in message, message


def test_regression_baseline_keys_are_accepted_and_binary_keys_stay_binary() -> None:
    baseline = "{mae: 120.0, r2: 0.8, mean_error: -5}"
    text = f"models: [{{name: r, task: regression, baseline: {baseline}, features: {FEATURES}}}]"
    assert parse_config_text(text).models[0].baseline == {"mae": 120.0, "r2": 0.8, "mean_error": -5.0}
    # An unbiased baseline is the usual one, not an error.
    unbiased = text.replace("mean_error: -5", "mean_error: 0")
    assert parse_config_text(unbiased).models[0].baseline["mean_error"] == 0.0
    assert "models.0.baseline.mae" in _error(
        "models: [{name: m, baseline: {mae: 1.0}, features: [{name: x, type: numeric}]}]"
    )
    assert "models.0.task" in _error(
        "models: [{name: m, task: ranking, features: [{name: x, type: numeric}]}]"
    )


# --------------------------------------------------------------------------- decoding


def _pred(**fields: object) -> bytes:
    return orjson.dumps({"prediction_id": "p1", "model": "r", "ts": 100, **fields})


MIXED = Decoder({"m": 0.5, "r": 0.5}, regression=["r"])


def test_a_regression_prediction_carries_its_value_as_the_score() -> None:
    p = MIXED.prediction(_pred(value=-1234.5, features={"income": 1.0}, latency_ms=3))
    assert isinstance(p, Prediction)
    assert (p.score, p.predicted, p.features, p.latency_ms) == (-1234.5, 0, {"income": 1.0}, 3.0)
    # A score beside the value is an unknown field to a regression model, out of range or not.
    assert MIXED.prediction(_pred(value=7.0, score=3.0)).score == 7.0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("raw", "reason", "detail", "where"),
    [
        (_pred(score=0.5), "missing_field", "data must contain ['value'] properties", "value"),
        (_pred(value="12"), "wrong_type", 'data.value must be number, got "12"', "value"),
        (_pred(value=None), "wrong_type", "data.value must be number, got null", "value"),
        (
            _pred(value=1.0, latency_ms=-1),
            "schema_violation",
            "data.latency_ms must be bigger than or equal to 0",
            "latency_ms",
        ),
        (b'{"prediction_id": "p1", "model": "r", "ts": 100, "value": 1e400}', "invalid_json", "", ""),
    ],
)
def test_invalid_regression_predictions_name_their_reason(
    raw: bytes, reason: str, detail: str, where: str
) -> None:
    bad = MIXED.prediction(raw)
    assert not isinstance(bad, Prediction)
    assert (bad.reason, bad.field) == (reason, where)
    assert bad.detail.startswith(detail)


def test_the_value_field_can_be_renamed() -> None:
    names = FieldMap()
    d = Decoder({}, FieldMap(prediction={**names.prediction, "value": "yhat"}), regression=["r"])
    assert d.prediction(_pred(yhat=5.5)).score == 5.5  # type: ignore[union-attr]
    assert d.prediction(_pred(value=5.5)).field == "yhat"  # type: ignore[union-attr]


def test_binary_events_decode_the_same_with_a_regression_model_configured() -> None:
    binary = Decoder({"m": 0.5})
    raws = [
        b'{"prediction_id": "a", "model": "m", "ts": 1, "score": 0.7}',
        b'{"prediction_id": "a", "model": "m", "ts": 1, "score": 1.7}',
        b'{"prediction_id": "a", "model": "m", "ts": 1, "value": 0.7}',
        b'{"prediction_id": "a", "model": "m", "ts": 1, "score": 0.2, "value": 3}',
        b'{"prediction_id": "a", "model": "n", "ts": 1, "score": 0.7}',
    ]
    assert MIXED.predictions(raws) == binary.predictions(raws)
    # An unknown model's hint names the regression models too.
    typo = MIXED.prediction(b'{"prediction_id": "a", "model": "rr", "ts": 1, "score": 0.7}')
    assert typo.detail == "model 'rr' is not configured (did you mean 'r'?)"  # type: ignore[union-attr]


def test_labels_are_any_finite_number_only_with_a_regression_model() -> None:
    binary = Decoder({"m": 0.5})
    for raw, value in (
        (b'{"prediction_id": "a", "label": -1.0, "ts": 1}', -1.0),
        (b'{"prediction_id": "a", "label": 2, "ts": 1}', 2.0),
    ):
        lab = MIXED.label(raw)
        assert isinstance(lab, Label) and lab.label == value and type(lab.label) is float
        assert binary.label(raw).reason == "schema_violation"  # type: ignore[union-attr]
    one = MIXED.label(b'{"prediction_id": "a", "label": 1.0, "ts": 1}')
    assert (
        isinstance(one, Label)
        and type(one.label) is int
        and one == binary.label(b'{"prediction_id": "a", "label": 1.0, "ts": 1}')
    )
    bad = MIXED.label(b'{"prediction_id": "a", "label": "3", "ts": 1}')
    assert (bad.reason, bad.detail, bad.field) == (
        "wrong_type",
        'data.label must be number, got "3"',
        "label",
    )  # type: ignore[union-attr]


# --------------------------------------------------------------------------- join


def test_a_minus_one_label_is_a_label_and_corrections_retract_it() -> None:
    j = Joiner(MemoryStore(), label_horizon_s=3600, orphan_grace_s=60, regression=frozenset({"r"}))
    j.add_prediction(Prediction("a", "r", ts=10.0, score=3.0, predicted=0))
    first = j.add_label(Label("a", -1.0, ts=11.0))
    assert [(d.label, d.sign) for d in first] == [(-1.0, 1)]  # type: ignore[union-attr]
    assert j.add_label(Label("a", -1.0, ts=12.0)) == [] and j.stats.duplicate_labels == 1
    fixed = j.add_label(Label("a", 2.5, ts=13.0))
    assert [(d.label, d.sign) for d in fixed] == [(-1.0, -1), (2.5, 1)]  # type: ignore[union-attr]
    assert (j.stats.joined, j.stats.corrections) == (1, 1)
    # A regression prediction never labelled expires as unlabelled; one labelled -1.0 does not.
    j.add_prediction(Prediction("b", "r", ts=20.0, score=1.0, predicted=0))
    j.add_prediction(Prediction("c", "r", ts=30.0, score=1.0, predicted=0))
    j.add_label(Label("c", -1.0, ts=31.0))
    j.add_prediction(Prediction("z", "r", ts=10_000.0, score=1.0, predicted=0))
    j.expire()
    assert j.stats.expired_unlabelled == 1


def _processor() -> PartitionProcessor:
    models = {
        "m": ModelSpec("m", threshold=0.5, features=[FeatureSpec("x", "numeric")]),
        "r": ModelSpec("r", task="regression", features=[FeatureSpec("x", "numeric")]),
    }
    return PartitionProcessor(models, MemoryStore(), bucket_s=60)


def test_a_non_binary_label_of_a_binary_prediction_is_rejected_with_todays_reason() -> None:
    pp = _processor()
    preds = [
        b'{"prediction_id": "b1", "model": "m", "ts": 61, "score": 0.9}',
        b'{"prediction_id": "r1", "model": "r", "ts": 61, "value": 4.0}',
    ]
    labels = [
        b'{"prediction_id": "b1", "label": 2.5, "ts": 62}',
        b'{"prediction_id": "r1", "label": 2.5, "ts": 62}',
        b'{"prediction_id": "later", "label": 7, "ts": 62}',  # waits for a binary prediction
    ]
    rejected = pp.process(preds, labels)
    today = Decoder({"m": 0.5}).label(labels[0])
    assert [(r.topic, r.index, r.reason, r.detail, r.field) for r in rejected] == [
        ("labels", 0, today.reason, today.detail, "label")  # type: ignore[union-attr]
    ]
    assert rejected[0].raw == labels[0] and pp.counts.labels == 2
    assert dict(pp.counts.invalid) == {("labels", "wrong_type"): 1}
    # The waiting label meets its binary prediction later: dropped, counted, not joined.
    assert pp.process([b'{"prediction_id": "later", "model": "m", "ts": 70, "score": 0.1}'], []) == []
    assert pp.counts.invalid[("labels", "schema_violation")] == 1
    assert pp.joiner.pending_labels == 0 and pp.joiner.stats.joined == 1
    buckets = {p.model: p.buckets[("default", 60.0)] for p in pp.take_partials()}
    assert buckets["m"].confusion.tolist() == [0, 0, 0, 0]
    assert regression.state_of(buckets["r"]).n == 1


# --------------------------------------------------------------------------- stage 1


def _regression_traffic(n: int, **kw: object) -> tuple[list[bytes], list[bytes]]:
    spec = TrafficSpec(n=n, models=("credit-limit",), regression=("credit-limit",), rate=1.0, **kw)  # type: ignore[arg-type]
    preds, labels = generate(spec)
    return [orjson.dumps(p) for p in preds], [orjson.dumps(lab) for lab in labels]


def _credit_models() -> dict[str, ModelSpec]:
    features = [
        FeatureSpec("income", "numeric"),
        FeatureSpec("utilisation", "numeric"),
        FeatureSpec("region", "categorical"),
    ]
    return {"credit-limit": ModelSpec("credit-limit", task="regression", features=features)}


def test_stage1_counts_regression_predictions_and_labels_into_the_documented_layout() -> None:
    preds, labels = _regression_traffic(400)
    pp = PartitionProcessor(_credit_models(), MemoryStore(), bucket_s=60)
    assert pp.process(preds, labels) == []
    whole = merged(pp.take_partials()[0].buckets.values())
    events = [orjson.loads(p) for p in preds]
    truth = {e["prediction_id"]: e["label"] for e in map(orjson.loads, labels)}
    values = np.array([e["value"] for e in events])
    assert whole.counts["predictions"].tolist() == [400, 0]
    assert "scores" not in whole.counts and "confusion" not in whole.counts
    assert whole.sketches[regression.PREDICTION].count == 400
    assert whole.sketches["income"].count == 400
    pairs = np.array([(e["value"], truth[e["prediction_id"]]) for e in events if e["prediction_id"] in truth])
    state = regression.state_of(whole)
    assert state.n == len(pairs) == len(labels)
    assert regression.mae(state) == pytest.approx(mean_absolute_error(pairs[:, 1], pairs[:, 0]), rel=1e-12)
    assert whole.sketches[regression.TARGET].count == len(pairs)
    assert len(values) == 400


def test_one_or_three_partitions_give_the_same_summaries() -> None:
    preds, labels = _regression_traffic(900, label_fraction=0.7)
    one = buckets_over_partitions(_credit_models, preds, labels, 1)
    three = buckets_over_partitions(_credit_models, preds, labels, 3)
    assert three.keys() == one.keys() and all(three[k] == one[k] for k in one)


def _read(summary: BucketSummary) -> tuple[object, ...]:
    """What evaluation reads of a regression summary: the exact state and the target sketch."""
    state = regression.state_of(summary)
    return (
        state.n,
        state.zero_labels,
        [getattr(state, name) for name in regression._SUMS],
        state.residuals,
        regression.effective_sketch(summary, regression.TARGET),
    )


_PRED_A = orjson.dumps(
    {"prediction_id": "a", "model": "credit-limit", "ts": 61, "value": 1000.1, "features": {"income": 5.0}}
)


def _corrected(between: bool) -> BucketSummary:
    """Prediction ``a`` labelled -1.0, then corrected to 977.3; partials taken between the two
    labels when ``between``."""
    pp = PartitionProcessor(_credit_models(), MemoryStore(), bucket_s=60)
    pp.process([_PRED_A], [b'{"prediction_id": "a", "label": -1.0, "ts": 62}'])
    early = pp.take_partials() if between else []
    pp.process([], [b'{"prediction_id": "a", "label": 977.3, "ts": 63}'])
    return merged(s for p in early + pp.take_partials() for s in p.buckets.values())


@pytest.mark.parametrize("between", [False, True], ids=["one-partial", "partials-between"])
def test_a_corrected_regression_label_is_retracted_exactly(between: bool) -> None:
    # With partials taken between them, the correction's partial retracts a label it never
    # held: it keeps the retracted values apart (a sketch holds no negative counts).
    got = _corrected(between)
    direct = PartitionProcessor(_credit_models(), MemoryStore(), bucket_s=60)
    direct.process([_PRED_A], [b'{"prediction_id": "a", "label": 977.3, "ts": 63}'])
    want = direct.take_partials()[0].buckets[("default", 60.0)]
    assert _read(got) == _read(want)
    state = regression.state_of(got)
    assert state.n == 1 and regression.mae(state) == pytest.approx(22.8, rel=1e-12)
    target = regression.effective_sketch(got, regression.TARGET)
    assert target is not None and target.count == 1
    assert target.quantile(0.5) == pytest.approx(977.3, rel=0.02)


def test_corrections_across_partials_read_the_same_through_windows_and_partitions() -> None:
    # Every fifth label is corrected in a later batch, after the partials were taken.
    preds, labels = _regression_traffic(600, label_fraction=0.9)
    corrections = [
        orjson.dumps(orjson.loads(line) | {"label": orjson.loads(line)["label"] + 3.5})
        for line in labels[::5]
    ]
    direct = [
        orjson.dumps(orjson.loads(line) | {"label": orjson.loads(line)["label"] + 3.5})
        if i % 5 == 0
        else line
        for i, line in enumerate(labels)
    ]
    want = buckets_over_partitions(_credit_models, preds, direct, 1)
    for n in (1, 3):
        got = buckets_over_partitions(_credit_models, preds, labels, n, later_labels=corrections)
        assert got.keys() == want.keys()
        assert all(_read(got[k]) == _read(want[k]) for k in want), n
        # The window's drift view takes the corrected labels out of the target sketch.
        whole = merged(got.values())
        view = regression.readable(whole)
        assert regression.RESIDUALS + regression.RETRACTED not in view.sketches
        assert view.sketches[regression.TARGET] == regression.effective_sketch(whole, regression.TARGET)
        assert view.sketches[regression.TARGET].count == regression.state_of(whole).n


# --------------------------------------------------------------------------- replay


def test_replayed_regression_traffic_matches_scikit_learn_on_the_joined_pairs() -> None:
    text = f"""
windows: {{bucket: 1m, current: 1d, reference: 1d}}
models: [{REGRESSION}]
"""
    engine = build_engine(parse_config_text(text))
    preds, labels = _regression_traffic(
        2000, label_fraction=0.8, drift_at=1000.0, drift=("sudden", "degrade")
    )
    result = replay_lines(engine, preds, labels)
    assert result.bad_lines == [] and result.predictions == 2000
    assert result.stage2 is not None
    summary = result.stage2.models["credit-limit"].windows["default"].current
    truth = {e["prediction_id"]: e["label"] for e in map(orjson.loads, labels)}
    pairs = np.array(
        [
            (e["value"], truth[e["prediction_id"]])
            for e in map(orjson.loads, preds)
            if e["prediction_id"] in truth
        ]
    )
    y_pred, y_true = pairs[:, 0], pairs[:, 1]
    state = regression.state_of(summary)
    assert state.n == len(pairs) == len(labels)
    assert regression.mae(state) == pytest.approx(mean_absolute_error(y_true, y_pred), rel=1e-12, abs=1e-12)
    assert regression.rmse(state) == pytest.approx(np.sqrt(mean_squared_error(y_true, y_pred)), rel=1e-12)
    assert regression.r2(state) == pytest.approx(r2_score(y_true, y_pred), rel=1e-12, abs=1e-12)
    # The drift biases the prediction: the drifted half errs more, and upwards.
    assert regression.mean_error(state) > 0


def test_replay_reports_a_non_binary_label_of_a_binary_prediction_by_its_line() -> None:
    engine = build_engine(parse_config_text(f"models: [{BINARY}, {REGRESSION}]"))
    preds = [
        b'{"prediction_id": "b1", "model": "fraud", "ts": 1700000000, "score": 0.9}',
        b'{"prediction_id": "r1", "model": "credit-limit", "ts": 1700000000, "value": -20.0}',
    ]
    labels = [
        b'{"prediction_id": "r1", "label": -1.0, "ts": 1700000010}',
        b'{"prediction_id": "b1", "label": 3, "ts": 1700000010}',
    ]
    result = replay_lines(engine, preds, labels)
    assert [(b.file, b.line, b.reason, b.detail) for b in result.bad_lines] == [
        ("labels", 2, "schema_violation", "data.label must be one of [0, 1]")
    ]
    assert result.labels == 1 and result.stage2 is not None
    window = result.stage2.models["credit-limit"].windows["default"].current
    assert regression.mean_error(regression.state_of(window)) == -19.0


def test_simulate_writes_regression_traffic_for_the_configs_regression_models(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from streamon.cli import cli

    config = tmp_path / "config.yaml"
    config.write_text(f"models: [{BINARY}, {REGRESSION}]\n")
    out = tmp_path / "data"
    args = ["simulate", "--config", str(config), "--out", str(out), "--count", "600", "--start", "1700000000"]
    run = CliRunner().invoke(cli, [*args, "--drift", "degrade", "--drift-after", "2"])
    assert run.exit_code == 0, run.output
    preds = (out / "predictions.jsonl").read_bytes().splitlines()
    labels = (out / "labels.jsonl").read_bytes().splitlines()
    events = [orjson.loads(p) for p in preds]
    by_model = {m: [e for e in events if e["model"] == m] for m in ("fraud", "credit-limit")}
    assert all("value" in e and "score" not in e for e in by_model["credit-limit"])
    assert all("score" in e and "value" not in e for e in by_model["fraud"])
    assert min(len(v) for v in by_model.values()) > 200
    engine = build_engine(parse_config_text(config.read_text()))
    result = replay_lines(engine, preds, labels)
    # The binary model's features are not the fraud traffic's: only integrity notes, no bad line.
    assert result.bad_lines == [] and result.predictions == 600
    assert result.stage2 is not None
    window = result.stage2.models["credit-limit"].windows["default"].current
    assert regression.state_of(window).n == len(by_model["credit-limit"])
    # degrade biases the drifted predictions (after 2 of the 12 seconds) by +15% of ~5,000
    assert regression.mean_error(regression.state_of(window)) > 300


def test_simulated_feature_drift_moves_the_true_values_with_the_predictions() -> None:
    from streamon.simulate import SimulationSpec, TrafficSource

    def mae_and_mean(drift: tuple[str, ...]) -> tuple[float, float]:
        spec = SimulationSpec(rate=50, models=("c",), regression=("c",), drift=drift, drift_after_s=0)
        preds, labels = TrafficSource(spec, start=1_700_000_000.0).between(1_700_000_000.0, 1_700_000_040.0)
        truth = {lab["prediction_id"]: lab["label"] for lab in labels}
        pairs = np.array([(p["value"], truth[p["prediction_id"]]) for p in preds])
        return float(mean_absolute_error(pairs[:, 1], pairs[:, 0])), float(pairs[:, 1].mean())

    (clean_mae, clean_mean), (sudden_mae, sudden_mean) = mae_and_mean(()), mae_and_mean(("sudden",))
    # Incomes rise by half: the true limits rise (target drift), the model's error does not.
    assert sudden_mean > 1.2 * clean_mean
    assert abs(sudden_mae - clean_mae) < 0.1 * clean_mae


def test_a_reference_profile_holds_the_regression_labels_of_its_lines(tmp_path: Path) -> None:
    from streamon.core.profile import profile_from_bytes
    from streamon.replay import build_reference

    engine = build_engine(parse_config_text(f"models: [{REGRESSION}]"))
    preds, labels = _regression_traffic(300)
    truth = {e["prediction_id"]: e["label"] for e in map(orjson.loads, labels)}
    lines = [{**orjson.loads(p), "label": truth[orjson.loads(p)["prediction_id"]]} for p in preds]
    source = tmp_path / "reference.jsonl"
    source.write_bytes(b"\n".join(orjson.dumps(e) for e in lines))
    counts, bad = build_reference(engine, source, tmp_path / "profile.json")
    assert counts == {"credit-limit": 300} and bad == []
    reference = profile_from_bytes((tmp_path / "profile.json").read_bytes())["credit-limit"].reference
    assert reference is not None
    state = regression.state_of(reference)
    y_pred, y_true = np.array([e["value"] for e in lines]), np.array([e["label"] for e in lines])
    assert state.n == 300 and reference.sketches[regression.PREDICTION].count == 300
    assert regression.r2(state) == pytest.approx(r2_score(y_true, y_pred), rel=1e-12)


def test_segments_of_a_regression_model_hold_their_share_of_the_regression_state() -> None:
    from streamon.core.profile import SegmentSpec

    models = _credit_models()
    models["credit-limit"].segments = [SegmentSpec("region")]
    pp = PartitionProcessor(models, MemoryStore(), bucket_s=3600)
    preds, labels = _regression_traffic(500)
    assert pp.process(preds, labels) == []
    partial = pp.take_partials()[0]
    whole = BucketSummary()
    for summary in partial.buckets.values():
        whole += summary
    parts = BucketSummary()
    for summary in partial.segments.values():
        parts += summary
    assert {f for f, _, _ in partial.segments} == {"region"}
    assert regression.state_of(parts).n == regression.state_of(whole).n == 500
    assert regression.mae(regression.state_of(parts)) == regression.mae(regression.state_of(whole))
