"""The Prometheus and Alertmanager assets in deploy/ are valid, tested and agree with streamon.

- promtool accepts prometheus.yml and both rule files, and the rule unit tests in
  deploy/prometheus/tests pass; every alert has a unit test that checks it is silent one
  minute before its for-duration, fires one minute after it with the rule's labels and
  annotations, and resolves once the value recovers.
- amtool accepts alertmanager.yml (with no secret committed) and routes every category x
  severity to the documented receivers; the inhibition rules silence each warning twin while
  its critical twin fires for the same series, and nothing else.
- Every metric the rules read exists in streamon.core.catalogue.METRICS (or is a recording
  rule, or ``up``), and every rule that streamon's in-stream engine also has
  (streamon.config.DEFAULT_ALERT_RULES) has the same metric, threshold, for-duration,
  severity, category, summary and description.

promtool and amtool come from Debian's prometheus / prometheus-alertmanager packages
(`bash deploy/install-tools.sh`, which `make test` runs first). Without them these tests FAIL: they are
not skipped.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamon.config import DEFAULT_ALERT_RULES, parse_duration
from streamon.core.catalogue import METRICS
from tests.unit.test_dashboards import known_metric_names, promql_metric_names, recording_rule_names

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
ALERT_RULES = PROMETHEUS / "alert_rules.yml"
RECORDING_RULES = PROMETHEUS / "recording_rules.yml"
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))
ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
SECRETS = ROOT / "deploy" / "alertmanager" / "secrets"
SECRETS_MOUNT = "/etc/alertmanager/secrets/"

GUIDE_ALERTS = (
    "ModelAccuracyDegraded",
    "ModelAccuracyCritical",
    "DataDriftDetected",
    "SevereDataDrift",
    "ROIBelowThreshold",
    "HighCPUUsage",
    "HighMemoryUsage",
)
CATEGORIES = ("model_performance", "data_quality", "business_impact", "infrastructure")
SEVERITIES = ("warning", "critical")
# By convention every promtool test breaches its alert's threshold from t = 5m.
BREACH_START_S = 300.0


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed: run `bash deploy/install-tools.sh` (Debian packages prometheus "
            f"and prometheus-alertmanager); `make test` runs it first",
            pytrace=False,
        )
    return path


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    cmd = [str(a) for a in args]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, (
        f"`{' '.join(cmd)}` exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )
    return proc


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _alert_rules() -> dict[str, dict[str, Any]]:
    rules = {}
    for group in _yaml(ALERT_RULES)["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                assert rule["alert"] not in rules, f"alert {rule['alert']} defined twice"
                rules[rule["alert"]] = rule
    return rules


def _for_seconds(rule: dict[str, Any]) -> float:
    return parse_duration(rule.get("for", "0s"))


# ------------------------------------------------------------------ promtool


def test_promtool_check_config() -> None:
    proc = _run(_tool("promtool"), "check", "config", PROMETHEUS / "prometheus.yml")
    assert "SUCCESS: 2 rule files found" in proc.stdout + proc.stderr


def test_promtool_check_rules() -> None:
    _run(_tool("promtool"), "check", "rules", ALERT_RULES, RECORDING_RULES)


def test_promtool_rule_unit_tests() -> None:
    assert RULE_TESTS, "no promtool unit tests in deploy/prometheus/tests"
    _run(_tool("promtool"), "test", "rules", *RULE_TESTS)


def _alert_tests() -> dict[str, list[dict[str, Any]]]:
    """alertname -> its alert_rule_test entries (eval time in seconds, expected alerts)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for path in RULE_TESTS:
        for index, group in enumerate(_yaml(path).get("tests", [])):
            for case in group.get("alert_rule_test", []):
                out.setdefault(case["alertname"], []).append(
                    {
                        "at": parse_duration(case["eval_time"]),
                        "alerts": case.get("exp_alerts") or [],
                        "group": f"{path.name} test #{index + 1}",
                    }
                )
    return out


def test_every_alert_is_unit_tested_before_after_and_on_recovery() -> None:
    rules = _alert_rules()
    tests = _alert_tests()
    untested = sorted(set(rules) - set(tests))
    assert not untested, f"alerts without a promtool unit test in deploy/prometheus/tests: {untested}"
    unknown = sorted(set(tests) - set(rules))
    assert not unknown, f"promtool tests of alerts that do not exist: {unknown}"
    for name, rule in rules.items():
        fire = BREACH_START_S + _for_seconds(rule)
        before, after = fire - 60, fire + 60
        firing = [c for c in tests[name] if c["at"] == after and c["alerts"]]
        assert firing, f"{name}: no test that it fires at {after / 60:g}m (breach from 5m + for + 1m)"
        # The silent and resolved checks must be on the same input series as the firing one.
        cases = [c for c in tests[name] if c["group"] == firing[0]["group"]]
        silent = {c["at"] for c in cases if not c["alerts"]}
        assert before in silent, (
            f"{name}: no test that it is silent at {before / 60:g}m (breach from 5m + for - 1m)"
        )
        for alert in firing[0]["alerts"]:
            labels = alert.get("exp_labels", {})
            assert labels.get("severity") == rule["labels"]["severity"], f"{name}: severity"
            assert labels.get("category") == rule["labels"]["category"], f"{name}: category"
            assert set(alert.get("exp_annotations", {})) == set(rule["annotations"]), (
                f"{name}: the test must check every annotation exactly"
            )
        assert any(at > after for at in silent), f"{name}: no test that it resolves after recovery"


# ------------------------------------------------------------------ metric names and config


def test_rule_metrics_exist_in_catalogue() -> None:
    known = known_metric_names()
    recorded = recording_rule_names()
    problems = []
    for path in (ALERT_RULES, RECORDING_RULES):
        for group in _yaml(path)["groups"]:
            for rule in group["rules"]:
                names = promql_metric_names(rule["expr"])
                if not names:
                    problems.append(f"{path.name}: {rule.get('alert') or rule.get('record')} reads no metric")
                for name in sorted(names - known):
                    problems.append(f"{path.name}: {rule.get('alert') or rule.get('record')} reads {name}")
                if path == RECORDING_RULES and names & recorded:
                    problems.append(f"{path.name}: {rule['record']} reads another recording rule")
    assert not problems, "metrics not in streamon.core.catalogue.METRICS:\n" + "\n".join(problems)


_COMPARISON = re.compile(r"(?P<op><|>)\s*(?P<threshold>[-+]?[0-9.]+(?:e[-+]?\d+)?)\s*$")


def _normalise_template(text: str) -> str:
    """Prometheus template -> streamon's in-stream template: {{ $value ... }} -> {{ value }}."""
    text = re.sub(r"\{\{[^}]*\$value[^}]*\}\}", "{{ value }}", text)
    text = re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}", r"{{ \1 }}", text)
    return " ".join(text.split())


def test_guide_rules_present() -> None:
    rules = _alert_rules()
    missing = [name for name in GUIDE_ALERTS if name not in rules]
    assert not missing, f"the monitoring guide's alerts missing from alert_rules.yml: {missing}"
    in_stream = [str(r["alert"]) for r in DEFAULT_ALERT_RULES]
    missing = [name for name in in_stream if name not in rules]
    assert not missing, f"streamon's in-stream alerts (DEFAULT_ALERT_RULES) missing: {missing}"


@pytest.mark.parametrize("expected", DEFAULT_ALERT_RULES, ids=lambda r: str(r["alert"]))
def test_rule_matches_config(expected: dict[str, Any]) -> None:
    name = expected["alert"]
    rule = _alert_rules()[name]
    expr = " ".join(rule["expr"].split())
    assert expected["metric"] in promql_metric_names(expr), f"{name}: expr {expr!r} does not read the metric"
    comparison = _COMPARISON.search(expr)
    assert comparison, f"{name}: expr {expr!r} does not end with '< threshold' or '> threshold'"
    assert comparison["op"] == expected["op"], f"{name}: op {comparison['op']} != config {expected['op']}"
    assert float(comparison["threshold"]) == pytest.approx(float(expected["threshold"])), f"{name}: threshold"
    assert _for_seconds(rule) == parse_duration(expected["for"]), f"{name}: for {rule.get('for')}"
    assert rule["labels"]["severity"] == expected["severity"], f"{name}: severity"
    assert rule["labels"]["category"] == expected["category"], f"{name}: category"
    assert rule["annotations"]["summary"] == expected["summary"], f"{name}: summary"
    assert _normalise_template(rule["annotations"]["description"]) == expected["description"], (
        f"{name}: description"
    )
    # Model-level alerts watch the whole model (not one A/B arm) over the current window.
    labels = METRICS[str(expected["metric"])].labels
    if "variant" in labels:
        assert 'variant="all"' in expr, f'{name}: filter variant="all"'
    if "window" in labels:
        assert 'window="current"' in expr, f'{name}: filter window="current"'


def test_every_alert_has_severity_category_and_annotations() -> None:
    for name, rule in _alert_rules().items():
        assert rule["labels"].get("severity") in SEVERITIES, name
        assert rule["labels"].get("category") in CATEGORIES, name
        assert rule["annotations"].get("summary"), name
        assert rule["annotations"].get("description"), name


# ------------------------------------------------------------------ prometheus.yml


def test_scrape_jobs_targets_and_worker_down_rule_agree() -> None:
    config = _yaml(PROMETHEUS / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["streamon"]["static_configs"][0]["targets"], "static streamon job has no targets"
    files = jobs["streamon-file-sd"]["file_sd_configs"][0]["files"]
    assert files == ["targets/*.json"]
    for rule_file in config["rule_files"]:
        assert (PROMETHEUS / rule_file).is_file(), rule_file
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]

    # The example targets file is in file_sd format (and not picked up until copied to *.json).
    example = json.loads((PROMETHEUS / "targets" / "workers.json.example").read_text())
    assert isinstance(example, list) and example
    for group in example:
        assert group["targets"] and all(re.fullmatch(r"[\w.-]+:\d+", t) for t in group["targets"])
        assert all(isinstance(v, str) for v in group.get("labels", {}).values())

    # The worker-down rules select exactly the streamon scrape jobs.
    streamon_jobs = {name for name in jobs if name.startswith("streamon")}
    for name in ("StreamonWorkerDown", "StreamonAllWorkersDown"):
        match = re.search(r'job=~"([^"]+)"', _alert_rules()[name]["expr"])
        assert match, name
        selected = {job for job in jobs if re.fullmatch(match.group(1), job)}
        assert selected == streamon_jobs, f"{name} selects jobs {sorted(selected)}"


# ------------------------------------------------------------------ Alertmanager


def test_amtool_check_config_without_committed_secrets(tmp_path: Path) -> None:
    # Check the committed file as is ...
    _run(_tool("amtool"), "check-config", ALERTMANAGER)
    # ... and a copy whose secret paths point at dummy files, in case a future amtool checks
    # that the files exist.
    text = ALERTMANAGER.read_text()
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in set(re.findall(re.escape(SECRETS_MOUNT) + r"([\w.-]+)", text)):
        (secrets / name).write_text("dummy\n")
    copy = tmp_path / "alertmanager.yml"
    copy.write_text(text.replace(SECRETS_MOUNT, f"{secrets}/"))
    _run(_tool("amtool"), "check-config", copy)


def _receivers_for(labels: dict[str, str]) -> list[str]:
    proc = _run(
        _tool("amtool"),
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER}",
        *(f"{k}={v}" for k, v in labels.items()),
    )
    return proc.stdout.strip().split(",")


# Documented in alertmanager.yml: critical pages (pagerduty) and continues; business impact
# mails (email) and continues; Slack sees everything.
EXPECTED_ROUTES = {
    ("model_performance", "warning"): ["slack"],
    ("model_performance", "critical"): ["pagerduty", "slack"],
    ("data_quality", "warning"): ["slack"],
    ("data_quality", "critical"): ["pagerduty", "slack"],
    ("business_impact", "warning"): ["email", "slack"],
    ("business_impact", "critical"): ["pagerduty", "email", "slack"],
    ("infrastructure", "warning"): ["slack"],
    ("infrastructure", "critical"): ["pagerduty", "slack"],
}


@pytest.mark.parametrize(("category", "severity"), list(itertools.product(CATEGORIES, SEVERITIES)))
def test_routing(category: str, severity: str) -> None:
    got = _receivers_for({"alertname": "Any", "category": category, "severity": severity, "model": "m"})
    assert got == EXPECTED_ROUTES[(category, severity)], f"{category}/{severity} -> {got}"


def test_routing_of_every_alert_rule_and_fallback() -> None:
    for name, rule in _alert_rules().items():
        key = (rule["labels"]["category"], rule["labels"]["severity"])
        assert _receivers_for({"alertname": name, **rule["labels"]}) == EXPECTED_ROUTES[key], name
    assert _receivers_for({"alertname": "Unlabelled"}) == ["slack"]


def test_guide_grouping_and_timing() -> None:
    route = _yaml(ALERTMANAGER)["route"]
    assert route["group_by"] == ["alertname", "category"]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == ("10s", "10s", "1h")


def test_receivers_read_secrets_from_files() -> None:
    config = _yaml(ALERTMANAGER)
    receivers = {r["name"]: r for r in config["receivers"]}
    assert receivers["slack"]["slack_configs"][0]["channel"] == "#ml-alerts"
    assert receivers["email"]["email_configs"][0]["to"] == "ml-team@company.com"
    assert receivers["pagerduty"]["pagerduty_configs"]

    inline = ("api_url", "auth_password", "auth_secret", "routing_key", "service_key", "api_key", "token")
    global_inline = ("slack_api_url", "smtp_auth_password", "smtp_auth_secret", "opsgenie_api_key")
    problems = [f"global.{k}" for k in config.get("global", {}) if k in global_inline]
    files = []
    for receiver in config["receivers"]:
        for key, configs in receiver.items():
            if not key.endswith("_configs"):
                continue
            for item in configs:
                problems += [f"{receiver['name']}.{k}" for k in item if k in inline]
                files += [v for k, v in item.items() if k.endswith("_file")]
    assert not problems, f"inline credentials (use the *_file form): {problems}"
    assert files, "no secret file configured"
    readme = (SECRETS / "README.md").read_text()
    for path in files:
        assert path.startswith(SECRETS_MOUNT), f"secret {path} outside {SECRETS_MOUNT}"
        assert Path(path).name in readme, f"secrets/README.md does not document {Path(path).name}"

    # git ignores everything in secrets/ except the README.
    gitignore = (ROOT / ".gitignore").read_text().splitlines()
    assert "deploy/alertmanager/secrets/*" in gitignore
    assert "!deploy/alertmanager/secrets/README.md" in gitignore


# Alertmanager's inhibition, evaluated in Python over the alerts the rules can produce.

_MATCHER = re.compile(r'^\s*(?P<label>\w+)\s*(?P<op>=~|!~|!=|=)\s*"(?P<value>.*)"\s*$')


def _matches(matchers: list[str], labels: dict[str, str]) -> bool:
    for matcher in matchers:
        m = _MATCHER.match(matcher)
        assert m, f"cannot parse matcher {matcher!r}"
        value = labels.get(m["label"], "")
        ok = {
            "=": value == m["value"],
            "!=": value != m["value"],
            "=~": re.fullmatch(m["value"], value) is not None,
            "!~": re.fullmatch(m["value"], value) is None,
        }[m["op"]]
        if not ok:
            return False
    return True


def _inhibited(source: dict[str, str], target: dict[str, str]) -> bool:
    for rule in _yaml(ALERTMANAGER).get("inhibit_rules", []):
        if (
            _matches(rule.get("source_matchers", []), source)
            and _matches(rule.get("target_matchers", []), target)
            and all(source.get(k, "") == target.get(k, "") for k in rule.get("equal", []))
        ):
            return True
    return False


def _alert_labels(name: str, rule: dict[str, Any], **values: str) -> dict[str, str]:
    """Labels of an alert of ``rule``: the series labels its expr keeps + the rule labels."""
    expr = " ".join(rule["expr"].split())
    by = re.search(r"\bby \(([^)]*)\)", expr)
    if by:
        series = [label.strip() for label in by.group(1).split(",")]
    elif expr.startswith("absent("):
        series = []
    else:
        (metric,) = promql_metric_names(expr)
        series = list(METRICS[metric].labels) if metric in METRICS else []
        if "without (instance, job)" not in expr:
            series += ["instance", "job"]
    labels = {label: values.get(label, "x") for label in series}
    return {**labels, "alertname": name, **rule["labels"]}


def _twins() -> set[tuple[str, str]]:
    """(critical, warning) pairs of in-stream rules on the same metric and comparison."""
    rules = DEFAULT_ALERT_RULES
    return {
        (str(c["alert"]), str(w["alert"]))
        for c in rules
        for w in rules
        if c["severity"] == "critical"
        and w["severity"] == "warning"
        and (c["metric"], c["op"]) == (w["metric"], w["op"])
    }


def test_inhibition_silences_exactly_the_warning_twins() -> None:
    rules = _alert_rules()
    twins = _twins()
    assert {
        ("ModelAccuracyCritical", "ModelAccuracyDegraded"),
        ("SevereDataDrift", "DataDriftDetected"),
    } <= twins
    # Worst case for over-inhibition: every alert about the same model, feature, metric, host.
    alerts = {name: _alert_labels(name, rule) for name, rule in rules.items()}
    inhibited = {
        (s, t)
        for s, source in alerts.items()
        for t, target in alerts.items()
        if s != t and _inhibited(source, target)
    }
    assert inhibited == twins, (
        f"missing: {sorted(twins - inhibited)}; unexpected: {sorted(inhibited - twins)}"
    )
    # A twin about another series is not silenced.
    for critical, warning in twins:
        for label in ("model", "variant", "feature", "metric"):
            target = _alert_labels(warning, rules[warning])
            if label not in target:
                continue
            source = _alert_labels(critical, rules[critical], **{label: "other"})
            assert not _inhibited(source, target), f"{critical} on another {label} silences {warning}"
