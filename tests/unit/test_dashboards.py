"""Structural checks of the Grafana dashboards and provisioning in deploy/grafana.

Every dashboard is valid JSON with a uid and title, has the model / variant template
variables (and feature where it shows drift), and every panel has a title, the provisioned
datasource, at least one query and a unit. Every metric a query names exists: in streamon's
catalogue (streamon.core.catalogue.METRICS), as a recording rule of
deploy/prometheus/recording_rules.yml, or is Prometheus' own ``up``.

The PromQL name extraction below is also used by tests/integration/test_prometheus_assets.py
for the alert and recording rules.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamon.core.catalogue import METRICS

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
RECORDING_RULES = ROOT / "deploy" / "prometheus" / "recording_rules.yml"

EXPECTED_DASHBOARDS = ("model-performance.json", "data-drift.json", "business-impact.json", "pipeline.json")
DRIFT_DASHBOARDS = ("data-drift.json",)

# Grafana unit ids the dashboards may use (a typo renders as a plain number without warning).
KNOWN_UNITS = {
    "none",
    "short",
    "percent",
    "percentunit",
    "s",
    "ms",
    "ops",
    "reqps",
    "bytes",
    "decbytes",
    "currencyUSD",
    "bool_yes_no",
}

# ------------------------------------------------------------------ PromQL metric names

_STRING = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|`[^`]*`")
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w:.$])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")
_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
}
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(?P<expr>.+?)\s*,\s*)?(?P<label>[A-Za-z_]\w*)\s*\)\s*$")


def promql_metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression reads (function and aggregation names excluded).

    >>> sorted(promql_metric_names(
    ...     'histogram_quantile(0.99, sum by (le) (rate(a_bucket{x="y{z}"}[5m]))) / b:rec > 1e-4'))
    ['a_bucket', 'b:rec']
    >>> sorted(promql_metric_names('max without (instance) (up{job=~"s|t"}) == bool 0'))
    ['up']
    """
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub("", text)
    names = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def variable_metric_names(query: str) -> set[str]:
    """Metric names of a Grafana variable query: ``label_values(expr, label)`` or PromQL."""
    match = _LABEL_VALUES.match(query)
    if match:
        return promql_metric_names(match.group("expr") or "")
    return promql_metric_names(query)


def recording_rule_names() -> set[str]:
    rules = yaml.safe_load(RECORDING_RULES.read_text())
    return {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}


def exported_series_names() -> set[str]:
    """Every series name streamon exports (histograms add _bucket, _sum and _count)."""
    names = set()
    for info in METRICS.values():
        names.add(info.name)
        if info.type == "histogram":
            names.update(f"{info.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
    return names


def known_metric_names() -> set[str]:
    return exported_series_names() | recording_rule_names() | {"up"}


def unknown_metrics(expr: str) -> set[str]:
    return promql_metric_names(expr) - known_metric_names()


# ------------------------------------------------------------------ dashboards


def _load(name: str) -> dict[str, Any]:
    return json.loads((DASHBOARDS / name).read_text())


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))  # panels nested in a collapsed row
    return out


def _variable_query(variable: dict[str, Any]) -> str:
    query = variable.get("query")
    if isinstance(query, dict):
        query = query.get("query")
    return query or variable.get("definition", "")


def _provisioned_datasource_uid() -> str:
    config = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (datasource,) = [d for d in config["datasources"] if d["type"] == "prometheus"]
    return str(datasource["uid"])


def test_promql_metric_names_extraction() -> None:
    assert promql_metric_names("rate(streamon_events_invalid_total[5m])") == {"streamon_events_invalid_total"}
    assert promql_metric_names('sum by (topic) (x{topic="by(y)"}) / on (topic) group_left z') == {"x", "z"}
    assert promql_metric_names('absent(up{job=~"a"} == 1)') == {"up"}
    assert promql_metric_names("a offset 5m + 2.5e3 * b") == {"a", "b"}
    assert variable_metric_names('label_values(ml_model_accuracy{model=~"$model"}, variant)') == {
        "ml_model_accuracy"
    }
    assert variable_metric_names("label_values(model)") == set()
    assert unknown_metrics("ml_model_acuracy") == {"ml_model_acuracy"}


def test_every_expected_dashboard_exists_and_nothing_else() -> None:
    found = sorted(p.name for p in DASHBOARDS.glob("*.json"))
    assert found == sorted(EXPECTED_DASHBOARDS)


@pytest.mark.parametrize("name", EXPECTED_DASHBOARDS)
def test_dashboard_identity(name: str) -> None:
    dashboard = _load(name)
    assert isinstance(dashboard.get("uid"), str) and dashboard["uid"], f"{name}: no uid"
    assert len(dashboard["uid"]) <= 40, f"{name}: Grafana uids are at most 40 characters"
    assert isinstance(dashboard.get("title"), str) and dashboard["title"], f"{name}: no title"
    # A provisioned dashboard must not carry a database id (Grafana assigns it).
    assert dashboard.get("id") is None, f"{name}: remove the 'id' key"
    assert "streamon" in dashboard.get("tags", []), f"{name}: tag it 'streamon' (dashboard links use it)"


def test_dashboard_uids_and_titles_are_unique() -> None:
    dashboards = [_load(n) for n in EXPECTED_DASHBOARDS]
    assert len({d["uid"] for d in dashboards}) == len(dashboards)
    assert len({d["title"] for d in dashboards}) == len(dashboards)


@pytest.mark.parametrize("name", EXPECTED_DASHBOARDS)
def test_template_variables(name: str) -> None:
    dashboard = _load(name)
    variables = {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}
    required = {"model", "variant"} | ({"feature"} if name in DRIFT_DASHBOARDS else set())
    missing = required - variables.keys()
    assert not missing, f"{name}: template variables {sorted(missing)} missing"
    uid = _provisioned_datasource_uid()
    for var_name, variable in variables.items():
        where = f"{name}: variable ${var_name}"
        if variable.get("type") != "query":
            continue
        assert variable.get("datasource", {}).get("uid") == uid, f"{where}: datasource uid must be {uid!r}"
        query = _variable_query(variable)
        match = _LABEL_VALUES.match(query)
        assert match, f"{where}: expected a label_values(...) query, got {query!r}"
        assert match.group("label") == var_name or var_name == "instance", (
            f"{where}: label_values of label {match.group('label')!r}"
        )
        assert variable_metric_names(query), f"{where}: name a metric in label_values, got {query!r}"
        unknown = variable_metric_names(query) - known_metric_names()
        assert not unknown, f"{where}: unknown metrics {sorted(unknown)} in {query!r}"
    # Model-level panels default to the whole model, not one A/B arm.
    current = variables["variant"].get("current", {}).get("value")
    assert current in ("all", ["all"]), f"{name}: $variant should default to 'all' (got {current!r})"


@pytest.mark.parametrize("name", EXPECTED_DASHBOARDS)
def test_panels(name: str) -> None:
    dashboard = _load(name)
    panels = _panels(dashboard)
    assert panels, f"{name}: no panels"
    uid = _provisioned_datasource_uid()
    ids = [p.get("id") for p in panels]
    assert len(set(ids)) == len(ids), f"{name}: duplicate panel ids"
    for panel in panels:
        title = panel.get("title")
        where = f"{name}: panel {panel.get('id')} {title!r}"
        assert isinstance(title, str) and title.strip(), f"{name}: panel {panel.get('id')} has no title"
        if panel.get("type") == "row":
            continue
        assert panel.get("datasource", {}).get("uid") == uid, f"{where}: datasource uid must be {uid!r}"
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        assert unit, f"{where}: no fieldConfig.defaults.unit"
        assert unit in KNOWN_UNITS, f"{where}: unit {unit!r} is not one of {sorted(KNOWN_UNITS)}"
        grid = panel.get("gridPos", {})
        assert grid.get("w", 0) > 0 and grid.get("x", 0) + grid.get("w", 0) <= 24, f"{where}: gridPos {grid}"
        targets = panel.get("targets") or []
        assert targets, f"{where}: no queries"
        ref_ids = [t.get("refId") for t in targets]
        assert all(ref_ids) and len(set(ref_ids)) == len(ref_ids), f"{where}: refIds {ref_ids}"
        for target in targets:
            expr = target.get("expr")
            assert isinstance(expr, str) and expr.strip(), (
                f"{where}: target {target.get('refId')} has no expr"
            )
            names = promql_metric_names(expr)
            assert names, f"{where}: expr reads no metric: {expr!r}"
            unknown = names - known_metric_names()
            assert not unknown, (
                f"{where}: metrics {sorted(unknown)} are neither in streamon.core.catalogue nor "
                f"recording rules: {expr!r}"
            )
            # The template variables must actually filter what they name.
            for metric in names & METRICS.keys():
                labels = METRICS[metric].labels
                if "model" in labels:
                    assert "$model" in expr, f"{where}: {metric} is not filtered by $model: {expr!r}"
                if "feature" in labels:
                    assert "$feature" in expr, f"{where}: {metric} is not filtered by $feature: {expr!r}"


def test_drift_dashboard_covers_every_drift_metric() -> None:
    exprs = " ".join(t["expr"] for p in _panels(_load("data-drift.json")) for t in p.get("targets", []))
    used = promql_metric_names(exprs)
    drift = {name for name, info in METRICS.items() if "feature" in info.labels}
    assert drift <= used, f"data-drift.json does not show {sorted(drift - used)}"


def test_provisioning() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert datasources["apiVersion"] == 1
    (prometheus,) = [d for d in datasources["datasources"] if d["type"] == "prometheus"]
    assert prometheus["url"].startswith("http")
    # configs/monitoring_config.yaml names the datasource and folder the dashboards live in.
    from streamon.config import load_config

    settings = load_config(ROOT / "configs" / "monitoring_config.yaml")
    assert prometheus["name"] == settings.monitoring.dashboards.datasource

    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "streamon.yml").read_text())
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["folder"] == settings.monitoring.dashboards.folder
    assert provider["options"]["path"]
