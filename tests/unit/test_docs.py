"""The reference docs stay in step with the code.

Each test collects what the code defines (metrics, config keys, rejection reasons, default
alert rules, relative links) and fails listing every item the docs miss.
"""

from __future__ import annotations

import ast
import re
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from streamon.config import DEFAULT_ALERT_RULES, Settings
from streamon.core import events
from streamon.core.catalogue import METRICS

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def _report(what: str, missing: list[str]) -> str:
    message = f"{len(missing)} {what}:\n  " + "\n  ".join(missing)
    print(message)
    return message


# ---------------------------------------------------------------------- (1) metrics


# The metric families (streamon.core.catalogue's docstring); the docs' tables are read by them.
METRIC_NAME = re.compile(r"(?:ml|streamon|system)_[a-z0-9_]+")


def documented_metrics() -> list[str]:
    """The metric names in the first column of docs/metrics.md's tables (`name` cells)."""
    names = []
    for line in _read("metrics.md").splitlines():
        if line.startswith("|"):
            first_cell = line.split("|")[1]
            names += [n for n in re.findall(r"`([^`]+)`", first_cell) if METRIC_NAME.fullmatch(n)]
    return names


def produced_metric_names() -> set[str]:
    """Metric names that the code making samples names: the string constants of streamon/core
    (the evaluation) and streamon/runtime (the workers' own samples), the catalogue excluded.

    The exporter renders only catalogue names (any other raises), so a metric is exported
    when it is in the catalogue AND some code makes a sample of it. The top-level modules
    only read metrics by name (default alert rules, demo, doctor), so they do not count.
    """
    names: set[str] = set()
    for package in ("core", "runtime"):
        for path in sorted((ROOT / "streamon" / package).rglob("*.py")):
            if path.name == "catalogue.py":
                continue
            names |= {
                node.value
                for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                if isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and METRIC_NAME.fullmatch(node.value)
            }
    return names


def test_metric_name_readers_see_every_family() -> None:
    assert len(documented_metrics()) >= 50, "the docs' metric tables were not found"
    assert {"ml_model_accuracy", "streamon_batch_seconds", "system_cpu_usage_percent"} <= set(
        documented_metrics()
    )
    assert "streamon_events_processed_total" in produced_metric_names()  # the worker's samples
    assert "ml_model_accuracy" in produced_metric_names()  # evaluate's name tables
    assert not [n for n in METRICS if not METRIC_NAME.fullmatch(n)], "a metric outside the families"


def test_every_metric_is_documented() -> None:
    text = _read("metrics.md")
    missing = [
        name
        for name in METRICS
        if not re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text)
    ]
    assert not missing, _report("catalogue metrics missing from docs/metrics.md", missing)


def test_every_documented_metric_is_exported() -> None:
    documented = documented_metrics()
    produced = produced_metric_names()
    problems = [f"{name}: not in streamon.core.catalogue" for name in documented if name not in METRICS]
    problems += [
        f"{name}: no code makes a sample of it"
        for name in dict.fromkeys([*documented, *METRICS])
        if name not in produced
    ]
    assert not problems, _report("documented or catalogued metrics that are never exported", problems)


# ---------------------------------------------------------------------- (2) config keys


def _inner_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The pydantic model inside ``annotation`` and whether it is the item of a list."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    origin = get_origin(annotation)
    if origin in (tuple, list):
        for arg in get_args(annotation):
            model, _ = _inner_model(arg)
            if model is not None:
                return model, True
    if origin in (Union, types.UnionType, Annotated):
        for arg in get_args(annotation):
            model, is_list = _inner_model(arg)
            if model is not None:
                return model, is_list
    return None, False


def config_key_paths(model: type[BaseModel] = Settings, prefix: str = "") -> Iterator[str]:
    """Every key path of the config: ``monitoring.prometheus.port``, ``models[].features[].type``, ...

    The YAML name is the field's alias where it has one (``alerts.rules[].for``).
    """
    for name, field in model.model_fields.items():
        path = prefix + (field.alias or name)
        yield path
        inner, is_list = _inner_model(field.annotation)
        if inner is not None:
            yield from config_key_paths(inner, path + ("[]." if is_list else "."))


def test_config_walk_sees_nested_and_aliased_keys() -> None:
    paths = set(config_key_paths())
    for expected in ("monitoring.prometheus.port", "models[].features[].type", "alerts.rules[].for"):
        assert expected in paths


def test_every_config_key_is_documented() -> None:
    text = _read("configuration.md")
    missing = [path for path in config_key_paths() if f"`{path}`" not in text]
    assert not missing, _report("config keys missing from docs/configuration.md (as `key`)", missing)


# ---------------------------------------------------------------------- (3) rejection reasons


def rejection_reasons() -> dict[str, str]:
    """The public upper-case string constants of streamon.core.events: the rejection reasons."""
    return {
        name: value
        for name, value in vars(events).items()
        if name.isupper() and not name.startswith("_") and isinstance(value, str)
    }


def test_every_rejection_reason_is_documented() -> None:
    reasons = rejection_reasons()
    assert len(reasons) >= 10, f"found too few rejection reasons to be right: {reasons}"
    text = _read("events.md")
    missing = [f"{name} = {value!r}" for name, value in reasons.items() if f"`{value}`" not in text]
    assert not missing, _report("rejection reasons missing from docs/events.md (as `reason`)", missing)


# ---------------------------------------------------------------------- (4) default alert rules


def test_every_default_alert_rule_is_documented() -> None:
    text = _read("alerts.md")
    missing = [str(rule["alert"]) for rule in DEFAULT_ALERT_RULES if f"`{rule['alert']}`" not in text]
    assert not missing, _report("default alert rules missing from docs/alerts.md", missing)


# ---------------------------------------------------------------------- (5) relative links

_FENCE = re.compile(r"^(`{3,}|~{3,}).*?^\1", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
# [text](target "title") and ![alt](target); the target ends at whitespace or ')'.
_INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+[^)]*)?\)")
_REFERENCE_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
_EXTERNAL = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|//|#)")


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def relative_links(text: str) -> list[str]:
    """Targets of the relative links of a markdown text (code blocks and spans excluded)."""
    text = _CODE_SPAN.sub("", _FENCE.sub("", text))
    targets = _INLINE_LINK.findall(text) + _REFERENCE_DEF.findall(text)
    return [t for t in targets if not _EXTERNAL.match(t)]


def test_link_extraction() -> None:
    sample = (
        "[a](docs/a.md) [b](b.md#part) [c](https://x.org) [d](#local) ![e](img/e.png 'x')\n"
        "`[f](not-a-link.md)`\n```\n[g](in-code.md)\n```\n[h]: ../h.md\n"
    )
    assert relative_links(sample) == ["docs/a.md", "b.md#part", "img/e.png", "../h.md"]


def test_relative_links_point_at_existing_files() -> None:
    broken = []
    for path in markdown_files():
        for target in relative_links(path.read_text(encoding="utf-8")):
            file_part = target.split("#", 1)[0].split("?", 1)[0]
            if file_part and not (path.parent / file_part).exists():
                broken.append(f"{path.relative_to(ROOT)}: {target}")
    assert not broken, _report("relative links pointing at missing files", broken)


def test_named_tests_exist() -> None:
    """Every ``tests/...py::test_name`` the docs cite (the fault table of
    failure-semantics.md) names a test function that exists."""
    missing = []
    for page in sorted(DOCS.glob("*.md")):
        for path, name in re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", page.read_text(encoding="utf-8")):
            source = ROOT / path
            text = source.read_text(encoding="utf-8") if source.exists() else ""
            if not re.search(rf"^(?:async )?def {name}\(", text, re.MULTILINE):
                missing.append(f"{page.name}: {path}::{name}")
    assert re.search(r"`tests/[\w/]+\.py::\w+`", _read("failure-semantics.md"))  # the pattern still matches
    assert not missing, _report("cited tests", missing)
