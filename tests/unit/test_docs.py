"""The reference docs stay in step with the code.

Each test collects what the code defines (metrics, config keys, rejection reasons, default
alert rules, relative links) and fails listing every item the docs miss.
"""

from __future__ import annotations

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


def test_every_metric_is_documented() -> None:
    text = _read("metrics.md")
    missing = [
        name
        for name in METRICS
        if not re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text)
    ]
    assert not missing, _report("catalogue metrics missing from docs/metrics.md", missing)


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
