"""``streamon replay`` and ``streamon reference build``: the streaming pipeline over files.

Replay runs the same stage-1 + stage-2 logic as the workers over JSONL files, in
event-time order (predictions before labels at equal times), evaluating on the same
event-time schedule; "now" at the end is the last event time. Bad lines are reported
with their line numbers and skipped.
"""

from __future__ import annotations

import bisect
import gc
import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter
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
_ORDER = itemgetter(0, 1, 2)  # (event time, kind, line): unique, the event itself is never compared


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


def read_lines(path: Path) -> list[bytes]:
    """The lines of a JSONL input file; a file that cannot be read is one clear InputError."""
    try:
        return path.read_bytes().splitlines()
    except FileNotFoundError:
        raise InputError(f"input file {path} not found") from None
    except IsADirectoryError:
        raise InputError(f"input {path} is a directory, expected a JSONL file") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None


Decoded = tuple[float, int, Any]  # (event time, line number, Prediction | Label)


def _decoded(
    path: Path, decode: Callable[[bytes], Prediction | Label | Invalid], bad: list[BadLine]
) -> list[Decoded]:
    """(event time, line number, event) of the valid lines, sorted; the others go to ``bad``."""
    out = []
    for i, raw in enumerate(read_lines(path), start=1):
        if not raw.strip():
            continue
        ev = decode(raw)
        if isinstance(ev, Invalid):
            bad.append(BadLine(str(path), i, ev.reason, ev.detail))
        else:
            out.append((ev.ts, i, ev))
    out.sort(key=lambda t: (t[0], t[1]))
    return out


Ordered = tuple[float, int, int, Any]  # (event time, kind: 0 prediction / 1 label, line number, event)


def _decode_file(
    path: Path, decode: Callable[[bytes], Prediction | Label | Invalid], kind: int, bad: list[BadLine]
) -> list[Ordered]:
    """Like :func:`_decoded`, unsorted, with the ``kind`` that orders predictions before labels."""
    out: list[Ordered] = []
    append = out.append
    name = str(path)
    for i, raw in enumerate(read_lines(path), start=1):
        if not raw or raw.isspace():  # = not raw.strip(), without a copy per line
            continue
        ev = decode(raw)
        if isinstance(ev, Invalid):
            bad.append(BadLine(name, i, ev.reason, ev.detail))
        else:
            append((ev.ts, kind, i, ev))
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

    def run_sorted(self, events: list[Ordered], progress: Callable[[int], None] | None = None) -> Snapshot:
        """:meth:`run` over a list in (event time, kind, line) order, a slice at a time.

        Same batches, flushes and evaluations as :meth:`run` (so the same results), without
        the per-event bookkeeping: the next evaluation boundary is found by bisection.
        """
        n = len(events)
        if n == 0:
            self._flush()
            return self.evaluate(0.0)
        interval = self.engine.eval_interval_s
        times = [e[0] for e in events]
        next_eval = (times[0] // interval + 1) * interval
        i = reported = 0
        while i < n:
            if times[i] >= next_eval:  # evaluate every boundary crossed, with the data before it
                self._flush()
                self.evaluate(next_eval)
                next_eval += interval
                continue
            room = BATCH - (len(self._preds) + len(self._labels))
            j = bisect.bisect_left(times, next_eval, i, min(n, i + room))
            chunk = events[i:j]
            self._preds.extend([(None, e[3]) for e in chunk if e[1] == 0])
            self._labels.extend([(None, e[3]) for e in chunk if e[1] != 0])
            i = j
            if len(self._preds) + len(self._labels) >= BATCH:
                self._flush()
            while progress and reported + 50_000 <= i:
                reported += 50_000
                progress(reported)
        self._flush()
        return self.evaluate(times[-1])


def replay_files(
    engine: Engine,
    predictions: Path,
    labels: Path | None,
    progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    bad: list[BadLine] = []
    decoder = engine.decoder(check_time=False)
    # Millions of long-lived event objects and no reference cycles: the cyclic GC would
    # only rescan them again and again (a third of the run). Paused, restored after.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        # One list of both files, sorted once: the same order as _merged(_decoded(...), ...).
        events = _decode_file(predictions, decoder.prediction, 0, bad)
        if labels is not None:
            events += _decode_file(labels, decoder.label, 1, bad)
        events.sort(key=_ORDER)
        run = Replay(engine)
        snapshot = run.run_sorted(events, progress)
        del events
    finally:
        if gc_was_enabled:
            gc.enable()
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
    for raw in read_lines(events):
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
