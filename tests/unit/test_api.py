"""The Python API (streamon.api) computes exactly what ``streamon replay`` does, from dicts,
DataFrames, YAML or Python objects, and says in one line what is wrong with its input."""

from __future__ import annotations

from pathlib import Path

import orjson
import pandas as pd
import pytest

from streamon.api import Monitor
from streamon.config import load_config
from streamon.engine import build_engine
from streamon.errors import ConfigError, InputError
from streamon.exporter import render
from streamon.replay import replay_files
from streamon.traffic import TrafficSpec, generate

CONFIG = """\
monitoring:
  custom_metrics:
    model_performance: {collection_interval: 300, min_samples: 20}
    data_drift: {collection_interval: 300, min_samples: 50}
windows: {current: 3h, reference: 12h}
models:
  - name: fraud-detector
    features:
      - {name: transaction_amount, type: numeric}
      - {name: merchant_category, type: categorical}
      - {name: transaction_hour, type: numeric}
      - {name: days_since_last_transaction, type: numeric}
"""
NOW = 1_767_225_600.0 + 86400  # the wall clock of every run: a day after the stream starts


@pytest.fixture(scope="module")
def stream() -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    preds, labels = generate(TrafficSpec(n=3000, rate=1.0, drift_at=1800.0, variants=("A", "B"), seed=11))
    preds.insert(5, {"prediction_id": "bad", "model": "fraud-detector", "score": 3.0, "ts": preds[5]["ts"]})
    return preds, labels


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory, stream: tuple[list, list]) -> str:
    """What ``streamon replay`` exports for the stream, from files."""
    d = tmp_path_factory.mktemp("replay")
    (d / "c.yaml").write_text(CONFIG)
    for name, events in zip(("p.jsonl", "l.jsonl"), stream, strict=True):
        (d / name).write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    result = replay_files(build_engine(load_config(d / "c.yaml")), d / "p.jsonl", d / "l.jsonl", now=NOW)
    return render(result.snapshot).decode()


def test_dicts_give_exactly_what_replay_gives(stream: tuple[list, list], replayed: str) -> None:
    preds, labels = stream
    result = Monitor(CONFIG).add_predictions(preds).add_labels(labels).run(now=NOW)
    assert result.prometheus() == replayed
    assert result.predictions == len(preds) - 1
    assert [(b.file, b.line, b.reason) for b in result.bad_events] == [
        ("prediction", 6, "score_out_of_range")
    ]


def test_every_form_of_config_and_any_order_of_feeding_agree(
    tmp_path: Path, stream: tuple[list, list], replayed: str
) -> None:
    preds, labels = stream
    (tmp_path / "c.yaml").write_text(CONFIG)
    settings = load_config(tmp_path / "c.yaml")
    import yaml

    for config in (tmp_path / "c.yaml", str(tmp_path / "c.yaml"), yaml.safe_load(CONFIG), settings):
        monitor = Monitor(config)
        # Labels first, then predictions in two halves: the run orders by event time.
        monitor.add_labels(labels).add_predictions(preds[1500:]).add_predictions(preds[:1500])
        assert monitor.run(now=NOW).prometheus() == replayed, type(config)


def test_a_dataframe_in_and_out(stream: tuple[list, list], replayed: str) -> None:
    preds, labels = stream
    frame = pd.DataFrame(preds)  # the bad row has no features: NaN there, left out as the producer would
    result = Monitor(CONFIG).add_predictions(frame).add_labels(pd.DataFrame(labels)).run(now=NOW)
    assert result.prometheus() == replayed
    out = result.to_frame()
    assert {"name", "model", "variant", "window", "value"} <= set(out.columns)
    row = out[(out.name == "ml_model_accuracy") & (out.variant == "all") & (out.window == "current")]
    assert row.value.tolist() == [result.value("ml_model_accuracy", variant="all", window="current")]
    assert 0.5 < row.value.iloc[0] <= 1
    assert len(out) == len(result.snapshot.samples)


def test_the_result_as_a_dict_is_json(stream: tuple[list, list]) -> None:
    preds, labels = stream
    result = Monitor(CONFIG).add_predictions(preds).add_labels(labels).run(now=NOW)
    doc = orjson.loads(orjson.dumps(result.to_dict(), option=orjson.OPT_SERIALIZE_NUMPY))
    assert doc["predictions"] == result.predictions and doc["labels"] == result.labels
    assert doc["bad_events"][0]["reason"] == "score_out_of_range"
    assert len(doc["samples"]) == len(result.snapshot.samples)
    assert any(a["alertname"] for a in doc["alerts"]) == bool(result.alerts)


def test_input_mistakes_are_one_line() -> None:
    with pytest.raises(InputError, match=r"^prediction #2: expected a dict \(one event\), got str$"):
        Monitor(CONFIG).add_predictions([{"prediction_id": "a"}, "oops"])
    with pytest.raises(InputError, match=r"^label #1: not JSON-encodable"):
        Monitor(CONFIG).add_labels([{"prediction_id": "a", "label": object()}])
    with pytest.raises(ConfigError, match=r"^config <dict>: models.0.threshold: must be <= 1"):
        Monitor({"models": [{"name": "m", "threshold": 2, "features": [{"name": "x", "type": "numeric"}]}]})
    with pytest.raises(ConfigError, match="expected a path, YAML text, a dict or Settings"):
        Monitor(42)  # type: ignore[arg-type]


def test_the_examples_in_the_api_docs_run() -> None:
    import doctest

    docs = Path(__file__).resolve().parents[2] / "docs" / "api.md"
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    failed, attempted = doctest.testfile(str(docs), module_relative=False, optionflags=flags, verbose=False)
    assert attempted >= 15 and failed == 0
