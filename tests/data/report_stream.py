"""A replayable stream for the report tests: 6 h of fraud traffic in an A/B experiment, with
a feature shift and degraded scores from hour 3, segments and a baseline, as files.

``python -m tests.data.report_stream OUT.png`` renders its report in headless Chromium and
saves the screenshot docs/report.md shows.
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

from streamon.traffic import TrafficSpec, generate

CONFIG = """\
monitoring:
  custom_metrics:
    model_performance: {collection_interval: 300, min_samples: 50}
    data_drift: {collection_interval: 300, min_samples: 100}
    business_metrics: {collection_interval: 300, min_samples: 50}
windows: {current: 2h, reference: 12h}
ab_testing: {control: A}
models:
  - name: fraud-detector
    threshold: 0.5
    baseline: {precision: 0.8, recall: 0.7}
    segments: [{field: merchant_category, max_values: 5}]
    features:
      - {name: transaction_amount, type: numeric}
      - {name: merchant_category, type: categorical}
      - {name: transaction_hour, type: numeric}
      - {name: days_since_last_transaction, type: numeric}
"""
NOW = 1_767_225_600.0 + 2 * 86400  # the wall clock of the runs: two days after the start


def write(directory: Path) -> tuple[Path, Path, Path]:
    """(config, predictions, labels) files in ``directory``."""
    preds, labels = generate(
        TrafficSpec(
            n=20_000,
            rate=1.0,
            drift_at=3 * 3600.0,
            drift=("sudden", "degrade"),
            variants=("A", "B"),
            seed=5,
            label_delay_s=900.0,
        )
    )
    config, p, lab = directory / "config.yaml", directory / "predictions.jsonl", directory / "labels.jsonl"
    config.write_text(CONFIG)
    p.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in preds) + b"not json\n")
    lab.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in labels))
    return config, p, lab


if __name__ == "__main__":
    import tempfile

    from streamon.api import Monitor
    from tests.integration.test_report_browser import open_report

    with tempfile.TemporaryDirectory() as tmp:
        c, p, lab = write(Path(tmp))
        result = Monitor(c).add_prediction_file(p).add_label_file(lab).run(now=NOW)
        page = result.report("streamon report: simulated fraud stream").save(Path(tmp) / "report.html")
        open_report(page, Path(sys.argv[1]))
