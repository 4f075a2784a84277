"""A REAL Prometheus scraping a REAL ``streamon worker``: every alert rule and panel has data.

Prometheus is Debian's ``prometheus`` binary (deploy/install-tools.sh) with scrape and
evaluation interval 1s, scraping one worker (job ``streamon``, as in
deploy/prometheus/prometheus.yml) and loading the repository's alert_rules.yml and
recording_rules.yml unchanged (copied next to its config). The worker is fed a generated
stream (two A/B arms, sudden + categorical drift and score degradation after 70% of it,
a few invalid events) produced in chunks while Prometheus scrapes, so counters and
histograms move between scrapes as in production.

Once the worker's metrics have settled and a few scrapes and rule evaluations have
happened, this asserts that:
- EVERY alert rule's expression returns data with its comparison stripped (the left-hand
  side). One rule cannot be read that way: ``StreamonAllWorkersDown`` is
  ``absent(up{...} == 1)``, which by definition returns data only when NO worker is up; its
  inner ``up{...} == 1`` is asserted to return data instead (the rule is correctly silent);
- EVERY panel query of every dashboard in deploy/grafana/dashboards returns data with the
  template variables substituted ($model=fraud-detector, $variant=all,
  $feature=transaction_amount, $instance=.*, $__rate_interval=1m), and every template
  variable's ``label_values`` query lists values;
- ``streamon doctor`` passes against the same broker, Prometheus and worker.

A query whose result is empty, or only NaN, counts as no data and is listed in the failure.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.integration.harness import (
    STREAMON,
    WorkerProc,
    free_port,
    produce,
    settings_dict,
    traffic,
    wait_metrics,
    wait_ready,
    write_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus"
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
PROMETHEUS = shutil.which("prometheus")

VARIABLES = {
    "model": "fraud-detector",
    "variant": "all",
    "feature": "transaction_amount",
    "instance": ".*",
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
}
REGRESSION = "credit-limit"  # the stream's regression model (streamon.traffic)
REGRESSION_SERIES = re.compile(
    r"ml_model_(mae|rmse|mape|r2|mean_error|residual_quantile)|ml_(prediction|target)_drift_|streamon_mape_excluded"
)
MULTICLASS = "txn-router"  # and its multiclass model
MULTICLASS_SERIES = re.compile(
    r'class!=""|average=~|ml_model_top_k_accuracy|ml_model_confusion_total|ml_model_log_loss'
)
# A trailing comparison with a number: what an alert rule adds to the quantity it watches.
COMPARISON = re.compile(r"^(?P<lhs>.*?)\s*(?:==|!=|>=|<=|>|<)\s*-?[0-9.]+(?:e[+-]?[0-9]+)?\s*$", re.S | re.I)
ABSENT = re.compile(r"^\s*absent\((?P<inner>.*)\)\s*$", re.S)
LABEL_VALUES = re.compile(r"^\s*label_values\((?P<selector>.*),\s*(?P<label>\w+)\s*\)\s*$", re.S)


def substitute(expr: str, **override: str) -> str:
    values = {**VARIABLES, **override}
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), m.group(0)), expr)


def rule_queries() -> list[tuple[str, str]]:
    """(alert name, the query whose data the rule watches) for every alert rule."""
    out = []
    for group in yaml.safe_load((RULES / "alert_rules.yml").read_text())["groups"]:
        for rule in group["rules"]:
            expr = " ".join(rule["expr"].split())
            absent = ABSENT.match(expr)
            if absent:
                out.append((rule["alert"], absent.group("inner")))  # see the module docstring
                continue
            lhs = COMPARISON.match(expr)
            assert lhs, f"{rule['alert']}: no trailing comparison in {expr!r}"
            out.append((rule["alert"], lhs.group("lhs")))
    return out


def panel_queries() -> list[tuple[str, str]]:
    """(dashboard / panel title, query with variables substituted) for every panel target."""
    out = []

    def walk(dashboard: str, panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            walk(dashboard, panel.get("panels", []))
            title = str(panel.get("title"))
            # Chi-square is computed for categorical features only: its panel (titled so) is empty
            # for the numeric transaction_amount by design; it is checked with merchant_category.
            override = {"feature": "merchant_category"} if "(categorical features)" in title else {}
            for target in panel.get("targets", []):
                if target.get("expr"):
                    # A regression or multiclass model's own series are checked with that model.
                    model = {}
                    if REGRESSION_SERIES.search(target["expr"]):
                        model = {"model": REGRESSION}
                    elif MULTICLASS_SERIES.search(target["expr"]):
                        model = {"model": MULTICLASS}
                    out.append((f"{dashboard} / {title}", substitute(target["expr"], **override, **model)))

    for path in sorted(DASHBOARDS.glob("*.json")):
        walk(path.stem, json.loads(path.read_text())["panels"])
    return out


def variable_queries() -> list[tuple[str, str, str]]:
    """(dashboard / variable, series selector, label) of every label_values template variable."""
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        for var in json.loads(path.read_text()).get("templating", {}).get("list", []):
            query = var.get("query")
            text = query.get("query") if isinstance(query, dict) else query
            m = LABEL_VALUES.match(substitute(text or ""))
            if m:
                out.append((f"{path.stem} / ${var['name']}", m.group("selector"), m.group("label")))
    return out


class Prometheus:
    def __init__(self, tmp: Path, worker_port: int) -> None:
        self.dir = tmp / "prometheus"
        self.dir.mkdir()
        for name in ("alert_rules.yml", "recording_rules.yml"):
            shutil.copy(RULES / name, self.dir / name)
        self.config = self.dir / "prometheus.yml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                    "rule_files": ["recording_rules.yml", "alert_rules.yml"],
                    "scrape_configs": [
                        {
                            "job_name": "streamon",
                            "metrics_path": "/metrics",
                            "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}],
                        }
                    ],
                }
            )
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.dir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert PROMETHEUS, "prometheus not installed: bash deploy/install-tools.sh"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [PROMETHEUS, f"--config.file={self.config}", f"--storage.tsdb.path={self.dir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                if requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise AssertionError("Prometheus not ready:\n" + self.log.read_text()[-3000:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def query(self, expr: str) -> list[dict[str, Any]]:
        r = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        assert r.status_code == 200, f"{expr}: HTTP {r.status_code} {r.text[:300]}"
        return list(r.json()["data"]["result"])

    def has_data(self, expr: str) -> bool:
        """At least one series with a number that is not NaN."""
        return any(not math.isnan(float(s["value"][1])) for s in self.query(expr))

    def label_values(self, selector: str, label: str) -> list[str]:
        r = requests.get(f"{self.url}/api/v1/label/{label}/values", params={"match[]": selector}, timeout=10)
        assert r.status_code == 200, f"{selector}: HTTP {r.status_code} {r.text[:300]}"
        return list(r.json()["data"])


def test_every_alert_rule_and_dashboard_query_has_data(kafka_bootstrap: str, tmp_path: Path) -> None:
    # current 2h of a 3.3h stream: the rolling reference window (before it) has data to compare.
    d = settings_dict(kafka_bootstrap, partitions=2, current=7200.0)
    # A pinned baseline gives streamon_model_degradation_ratio (ModelPerformanceDegraded*).
    d["models"][0]["baseline"] = {"accuracy": 0.97, "recall": 0.9, "auc_roc": 0.97, "f1_score": 0.6}
    # A segment field gives the streamon_segment_* series of the segment panels.
    d["models"][0]["segments"] = [{"field": "merchant_category"}]
    # A regression model beside it: the regression rules and the Regression row.
    d["models"].append(
        {"name": REGRESSION, "task": "regression", "features": [
            {"name": "income", "type": "numeric"}, {"name": "utilisation", "type": "numeric"},
            {"name": "tenure_years", "type": "numeric"}, {"name": "region", "type": "categorical"}]}
    )  # fmt: skip
    # And a multiclass one: the multiclass rule and the Multiclass row.
    d["models"].append(
        {"name": MULTICLASS, "task": "multiclass", "classes": ["approve", "review", "decline"], "features": [
            {"name": "risk", "type": "numeric"}, {"name": "amount", "type": "numeric"},
            {"name": "channel", "type": "categorical"}]}
    )  # fmt: skip
    config, settings = write_config(tmp_path, d)
    t = settings.kafka.topics
    worker = WorkerProc(config, tmp_path / "state", "live-1").start()
    prometheus = Prometheus(tmp_path, worker.port)
    try:
        wait_ready([worker], settle=1.0)
        prometheus.start()
        deadline = time.monotonic() + 30
        while not prometheus.has_data('up{job="streamon"} == 1'):
            assert time.monotonic() < deadline, "Prometheus does not scrape the worker"
            time.sleep(0.5)

        # The stream, in chunks while Prometheus scrapes every second: A/B arms (A/B panels),
        # drift + degradation after 70% (drift and degradation panels and alerts), invalid
        # events (dead-letter panels and DeadLetterRateHigh).
        # Labels within minutes: event time ("now") is the newest event, labels included, and a
        # label hours after the last prediction would leave the 2h current window empty.
        preds, labels = traffic(
            10_000, label_delay_s=120.0, variants=("A", "B"), drift=("sudden", "categorical", "degrade"),
            models=("fraud-detector", REGRESSION, MULTICLASS),
            regression=(REGRESSION,), multiclass=(MULTICLASS,),
        )  # fmt: skip
        for p in preds[::20]:  # a key no model declares (UnexpectedFeatureKey, its panel)
            p["features"]["device_type"] = "mobile"
        chunks = 4
        for i in range(chunks):
            part = slice(i * len(preds) // chunks, (i + 1) * len(preds) // chunks)
            lpart = slice(i * len(labels) // chunks, (i + 1) * len(labels) // chunks)
            produce(kafka_bootstrap, t.predictions, preds[part])
            produce(kafka_bootstrap, t.labels, labels[lpart])
            produce(kafka_bootstrap, t.predictions, [b"not json", b'{"prediction_id": "x"}'])
            time.sleep(2.0)
        wait_metrics([worker], settings, timeout=120)

        # Recording rules and rates need a few scrapes and evaluations after the last change.
        rules, panels, variables = rule_queries(), panel_queries(), variable_queries()
        assert len(rules) >= 15 and len(panels) >= 50 and len(variables) >= 9
        deadline = time.monotonic() + 45
        while True:
            empty_rules = [(name, q) for name, q in rules if not prometheus.has_data(q)]
            empty_panels = [(name, q) for name, q in panels if not prometheus.has_data(q)]
            empty_vars = [(name, s, lab) for name, s, lab in variables if not prometheus.label_values(s, lab)]
            if not (empty_rules or empty_panels or empty_vars) or time.monotonic() > deadline:
                break
            time.sleep(2.0)
        report = "\n".join(
            [*(f"alert rule {n}: {q}" for n, q in empty_rules),
             *(f"panel {n}: {q}" for n, q in empty_panels),
             *(f"variable {n}: label_values({s}, {lab})" for n, s, lab in empty_vars)]
        )  # fmt: skip
        assert not report, f"queries without data:\n{report}\nworker log:\n{worker.tail(20)}"

        # The drift the stream carries is visible where the dashboards look for it.
        assert prometheus.has_data(
            'ml_data_drift_psi_score{feature="transaction_amount", variant="all"} > 0.1'
        )

        # streamon doctor agrees: broker, topics, retention, Prometheus + its target, the worker.
        doctor = subprocess.run(
            [STREAMON, "doctor", "--config", str(config), "--prometheus-url", prometheus.url,
             "--worker-url", worker.url(""), "--skip", "alertmanager", "--skip", "grafana", "--timeout", "5"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        lines = doctor.stdout.splitlines()[1:]
        assert [line.split(None, 1)[0] for line in lines] == ["OK"] * 7 + ["SKIP"] * 2 + ["OK"], lines
        assert "1 streamon worker(s) up" in doctor.stdout
    finally:
        prometheus.stop()
        if worker.alive():
            worker.terminate()
