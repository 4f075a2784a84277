"""``streamon report``: the numbers of the HTML report are the replay's Prometheus snapshot,
every section of a stream with drift and an experiment is there, and the file stands alone.

The browser half (the page drawn in a real headless Chromium, no console errors, a chart
in every section) is tests/integration/test_report_browser.py.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamon.cli import main
from streamon.config import load_config
from streamon.engine import build_engine
from streamon.exporter import render
from streamon.replay import replay_files
from tests.data.report_stream import write

SECTIONS = (
    "summary", "performance", "confusion", "calibration", "estimation", "drift",
    "integrity", "segments", "business", "experiment", "alerts",
)  # fmt: skip
_CELL = re.compile(r'data-metric="([^"]+)" data-labels="([^"]*)" data-value="([^"]+)"')


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, Path]:
    d = tmp_path_factory.mktemp("report")
    config, preds, labels = write(d)
    out = d / "report.html"
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        main(["report", "--config", str(config), "--predictions", str(preds), "--labels", str(labels),
              "--out", str(out)])  # fmt: skip
    assert "invalid_json" in err.getvalue()  # the bad line is reported as replay reports it
    return config, preds, labels, out


def _prometheus(
    config: Path, preds: Path, labels: Path
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    result = replay_files(build_engine(load_config(config)), preds, labels)
    out = {}
    for family in text_string_to_metric_families(render(result.snapshot).decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def test_the_report_numbers_are_the_replay_snapshot(files: tuple[Path, Path, Path, Path]) -> None:
    config, preds, labels, out = files
    expected = _prometheus(config, preds, labels)
    cells = _CELL.findall(out.read_text())
    assert len(cells) >= 30
    compared = 0
    for name, labels_text, value in cells:
        key = (name, frozenset(tuple(kv.split("=", 1)) for kv in labels_text.split(",")))
        assert key in expected, f"{name}{{{labels_text}}} is in the report, not in the replay's metrics"
        want, got = expected[key], float(value)
        assert got == want or (math.isnan(got) and math.isnan(want)), (name, labels_text, got, want)
        compared += not math.isnan(want)
    assert compared >= 25  # most are real numbers, not NaN on both sides
    names = {c[0] for c in cells}
    assert {"ml_model_accuracy", "ml_model_auc_roc", "streamon_ab_difference"} <= names


def test_every_section_of_a_stream_with_drift_and_an_experiment(files: tuple[Path, Path, Path, Path]) -> None:
    page = files[3].read_text()
    found = re.findall(r'data-section="fraud-detector/([a-z]+)"', page)
    assert tuple(found) == SECTIONS
    assert "SevereDataDrift" in page and "DataDriftDetected" in page  # the alerts table has the drift alerts
    assert "1 bad events" in page


def test_the_report_stands_alone(files: tuple[Path, Path, Path, Path]) -> None:
    page = files[3].read_text()
    assert not re.search(r'<(script|link|img)[^>]+(src|href)="(https?:)?//', page), "an external resource"
    assert page.count("<script") >= 10 and "Plotly.newPlot" in page
    assert re.search(r"plotly\.js v\d", page), "plotly.js is embedded"


def test_report_errors_are_one_line(tmp_path: Path) -> None:
    config, preds, _ = write(tmp_path)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exc:
        main(
            [
                "report",
                "--config",
                str(config),
                "--predictions",
                str(preds),
                "--out",
                str(tmp_path / "no" / "r.html"),
            ]
        )
    assert exc.value.code != 0
    last = err.getvalue().strip().splitlines()[-1]
    assert last.startswith("error: cannot write the report to ") and "Traceback" not in err.getvalue()


def test_the_experiment_section_is_the_ab_report(files: tuple[Path, Path, Path, Path]) -> None:
    import json

    from streamon.api import Monitor

    config, preds, labels, out = files
    said = io.StringIO()
    with contextlib.redirect_stdout(said):
        main(["ab", "report", "--config", str(config), "--experiment", "exp-1", "--predictions", str(preds),
              "--labels", str(labels), "--json"])  # fmt: skip
    cli = json.loads(said.getvalue())
    (api,) = Monitor(config).add_prediction_file(preds).add_label_file(labels).experiment_reports()
    assert json.loads(json.dumps(api, default=str)) == cli  # the same analysis, not a second one
    page = out.read_text()
    assert "Experiment exp-1 (control A)" in page and cli["recommendations"][0].split(":")[0] in page
