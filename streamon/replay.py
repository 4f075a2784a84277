"""``streamon replay`` and ``streamon reference build``: the streaming pipeline over files.

Replay runs the same stage-1 + stage-2 logic as the workers over JSONL files, in
event-time order (predictions before labels at equal times), evaluating on the same
event-time schedule; "now" at the end is the last event time. Bad lines are reported
with their line numbers and skipped.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from streamon.core.alerts import AlertEngine
from streamon.core.evaluate import Snapshot
from streamon.core.events import Invalid, Label, Prediction
from streamon.core.profile import build_profile, profile_to_bytes
from streamon.core.stage1 import PartitionProcessor
from streamon.core.stage2 import Aggregator
from streamon.engine import Engine
from streamon.errors import InputError

BATCH = 10_000


@dataclass
class BadLine:
    file: str
    line: int
    reason: str
    detail: str


@dataclass
class ReplayResult:
    snapshot: Snapshot
    alerts: list[dict[str, Any]] = field(default_factory=list)
    bad_lines: list[BadLine] = field(default_factory=list)
    predictions: int = 0
    labels: int = 0
    evaluations: int = 0


def _read_lines(path: Path) -> list[bytes]:
    try:
        return path.read_bytes().splitlines()
    except FileNotFoundError:
        raise InputError(f"input file {path} not found") from None
    except IsADirectoryError:
        raise InputError(f"input {path} is a directory, expected a JSONL file") from None


Decoded = tuple[float, int, Any]  # (event time, line number, Prediction | Label)


def _decoded(
    path: Path, decode: Callable[[bytes], Prediction | Label | Invalid], bad: list[BadLine]
) -> list[Decoded]:
    """(event time, line number, event) of the valid lines, sorted; the others go to ``bad``."""
    out = []
    for i, raw in enumerate(_read_lines(path), start=1):
        if not raw.strip():
            continue
        ev = decode(raw)
        if isinstance(ev, Invalid):
            bad.append(BadLine(str(path), i, ev.reason, ev.detail))
        else:
            out.append((ev.ts, i, ev))
    out.sort(key=lambda t: (t[0], t[1]))
    return out


def _merged(preds: list[Decoded], labels: list[Decoded]) -> Iterator[tuple[float, int, Any]]:
    """Both streams in event-time order; kind 0 (prediction) before 1 (label) at equal times."""
    a = ((ts, 0, line, ev) for ts, line, ev in preds)
    b = ((ts, 1, line, ev) for ts, line, ev in labels)
    for ts, kind, _line, ev in heapq.merge(a, b, key=lambda t: (t[0], t[1], t[2])):
        yield ts, kind, ev


class Replay:
    """Drives a stage-1 processor and a stage-2 aggregator over ordered events."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.stage1: PartitionProcessor = engine.partition_processor()
        self.stage2: Aggregator = engine.aggregator()
        self.alerts = AlertEngine(engine.rules)
        self.events: list[dict[str, Any]] = []
        self.evaluations = 0
        self._preds: list[tuple[bytes | None, Any]] = []
        self._labels: list[tuple[bytes | None, Any]] = []

    def _flush(self) -> list[str]:
        rejected = self.stage1.process_decoded(self._preds, self._labels)
        self._preds, self._labels = [], []
        for partial in self.stage1.take_partials():
            self.stage2.apply(partial)
        return [r.reason for r in rejected]

    def evaluate(self, at: float) -> Snapshot:
        snap = self.stage2.evaluate(at)
        self.events.extend(self.alerts.evaluate(snap))
        self.evaluations += 1
        return snap

    def run(
        self, events: Iterator[tuple[float, int, Any]], progress: Callable[[int], None] | None = None
    ) -> Snapshot:
        interval = self.engine.eval_interval_s
        next_eval: float | None = None
        last = None
        for done, (ts, kind, ev) in enumerate(events, start=1):
            if next_eval is None:
                next_eval = (ts // interval + 1) * interval
            while ts >= next_eval:  # evaluate every boundary crossed, with the data before it
                self._flush()
                self.evaluate(next_eval)
                next_eval += interval
            (self._preds if kind == 0 else self._labels).append((None, ev))
            last = ts
            if len(self._preds) + len(self._labels) >= BATCH:
                self._flush()
            if progress and done % 50_000 == 0:
                progress(done)
        self._flush()
        return self.evaluate(last if last is not None else 0.0)


def replay_files(
    engine: Engine,
    predictions: Path,
    labels: Path | None,
    progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    bad: list[BadLine] = []
    decoder = engine.decoder(check_time=False)
    preds = _decoded(predictions, decoder.prediction, bad)
    labs = _decoded(labels, decoder.label, bad) if labels is not None else []
    run = Replay(engine)
    snapshot = run.run(_merged(preds, labs), progress)
    # Rejections found only in context (duplicates, wrong feature types) have no line numbers.
    for (topic, reason), n in run.stage1.counts.invalid.items():
        bad.extend(BadLine(topic, 0, reason, "rejected during processing") for _ in range(n))
    return ReplayResult(
        snapshot=snapshot,
        alerts=run.events,
        bad_lines=bad,
        predictions=run.stage1.counts.predictions,
        labels=run.stage1.counts.labels,
        evaluations=run.evaluations,
    )


def build_reference(engine: Engine, events: Path, out: Path) -> dict[str, int]:
    """Pin every model's reference to ``events`` (predictions, optionally with a ``label`` field)."""
    decoder = engine.decoder(check_time=False)
    by_model: dict[str, list[Prediction]] = {name: [] for name in engine.models}
    labels: dict[str, int] = {}
    for raw in _read_lines(events):
        if not raw.strip():
            continue
        p = decoder.prediction(raw)
        if isinstance(p, Invalid):
            continue
        by_model[p.model].append(p)
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        label = doc.get("label")
        if label in (0, 1) and not isinstance(label, bool):
            labels[p.prediction_id] = int(label)
    empty = [name for name, ps in by_model.items() if not ps]
    if len(empty) == len(by_model):
        raise InputError(f"{events} holds no valid prediction of a configured model ({', '.join(by_model)})")
    specs = [
        build_profile(engine.models[name], ps, labels, engine.settings.data_drift.bins)
        for name, ps in by_model.items()
        if ps
    ]
    out.write_bytes(profile_to_bytes(specs))
    return {name: len(ps) for name, ps in by_model.items()}
