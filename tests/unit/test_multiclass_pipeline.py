"""Multiclass models on the input side: config, decoding, the join and stage 1.

A model with ``task: multiclass`` declares its classes and sends ``scores`` (a probability
per class) and class-name labels; its predictions and labelled predictions land in a bucket
summary as :mod:`streamon.core.statistics.multiclass` lays it out. Oracles: scikit-learn's
accuracy, macro F1 and log loss on the joined pairs (1e-12), exact equality of summaries for
splits, retractions and partitions, exact counts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest
from sklearn.metrics import accuracy_score, f1_score, log_loss, precision_score, recall_score

from streamon.config import parse_config_text
from streamon.core.events import Decoder, FieldMap, Label, Prediction
from streamon.core.profile import FeatureSpec, ModelSpec
from streamon.core.stages.join import Joiner, MemoryStore
from streamon.core.stages.stage1 import PartitionProcessor
from streamon.core.state.summary import BucketSummary
from streamon.core.statistics import multiclass
from streamon.engine import build_engine
from streamon.errors import ConfigError
from streamon.replay import replay_lines
from streamon.traffic import TrafficSpec, generate
from tests.unit.partitions import buckets_over_partitions, merged

CLASSES = ("approve", "review", "decline")
FEATURES = "[{name: risk, type: numeric}, {name: amount, type: numeric}, {name: channel, type: categorical}]"
MULTICLASS = (
    f"{{name: txn-router, task: multiclass, classes: [approve, review, decline], features: {FEATURES}}}"
)
BINARY = "{name: fraud, features: [{name: x, type: numeric}]}"
REGRESSION = "{name: limit, task: regression, features: [{name: x, type: numeric}]}"


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config_text(text, source="x.yaml")
    message = str(info.value)
    assert "\n" not in message, message
    return message


# --------------------------------------------------------------------------- config


def test_a_multiclass_model_validates_and_reaches_the_engine_and_decoder() -> None:
    settings = parse_config_text(f"models: [{BINARY}, {MULTICLASS}]")
    model = settings.models[1]
    assert (model.task, model.classes, model.top_k, model.value_matrix) == ("multiclass", CLASSES, (2,), None)
    engine = build_engine(settings)
    spec = engine.models["txn-router"]
    assert (spec.task, spec.classes, spec.top_k) == ("multiclass", CLASSES, (2,))
    assert engine.decoder().multiclass == {"txn-router": {"approve": 0, "review": 1, "decline": 2}}
    assert engine.decoder().thresholds == {"fraud": 0.5}


def test_value_matrix_and_baseline_of_a_multiclass_model() -> None:
    extra = (
        "top_k: [1, 2], value_matrix: {approve: {approve: 2.0, decline: -1}, decline: {decline: 5}}, "
        "baseline: {accuracy: 0.8, f1_score: 0.7, log_loss: 0.5}"
    )
    head = "name: t, task: multiclass, classes: [approve, review, decline]"
    text = f"models: [{{{head}, {extra}, features: {FEATURES}}}]"
    model = parse_config_text(text).models[0]
    assert model.top_k == (1, 2) and model.baseline == {"accuracy": 0.8, "f1_score": 0.7, "log_loss": 0.5}
    assert model.value_cells() == [[2.0, 0.0, -1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 5.0]]
    assert model.baseline_metrics == ("accuracy", "f1_score", "log_loss")


@pytest.mark.parametrize(
    ("extra", "path", "fragment"),
    [
        ("classes: [a]", "models.0.classes", "at least two classes"),
        ("classes: [a, b, a]", "models.0.classes.2", "duplicate class 'a'"),
        ("classes: [a, ' ']", "models.0.classes.1", "non-empty class name"),
        ("classes: [a, b, c], top_k: [3]", "models.0.top_k.0", "must be in [1, 2]"),
        ("classes: [a, b, c], top_k: [0]", "models.0.top_k.0", "must be in [1, 2]"),
        ("classes: [a, b], top_k: []", "models.0.top_k", "at least one k"),
        ("classes: [a, b], value_matrix: {c: {a: 1}}", "models.0.value_matrix.c", "not a declared class"),
        ("classes: [a, b], value_matrix: {a: {bb: 1}}", "models.0.value_matrix.a.bb", "did you mean 'b'"),
        ("classes: [a, b], threshold: 0.5", "models.0.threshold", "multiclass models have no threshold"),
        ("classes: [a, b], score_bins: 100", "models.0.score_bins", "multiclass models have no score_bins"),
        ("classes: [a, b], calibration_bins: 5", "models.0.calibration_bins", "have no calibration_bins"),
        (
            "classes: [a, b], baseline: {auc_roc: 0.9}",
            "models.0.baseline.auc_roc",
            "accuracy, f1_score, log_loss",
        ),
        ("classes: [a, b], baseline: {log_loss: 0}", "models.0.baseline.log_loss", "must be > 0"),
        ("classes: [a, b], baseline: {accuracy: 1.5}", "models.0.baseline.accuracy", "must be in (0, 1]"),
    ],
)
def test_multiclass_config_errors_are_one_line_naming_the_key(extra: str, path: str, fragment: str) -> None:
    message = _error(f"models: [{{name: t, task: multiclass, {extra}, features: {FEATURES}}}]")
    assert f"{path}: " in message and fragment in message, message


def test_two_classes_default_to_top_1() -> None:
    model = parse_config_text(
        f"models: [{{name: t, task: multiclass, classes: [a, b], features: {FEATURES}}}]"
    )
    assert model.models[0].top_k == (1,)


def test_classes_are_required_and_only_for_multiclass_models() -> None:
    assert "models.0.classes: " in _error(f"models: [{{name: t, task: multiclass, features: {FEATURES}}}]")
    assert "only multiclass models have classes" in _error(
        "models: [{name: m, classes: [a, b], features: [{name: x, type: numeric}]}]"
    )
    assert "only multiclass models have top_k" in _error(
        "models: [{name: m, task: regression, top_k: [1], features: [{name: x, type: numeric}]}]"
    )


# --------------------------------------------------------------------------- decoding

DECODER = Decoder({"fraud": 0.5}, regression=["limit"], multiclass={"txn-router": CLASSES})


def _pred(**fields: object) -> bytes:
    doc: dict[str, object] = {"prediction_id": "t1", "model": "txn-router", "ts": 1700000000}
    doc.update(fields)
    return orjson.dumps({k: v for k, v in doc.items() if v is not ...})


def test_a_multiclass_prediction_carries_its_scores_and_predicted_class() -> None:
    p = DECODER.prediction(_pred(scores={"decline": 0.25, "approve": 0.5, "review": 0.25}, latency_ms=4.0))
    assert isinstance(p, Prediction)
    assert (p.scores, p.predicted, p.score, p.latency_ms) == ([0.5, 0.25, 0.25], 0, 0.5, 4.0)
    # ties go to the first declared class; a class left out has probability 0
    tie = DECODER.prediction(_pred(scores={"decline": 0.5, "review": 0.5}))
    assert isinstance(tie, Prediction) and (tie.scores, tie.predicted) == ([0.0, 0.5, 0.5], 1)
    # an explicit predicted class wins over the argmax
    chosen = DECODER.prediction(_pred(scores={"approve": 0.9, "review": 0.1}, predicted="review"))
    assert isinstance(chosen, Prediction) and (chosen.predicted, chosen.score) == (1, 0.1)
    # within the 1e-6 tolerance
    near = DECODER.prediction(_pred(scores={"approve": 0.5, "review": 0.5000005}))
    assert isinstance(near, Prediction)


@pytest.mark.parametrize(
    ("fields", "reason", "field"),
    [
        ({"scores": {"approve": 0.5, "refund": 0.5}}, "unknown_class", "scores.refund"),
        ({"scores": {"approve": 1.0}, "predicted": "refund"}, "unknown_class", "predicted"),
        ({"scores": {"approve": 0.5, "review": 0.4}}, "scores_not_normalised", "scores"),
        ({"scores": {"approve": 0.5, "review": 0.500002}}, "scores_not_normalised", "scores"),
        ({"scores": {"approve": 1.5, "review": -0.5}}, "score_out_of_range", "scores.approve"),
        ({"scores": {"approve": "0.5", "review": 0.5}}, "wrong_type", "scores.approve"),
        ({"scores": {"approve": True}}, "wrong_type", "scores.approve"),
        ({"scores": [0.5, 0.5]}, "wrong_type", "scores"),
        ({"scores": {"approve": 1.0}, "predicted": 0}, "wrong_type", "predicted"),
        ({"score": 0.5}, "missing_field", "scores"),
    ],
)
def test_invalid_multiclass_predictions_name_their_reason(
    fields: dict[str, object], reason: str, field: str
) -> None:
    bad = DECODER.prediction(_pred(**fields))
    assert not isinstance(bad, Prediction)
    assert (bad.reason, bad.field) == (reason, field), bad


def test_the_scores_field_can_be_renamed() -> None:
    names = {**FieldMap().prediction, "scores": "probs"}
    d = Decoder({}, FieldMap(prediction=names), multiclass={"txn-router": CLASSES})
    p = d.prediction(b'{"prediction_id": "t", "model": "txn-router", "ts": 5, "probs": {"review": 1}}')
    assert isinstance(p, Prediction) and p.scores == [0.0, 1.0, 0.0]
    bad = d.prediction(b'{"prediction_id": "t", "model": "txn-router", "ts": 5, "probs": {"x": 1}}')
    assert not isinstance(bad, Prediction) and bad.field == "probs.x"


def test_binary_events_decode_the_same_with_a_multiclass_model_configured() -> None:
    plain = Decoder({"fraud": 0.5})
    raws = [
        b'{"prediction_id": "b", "model": "fraud", "ts": 5, "score": 0.7, "features": {"x": 1}}',
        b'{"prediction_id": "b", "model": "fraud", "ts": 5, "score": 1.7}',
        b'{"prediction_id": "b", "model": "txn-router", "ts": 5, "score": 0.7}',
    ]
    for raw in raws[:2]:
        assert DECODER.prediction(raw) == plain.prediction(raw)
    assert plain.prediction(raws[2]).reason == "unknown_model"  # type: ignore[union-attr]
    for raw in (
        b'{"prediction_id": "b", "label": 1, "ts": 5}',
        b'{"prediction_id": "b", "label": 0.0, "ts": 5}',
    ):
        assert DECODER.label(raw) == plain.label(raw)


def test_labels_are_class_names_only_with_a_multiclass_model() -> None:
    raw = b'{"prediction_id": "t", "label": "review", "ts": 5}'
    assert DECODER.label(raw) == Label("t", "review", 5.0)
    assert Decoder({"fraud": 0.5}).label(raw).reason == "wrong_type"  # type: ignore[union-attr]
    assert Decoder({}, regression=["limit"]).label(raw).reason == "wrong_type"  # type: ignore[union-attr]
    assert DECODER.label(b'{"prediction_id": "t", "label": 2.5, "ts": 5}') == Label("t", 2.5, 5.0)
    long = DECODER.label(b'{"prediction_id": "t", "label": "' + b"x" * 257 + b'", "ts": 5}')
    assert not isinstance(long, Label) and (long.reason, long.field) == ("string_too_long", "label")
    for bad in (b'"label": ""', b'"label": null', b'"label": [1]'):
        out = DECODER.label(b'{"prediction_id": "t", ' + bad + b', "ts": 5}')
        assert not isinstance(out, Label) and out.reason == "schema_violation" and out.field == "label"


# --------------------------------------------------------------------------- the join


def _models() -> dict[str, ModelSpec]:
    features = [
        FeatureSpec("risk", "numeric"),
        FeatureSpec("amount", "numeric"),
        FeatureSpec("channel", "categorical"),
    ]
    return {
        "txn-router": ModelSpec("txn-router", task="multiclass", classes=CLASSES, features=features),
        "fraud": ModelSpec("fraud", threshold=0.5, features=[FeatureSpec("x", "numeric")]),
    }


def test_the_join_record_holds_the_scores_and_class_indices() -> None:
    j = Joiner(MemoryStore(), 3600, 60, multiclass={"txn-router": {c: i for i, c in enumerate(CLASSES)}})
    p = Prediction("t", "txn-router", 10.0, 0.6, 0, scores=[0.6, 0.3, 0.1])
    assert j.add_prediction(p) == []
    rec = orjson.loads(j.store.get(b"p:t"))  # type: ignore[arg-type]
    assert rec == ["txn-router", "", 10.0, [0.6, 0.3, 0.1], 0, -1]
    out = j.add_label(Label("t", "decline", 20.0))
    assert isinstance(out, list) and [(d.label, d.sign, d.score, d.scores) for d in out] == [
        (2, 1, 0.6, [0.6, 0.3, 0.1])
    ]
    assert orjson.loads(j.store.get(b"p:t"))[5] == 2  # type: ignore[arg-type]
    bad = j.add_label(Label("t", "refund", 21.0))
    assert not isinstance(bad, list) and bad.reason == "unknown_class"
    assert not isinstance(j.add_label(Label("t", 1, 21.0)), list)  # a number is no class name
    assert j.add_label(Label("t", "decline", 22.0)) == [] and j.stats.duplicate_labels == 1


def test_a_class_label_that_waited_joins_its_prediction_with_the_scores() -> None:
    j = Joiner(MemoryStore(), 3600, 60, multiclass={"txn-router": {c: i for i, c in enumerate(CLASSES)}})
    assert j.add_label(Label("t", "review", 5.0)) == [] and j.pending_labels == 1
    out = j.add_prediction(Prediction("t", "txn-router", 10.0, 0.5, 2, scores=[0.2, 0.3, 0.5]))
    assert [(d.label, d.predicted, d.score, d.scores, d.sign) for d in out] == [
        (1, 2, 0.5, [0.2, 0.3, 0.5], 1)
    ]
    assert j.pending_labels == 0 and orjson.loads(j.store.get(b"p:t"))[5] == 1  # type: ignore[arg-type]
    corrected = j.add_label(Label("t", "approve", 20.0))
    assert isinstance(corrected, list)
    assert [(d.label, d.sign, d.scores) for d in corrected] == [
        (1, -1, [0.2, 0.3, 0.5]),
        (0, 1, [0.2, 0.3, 0.5]),
    ]


def test_an_unknown_class_label_is_a_dead_letter_in_the_batch_and_counted_when_it_waited() -> None:
    pp = PartitionProcessor(_models(), MemoryStore(), bucket_s=60)
    preds = [
        b'{"prediction_id": "t1", "model": "txn-router", "ts": 61, '
        b'"scores": {"approve": 0.8, "review": 0.2}}',
        b'{"prediction_id": "b1", "model": "fraud", "ts": 61, "score": 0.9}',
    ]
    labels = [
        b'{"prediction_id": "t1", "label": "refund", "ts": 62}',
        b'{"prediction_id": "b1", "label": "approve", "ts": 62}',
        b'{"prediction_id": "later", "label": "refund", "ts": 62}',  # waits for its prediction
        b'{"prediction_id": "t1", "label": "review", "ts": 63}',
    ]
    rejected = pp.process(preds, labels)
    assert [(r.topic, r.index, r.reason, r.field) for r in rejected] == [
        ("labels", 0, "unknown_class", "label"),
        ("labels", 1, "wrong_type", "label"),
    ]
    assert rejected[0].raw == labels[0] and pp.counts.labels == 2
    later = b'{"prediction_id": "later", "model": "txn-router", "ts": 70, "scores": {"decline": 1.0}}'
    assert pp.process([later], []) == []
    assert pp.counts.invalid[("labels", "unknown_class")] == 2
    assert pp.joiner.pending_labels == 0 and pp.joiner.stats.joined == 1
    buckets = {p.model: p.buckets[("default", 60.0)] for p in pp.take_partials()}
    state = multiclass.state_of(buckets["txn-router"], 3)
    assert state.confusion.tolist() == [0, 0, 0, 1, 0, 0, 0, 0, 0]  # actual review, predicted approve
    assert state.predicted.tolist() == [1, 0, 1, 0] and state.n_predictions == 2
    assert buckets["fraud"].confusion.tolist() == [0, 0, 0, 0]


# --------------------------------------------------------------------------- stage 1


def _traffic(n: int, **kw: object) -> tuple[list[bytes], list[bytes]]:
    spec = TrafficSpec(n=n, models=("txn-router",), multiclass=("txn-router",), rate=1.0, **kw)  # type: ignore[arg-type]
    preds, labels = generate(spec)
    return [orjson.dumps(p) for p in preds], [orjson.dumps(lab) for lab in labels]


def _pairs(preds: list[bytes], labels: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores K-rows, predicted, actual) of the labelled predictions, in declared order."""
    truth = {e["prediction_id"]: e["label"] for e in map(orjson.loads, labels)}
    events = [e for e in map(orjson.loads, preds) if e["prediction_id"] in truth]
    scores = np.array([[e["scores"].get(c, 0.0) for c in CLASSES] for e in events])
    actual = np.array([CLASSES.index(truth[e["prediction_id"]]) for e in events])
    return scores, np.argmax(scores, axis=1), actual


def test_stage1_counts_multiclass_predictions_and_labels_into_the_documented_layout() -> None:
    preds, labels = _traffic(600, label_fraction=0.8)
    pp = PartitionProcessor(_models(), MemoryStore(), bucket_s=60)
    assert pp.process(preds, labels) == []
    whole = merged(pp.take_partials()[0].buckets.values())
    scores, predicted, actual = _pairs(preds, labels)
    every = np.array([[orjson.loads(p)["scores"].get(c, 0.0) for c in CLASSES] for p in preds])
    want = BucketSummary()
    multiclass.add_predictions(want, every, np.argmax(every, axis=1), 3)
    multiclass.add_labelled(want, scores, predicted, actual, 3)
    for key in (
        multiclass.PREDICTED_KEY,
        multiclass.CONFUSION_KEY,
        multiclass.TOP_K_KEY,
        multiclass.OVR_POS,
        multiclass.SCORES_KEY,
        multiclass.OWN_KEY,
        multiclass.OWN_LABELLED,
    ):
        assert whole.counts[key].tolist() == want.counts[key].tolist(), key
    assert whole.sums[multiclass.LOSS_KEY] == want.sums[multiclass.LOSS_KEY]
    assert whole.n_predictions == 600 and "scores" not in whole.counts and "confusion" not in whole.counts
    assert whole.counts["latency"][-1] == 600  # latency counted as for binary
    assert whole.sketches["risk"].count == 600 and "channel" in whole.categories
    assert multiclass.state_of(whole, 3).n_labelled == len(labels)


def test_one_or_three_partitions_give_the_same_summaries() -> None:
    preds, labels = _traffic(900, label_fraction=0.7)
    one = buckets_over_partitions(_models, preds, labels, 1)
    three = buckets_over_partitions(_models, preds, labels, 3)
    assert three.keys() == one.keys() and all(three[k] == one[k] for k in one)
    assert multiclass.state_of(merged(three.values()), 3).n_labelled == len(labels)


def test_a_corrected_multiclass_label_is_retracted_exactly() -> None:
    pred = (
        b'{"prediction_id": "a", "model": "txn-router", "ts": 61, "scores": {"approve": 0.3, "review": 0.7}}'
    )
    pp = PartitionProcessor(_models(), MemoryStore(), bucket_s=60)
    pp.process([pred], [b'{"prediction_id": "a", "label": "decline", "ts": 62}'])
    pp.process([], [b'{"prediction_id": "a", "label": "approve", "ts": 63}'])
    got = merged(s for p in pp.take_partials() for s in p.buckets.values())
    direct = PartitionProcessor(_models(), MemoryStore(), bucket_s=60)
    direct.process([pred], [b'{"prediction_id": "a", "label": "approve", "ts": 63}'])
    want = direct.take_partials()[0].buckets[("default", 60.0)]
    state = multiclass.state_of(got, 3)
    # the retraction leaves only what it added up: the running confusion, the log loss of the new class
    assert state.confusion.tolist() == multiclass.state_of(want, 3).confusion.tolist()
    assert state.confusion_added.tolist() == [0, 1, 0, 0, 0, 0, 0, 1, 0]  # counted up only, by design
    assert got.sums[multiclass.LOSS_KEY] == want.sums[multiclass.LOSS_KEY]
    assert multiclass.log_loss(state.log_loss_units, state.n_labelled) == pytest.approx(
        -np.log(0.3), rel=1e-15
    )
    assert pp.joiner.stats.corrections == 1


# --------------------------------------------------------------------------- replay


def test_replayed_multiclass_traffic_matches_scikit_learn_on_the_joined_pairs() -> None:
    text = f"""
windows: {{bucket: 1m, current: 1d, reference: 1d}}
models: [{MULTICLASS}]
"""
    engine = build_engine(parse_config_text(text))
    preds, labels = _traffic(2000, label_fraction=0.8, drift_at=1000.0, drift=("sudden", "degrade"))
    result = replay_lines(engine, preds, labels)
    assert result.bad_lines == [] and result.predictions == 2000
    assert result.stage2 is not None
    summary = result.stage2.models["txn-router"].windows["default"].current
    scores, predicted, actual = _pairs(preds, labels)
    state = multiclass.state_of(summary, 3)
    assert state.n_labelled == len(actual) == len(labels)
    conf = state.confusion
    assert multiclass.accuracy(conf, 3) == pytest.approx(accuracy_score(actual, predicted), rel=1e-12)
    macro = multiclass.class_report(conf, 3).averages["macro"]["f1"]
    assert macro == pytest.approx(f1_score(actual, predicted, average="macro", labels=[0, 1, 2]), rel=1e-12)
    loss = multiclass.log_loss(state.log_loss_units, state.n_labelled)
    assert loss == pytest.approx(log_loss(actual, scores, labels=[0, 1, 2]), rel=1e-12)
    hits = multiclass.top_k_accuracy(state.top_k, state.n_labelled)[0]
    top2 = np.mean([a in np.argsort(-s, kind="stable")[:2] for s, a in zip(scores, actual, strict=True)])
    assert hits == pytest.approx(top2, rel=1e-12)


def test_simulate_writes_multiclass_traffic_for_the_configs_multiclass_models(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from streamon.cli import cli

    config = tmp_path / "config.yaml"
    classes = "[low, mid, high, severe]"
    config.write_text(
        f"models: [{BINARY}, {{name: router, task: multiclass, classes: {classes}, features: {FEATURES}}}]\n"
    )
    out = tmp_path / "data"
    args = ["simulate", "--config", str(config), "--out", str(out), "--count", "600", "--start", "1700000000"]
    run = CliRunner().invoke(cli, [*args, "--drift", "degrade", "--drift-after", "2"])
    assert run.exit_code == 0, run.output
    preds = (out / "predictions.jsonl").read_bytes().splitlines()
    labels = (out / "labels.jsonl").read_bytes().splitlines()
    events = [orjson.loads(p) for p in preds]
    routed = [e for e in events if e["model"] == "router"]
    assert len(routed) > 200 and all(
        "score" not in e and set(e["scores"]) == {"low", "mid", "high", "severe"} for e in routed
    )
    assert all("score" in e for e in events if e["model"] == "fraud")
    engine = build_engine(parse_config_text(config.read_text()))
    result = replay_lines(engine, preds, labels)
    assert result.bad_lines == [] and result.predictions == 600
    assert result.stage2 is not None
    window = result.stage2.models["router"].windows["default"].current
    assert multiclass.state_of(window, 4).n_labelled == len(routed)


def test_binary_traffic_is_the_same_with_a_multiclass_model_generated() -> None:
    plain, plain_labels = generate(TrafficSpec(n=300, models=("fraud", "other")))
    mixed, mixed_labels = generate(TrafficSpec(n=300, models=("fraud", "other"), multiclass=("other",)))
    assert [p for p in plain if p["model"] == "fraud"] == [p for p in mixed if p["model"] == "fraud"]
    fraud = {p["prediction_id"] for p in plain if p["model"] == "fraud"}
    assert [x for x in plain_labels if x["prediction_id"] in fraud] == [
        x for x in mixed_labels if x["prediction_id"] in fraud
    ]


def test_simulated_degradation_lowers_accuracy_and_raises_log_loss() -> None:
    def metrics(drift_at: float | None) -> tuple[float, float]:
        scores, predicted, actual = _pairs(*_traffic(3000, drift_at=drift_at, drift=("degrade",)))
        return float(accuracy_score(actual, predicted)), float(log_loss(actual, scores, labels=[0, 1, 2]))

    (clean_acc, clean_loss), (bad_acc, bad_loss) = metrics(None), metrics(-1.0)
    assert bad_acc < clean_acc - 0.1 and bad_loss > clean_loss + 0.2


def test_a_reference_profile_holds_the_class_mix_and_labels_of_its_lines(tmp_path: Path) -> None:
    from streamon.core.profile import profile_from_bytes
    from streamon.replay import build_reference

    engine = build_engine(parse_config_text(f"models: [{MULTICLASS}]"))
    preds, labels = _traffic(300)
    truth = {e["prediction_id"]: e["label"] for e in map(orjson.loads, labels)}
    lines = [{**orjson.loads(p), "label": truth[orjson.loads(p)["prediction_id"]]} for p in preds]
    source = tmp_path / "reference.jsonl"
    source.write_bytes(b"\n".join(orjson.dumps(e) for e in lines))
    counts, bad = build_reference(engine, source, tmp_path / "profile.json")
    assert counts == {"txn-router": 300} and bad == []
    pinned = profile_from_bytes((tmp_path / "profile.json").read_bytes())["txn-router"]
    assert pinned.classes == CLASSES and pinned.reference is not None
    state = multiclass.state_of(pinned.reference, 3)
    _, predicted, actual = _pairs(preds, labels)
    assert state.predicted.tolist() == [*np.bincount(predicted, minlength=3).tolist(), 0]
    assert state.n_labelled == 300
    assert multiclass.accuracy(state.confusion, 3) == pytest.approx(
        accuracy_score(actual, predicted), rel=1e-12
    )
    # the pinned profile loads back into an engine for the same classes, and is refused for others
    config = tmp_path / "c.yaml"
    config.write_text(f"models: [{MULTICLASS}]\n")
    assert (
        build_engine(parse_config_text(config.read_text()), tmp_path / "profile.json")
        .models["txn-router"]
        .classes
        == CLASSES
    )
    other = MULTICLASS.replace("[approve, review, decline]", "[approve, decline, review]")
    with pytest.raises(Exception, match="other classes"):
        build_engine(parse_config_text(f"models: [{other}]"), tmp_path / "profile.json")


def test_a_value_matrix_gives_the_business_value_per_labelled_prediction() -> None:
    # approve/review/decline: a missed decline costs, a needless review costs a little.
    matrix = "{decline: {approve: -100, review: 5, decline: 20}, approve: {review: -2, decline: -10}}"
    text = f"""
windows: {{bucket: 1m, current: 1d, reference: 1d}}
monitoring: {{custom_metrics: {{business_metrics: {{min_samples: 1}}}}}}
models: [{MULTICLASS[:-1]}, value_matrix: {matrix}}}]
"""
    engine = build_engine(parse_config_text(text))
    preds, labels = _traffic(2000, label_fraction=0.8)
    result = replay_lines(engine, preds, labels)
    _, predicted, actual = _pairs(preds, labels)
    cells = {(2, 0): -100.0, (2, 1): 5.0, (2, 2): 20.0, (0, 1): -2.0, (0, 2): -10.0}
    want = sum(cells.get((a, p), 0.0) for a, p in zip(actual, predicted, strict=True)) / len(actual)
    got = result.snapshot.value("ml_business_value_per_prediction", model="txn-router", variant="all")
    assert got == pytest.approx(want, rel=1e-12)


def test_segments_of_a_multiclass_model_match_scikit_learn_per_segment_and_keep_no_histograms() -> None:
    text = f"""
windows: {{bucket: 1m, current: 1d, reference: 1d}}
models: [{MULTICLASS[:-1]}, segments: [{{field: channel}}]}}]
"""
    engine = build_engine(parse_config_text(text))
    preds, labels = _traffic(3000, label_fraction=0.8)
    result = replay_lines(engine, preds, labels)
    assert result.bad_lines == [] and result.stage2 is not None
    truth = {e["prediction_id"]: CLASSES.index(e["label"]) for e in map(orjson.loads, labels)}
    by_segment: dict[str, list[tuple[int, int]]] = {}
    for e in map(orjson.loads, preds):
        if e["prediction_id"] in truth:
            predicted = int(np.argmax([e["scores"].get(c, 0.0) for c in CLASSES]))
            by_segment.setdefault(e["features"]["channel"], []).append((truth[e["prediction_id"]], predicted))
    assert len(by_segment) >= 2
    snap = result.snapshot
    for segment, pairs in by_segment.items():
        actual, predicted = np.array(pairs).T
        labels_of = {"model": "txn-router", "segment_field": "channel", "segment": segment}
        got = {
            key: snap.value(f"streamon_segment_{key}", **labels_of)
            for key in ("accuracy", "precision", "recall", "f1_score")
        }
        assert got["accuracy"] == pytest.approx(accuracy_score(actual, predicted), rel=1e-12)
        for key, fn in (("precision", precision_score), ("recall", recall_score), ("f1_score", f1_score)):
            want = fn(actual, predicted, average="macro", labels=[0, 1, 2], zero_division=np.nan)
            assert got[key] == pytest.approx(want, rel=1e-12), (segment, key)
        assert snap.value("streamon_segment_labelled_in_window", **labels_of) == len(pairs)
    # A segment window keeps the confusion, not the K x 200 score histograms of the model's own state.
    for window in result.stage2.models["txn-router"].segments.values():
        summary = window.current
        assert multiclass.CONFUSION_KEY in summary.counts
        assert not {multiclass.OVR_POS, multiclass.OVR_NEG, multiclass.SCORES_KEY} & summary.counts.keys()
