"""Configuration loading: the shipped example, every kind of user mistake, and a fuzz test.

The contract under test: a valid file gives typed, frozen Settings; anything a user can get
wrong gives exactly one ConfigError line naming the file and the dotted path of the key.
"""

from __future__ import annotations

import copy
import string
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamon.config import (
    DEFAULT_ALERT_RULES,
    AlertRule,
    Settings,
    default_settings,
    format_duration,
    load_config,
    parse_config_text,
    parse_duration,
)
from streamon.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "configs" / "monitoring_config.yaml"

MODELS = """
models:
  - name: m
    features:
      - {name: x, type: numeric}
      - {name: c, type: categorical}
"""


def _error(text: str, source: str = "x.yaml") -> str:
    with pytest.raises(ConfigError) as info:
        parse_config_text(text, source=source)
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith(f"config {source}: "), message
    return message


# --------------------------------------------------------------------------- shipped config


def test_shipped_config_loads_with_the_documented_values() -> None:
    s = load_config(SHIPPED)
    assert s.model_names == ("fraud-detector",)
    model = s.model("fraud-detector")
    assert model.threshold == 0.5
    assert [(f.name, f.type) for f in model.features] == [
        ("transaction_amount", "numeric"),
        ("merchant_category", "categorical"),
        ("transaction_hour", "numeric"),
        ("days_since_last_transaction", "numeric"),
    ]
    assert model.reference_profile is None
    assert s.windows.current == 24 * 3600
    assert s.windows.reference == 7 * 86400
    assert s.windows.bucket == 60
    costs, revenue = s.business_metrics.costs, s.business_metrics.revenue
    assert (costs.false_positive_cost, costs.false_negative_cost) == (50.0, 1000.0)
    assert (costs.investigation_cost, costs.system_operating_cost) == (25.0, 10000.0)
    assert (revenue.fraud_prevention_value, revenue.customer_retention_value) == (1000.0, 200.0)
    assert s.data_drift.features == (
        "transaction_amount",
        "merchant_category",
        "transaction_hour",
        "days_since_last_transaction",
    )
    psi = s.data_drift.method("psi")
    assert psi is not None and psi.threshold == 0.1
    assert s.kafka.topics.partials == "streamon-partials"
    assert s.drift_enabled and s.performance_enabled and s.business_enabled


def test_shipped_alert_rules_are_the_defaults_written_out() -> None:
    shipped = load_config(SHIPPED).alerts.rules
    defaults = tuple(AlertRule.model_validate(r) for r in DEFAULT_ALERT_RULES)
    assert shipped == defaults
    assert len(shipped) == 20
    by_name = {r.alert: r for r in shipped}
    assert by_name["ModelAccuracyDegraded"].for_ == 600
    assert (
        by_name["ModelAccuracyDegraded"].description == "Model accuracy is {{ value }}, below 85% threshold"
    )
    assert by_name["SevereDataDrift"].severity == "critical"
    assert by_name["ConceptDriftDetected"].for_ == 0
    assert by_name["LabelCoverageLow"].for_ == 3600
    assert {r.category for r in shipped} == {
        "model_performance",
        "data_quality",
        "business_impact",
        "infrastructure",
    }


def test_shipped_config_matches_the_defaults_section_by_section() -> None:
    # The example must show the defaults, not quietly different values.
    shipped, defaults = load_config(SHIPPED), default_settings()
    for section in ("monitoring", "business_metrics", "alerts", "kafka", "models", "windows", "degradation"):
        assert getattr(shipped, section) == getattr(defaults, section), section
    assert shipped.fields == defaults.fields


def test_absent_alerts_key_gives_default_rules_and_empty_list_gives_none() -> None:
    assert len(parse_config_text(MODELS).alerts.rules) == len(DEFAULT_ALERT_RULES)
    assert parse_config_text("alerts: {rules: []}\n" + MODELS).alerts.rules == ()


# --------------------------------------------------------------------------- typed API


def test_settings_are_frozen() -> None:
    s = default_settings()
    with pytest.raises(pydantic.ValidationError):
        s.kafka.batch_size = 1


def test_model_lookup_and_drift_features() -> None:
    s = parse_config_text("data_drift: {features: [c]}\n" + MODELS)
    assert s.model("m").feature("x") is not None
    assert [f.name for f in s.drift_features("m")] == ["c"]
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        s.model("nope")
    # No data_drift.features: every feature of the model.
    assert [f.name for f in parse_config_text(MODELS).drift_features("m")] == ["x", "c"]


def test_round_trip_through_a_plain_dict() -> None:
    s = load_config(SHIPPED)
    dumped = s.model_dump(mode="json", by_alias=True)
    assert "for" in dumped["alerts"]["rules"][0]
    assert Settings.from_dict(dumped) == s
    assert Settings.from_dict(yaml.safe_load(yaml.safe_dump(dumped))) == s


def test_reference_profile_is_resolved_against_the_config_directory(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "c.yaml"
    path.write_text(
        "models: [{name: m, reference_profile: profiles/m.json, features: [{name: x, type: numeric}]}]\n"
    )
    assert load_config(path).model("m").reference_profile == tmp_path / "sub" / "profiles" / "m.json"


def test_alert_rule_hysteresis() -> None:
    rule = AlertRule.model_validate(
        {
            "alert": "Lag",
            "metric": "streamon_consumer_lag_messages",
            "op": ">",
            "threshold": 100,
            "resolve_threshold": 80,
            "severity": "warning",
            "category": "infrastructure",
        }
    )
    assert rule.is_breached(101) and not rule.is_breached(100)
    assert not rule.is_recovered(90) and rule.is_recovered(80)


def test_windows_counts() -> None:
    w = default_settings().windows
    assert (w.current_buckets, w.reference_buckets) == (1440, 10080)


def test_drift_enablement_needs_both_switches() -> None:
    off = parse_config_text("monitoring: {custom_metrics: {data_drift: {enabled: false}}}\n" + MODELS)
    assert not off.drift_enabled and off.performance_enabled
    assert not parse_config_text("monitoring: {enabled: false}\n" + MODELS).business_enabled


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (30, 30.0),
        (1.5, 1.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("24h", 86400.0),
        ("7d", 604800.0),
        ("1w", 604800.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        (" 10 m ", 600.0),
        ("300", 300.0),
        ("0m", 0.0),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    "value", ["", "soon", "5 minutes", "5x", "-5m", "m5", True, None, [1], float("nan"), -1]
)
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_format_duration_round_trips() -> None:
    for text in ("1m", "90m", "24h", "7d", "30d", "1.5s"):
        assert format_duration(parse_duration(text)) == text


# --------------------------------------------------------------------------- user mistakes


def _rules(*overrides: str) -> str:
    """An `alerts:` section with one rule per override (YAML flow fields replacing the base)."""
    items = []
    for extra in overrides:
        base = {"alert": "A", "metric": "m", "op": "'>'", "threshold": "1", "severity": "warning"}
        base["category"] = "data_quality"
        for part in filter(None, (p.strip() for p in extra.split(","))):
            key, value = part.split(":", 1)
            base[key.strip()] = value.strip()
        items.append("{" + ", ".join(f"{k}: {v}" for k, v in base.items()) + "}")
    return "alerts: {rules: [" + ", ".join(items) + "]}\n" + MODELS


ONE_FEATURE = "[{name: x, type: numeric}]"
BAD = [
    # (case id, yaml text, dotted path, fragment of the explanation)
    ("unknown top-level key", "modles: []\n" + MODELS, "modles", "unknown key (did you mean 'models'?)"),
    ("unknown nested key", "kafka: {topicz: {}}\n" + MODELS, "kafka.topicz", "unknown key"),
    (
        "unknown deep key",
        "kafka: {topics: {prediction: p}}\n" + MODELS,
        "kafka.topics.prediction",
        "unknown key",
    ),
    (
        "wrong type int",
        "kafka: {batch_size: '10'}\n" + MODELS,
        "kafka.batch_size",
        "must be an integer (got '10')",
    ),
    ("bool is not int", "kafka: {partitions: true}\n" + MODELS, "kafka.partitions", "must be an integer"),
    ("wrong type section", "monitoring: [1, 2]\n" + MODELS, "monitoring", "must be a mapping"),
    (
        "wrong type bool",
        "data_drift: {enabled: 'no'}\n" + MODELS,
        "data_drift.enabled",
        "must be true or false",
    ),
    ("wrong type list", "data_drift: {features: x}\n" + MODELS, "data_drift.features", "must be a list"),
    (
        "threshold above 1",
        f"models: [{{name: m, threshold: 1.5, features: {ONE_FEATURE}}}]",
        "models.0.threshold",
        "must be <= 1 (got 1.5)",
    ),
    (
        "threshold below 0",
        f"models: [{{name: m, threshold: -0.1, features: {ONE_FEATURE}}}]",
        "models.0.threshold",
        "must be >= 0",
    ),
    (
        "port out of range",
        "monitoring: {prometheus: {port: 70000}}\n" + MODELS,
        "monitoring.prometheus.port",
        "must be <= 65535",
    ),
    (
        "nan",
        "business_metrics: {costs: {false_positive_cost: .nan}}\n" + MODELS,
        "business_metrics.costs.false_positive_cost",
        "finite",
    ),
    (
        "zero operating cost",
        "business_metrics: {costs: {system_operating_cost: 0}}\n" + MODELS,
        "business_metrics.costs.system_operating_cost",
        "must be > 0",
    ),
    ("bad duration", "windows: {current: 24hours}\n" + MODELS, "windows.current", "not a duration"),
    ("negative duration", "windows: {reference: -1d}\n" + MODELS, "windows.reference", "not a duration"),
    ("zero window", "windows: {current: 0}\n" + MODELS, "windows.current", "must be > 0"),
    ("bad for", _rules("for: often"), "alerts.rules.0.for", "not a duration"),
    (
        "not a multiple of bucket",
        "windows: {bucket: 10m, current: 25m}\n" + MODELS,
        "windows.current",
        "multiple of windows.bucket",
    ),
    ("too many buckets", "windows: {bucket: 1}\n" + MODELS, "windows.bucket", "buckets"),
    ("missing models", "kafka: {group_id: g}\n", "models", "required key missing"),
    ("empty models", "models: []\n", "models", "at least 1 item"),
    ("missing features", "models: [{name: m}]\n", "models.0.features", "required key missing"),
    ("missing model name", f"models: [{{features: {ONE_FEATURE}}}]\n", "models.0.name", "required"),
    (
        "duplicate model",
        f"models: [{{name: m, features: {ONE_FEATURE}}}, {{name: m, features: {ONE_FEATURE}}}]",
        "models.1.name",
        "duplicate model name 'm'",
    ),
    (
        "duplicate feature",
        "models: [{name: m, features: [{name: x, type: numeric}, {name: x, type: categorical}]}]",
        "models.0.features.1.name",
        "duplicate feature name 'x'",
    ),
    (
        "bad feature type",
        "models: [{name: m, features: [{name: x, type: numerc}]}]",
        "models.0.features.0.type",
        "must be one of",
    ),
    (
        "bad model name",
        f"models: [{{name: 'my model', features: {ONE_FEATURE}}}]",
        "models.0.name",
        "letters",
    ),
    (
        "unknown baseline metric",
        f"models: [{{name: m, baseline: {{acuracy: 0.9}}, features: {ONE_FEATURE}}}]",
        "models.0.baseline.acuracy",
        "did you mean 'accuracy'",
    ),
    (
        "unknown drift feature",
        "data_drift: {features: [x, amount]}\n" + MODELS,
        "data_drift.features.1",
        "unknown feature 'amount'",
    ),
    (
        "unknown drift method",
        "data_drift: {methods: [{name: kl, threshold: 0.1}]}\n" + MODELS,
        "data_drift.methods.0.name",
        "must be one of",
    ),
    (
        "p-value out of range",
        "data_drift: {methods: [{name: ks_test, threshold: 5}]}\n" + MODELS,
        "data_drift.methods.0.threshold",
        "p-value",
    ),
    (
        "schedule disagrees",
        "data_drift: {schedule: {window_size: 12h}}\n" + MODELS,
        "data_drift.schedule.window_size",
        "windows.current",
    ),
    (
        "drift levels reversed",
        "data_drift: {alerts: {warning_threshold: 0.3, critical_threshold: 0.2}}\n" + MODELS,
        "data_drift.alerts.critical_threshold",
        ">= warning_threshold",
    ),
    ("bad severity", _rules("severity: warn"), "alerts.rules.0.severity", "must be one of"),
    ("bad op", _rules("op: '<='"), "alerts.rules.0.op", "must be one of"),
    ("bad metric name", _rules("metric: 'ml accuracy'"), "alerts.rules.0.metric", "Prometheus metric name"),
    (
        "hysteresis wrong side",
        _rules("resolve_threshold: 2"),
        "alerts.rules.0.resolve_threshold",
        "<= threshold",
    ),
    ("duplicate alert", _rules("", "threshold: 2"), "alerts.rules.1.alert", "duplicate alert name"),
    (
        "shared topic",
        "kafka: {topics: {alerts: predictions}}\n" + MODELS,
        "kafka.topics.alerts",
        "topics must differ",
    ),
    (
        "illegal topic",
        "kafka: {topics: {alerts: 'my alerts'}}\n" + MODELS,
        "kafka.topics.alerts",
        "topic name",
    ),
    (
        "reserved client key",
        "kafka: {client: {group.id: other}}\n" + MODELS,
        "kafka.client.group.id",
        "kafka.group_id",
    ),
    (
        "bad client value",
        "kafka: {client: {linger.ms: [5]}}\n" + MODELS,
        "kafka.client.linger.ms",
        "string, number or boolean",
    ),
    (
        "aliased event field",
        "fields: {prediction: {score: ts}}\n" + MODELS,
        "fields.prediction.score",
        "already mapped",
    ),
    (
        "degradation reversed",
        "degradation: {medium: 0.2, high: 0.1}\n" + MODELS,
        "degradation.high",
        ">= medium",
    ),
    ("non-string key", "1: 2\n" + MODELS, "1", "keys must be strings"),
]


@pytest.mark.parametrize(("text", "path", "fragment"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_values_name_file_and_dotted_path(tmp_path: Path, text: str, path: str, fragment: str) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(file)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"config {file}: {path}: "), message
    assert fragment in message, message


def test_several_errors_report_the_first_and_count_the_rest() -> None:
    message = _error("kafka: {partitions: x, batch_size: y}\n" + MODELS)
    assert "kafka.partitions" in message and message.endswith("(+1 more error)")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^config .*nope\.yaml: file not found$"):
        load_config(tmp_path / "nope.yaml")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


@pytest.mark.parametrize("text", ["", "   \n\n", "# only a comment\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    file = tmp_path / "empty.yaml"
    file.write_text(text)
    with pytest.raises(ConfigError, match=r"empty|no settings") as info:
        load_config(file)
    assert "\n" not in str(info.value) and "models" in str(info.value)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    file = tmp_path / "broken.yaml"
    file.write_text("kafka:\n  group_id: g\n  topics: [a\nmodels: []\n")
    with pytest.raises(ConfigError) as info:
        load_config(file)
    message = str(info.value)
    assert message.startswith(f"config {file}: invalid YAML: line "), message
    assert "\n" not in message


def test_duplicate_yaml_key_is_an_error_not_last_one_wins() -> None:
    message = _error("kafka: {group_id: a}\nkafka: {group_id: b}\n" + MODELS)
    assert "line 2" in message and "duplicate key 'kafka'" in message


def test_yaml_merge_keys_still_work() -> None:
    merged = "models: [{name: m, features: [&f {name: x, type: numeric}, {<<: *f, name: y}]}]"
    assert [f.name for f in parse_config_text(merged).model("m").features] == ["x", "y"]


@pytest.mark.parametrize(
    ("text", "kind"), [("- a\n- b\n", "a list"), ("just text\n", "a string"), ("42\n", "a number")]
)
def test_top_level_must_be_a_mapping(text: str, kind: str) -> None:
    assert _error(text).endswith(f"top level must be a mapping of sections (got {kind})")


def test_not_utf8(tmp_path: Path) -> None:
    file = tmp_path / "latin1.yaml"
    file.write_bytes("kafka: {group_id: caf\xe9}\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(file)


def test_from_dict_rejects_non_mappings() -> None:
    with pytest.raises(ConfigError, match=r"^config <dict>: top level must be a mapping"):
        Settings.from_dict(["models"])


# --------------------------------------------------------------------------- fuzz

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**12), max_value=10**12)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
_keys = st.sampled_from(
    ["models", "kafka", "windows", "alerts", "rules", "name", "features", "type", "threshold", "current"]
) | st.text(alphabet=string.ascii_lowercase + "_.", min_size=1, max_size=8)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=20,
)


def _only_config_errors(call: Any) -> None:
    try:
        result = call()
    except ConfigError as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(result, Settings)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=6))
def test_fuzz_arbitrary_mappings_only_raise_config_error(data: dict[str, Any]) -> None:
    _only_config_errors(lambda: Settings.from_dict(data))
    _only_config_errors(lambda: parse_config_text(yaml.safe_dump(data)))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200) | st.text(alphabet=":-[]{}&*!|>'\"%@`#,?\n abc019", max_size=120))
def test_fuzz_random_text_only_raises_config_error(text: str) -> None:
    _only_config_errors(lambda: parse_config_text(text))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, (*prefix, i))
    return found


_SHIPPED_DATA = yaml.safe_load(SHIPPED.read_text())
_SHIPPED_PATHS = _paths(_SHIPPED_DATA)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(_SHIPPED_PATHS), st.sampled_from(["replace", "delete", "extra"]), _values),
        min_size=1,
        max_size=3,
    )
)
def test_fuzz_mutations_of_the_shipped_config(mutations: list[tuple[tuple[Any, ...], str, Any]]) -> None:
    # Random edits deep inside a valid file reach the cross-field validators too.
    data = copy.deepcopy(_SHIPPED_DATA)
    for path, action, value in mutations:
        parent: Any = data
        try:
            for part in path[:-1]:
                parent = parent[part]
            if action == "replace":
                parent[path[-1]] = value
            elif action == "delete":
                del parent[path[-1]]
            elif isinstance(parent, dict):
                parent["zz_extra"] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or retyped this spot
    _only_config_errors(lambda: Settings.from_dict(data, source="fuzz.yaml"))
