"""``streamon replay`` and ``streamon reference build``: the streaming pipeline over files.

Replay runs the same stage-1 + stage-2 logic as the workers over JSONL files, in
event-time order (predictions before labels at equal times), evaluating on the same
event-time schedule; "now" at the end is the last event time. Bad lines are reported
with their file, line number, field and reason, and skipped.

Event-time admission is the worker's, with the stream's own clock for the age: an event
more than ``windows.max_future_skew`` ahead of the wall clock is ``ts_in_future`` (no
file holds a real event from the future), and one more than ``windows.max_event_age``
before the newest admitted event of the input is ``ts_too_old`` (measured against the
time the replay ends at, so a historical file replays whatever its age, and a stray old
line is rejected wherever it stands in the file).

The evaluation schedule is every ``collection_interval`` boundary of event time, but
only the boundaries where an evaluation can see something new are evaluated: those
after new data, those where a window moves a bucket, and those where a pending alert's
for-duration elapses. Every other boundary would give the samples and alert state of
the one before it (:meth:`Aggregator.changes_between`, :meth:`AlertEngine.becomes_due`),
so the results are those of evaluating every boundary, at a cost bounded by the events
and alerts rather than by the time the stream spans. An evaluation before the last one
is only seen by the alert rules (and the ``history`` names), so it leaves out what none
of them reads: the estimated performance unless a rule names one of its metrics, and the
feature-drift tests whose samples no rule names (KS and Wasserstein, chi-square; PSI
and JS share their bins and stay). With no rule and no history nothing reads those
evaluations at all: the windows are only moved to each boundary, as the evaluation
there would have moved them. The last evaluation is complete.
"""

from __future__ import annotations

import bisect
import gc
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

import orjson

from streamon.config import format_duration
from streamon.core.alerts import AlertEngine
from streamon.core.events import TS_IN_FUTURE, TS_TOO_OLD, UNKNOWN_MODEL, Invalid, Label, Prediction
from streamon.core.profile import build_profile, profile_to_bytes
from streamon.core.stages.evaluate import Sample, Snapshot
from streamon.core.stages.stage1 import PartitionProcessor
from streamon.core.stages.stage2 import Aggregator
from streamon.engine import Engine
from streamon.errors import InputError
from streamon.progress import Tick

BATCH = 10_000
TICK_LINES = 16_384  # progress is reported once per this many lines or events
_ORDER = itemgetter(0, 1, 2)  # (event time, kind, line): unique, the event itself is never compared
# progress(description, total=..., unit=...) -> a context yielding tick (streamon.progress.progress)
ProgressFactory = Callable[..., AbstractContextManager[Tick]]


@dataclass
class BadLine:
    file: str
    line: int
    reason: str
    detail: str
    field: str = ""  # the offending field as the file names it, "" for the whole line

    def __str__(self) -> str:
        """``file:line: field: reason (detail)``, the field left out when there is none."""
        where = f"{self.file}:{self.line}" if self.line else self.file
        what = f"{self.field}: {self.reason}" if self.field else self.reason
        return f"{where}: {what} ({self.detail})" if self.detail else f"{where}: {what}"


@dataclass
class ReplayResult:
    snapshot: Snapshot
    alerts: list[dict[str, Any]] = field(default_factory=list)
    bad_lines: list[BadLine] = field(default_factory=list)
    predictions: int = 0
    labels: int = 0
    evaluations: int = 0
    warnings: list[str] = field(default_factory=list)  # about the input as a whole (an empty file)
    notes: list[str] = field(default_factory=list)  # why a metric family says nothing
    # (event time, samples) of every evaluation, of the names asked for (replay_lines' history)
    history: list[tuple[float, list[Sample]]] = field(default_factory=list)
    stage2: Aggregator | None = None  # the windows as they are at the end


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


Ordered = tuple[float, int, int, Any]  # (event time, kind: 0 prediction / 1 label, line number, event)
Decode = Callable[[list[bytes]], Sequence[Prediction | Label | Invalid]]  # a decoder's batch method


def _decode_lines(
    lines: list[bytes],
    name: str,
    decode: Callable[[list[bytes]], Sequence[Prediction | Label | Invalid]],
    kind: int,
    bad: list[BadLine],
    tick: Tick,
) -> list[Ordered]:
    """(event time, kind, line number, event) of the valid lines, unsorted; the others go to ``bad``.

    ``decode`` takes a batch (the decoder's batch methods), one progress tick of lines at a time.
    """
    out: list[Ordered] = []
    append = out.append
    for start in range(0, len(lines), TICK_LINES):
        chunk = lines[start : start + TICK_LINES]
        # = not raw.strip(), without a copy per line
        numbers = [i for i, raw in enumerate(chunk, start=start + 1) if raw and not raw.isspace()]
        kept = chunk if len(numbers) == len(chunk) else [lines[i - 1] for i in numbers]
        for i, ev in zip(numbers, decode(kept), strict=True):
            if isinstance(ev, Invalid):
                bad.append(BadLine(name, i, ev.reason, ev.detail, ev.field))
            else:
                append((ev.ts, kind, i, ev))
        if len(chunk) == TICK_LINES:
            tick(TICK_LINES)
    tick(len(lines) % TICK_LINES)
    return out


def _is_empty(lines: list[bytes]) -> bool:
    return all(not raw or raw.isspace() for raw in lines)


def _noop(n: float = 1, *, items: int | None = None) -> None:
    pass


class Replay:
    """Drives a stage-1 processor and a stage-2 aggregator over ordered events.

    ``step_by_step`` evaluates every interval boundary, idle or not: the reference the
    skipping schedule is tested against (same alerts, same samples).
    """

    def __init__(
        self,
        engine: Engine,
        sources: tuple[str, str] = ("predictions", "labels"),
        step_by_step: bool = False,
        history: Collection[str] = (),
    ) -> None:
        self.engine = engine
        self.sources = sources  # file names of kind 0 and 1, for the lines stage 1 rejects
        self.step_by_step = step_by_step
        self.stage1: PartitionProcessor = engine.partition_processor()
        self.stage2: Aggregator = engine.aggregator()
        self.alerts = AlertEngine(engine.rules)
        self.events: list[dict[str, Any]] = []
        self.bad: list[BadLine] = []
        self.evaluations = 0
        self._preds: list[tuple[bytes | None, Any]] = []
        self._labels: list[tuple[bytes | None, Any]] = []
        self._lines: tuple[list[int], list[int]] = ([], [])  # line numbers, parallel to the batches
        # All an evaluation before the last is for: the alert rules' samples (the last one is
        # the result, in full). Set while run_sorted evaluates the boundaries before the end.
        # The samples named in ``history`` of every evaluation, by event time (a report's
        # series over time); the evaluations before the last compute them too.
        self.history_names = frozenset(history)
        self.history: list[tuple[float, list[Sample]]] = []
        self._reads = frozenset(rule.metric for rule in engine.rules) | self.history_names
        self.alerts_only = False

    def _flush(self) -> None:
        rejected = self.stage1.process_decoded(self._preds, self._labels)
        for r in rejected:  # in context (duplicates, a string in a numeric feature): by line too
            kind = 0 if r.topic == "predictions" else 1
            self.bad.append(
                BadLine(self.sources[kind], self._lines[kind][r.index], r.reason, r.detail, r.field)
            )
        self._preds, self._labels = [], []
        self._lines = ([], [])
        for partial in self.stage1.take_partials():
            self.stage2.apply(partial)

    def evaluate(self, at: float) -> Snapshot:
        """Evaluate at ``at`` and run the alert rules on it.

        While :attr:`alerts_only`, the snapshot may lack the samples no rule reads.
        """
        snap = self.stage2.evaluate(at, reads=self._reads if self.alerts_only else None)
        self.events.extend(self.alerts.evaluate(snap))
        self.evaluations += 1
        if self.history_names:
            self.history.append((at, [x for x in snap.samples if x.name in self.history_names]))
        return snap

    def _busy(self, last: float, now: float) -> bool:
        """Could an evaluation at ``now`` differ from the one at ``last``, with no data between?"""
        return self.stage2.changes_between(last, now) or self.alerts.becomes_due(last, now)

    def _next_boundary(self, k: int, ts: float, interval: float) -> int:
        """The index of the next boundary to evaluate, the one at ``k * interval`` or later.

        No data lies before ``ts`` that was not merged, and ``(k - 1) * interval`` was just
        evaluated. The boundaries up to ``ts`` that are idle are skipped; when all are, the
        windows are still advanced to the last of them, as evaluating it would have, so that
        the data after it lands in the same buckets.
        """
        last = (k - 1) * interval
        top = int(ts // interval)  # the last boundary at or before ts
        while (top + 1) * interval <= ts:
            top += 1
        while top * interval > ts:
            top -= 1
        if not self._busy(last, top * interval):
            self.stage2.advance(top * interval)
            return top + 1
        lo, hi = k, top  # the first busy boundary: busy() is monotonic in its second argument
        while lo < hi:
            mid = (lo + hi) // 2
            if self._busy(last, mid * interval):
                hi = mid
            else:
                lo = mid + 1
        return lo

    def run_sorted(self, events: list[Ordered], tick: Tick = _noop) -> Snapshot:
        """Evaluate over a list in (event time, kind, line) order, a slice at a time.

        Every evaluation boundary (a multiple of the interval) sees the data before it; the
        next boundary is found by bisection.
        """
        n = len(events)
        if n == 0:
            self._flush()
            return self.evaluate(0.0)
        interval = self.engine.eval_interval_s
        times = [e[0] for e in events]
        k = int(times[0] // interval) + 1  # index of the next boundary, k * interval
        while k * interval <= times[0]:
            k += 1
        i = 0
        while i < n:
            if times[i] >= k * interval:  # evaluate every boundary crossed, with the data before it
                self._flush()
                if self._reads or self.step_by_step:
                    self.alerts_only = True
                    self.evaluate(k * interval)
                    self.alerts_only = False
                else:  # nothing reads it (no rule, no history): only the windows' move is kept
                    # (at the same boundaries as the evaluations, so the aggregates add and
                    # subtract the same buckets in the same order: the same bits)
                    self.stage2.advance(k * interval)
                k += 1
                if not self.step_by_step and times[i] >= k * interval:
                    k = self._next_boundary(k, times[i], interval)
                continue
            room = BATCH - (len(self._preds) + len(self._labels))
            j = bisect.bisect_left(times, k * interval, i, min(n, i + room))
            chunk = events[i:j]
            self._preds.extend([(None, e[3]) for e in chunk if e[1] == 0])
            self._labels.extend([(None, e[3]) for e in chunk if e[1] != 0])
            self._lines[0].extend([e[2] for e in chunk if e[1] == 0])
            self._lines[1].extend([e[2] for e in chunk if e[1] != 0])
            tick(j - i)
            i = j
            if len(self._preds) + len(self._labels) >= BATCH:
                self._flush()
        self._flush()
        return self.evaluate(times[-1])


def _admit(
    events: list[Ordered], engine: Engine, names: tuple[str, str], now: float, bad: list[BadLine]
) -> list[Ordered]:
    """The events a worker would admit, with the input's newest event time as its clock for age."""
    if not events:
        return events
    w = engine.settings.windows
    ts_name = (engine.fields.prediction.get("ts", "ts"), engine.fields.label.get("ts", "ts"))
    latest = now + w.max_future_skew
    if max(e[0] for e in events) > latest:
        kept = []
        for e in events:
            if e[0] > latest:
                bad.append(
                    BadLine(
                        names[e[1]],
                        e[2],
                        TS_IN_FUTURE,
                        f"event time {e[0]:.0f} is {e[0] - now:.0f}s ahead of the wall clock",
                        ts_name[e[1]],
                    )
                )
            else:
                kept.append(e)
        events = kept
        if not events:
            return events
    newest = max(e[0] for e in events)
    oldest = newest - w.max_event_age
    if min(e[0] for e in events) >= oldest:
        return events
    kept = []
    for e in events:
        if e[0] < oldest:
            bad.append(
                BadLine(
                    names[e[1]],
                    e[2],
                    TS_TOO_OLD,
                    f"event time {e[0]:.0f} is {newest - e[0]:.0f}s before the newest event of the input, "
                    f"more than windows.max_event_age ({format_duration(w.max_event_age)})",
                    ts_name[e[1]],
                )
            )
        else:
            kept.append(e)
    return kept


def replay_files(
    engine: Engine,
    predictions: Path,
    labels: Path | None,
    progress: ProgressFactory | None = None,
    *,
    now: float | None = None,
    step_by_step: bool = False,
    history: Collection[str] = (),
) -> ReplayResult:
    """Replay the JSONL files through both stages (:func:`replay_lines` over their lines).

    ``progress`` (e.g. :func:`streamon.progress.progress`) reports reading and replaying;
    ``now`` is the wall clock the future skew is measured against (default: the real one);
    ``step_by_step`` evaluates every interval boundary (slow on sparse streams; for tests).
    """
    return replay_lines(
        engine,
        read_lines(predictions),
        read_lines(labels) if labels is not None else None,
        (str(predictions), str(labels) if labels is not None else "labels"),
        progress,
        now=now,
        step_by_step=step_by_step,
        history=history,
    )


def replay_lines(
    engine: Engine,
    prediction_lines: list[bytes],
    label_lines: list[bytes] | None,
    names: tuple[str, str] = ("predictions", "labels"),
    progress: ProgressFactory | None = None,
    *,
    now: float | None = None,
    step_by_step: bool = False,
    history: Collection[str] = (),
) -> ReplayResult:
    """Replay JSON-encoded events (one per item) through both stages.

    ``names`` are what bad lines are reported against (the file names, for files);
    ``history`` names the samples kept from every evaluation (:attr:`ReplayResult.history`).
    """
    bad: list[BadLine] = []
    warnings: list[str] = []
    decoder = engine.decoder(check_time=False)
    clock = time.time() if now is None else now
    # Millions of long-lived event objects and no reference cycles: the cyclic GC would
    # only rescan them again and again (a third of the run). Paused, restored after.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        contents: list[
            tuple[list[bytes], Callable[[list[bytes]], Sequence[Prediction | Label | Invalid]], int]
        ]
        contents = [(prediction_lines, decoder.predictions, 0)]
        if label_lines is not None:
            contents.append((label_lines, decoder.labels, 1))
        total_lines = sum(len(lines) for lines, *_ in contents)
        events: list[Ordered] = []
        with _progress(progress, "reading", total_lines, "lines") as tick:
            for lines, decode, kind in contents:
                if _is_empty(lines):
                    warnings.append(
                        f"{names[kind]} is empty: no {'predictions' if kind == 0 else 'labels'} to replay"
                    )
                events += _decode_lines(lines, names[kind], decode, kind, bad, tick)
        del contents
        events = _admit(events, engine, names, clock, bad)
        # One list of both files, sorted once: predictions before labels at equal times.
        events.sort(key=_ORDER)
        run = Replay(engine, names, step_by_step=step_by_step, history=history)
        with _progress(progress, "replaying", len(events), "events") as tick:
            snapshot = run.run_sorted(events, tick)
        del events
    finally:
        if gc_was_enabled:
            gc.enable()
    bad += run.bad
    bad.sort(key=lambda b: (b.file != names[0], b.line))
    return ReplayResult(
        snapshot=snapshot,
        alerts=run.events,
        bad_lines=bad,
        predictions=run.stage1.counts.predictions,
        labels=run.stage1.counts.labels,
        evaluations=run.evaluations,
        warnings=warnings,
        notes=drift_notes(engine, snapshot),
        history=run.history,
        stage2=run.stage2,
    )


def _progress(factory: ProgressFactory | None, description: str, total: int, unit: str) -> Any:
    if factory is None or total < TICK_LINES:  # nothing to watch: no bar, no lines
        return nullcontext(_noop)
    return factory(description, total=total, unit=unit)


def drift_notes(engine: Engine, snapshot: Snapshot) -> list[str]:
    """One line per model whose metrics (or drift metrics) are empty, saying why and what to do."""
    evaluation = engine.evaluation
    w = engine.settings.windows
    minimum = evaluation.min_drift_samples
    key = "monitoring.custom_metrics.data_drift.min_samples"
    notes = []
    for name, spec in engine.models.items():

        def count(window: str, model: str = name) -> float | None:
            try:
                return snapshot.value(
                    "streamon_predictions_in_window", model=model, variant="all", window=window
                )
            except KeyError:
                return None

        cur, ref = count("current"), count("reference")
        if cur is None or ref is None:
            notes.append(f"model {name}: no metrics: the input holds no valid prediction of this model")
            continue
        if not evaluation.drift_enabled:
            continue
        pinned = spec.reference is not None
        if ref == 0 and not pinned:
            notes.append(
                f"model {name}: no drift: the rolling reference window ({format_duration(w.reference)} "
                f"before the current {format_duration(w.current)}) has no data yet; use a pinned "
                "reference profile (--reference / reference build) or a longer stream"
            )
        elif ref < minimum:
            source = "reference profile" if pinned else "rolling reference window"
            fix = (
                "rebuild it from more events"
                if pinned
                else "use a pinned reference profile or a longer stream"
            )
            notes.append(
                f"model {name}: no drift: the {source} holds {_predictions(ref)}, fewer than "
                f"{key} ({minimum}); {fix}"
            )
        elif cur < minimum:
            notes.append(
                f"model {name}: no drift: the current window ({format_duration(w.current)}) holds "
                f"{_predictions(cur)}, fewer than {key} ({minimum})"
            )
    return notes


def _predictions(n: float) -> str:
    return "1 prediction" if n == 1 else f"{n:,.0f} predictions"


def summarise_bad_lines(bad: list[BadLine], per_problem: int = 3, problems: int = 20) -> Iterator[str]:
    """The report of skipped lines: the first few of each problem, then how many more like it.

    A problem is the file, field and reason (an unknown model also its name: each is a
    different thing to fix). At most ``problems`` problems are listed, the rest counted.
    """
    groups: dict[tuple[str, str, str, str], list[BadLine]] = defaultdict(list)
    for b in bad:
        groups[(b.file, b.field, b.reason, b.detail if b.reason == UNKNOWN_MODEL else "")].append(b)
    for shown, lines in enumerate(groups.values()):
        if shown == problems:
            rest = sum(len(g) for g in list(groups.values())[problems:])
            yield f"... and {rest} more bad lines of {len(groups) - problems} other kinds"
            return
        for b in lines[:per_problem]:
            yield f"skipped {b}"
        if len(lines) > per_problem:
            yield f"  ... and {len(lines) - per_problem} more like this"


def build_reference(
    engine: Engine, events: Path, out: Path, progress: ProgressFactory | None = None
) -> tuple[dict[str, int], list[BadLine]]:
    """Pin every model's reference to ``events`` (predictions, optionally with a ``label`` field).

    Returns the predictions kept per model and the lines skipped.
    """
    decoder = engine.decoder(check_time=False)
    by_model: dict[str, list[Prediction]] = {name: [] for name in engine.models}
    labels: dict[str, float] = {}
    bad: list[BadLine] = []
    lines = read_lines(events)
    with _progress(progress, "reading", len(lines), "lines") as tick:
        for i, raw in enumerate(lines, start=1):
            if not i % TICK_LINES:
                tick(TICK_LINES)
            if not raw or raw.isspace():
                continue
            p = decoder.prediction(raw)
            if isinstance(p, Invalid):
                bad.append(BadLine(str(events), i, p.reason, p.detail, p.field))
                continue
            by_model[p.model].append(p)
            label = orjson.loads(raw).get("label")  # valid JSON: the decoder parsed it
            spec = engine.models[p.model]
            if spec.task == "multiclass":  # a declared class name, kept as its index
                if isinstance(label, str) and label in spec.classes:
                    labels[p.prediction_id] = spec.classes.index(label)
                continue
            if isinstance(label, bool) or not isinstance(label, int | float):
                continue
            if spec.task == "regression":  # the true value (orjson: finite)
                labels[p.prediction_id] = float(label)
            elif label in (0, 1):
                labels[p.prediction_id] = int(label)
        tick(len(lines) % TICK_LINES)
    empty = [name for name, ps in by_model.items() if not ps]
    if len(empty) == len(by_model):
        raise InputError(f"{events} holds no valid prediction of a configured model ({', '.join(by_model)})")
    specs = [
        build_profile(engine.models[name], ps, labels, engine.settings.data_drift.bins)
        for name, ps in by_model.items()
        if ps
    ]
    out.write_bytes(profile_to_bytes(specs))
    return {name: len(ps) for name, ps in by_model.items()}, bad
