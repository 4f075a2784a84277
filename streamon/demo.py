"""``streamon demo``: simulated traffic, a real streamon worker and a live view, in one process.

Without ``--bootstrap-servers`` the Kafka is librdkafka's mock cluster
(``test.mock.num.brokers``), embedded in this process: it speaks the Kafka protocol
over TCP, so the worker and the simulator use their ordinary clients, but it is a
test double, not a Kafka broker, and the demo says so. Measured against
confluent-kafka 2.16 / librdkafka 2.16 (what the worker needs):

- consumer groups (range assignment, rebalance callbacks): work;
- transactions (init / begin / commit / abort): work, but read_committed consumers
  are NOT isolated from aborted transactions: they read aborted messages too. A
  healthy run never aborts; if the worker ever does (``streamon_transaction_aborts_total``)
  the demo says that its numbers may now count a batch twice.
- ``send_offsets_to_transaction``: accepted without error, but the offsets are NOT
  stored: ``committed()`` stays unset. Within one run nothing depends on them (the
  consumers keep their positions), so the numbers shown are right; what the mock
  cannot show is exactly-once recovery after a restart. The demo prints this.
- CreateTopics: fails ("Failed while waiting for controller"): the mock has no
  controller. Topics are auto-created instead, by a metadata request per topic,
  before the worker starts (the mock gives every topic 4 partitions).

The reference profile is pinned to simulated pre-drift traffic (as ``streamon
reference build`` would from a file), so drift is visible as soon as it starts
instead of after a full rolling reference window.

Models of the config with ``task: regression`` get credit-limit traffic (a predicted
amount, labelled with the true one; :mod:`streamon.traffic`) and a table of their own:
MAE, RMSE, R², the bias and the drift of the predictions and of the target. Models with
``task: multiclass`` get transaction-router traffic (a probability per declared class,
labelled with the true class) and a table too: accuracy, macro F1, log loss, top-k
accuracy and the drift of the predicted-class mix.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from streamon.config import Settings, load_config
from streamon.core.stages.evaluate import Snapshot
from streamon.errors import ConfigError, InputError, KafkaUnavailableError, StreamonError
from streamon.kafka_client import kafka_client_config
from streamon.simulate import (
    KafkaSink,
    SimStats,
    SimulationSpec,
    Simulator,
    Topics,
    cluster_address_check,
    kafka_logger,
    stop_on_signals,
)

MOCK_LABEL = "embedded librdkafka mock cluster — for demos only, not a real Kafka broker"
MOCK_NOTE = (
    "the mock cluster accepts transactions but does not store the offsets committed in them "
    "(send_offsets_to_transaction) and does not hide aborted transactions from read_committed "
    "readers: this run's numbers are exact while no transaction aborts, but exactly-once recovery "
    "is not demonstrated; use --bootstrap-servers with a real broker for that"
)
ABORT_NOTE = (
    "the worker aborted {n} transaction(s); on the mock cluster aborted messages stay visible, "
    "so the numbers shown may count a batch twice from now on"
)
DEFAULT_CONFIG = "configs/demo_config.yaml"

PERF = (
    ("accuracy", "ml_model_accuracy"),
    ("precision", "ml_model_precision"),
    ("recall", "ml_model_recall"),
    ("auc_roc", "ml_model_auc_roc"),
    ("roi", "ml_business_roi"),
    ("n", "streamon_predictions_in_window"),
    ("labelled", "streamon_labelled_in_window"),
    ("coverage", "streamon_label_coverage_ratio"),
    # regression models
    ("mae", "ml_model_mae"),
    ("rmse", "ml_model_rmse"),
    ("r2", "ml_model_r2"),
    ("bias", "ml_model_mean_error"),
    ("prediction_psi", "ml_prediction_drift_psi_score"),
    ("target_psi", "ml_target_drift_psi_score"),
    # multiclass models (their macro F1 and top-k accuracy: see DemoState.perf_rows)
    ("log_loss", "ml_model_log_loss"),
    ("macro_f1", "ml_model_f1_score"),
    ("top_k", "ml_model_top_k_accuracy"),
)
# Drift of a regression model's outputs, shown among the drifting features under these names.
OUTPUT_DRIFT = {
    "ml_prediction_drift_psi_score": ("(prediction)", "psi"),
    "ml_prediction_drift_js_divergence": ("(prediction)", "js"),
    "ml_target_drift_psi_score": ("(target)", "psi"),
    "ml_target_drift_js_divergence": ("(target)", "js"),
}


@dataclass
class DemoOptions:
    config: Path | None = None
    bootstrap: str | None = None
    duration: float | None = None
    headless: bool = False
    drift_after: float = 60.0
    drift: tuple[str, ...] = ("sudden", "categorical", "degrade")
    rate: float = 100.0
    metrics_port: int | None = None
    seed: int = 7
    label_delay: float = 5.0
    label_fraction: float = 0.8
    variants: tuple[str, ...] = ("A", "B")
    reference_size: int = 20_000
    keep_topics: bool = False


def default_config_path() -> Path:
    """configs/demo_config.yaml of the working directory, else of the source checkout."""
    here = Path(DEFAULT_CONFIG)
    if here.exists():
        return here
    checkout = Path(__file__).resolve().parents[1] / DEFAULT_CONFIG
    if checkout.exists():
        return checkout
    raise ConfigError(f"config {DEFAULT_CONFIG}: file not found; pass --config")


# --------------------------------------------------------------------------- broker


class DemoBroker:
    """The demo's Kafka: a real cluster, or the embedded mock cluster (kept alive by ``self.mock``)."""

    def __init__(self, bootstrap: str | None, settings: Settings | None = None) -> None:
        from confluent_kafka.admin import AdminClient

        self.mock: Any = None
        if bootstrap:
            self.bootstrap = bootstrap
            self.is_mock = False
            # A real cluster takes kafka.client (TLS, SASL) like every other client.
            client = kafka_client_config(settings) if settings is not None else {}
            conf: dict[str, Any] = {**client, "bootstrap.servers": bootstrap, "logger": kafka_logger()}
            self.admin = AdminClient(conf)
            cluster_address_check(self.admin, bootstrap)
            self.description = f"Kafka at {bootstrap}"
        else:
            # The mock cluster lives as long as this client object.
            mock_conf: dict[str, Any] = {"test.mock.num.brokers": "1", "logger": kafka_logger()}
            self.mock = AdminClient(mock_conf)
            md = self.mock.list_topics(timeout=10)
            self.bootstrap = ",".join(f"{b.host}:{b.port}" for b in md.brokers.values())
            self.is_mock = True
            self.admin = self.mock
            self.description = f"{MOCK_LABEL}, at {self.bootstrap}"

    def prepare_topics(self, names: list[str]) -> dict[str, int]:
        """On the mock: auto-create the topics (it cannot CreateTopics). Returns partition counts."""
        if not self.is_mock:
            return {}
        from confluent_kafka import Producer

        p = Producer({"bootstrap.servers": self.bootstrap, "logger": kafka_logger()})
        counts = {}
        for name in names:
            md = p.list_topics(name, timeout=10)  # a producer's metadata request auto-creates
            counts[name] = len(md.topics[name].partitions)
        p.flush(1)
        return counts

    def delete_topics(self, names: list[str]) -> None:
        if self.is_mock:
            return
        for future in self.admin.delete_topics(names, request_timeout=10).values():
            with contextlib.suppress(Exception):  # best effort: report nothing on exit
                future.result(timeout=15)


# --------------------------------------------------------------------------- state shown


@dataclass
class DemoState:
    """What the views show; filled by the main loop."""

    broker: str
    metrics_url: str
    started: float
    drift_after: float
    drift: tuple[str, ...]
    rate: float
    notes: list[str] = field(default_factory=list)
    mock: bool = False
    aborts: int = 0
    sim: SimStats | None = None
    processed: int = 0
    events_per_s: float = 0.0
    snapshot: Snapshot | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list)
    firing: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: deque[str] = field(default_factory=lambda: deque(maxlen=3))
    _rates: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=12))

    @property
    def elapsed(self) -> float:
        return time.time() - self.started

    def observe(self, processed: int) -> None:
        now = time.monotonic()
        self.processed = processed
        self._rates.append((now, processed))
        (t0, n0), (t1, n1) = self._rates[0], self._rates[-1]
        self.events_per_s = (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def add_alert(self, event: dict[str, Any]) -> None:
        self.alerts.append(event)
        if event.get("status") == "firing":
            self.firing[event["fingerprint"]] = event
        else:
            self.firing.pop(event.get("fingerprint", ""), None)

    def perf_rows(self) -> list[tuple[str, str, dict[str, float]]]:
        rows: dict[tuple[str, str], dict[str, float]] = {}
        if self.snapshot is None:
            return []
        names = {metric: key for key, metric in PERF}
        for s in self.snapshot.samples:
            key = names.get(s.name)
            if key is None:
                continue
            labels = dict(s.labels)
            if labels.get("window") != "current" or "class" in labels:
                continue  # a multiclass model's per-class series: its table shows averages
            if s.name == "ml_model_f1_score" and labels.get("average", "macro") != "macro":
                continue
            if s.name == "ml_model_top_k_accuracy":
                key = f"top{labels.get('k', '')}"
            elif key == "macro_f1" and "average" not in labels:
                continue  # a binary model's F1 (not shown)
            elif "average" in labels and key != "macro_f1":
                continue
            rows.setdefault((labels.get("model", ""), labels.get("variant", "")), {})[key] = s.value
        order = sorted(rows, key=lambda mv: (mv[0], mv[1] == "all", mv[1]))
        return [(m, v, rows[(m, v)]) for m, v in order]

    def coverage(self) -> float:
        """Labelled / predictions in the current window, over every model."""
        n = labelled = 0.0
        for _model, variant, row in self.perf_rows():
            if variant == "all":
                n += row.get("n", 0.0)
                labelled += row.get("labelled", 0.0)
        return labelled / n if n else math.nan

    def regression_rows(self) -> list[tuple[str, str, dict[str, float]]]:
        """The rows of :meth:`perf_rows` of regression models (those with an MAE)."""
        return [(m, v, row) for m, v, row in self.perf_rows() if "mae" in row]

    def multiclass_rows(self) -> list[tuple[str, str, dict[str, float]]]:
        """The rows of :meth:`perf_rows` of multiclass models (those with a macro F1)."""
        return [(m, v, row) for m, v, row in self.perf_rows() if "macro_f1" in row]

    def top_drift(self, k: int = 6) -> list[tuple[str, str, float, float]]:
        """(model, feature, PSI, JS) of the most drifting features, over all variants."""
        if self.snapshot is None:
            return []
        psi: dict[tuple[str, str], float] = {}
        js: dict[tuple[str, str], float] = {}
        for s in self.snapshot.samples:
            output = OUTPUT_DRIFT.get(s.name)
            if output is None and s.name not in ("ml_data_drift_psi_score", "ml_data_drift_js_divergence"):
                continue
            labels = dict(s.labels)
            if labels.get("window") != "current" or labels.get("variant") != "all":
                continue
            feature, stat = output or (labels.get("feature", ""), "psi" if "psi" in s.name else "js")
            (psi if stat == "psi" else js)[(labels.get("model", ""), feature)] = s.value
        ranked = sorted(psi, key=lambda kf: -psi[kf] if not math.isnan(psi[kf]) else math.inf)
        return [(m, f, psi[(m, f)], js.get((m, f), math.nan)) for m, f in ranked[:k]]

    def drift_status(self) -> str:
        if not self.drift:
            return "no drift injected"
        at = self.drift_after - self.elapsed
        kinds = "+".join(self.drift)
        return f"{kinds} drift in {at:.0f}s" if at > 0 else f"{kinds} drift active for {-at:.0f}s"


def alert_line(event: dict[str, Any]) -> str:
    """One log line per alert event.

    >>> alert_line({"status": "firing", "alertname": "SevereDataDrift", "model": "m", "severity": "critical",
    ...             "labels": {"feature": "x", "variant": "all"}, "value": 0.4123})
    'ALERT firing SevereDataDrift model=m feature=x severity=critical value=0.4123'
    """
    labels = event.get("labels") or {}
    parts = [f"ALERT {event.get('status')} {event.get('alertname')} model={event.get('model') or '-'}"]
    for key in ("feature", "metric", "variant", "method"):
        value = labels.get(key)
        if value and not (key == "variant" and value == "all"):
            parts.append(f"{key}={value}")
    parts.append(f"severity={event.get('severity')}")
    value = event.get("value")
    if isinstance(value, int | float):
        parts.append(f"value={value:.4g}")
    return " ".join(parts)


ALERT_ROWS = 10  # alert events shown in the live view, newest first


def note_lines(notes: list[str], headless: bool) -> list[str]:
    """The notes printed at start: all of them headless; none with the live view, whose header
    shows them (printing them too put every note on the screen twice).

    >>> note_lines(["mock"], headless=True), note_lines(["mock"], headless=False)
    (['streamon demo: note: mock'], [])
    """
    return [f"streamon demo: note: {note}" for note in notes] if headless else []


def alerts_title(st: DemoState) -> str:
    """Title of the alerts table: how many fire now, and which of the events the rows are.

    >>> st = DemoState("b", "u", 0.0, 60.0, (), 1.0)
    >>> for i in range(13):
    ...     st.add_alert({"status": "firing", "fingerprint": str(i)})
    >>> alerts_title(st)
    'Alerts (13 firing): showing the 10 most recent of 13 alert events'
    >>> st.add_alert({"status": "resolved", "fingerprint": "0"})
    >>> alerts_title(DemoState("b", "u", 0.0, 60.0, (), 1.0)), alerts_title(st)[:20]
    ('Alerts (0 firing)', 'Alerts (12 firing): ')
    """
    title = f"Alerts ({len(st.firing)} firing)"
    total = len(st.alerts)
    if total > ALERT_ROWS:
        return f"{title}: showing the {ALERT_ROWS} most recent of {total} alert events"
    return f"{title}: {total} alert event{'s' if total != 1 else ''}" if total else title


def _fmt(value: float | None, spec: str = ".3f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return format(value, spec)


def status_line(st: DemoState) -> str:
    sim = st.sim or SimStats()
    everything = [r for _m, v, r in st.perf_rows() if v == "all"]
    allv = next((r for r in everything if "mae" not in r and "macro_f1" not in r), {})  # a binary model's
    reg = next((r for r in everything if "mae" in r), None)
    drift = st.top_drift(1)
    top = f"top PSI {drift[0][1]}={_fmt(drift[0][2])}" if drift else "top PSI —"
    regression = f"MAE {_fmt(reg.get('mae'), ',.1f')} R2 {_fmt(reg.get('r2'))}; " if reg is not None else ""
    return (
        f"[{st.elapsed:5.0f}s] produced {sim.predictions:,} predictions, {sim.labels:,} labels; "
        f"worker {st.processed:,} events ({st.events_per_s:.0f}/s); "
        f"coverage {_fmt(st.coverage(), '.0%')}; accuracy {_fmt(allv.get('accuracy'))} "
        f"recall {_fmt(allv.get('recall'))} AUC {_fmt(allv.get('auc_roc'))} "
        f"ROI {_fmt(allv.get('roi'), '.1f')}; {regression}{top}; {len(st.firing)} alerts firing; "
        f"{st.drift_status()}"
    )


def render(st: DemoState) -> Any:
    """The live view: rich tables."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    sim = st.sim or SimStats()
    head = Text()
    head.append("streamon demo", style="bold")
    head.append(f"   {st.elapsed:.0f}s   {st.drift_status()}   Ctrl-C to stop\n")
    head.append("broker:  ")
    head.append(st.broker + "\n", style="bold yellow" if "mock" in st.broker else "")
    head.append(f"metrics: {st.metrics_url}")
    for note in st.notes:
        head.append(f"\nnote: {note}", style="dim")
    for line in st.log:
        head.append(f"\n{line}", style="yellow")

    traffic = Table(title="Traffic", title_justify="left", expand=False)
    for col in ("predictions sent", "labels sent", "labels pending", "worker events", "events/s", "coverage"):
        traffic.add_column(col, justify="right")
    traffic.add_row(
        f"{sim.predictions:,}",
        f"{sim.labels:,}",
        f"{sim.pending_labels:,}",
        f"{st.processed:,}",
        f"{st.events_per_s:,.0f}",
        _fmt(st.coverage(), ".0%"),
    )

    perf = Table(title="Performance (current window)", title_justify="left")
    perf.add_column("model")
    perf.add_column("variant")
    for col in ("n", "labelled", "accuracy", "precision", "recall", "AUC-ROC", "ROI"):
        perf.add_column(col, justify="right")
    for model, variant, row in st.perf_rows():
        if "mae" in row or "macro_f1" in row:
            continue  # a regression or multiclass model: its own table below
        perf.add_row(
            model,
            variant,
            _fmt(row.get("n"), ",.0f"),
            _fmt(row.get("labelled"), ",.0f"),
            _fmt(row.get("accuracy")),
            _fmt(row.get("precision")),
            _fmt(row.get("recall")),
            _fmt(row.get("auc_roc")),
            _fmt(row.get("roi"), ",.1f"),
            style="bold" if variant == "all" else None,
        )

    tables = [perf]
    regression_rows = st.regression_rows()
    if regression_rows:
        reg = Table(title="Regression models (current window)", title_justify="left")
        reg.add_column("model")
        reg.add_column("variant")
        for col in ("n", "labelled", "MAE", "RMSE", "R²", "bias", "prediction PSI", "target PSI"):
            reg.add_column(col, justify="right")
        for model, variant, row in regression_rows:
            reg.add_row(
                model,
                variant,
                _fmt(row.get("n"), ",.0f"),
                _fmt(row.get("labelled"), ",.0f"),
                _fmt(row.get("mae"), ",.1f"),
                _fmt(row.get("rmse"), ",.1f"),
                _fmt(row.get("r2")),
                _fmt(row.get("bias"), "+,.1f"),
                _fmt(row.get("prediction_psi")),
                _fmt(row.get("target_psi")),
                style="bold" if variant == "all" else None,
            )
        tables.append(reg)
    multiclass_rows = st.multiclass_rows()
    if multiclass_rows:
        ks = sorted({key for _m, _v, row in multiclass_rows for key in row if key.startswith("top")})
        mc = Table(title="Multiclass models (current window)", title_justify="left")
        mc.add_column("model")
        mc.add_column("variant")
        for col in ("n", "labelled", "accuracy", "macro F1", "log loss", *ks, "predicted-class PSI"):
            mc.add_column(col.replace("top", "top-") if col in ks else col, justify="right")
        for model, variant, row in multiclass_rows:
            mc.add_row(
                model,
                variant,
                _fmt(row.get("n"), ",.0f"),
                _fmt(row.get("labelled"), ",.0f"),
                _fmt(row.get("accuracy")),
                _fmt(row.get("macro_f1")),
                _fmt(row.get("log_loss")),
                *(_fmt(row.get(k)) for k in ks),
                _fmt(row.get("prediction_psi")),
                style="bold" if variant == "all" else None,
            )
        tables.append(mc)

    drift = Table(title="Top drifting features (PSI, all variants)", title_justify="left")
    for col in ("model", "feature", "PSI", "JS", ""):
        drift.add_column(col, justify="right" if col in ("PSI", "JS") else "left")
    for model, feature, psi, js in st.top_drift():
        level = (
            "[bold red]critical[/bold red]"
            if psi > 0.2
            else "[yellow]warning[/yellow]"
            if psi > 0.1
            else "[green]ok[/green]"
            if not math.isnan(psi)
            else ""
        )
        drift.add_row(model, feature, _fmt(psi), _fmt(js), level)

    alerts = Table(title=alerts_title(st), title_justify="left")
    for col in ("time", "status", "alert", "severity", "model", "on", "value"):
        alerts.add_column(col, justify="right" if col == "value" else "left")
    for ev in st.alerts[-ALERT_ROWS:][::-1]:
        labels = ev.get("labels") or {}
        on = labels.get("feature") or labels.get("metric") or labels.get("method") or ""
        colour = "red" if ev.get("status") == "firing" else "green"
        value = ev.get("value")
        alerts.add_row(
            str(ev.get("ends_at") or ev.get("starts_at") or "")[11:19],
            f"[{colour}]{ev.get('status')}[/{colour}]",
            str(ev.get("alertname")),
            str(ev.get("severity")),
            str(ev.get("model")),
            on,
            _fmt(value, ".4g") if isinstance(value, int | float) else "—",
        )
    return Group(Panel(head), traffic, *tables, drift, alerts)


# --------------------------------------------------------------------------- setup


def _demo_settings(settings: Settings, broker: DemoBroker, run_id: str | None) -> Settings:
    k = settings.kafka
    topics = k.topics
    group = k.group_id
    if run_id:  # a real cluster: this run's own topics and groups, so earlier runs do not mix in
        topics = topics.model_copy(
            update={name: f"{value}-{run_id}" for name, value in topics.model_dump().items()}
        )
        group = f"{group}-{run_id}"
    # The worker's clients take kafka.client as is: route librdkafka's log lines to a logger
    # (a Python object, so set past validation) instead of raw stderr lines over the live view.
    client = {**k.client, "logger": kafka_logger()}
    return settings.model_copy(
        update={
            "kafka": k.model_copy(
                update={
                    "bootstrap_servers": broker.bootstrap,
                    "topics": topics,
                    "group_id": group,
                    "client": client,
                }
            )
        }
    )


def regression_models(settings: Settings) -> tuple[str, ...]:
    """The models of ``settings`` with ``task: regression`` (credit-limit traffic)."""
    return tuple(m.name for m in settings.models if m.task == "regression")


def multiclass_models(settings: Settings) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(name, classes) of the models of ``settings`` with ``task: multiclass`` (router traffic)."""
    return tuple((m.name, tuple(m.classes)) for m in settings.models if m.task == "multiclass")


def build_reference_profile(settings: Settings, opts: DemoOptions, out_dir: Path) -> tuple[Path, int]:
    """A reference profile from simulated pre-drift traffic (labelled), like `streamon reference build`."""
    from streamon.engine import build_engine
    from streamon.replay import build_reference
    from streamon.traffic import TrafficSpec, generate

    n = opts.reference_size
    preds, labels = generate(
        TrafficSpec(
            n=n,
            start=time.time() - 3600,
            rate=n / 3600,
            models=settings.model_names,
            variants=opts.variants,
            label_fraction=1.0,
            seed=opts.seed + 1_000,
            regression=regression_models(settings),
            multiclass=tuple(name for name, _ in multiclass_models(settings)),
            classes=dict(multiclass_models(settings)),
        )
    )
    truth = {lab["prediction_id"]: lab["label"] for lab in labels}
    path = out_dir / "reference.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps({**p, "label": truth[p["prediction_id"]]}) for p in preds))
    out = out_dir / "reference.profile.json"
    build_reference(build_engine(settings, profile=None), path, out)
    return out, n


class _Alerts:
    """Reads the alerts topic (read_committed) from its beginning."""

    def __init__(self, settings: Settings) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        k = settings.kafka
        self.consumer = Consumer(
            {
                **kafka_client_config(settings),
                "group.id": f"streamon-demo-view-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
            }
        )
        md = self.consumer.list_topics(k.topics.alerts, timeout=10)
        parts = md.topics[k.topics.alerts].partitions
        self.consumer.assign([TopicPartition(k.topics.alerts, p, OFFSET_BEGINNING) for p in parts])

    def poll(self) -> list[dict[str, Any]]:
        out = []
        for m in self.consumer.consume(200, timeout=0):
            if m.error() is not None:
                continue
            with contextlib.suppress(orjson.JSONDecodeError, TypeError):
                out.append(orjson.loads(m.value() or b""))
        return out

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.consumer.close()


# --------------------------------------------------------------------------- run


def run_demo(opts: DemoOptions, echo: Callable[[str], None] | None = None) -> DemoState:
    """Run the demo until ``opts.duration`` or Ctrl-C; returns the final state."""
    from rich.console import Console

    from streamon.engine import build_engine
    from streamon.runtime.worker import Worker

    console = Console()
    headless = opts.headless or not console.is_terminal
    say = echo or (lambda line: print(line, flush=True))
    if opts.duration is not None and not opts.duration > 0:
        raise InputError(f"--duration must be > 0 seconds (got {opts.duration:g})")
    config_path = opts.config or default_config_path()
    settings = load_config(config_path)
    spec = SimulationSpec(
        rate=opts.rate,
        models=settings.model_names,
        variants=opts.variants,
        experiment="demo",
        label_delay_s=opts.label_delay,
        label_fraction=opts.label_fraction,
        drift=opts.drift,
        drift_after_s=opts.drift_after,
        seed=opts.seed,
        regression=regression_models(settings),
        multiclass=tuple(name for name, _ in multiclass_models(settings)),
        classes=multiclass_models(settings),
    )
    broker = DemoBroker(opts.bootstrap, settings)
    run_id = None if broker.is_mock else uuid.uuid4().hex[:6]
    settings = _demo_settings(settings, broker, run_id)
    t = settings.kafka.topics
    topic_names = [t.predictions, t.labels, t.partials, t.alerts, t.dead_letter]
    say(f"streamon demo: broker: {broker.description}")
    notes: list[str] = []
    if broker.is_mock:
        counts = broker.prepare_topics(topic_names)
        notes.append(MOCK_NOTE)
        notes.append(
            f"the mock cannot create topics (no controller): auto-created with {max(counts.values())} "
            "partitions each"
        )
    workdir = Path(tempfile.mkdtemp(prefix="streamon-demo-"))
    worker: Worker | None = None
    alerts: _Alerts | None = None
    sim_thread: threading.Thread | None = None
    stop = threading.Event()
    sim_error: list[BaseException] = []
    state: DemoState | None = None
    # From the start: the worker warns while it starts, too (e.g. about the mock's topics).
    log_lines: deque[str] = deque(maxlen=3)
    log_handler = _log_handler(headless, log_lines)
    logging.getLogger("streamon").addHandler(log_handler)
    try:
        pinned = [m.name for m in settings.models if m.reference_profile is not None]
        if pinned:
            engine = build_engine(settings)
            notes.append(f"reference profile from the config for {', '.join(pinned)}")
        else:
            profile, n_ref = build_reference_profile(settings, opts, workdir)
            engine = build_engine(settings, profile=profile)
            notes.append(f"reference profile pinned to {n_ref:,} simulated pre-drift predictions (labelled)")
        try:
            worker = Worker(
                settings, workdir / "state", instance_id="demo", metrics_port=opts.metrics_port, engine=engine
            )
        except OSError as exc:
            raise InputError(
                f"cannot serve /metrics ({exc.strerror or exc}): pass --metrics-port 0 for any free port"
            ) from None
        worker.check_topic_limits = not broker.is_mock  # the mock answers no DescribeConfigs
        host = str(worker.http._server.server_address[0])
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        url = f"http://{host}:{worker.http.port}{settings.monitoring.prometheus.metrics_path}"
        say(f"streamon demo: metrics at {url}")
        for line in note_lines(notes, headless):
            say(line)
        drift_text = (
            f"{'+'.join(opts.drift)} drift injected after {opts.drift_after:g}s" if opts.drift else "no drift"
        )
        say(
            f"streamon demo: {opts.rate:g} predictions/s ({', '.join(opts.variants) or 'no'} variants), "
            f"{opts.label_fraction:.0%} labelled after ~{opts.label_delay:g}s; {drift_text}; "
            f"topics {t.predictions} + {t.labels}"
        )
        worker.start()
        alerts = _Alerts(settings)
        sink = KafkaSink(
            settings.kafka.bootstrap_servers,
            {k: v for k, v in kafka_client_config(settings).items() if k != "logger"},
        )
        sim = Simulator(
            spec,
            sink,
            Topics(
                t.predictions,
                t.labels,
                settings.fields.prediction.model_dump(),
                settings.fields.label.model_dump(),
            ),
        )
        state = DemoState(
            broker.description, url, sim.start, opts.drift_after, opts.drift, opts.rate, notes, broker.is_mock
        )
        state.sim = sim.stats
        state.log = log_lines

        def simulate() -> None:
            try:
                sim.run(stop=stop)
            except BaseException as exc:  # surfaced by the main loop
                sim_error.append(exc)
                stop.set()

        sim_thread = threading.Thread(target=simulate, name="demo-simulator", daemon=True)
        sim_thread.start()
        with stop_on_signals(stop):
            _loop(worker, alerts, state, opts, stop, headless, say, console)
        if sim_error and not isinstance(sim_error[0], KeyboardInterrupt):
            failure = sim_error[0]
            if isinstance(failure, StreamonError):
                raise failure
            raise KafkaUnavailableError(f"the traffic simulator failed: {failure}")
        return state
    finally:
        stop.set()
        if sim_thread is not None:
            sim_thread.join(15)
        if alerts is not None:
            alerts.close()
        if worker is not None:
            with contextlib.suppress(Exception):
                worker.close()
        logging.getLogger("streamon").removeHandler(log_handler)
        if run_id and not opts.keep_topics:
            broker.delete_topics(topic_names)
        shutil.rmtree(workdir, ignore_errors=True)
        if state is not None:
            fired = sum(1 for a in state.alerts if a.get("status") == "firing")
            names = Counter(str(a.get("alertname")) for a in state.firing.values())
            firing = ", ".join(f"{name} x{n}" if n > 1 else name for name, n in sorted(names.items()))
            sim_stats = state.sim or SimStats()
            say(
                f"streamon demo: stopped after {state.elapsed:.0f}s: "
                f"{sim_stats.predictions:,} predictions and {sim_stats.labels:,} "
                f"labels produced, {state.processed:,} events processed; {fired} alerts fired, "
                f"{len(state.alerts) - fired} resolved" + (f"; firing now: {firing}" if firing else "")
            )


def _processed(worker: Any) -> int:
    try:
        return int(sum(list(worker.ops.processed.values())))
    except RuntimeError:  # changed size while read: next time
        return 0


def _loop(
    worker: Any,
    alerts: _Alerts,
    st: DemoState,
    opts: DemoOptions,
    stop: threading.Event,
    headless: bool,
    say: Callable[[str], None],
    console: Any,
) -> None:
    deadline = None if opts.duration is None else time.monotonic() + opts.duration
    next_view = 0.0
    next_status = time.monotonic() + 10.0
    live = None
    if not headless:
        from rich.live import Live

        live = Live(render(st), console=console, refresh_per_second=2, transient=False)
        live.start()
    try:
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            worker.step()
            for event in alerts.poll():
                st.add_alert(event)
                if headless:
                    say(alert_line(event))
            now = time.monotonic()
            if now >= next_view:
                st.snapshot = worker.snapshot
                st.observe(_processed(worker))
                next_view = now + 1.0
                if live is not None:
                    live.update(render(st))
            aborts = int(worker.ops.aborts)
            if st.mock and aborts > st.aborts:
                note = ABORT_NOTE.format(n=aborts)
                st.notes = [n for n in st.notes if not n.startswith("the worker aborted")] + [note]
                if headless:
                    say(f"streamon demo: WARNING: {note}")
            st.aborts = aborts
            if headless and now >= next_status:
                say(status_line(st))
                next_status = now + 10.0
    finally:
        if live is not None:
            live.update(render(st))
            live.stop()


def _log_handler(headless: bool, lines: deque[str]) -> logging.Handler:
    """Where the worker's warnings go: plain lines, or the live view's header (not over it)."""
    if not headless:
        return _ToState(lines)
    handler = logging.StreamHandler()
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("streamon demo: %(levelname)s %(name)s: %(message)s"))
    return handler


class _ToState(logging.Handler):
    """Worker log records (warnings and up) into the live view instead of over it."""

    def __init__(self, lines: deque[str]) -> None:
        super().__init__(logging.WARNING)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{time.strftime('%H:%M:%S')} {record.levelname} {record.getMessage()}"[:200])
