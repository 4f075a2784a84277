"""``streamon replay`` over a sparse stream: 50 predictions (and their labels) spread over 400 days.

Replay evaluates on an event-time schedule (every ``collection_interval``, 5 minutes in the
shipped config). Evaluating every boundary costs time proportional to the span of event
time (115,200 boundaries for 400 days) however few events there are; the replay skips the
boundaries that cannot change a result (no new data, no bucket leaving a window, no alert's
for-duration elapsing) and gives the same metrics and alerts.

Both schedules run side by side on the same files, with the shipped
``configs/monitoring_config.yaml`` (``windows.max_event_age`` raised to 500d so that the
400-day-old events are admitted: the point is the schedule, not admission). Printed: the
evaluations and the wall time of each, and whether their results are identical.

    .venv/bin/python benchmarks/bench_replay_sparse.py            # 400 days (step-by-step: minutes)
    .venv/bin/python benchmarks/bench_replay_sparse.py --quick    # 40 days
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streamon.config import load_config  # noqa: E402
from streamon.engine import build_engine  # noqa: E402
from streamon.exporter import render  # noqa: E402
from streamon.replay import replay_files  # noqa: E402

DAY = 86400.0
START = 1_735_689_600.0  # 2025-01-01T00:00:00Z


def write_stream(directory: Path, events: int, days: float, seed: int = 7) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    ts = np.sort(START + rng.uniform(0, days * DAY, events))
    ts[0], ts[-1] = START, START + days * DAY  # the full span
    preds, labels = [], []
    for i, t in enumerate(ts):
        score = float(rng.uniform())
        preds.append(
            {
                "prediction_id": f"p{i}",
                "model": "fraud-detector",
                "ts": float(t),
                "score": score,
                "features": {
                    "transaction_amount": float(rng.lognormal(4, 1)),
                    "merchant_category": str(rng.choice(["grocery", "travel", "online"])),
                    "transaction_hour": int(rng.integers(0, 24)),
                    "days_since_last_transaction": float(rng.exponential(3)),
                },
            }
        )
        labels.append({"prediction_id": f"p{i}", "label": int(rng.uniform() < score), "ts": float(t) + 60})
    p, lab = directory / "predictions.jsonl", directory / "labels.jsonl"
    p.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in preds))
    lab.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in labels))
    return p, lab


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 days instead of 400")
    parser.add_argument("--events", type=int, default=50)
    args = parser.parse_args()
    days = 40.0 if args.quick else 400.0
    settings = load_config(ROOT / "configs" / "monitoring_config.yaml")
    windows = settings.windows.model_copy(update={"max_event_age": 500 * DAY})
    engine = build_engine(settings.model_copy(update={"windows": windows}))
    with tempfile.TemporaryDirectory() as tmp:
        preds, labels = write_stream(Path(tmp), args.events, days)
        rows = []
        results = []
        for step_by_step in (True, False):
            started = time.perf_counter()
            result = replay_files(engine, preds, labels, step_by_step=step_by_step)
            rows.append((step_by_step, result.evaluations, time.perf_counter() - started))
            results.append((render(result.snapshot), result.alerts))
    (_, n_step, t_step), (_, n_skip, t_skip) = rows
    interval = engine.eval_interval_s
    print(f"{args.events} predictions + labels over {days:.0f} days, evaluation interval {interval:g}s")
    print("| schedule | evaluations | time |")
    print("|---|---:|---:|")
    print(f"| every boundary (before) | {n_step:,} | {t_step:.2f} s |")
    print(f"| skipping idle boundaries (after) | {n_skip:,} | {t_skip:.2f} s |")
    print(f"ratio: {n_step / n_skip:,.0f}x fewer evaluations, {t_step / t_skip:,.0f}x faster")
    print(f"identical metrics and alerts: {results[0] == results[1]} ({len(results[1][1])} alert events)")


if __name__ == "__main__":
    main()
