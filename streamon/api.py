"""The Python API: streamon's monitoring over data in memory, for notebooks and services.

A :class:`Monitor` is built from a config (a YAML file, YAML text, a dict, or
:class:`~streamon.config.Settings`), is fed predictions and labels as iterables of
dicts or pandas DataFrames (one event per row, named as the config's ``fields``), and
:meth:`Monitor.run` replays them through the same two stages as ``streamon replay`` and
the workers. The result reads as samples, a dict, a DataFrame or Prometheus text.

>>> monitor = Monitor({"models": [{"name": "fraud", "features": [{"name": "amount", "type": "numeric"}]}],
...                    "monitoring": {"custom_metrics": {"model_performance": {"min_samples": 1}}}})
>>> _ = monitor.add_predictions([
...     {"prediction_id": f"p{i}", "model": "fraud", "score": s, "ts": 1767225600 + i,
...      "features": {"amount": 10.0 * i}} for i, s in enumerate([0.9, 0.2, 0.8, 0.1])])
>>> _ = monitor.add_labels([{"prediction_id": f"p{i}", "label": y, "ts": 1767225700}
...                         for i, y in enumerate([1, 0, 0, 0])])
>>> result = monitor.run(now=1767226000)
>>> result.predictions, result.labels
(4, 4)
>>> result.value("ml_model_precision", model="fraud", variant="all", window="current")
0.5
>>> result.value("ml_model_recall", model="fraud", variant="all", window="current")
1.0
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from streamon.config import Settings, load_config
from streamon.config.loading import parse_config_text
from streamon.core.alerts import Rule
from streamon.core.stages.evaluate import Sample, Snapshot
from streamon.engine import build_engine
from streamon.errors import ConfigError, InputError
from streamon.replay import BadLine, ProgressFactory, ReplayResult, read_lines, replay_lines


class _Records(Protocol):
    """What is read of a pandas DataFrame (duck-typed: pandas is not a dependency)."""

    def to_dict(self, orient: str) -> list[dict[str, Any]]: ...


Events = Iterable[Mapping[str, Any]] | _Records


def _settings(config: Settings | Mapping[str, Any] | str | Path) -> Settings:
    if isinstance(config, Settings):
        return config
    if isinstance(config, Mapping):
        return Settings.from_dict(dict(config), source="<dict>")
    if isinstance(config, Path) or (
        isinstance(config, str) and "\n" not in config and config.endswith((".yml", ".yaml"))
    ):
        return load_config(config)
    if isinstance(config, str):
        return parse_config_text(config, source="<text>")
    raise ConfigError(f"config: expected a path, YAML text, a dict or Settings, got {type(config).__name__}")


def _json_default(value: Any) -> Any:
    """numpy scalars and pandas timestamps, as JSON has them (a DataFrame's cells are these)."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot encode {type(value).__name__}")


def _lines(events: Events, what: str) -> list[bytes]:
    """Each event as the JSON line a producer would have sent (the decoder's input)."""
    rows: Iterable[Any] = events.to_dict("records") if hasattr(events, "to_dict") else events
    out = []
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            raise InputError(f"{what} #{i}: expected a dict (one event), got {type(row).__name__}")
        # A DataFrame gives NaN for a cell the row does not have: leave the key out, as the
        # producer would have. A NaN feature value stays (it is a missing value).
        clean = {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
        try:
            out.append(orjson.dumps(clean, default=_json_default, option=orjson.OPT_SERIALIZE_NUMPY))
        except TypeError as exc:
            raise InputError(f"{what} #{i}: not JSON-encodable: {exc}") from None
    return out


@dataclass
class MonitorResult:
    """What a run found: the last evaluation's samples, the alert events, the bad events."""

    snapshot: Snapshot
    alerts: list[dict[str, Any]] = field(default_factory=list)
    bad_events: list[BadLine] = field(default_factory=list)
    predictions: int = 0
    labels: int = 0
    evaluations: int = 0
    notes: list[str] = field(default_factory=list)
    _replay: ReplayResult | None = field(default=None, repr=False, compare=False)
    _rules: list[Rule] = field(default_factory=list, repr=False, compare=False)
    _monitor: Monitor | None = field(default=None, repr=False, compare=False)

    @classmethod
    def _of(cls, r: ReplayResult, rules: list[Rule]) -> MonitorResult:
        notes = r.warnings + r.notes
        return cls(r.snapshot, r.alerts, r.bad_lines, r.predictions, r.labels, r.evaluations, notes, r, rules)

    def report(self, title: str = "streamon report") -> Report:
        """The HTML report of this run (:mod:`streamon.report`): ``.save(path)``, or shown
        inline in Jupyter."""
        from streamon.report.collect import collect, window_views
        from streamon.report.render import render_html

        r = self._replay
        data = collect(
            title,
            r.history if r is not None else [],
            self.snapshot,
            window_views(r.stage2) if r is not None and r.stage2 is not None else None,
            self._rules,
            self.alerts,
            predictions=self.predictions,
            labels=self.labels,
            bad_events=len(self.bad_events),
        )
        if self._monitor is not None:
            data.experiments = self._monitor.experiment_reports()
        return Report(render_html(data))

    def value(self, name: str, **labels: str) -> float:
        """The value of the one sample named ``name`` with these labels (KeyError if none)."""
        return self.snapshot.value(name, **labels)

    def samples(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every sample (or those named ``name``) as ``{"name", <labels>..., "value"}``."""
        return [_row(s) for s in self.snapshot.samples if name is None or s.name == name]

    def to_dict(self) -> dict[str, Any]:
        """Everything, as plain JSON-able Python values."""
        return {
            "event_time": self.snapshot.event_time,
            "predictions": self.predictions,
            "labels": self.labels,
            "evaluations": self.evaluations,
            "samples": self.samples(),
            "alerts": self.alerts,
            "bad_events": [asdict(b) for b in self.bad_events],
            "notes": self.notes,
        }

    def to_frame(self) -> Any:
        """The samples as a pandas DataFrame: a ``name`` column, one column per label, ``value``."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("to_frame needs pandas: pip install 'streamon[pandas]'") from None
        return pd.DataFrame(self.samples())

    def prometheus(self) -> str:
        """The samples in the Prometheus text format, as the live ``/metrics`` shows them."""
        from streamon.exporter import render  # prometheus_client: only when asked for

        return render(self.snapshot).decode()


@dataclass(frozen=True)
class Report:
    """A rendered HTML report: one self-contained page (plotly.js inline)."""

    html: str

    def save(self, path: str | Path) -> Path:
        """Write the page to ``path`` (one file; opens offline in any browser)."""
        out = Path(path)
        try:
            out.write_text(self.html, encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
        return out

    def _repr_html_(self) -> str:
        # In a sandboxed frame: the page's own styles and scripts stay out of the notebook's.
        return (
            f'<iframe srcdoc="{html.escape(self.html, quote=True)}" '
            'style="width:100%;height:900px;border:0" sandbox="allow-scripts"></iframe>'
        )


def _row(s: Sample) -> dict[str, Any]:
    return {"name": s.name, **dict(s.labels), "value": s.value}


class Monitor:
    """streamon over events in memory: feed predictions and labels, then :meth:`run`.

    ``reference`` is a profile from ``streamon reference build`` (None: the config's or the
    rolling reference window). Events are kept until :meth:`run`, which replays all of
    them in event-time order, so they may be added in any order and in any number of calls.
    """

    def __init__(
        self, config: Settings | Mapping[str, Any] | str | Path, *, reference: str | Path | None = None
    ):
        self.settings = _settings(config)
        self.engine = build_engine(self.settings, profile=Path(reference) if reference is not None else None)
        self._predictions: list[bytes] = []
        self._labels: list[bytes] = []
        self._sources = ["prediction", "label"]  # what bad events are reported against

    def add_predictions(self, events: Events) -> Monitor:
        """Add prediction events (dicts, or a DataFrame with one row per event)."""
        self._predictions += _lines(events, "prediction")
        return self

    def add_labels(self, events: Events) -> Monitor:
        """Add label events (dicts, or a DataFrame with one row per event)."""
        self._labels += _lines(events, "label")
        return self

    def add_prediction_file(self, path: str | Path) -> Monitor:
        """Add the prediction events of a JSONL file (bad lines are reported by file and line)."""
        if not self._predictions:
            self._sources[0] = str(path)
        self._predictions += read_lines(Path(path))
        return self

    def add_label_file(self, path: str | Path) -> Monitor:
        """Add the label events of a JSONL file (bad lines are reported by file and line)."""
        if not self._labels:
            self._sources[1] = str(path)
        self._labels += read_lines(Path(path))
        return self

    def add_predictions_raw(self, values: Iterable[bytes | None], source: str = "prediction") -> Monitor:
        """Add prediction messages as a producer sent them (JSON bytes; None, a tombstone, is skipped)."""
        if not self._predictions:
            self._sources[0] = source
        self._predictions += [v for v in values if v is not None]
        return self

    def add_labels_raw(self, values: Iterable[bytes | None], source: str = "label") -> Monitor:
        """Add label messages as a producer sent them (JSON bytes; None, a tombstone, is skipped)."""
        if not self._labels:
            self._sources[1] = source
        self._labels += [v for v in values if v is not None]
        return self

    def run(
        self, *, now: float | None = None, history: bool = True, progress: ProgressFactory | None = None
    ) -> MonitorResult:
        """Replay everything added so far; ``now`` is the wall clock (default: the real one).

        ``history`` keeps the series a report draws over time from every evaluation
        (:meth:`MonitorResult.report`); without it a run on a long stream is faster.
        """
        from streamon.core.catalogue import METRICS
        from streamon.report.collect import history_names

        result = replay_lines(
            self.engine,
            self._predictions,
            self._labels,
            (self._sources[0], self._sources[1]),
            progress,
            now=now,
            history=history_names(METRICS) if history else (),
        )
        out = MonitorResult._of(result, self.engine.rules)
        out._monitor = self
        return out

    def experiment_reports(self) -> list[dict[str, Any]]:
        """``streamon ab report --json`` of every experiment in the events added (the arms with
        their fixed-horizon intervals and sequential tests), with the config's A/B settings."""
        from streamon import abreport

        decoder = self.engine.decoder(check_time=False)
        bad = [0]
        predictions = list(abreport.decode_events(self._predictions, decoder.prediction, bad))
        labels = list(abreport.decode_events(self._labels, decoder.label, bad))
        ab = self.settings.ab_testing
        costs = self.engine.evaluation.costs
        out = []
        for experiment in sorted({p.experiment for p in predictions if p.experiment and p.variant}):
            data = abreport.collect(predictions, labels, experiment, None, costs, self._sources[0])
            data.bad = bad[0]
            out.append(abreport.analyse(data, costs, ab.control, ab.alpha, ab.sequential_tau))
        return out
