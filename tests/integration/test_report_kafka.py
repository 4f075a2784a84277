"""``streamon report --bootstrap-servers``: the report of the config's topics on the real
broker is the report of the same events from files (the inputs of ``streamon ab report``)."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import yaml

from streamon.cli import main
from tests.data.report_stream import write
from tests.integration.harness import produce

pytestmark = pytest.mark.integration
_CELL = re.compile(r'data-metric="[^"]+" data-labels="[^"]*" data-value="[^"]+"')


def _report(args: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        main(["report", *args])
    return out.getvalue()


def test_a_report_of_the_topics_equals_the_report_of_the_files(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    config, preds, labels = write(tmp_path)
    doc = yaml.safe_load(config.read_text())
    doc["kafka"] = {
        "bootstrap_servers": kafka_bootstrap,
        "topics": {
            "predictions": make_topic("pred", partitions=3),
            "labels": make_topic("lab", partitions=3),
        },
    }
    config.write_text(yaml.safe_dump(doc))
    for path, topic in (
        (preds, doc["kafka"]["topics"]["predictions"]),
        (labels, doc["kafka"]["topics"]["labels"]),
    ):
        lines = path.read_bytes().splitlines()
        produce(kafka_bootstrap, topic, [orjson.loads(x) if x.startswith(b"{") else x for x in lines])

    said = _report(
        ["--config", str(config), "--bootstrap-servers", kafka_bootstrap, "--out", str(tmp_path / "k.html")]
    )
    assert "20,000 predictions, 20,000 labels" in said, said
    _report(
        [
            "--config",
            str(config),
            "--predictions",
            str(preds),
            "--labels",
            str(labels),
            "--out",
            str(tmp_path / "f.html"),
        ]
    )
    from_kafka = _CELL.findall((tmp_path / "k.html").read_text())
    from_files = _CELL.findall((tmp_path / "f.html").read_text())
    assert len(from_kafka) >= 30 and from_kafka == from_files
    assert f"{kafka_bootstrap} ({doc['kafka']['topics']['predictions']}" in (tmp_path / "k.html").read_text()


def test_topics_and_files_at_once_is_one_line(tmp_path: Path) -> None:
    config, preds, _ = write(tmp_path)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit):
        main(["report", "--config", str(config), "--predictions", str(preds),
              "--bootstrap-servers", "127.0.0.1:1", "--out", str(tmp_path / "r.html")])  # fmt: skip
    assert err.getvalue().strip() == "error: give --predictions/--labels or --bootstrap-servers, not both"
