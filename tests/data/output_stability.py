"""The complete output of one replay, as text, for a before/after comparison of results.

A seeded stream with everything that takes a special path: invalid events of every kind,
duplicate predictions, label corrections, orphaned labels, A/B variants (one not declared),
segments (one capped) and a drift. :func:`output` replays it and renders, sorted, every
series of the snapshot, every alert event and every bad line. ``expected_output.txt`` is
that text as the code produced it before the decoder, join store and evaluation were
rewritten for speed; ``tests/unit/test_output_stability.py`` requires it unchanged.
Rewrite it (``python -m tests.data.output_stability``) only for an intended result change,
and say which in the commit.
"""

from __future__ import annotations

import dataclasses
import random
import sys
from pathlib import Path
from typing import Any

import orjson

from streamon import replay
from streamon.config import Settings
from streamon.engine import build_engine
from streamon.exporter import render
from streamon.traffic import TrafficSpec, generate

EXPECTED = Path(__file__).with_name("expected_output.txt")
HOUR = 3600.0
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
NOW = START + 30 * 86400.0  # the wall clock the replay's admission rules measure against
MODEL = "fraud-detector"


def settings() -> Settings:
    return Settings.from_dict(
        {
            "models": [
                {
                    "name": MODEL,
                    "threshold": 0.5,
                    "variants": ["A", "B"],
                    "features": [
                        {"name": "transaction_amount", "type": "numeric"},
                        {"name": "merchant_category", "type": "categorical"},
                        {"name": "transaction_hour", "type": "numeric"},
                        {"name": "days_since_last_transaction", "type": "numeric"},
                    ],
                    "segments": [{"field": "country"}, {"field": "merchant_id", "max_values": 5}],
                }
            ],
            "windows": {"bucket": "5m", "current": "2h", "reference": "6h"},
            "monitoring": {
                "custom_metrics": {
                    family: {"enabled": True, "collection_interval": 600}
                    for family in ("model_performance", "data_drift", "business_metrics")
                }
            },
        }
    )


def stream() -> tuple[list[bytes], list[bytes]]:
    """(prediction lines, label lines) of 12 h of traffic with the special cases mixed in."""
    preds, labels = generate(
        TrafficSpec(
            n=6000,
            start=START,
            rate=6000 / (12 * HOUR),
            variants=("A", "B"),
            drift_at=7 * HOUR,
            drift=("sudden", "degrade"),
            label_fraction=0.9,
            seed=11,
        )
    )
    rng = random.Random(5)
    countries = ["DE", "FR", "US", "BR"]
    for i, p in enumerate(preds):
        p["features"] = dict(p["features"], merchant_id=f"m{rng.randrange(12)}")
        if i % 17:
            p["features"]["country"] = countries[i % len(countries)]
        if i % 211 == 0:
            p["variant"] = "C"  # not declared: counted under the cap's overflow
    lines = [orjson.dumps(p) for p in preds]
    bad: list[Any] = [
        b"not json",
        b"[1, 2]",
        {"prediction_id": "b1", "model": MODEL, "ts": START + 60, "score": 1.5},
        {"prediction_id": "b2", "model": "nope", "ts": START + 60, "score": 0.5},
        {"prediction_id": "b3", "model": MODEL, "ts": START + 60},
        {"prediction_id": "b4", "model": MODEL, "ts": (START + 60) * 1000, "score": 0.5},
        {
            "prediction_id": "b5",
            "model": MODEL,
            "ts": START + 60,
            "score": 0.5,
            "features": {"transaction_amount": "x"},
        },
        {"prediction_id": "b6", "model": MODEL, "ts": START + 60, "score": 0.5, "predicted": 2},
        {"prediction_id": 7, "model": MODEL, "ts": START + 60, "score": 0.5},
        {"prediction_id": "b8", "model": MODEL, "ts": "2026-01-01T00:02:00Z", "score": 0.25},
        {"prediction_id": "b9", "model": MODEL, "ts": START + 90, "score": 0.5, "latency_ms": -1},
    ]
    for k, item in enumerate(bad):
        lines.insert(37 + 41 * k, item if isinstance(item, bytes) else orjson.dumps(item))
    for k in range(0, len(preds), 97):  # duplicates, later in the stream
        lines.insert(min(len(lines), k + 300), orjson.dumps(dict(preds[k], score=0.01)))
    label_lines = [orjson.dumps(lab) for lab in labels]
    for k in range(0, len(labels), 53):  # corrections: the verdict changes
        lab = labels[k]
        label_lines.append(orjson.dumps(dict(lab, label=1 - lab["label"], ts=lab["ts"] + 1800)))
    for k in range(40):  # orphans: a label whose prediction never comes
        label_lines.append(
            orjson.dumps({"prediction_id": f"ghost-{k}", "label": k % 2, "ts": START + 300 * k})
        )
    label_lines.append(b'{"prediction_id": "x", "label": 3, "ts": 1767225700}')
    label_lines.sort(key=lambda line: orjson.loads(line).get("ts", 0) if line.startswith(b"{") else 0)
    return lines, label_lines


def output(tmp: Path) -> str:
    preds, labels = stream()
    p, lab = tmp / "predictions.jsonl", tmp / "labels.jsonl"
    p.write_bytes(b"\n".join(preds) + b"\n")
    lab.write_bytes(b"\n".join(labels) + b"\n")
    runs: list[replay.Replay] = []

    class Recorded(replay.Replay):  # replay_files keeps its Replay to itself: note it on the way
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            runs.append(self)

    original, replay.Replay = replay.Replay, Recorded  # type: ignore[misc]
    try:
        result = replay.replay_files(build_engine(settings()), p, lab, now=NOW)
    finally:
        replay.Replay = original  # type: ignore[misc]
    (run,) = runs
    stats = run.stage1.joiner.stats
    series = sorted(
        line for line in render(result.snapshot).decode().splitlines() if line and not line.startswith("#")
    )
    out = [f"predictions {result.predictions} labels {result.labels} evaluations {result.evaluations}"]
    out.append(f"join: {dataclasses.asdict(stats)} pending {run.stage1.joiner.pending_predictions}")
    out += series
    out += [orjson.dumps(a, option=orjson.OPT_SORT_KEYS).decode() for a in result.alerts]
    out += [str(b).replace(str(tmp) + "/", "") for b in result.bad_lines]
    out += result.warnings + result.notes
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        text = output(Path(d))
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else EXPECTED
    target.write_text(text)
    print(f"{target}: {len(text.splitlines())} lines")
