"""Reading a YAML file or text into :class:`Settings`, with duplicate keys refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from streamon.config._base import _one_line
from streamon.config.settings import Settings
from streamon.errors import ConfigError

# --------------------------------------------------------------------------- loading


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load's loader, but a repeated key is an error instead of last-one-wins."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[object] = set()
    for key_node, _ in node.value:
        # Merge keys (`<<: *base`) may legitimately be overridden; only own keys count.
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
            key = loader.construct_object(key_node)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_config_text(text: str, *, source: str = "<string>", base_dir: Path | None = None) -> Settings:
    """Parse YAML ``text`` and validate it; ``source`` names it in error messages.

    >>> parse_config_text("models: [{name: m, threshold: 1.5, features: [{name: x, type: numeric}]}]",
    ...                   source="x.yaml")
    Traceback (most recent call last):
    ...
    streamon.errors.ConfigError: config x.yaml: models.0.threshold: must be <= 1 (got 1.5)
    """
    if not text.strip():
        raise ConfigError(f"config {source}: file is empty; at least `models:` is required")
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = _one_line(exc.problem or exc.context or "syntax error")
        raise ConfigError(f"config {source}: invalid YAML: {where}{problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {source}: invalid YAML: {_one_line(str(exc))}") from None
    except RecursionError:
        raise ConfigError(f"config {source}: invalid YAML: nested too deeply") from None
    if data is None:
        raise ConfigError(
            f"config {source}: file has no settings (only comments); at least `models:` is required"
        )
    return Settings.from_dict(data, source=source, base_dir=base_dir)


def load_config(path: str | Path) -> Settings:
    """Read, parse and validate the YAML config at ``path``.

    Raises :class:`~streamon.errors.ConfigError` with one line naming the file and the key.

    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "c.yaml"
    >>> _ = p.write_text("models: [{name: m, features: [{name: x, type: numeric}]}]\\n")
    >>> load_config(p).model("m").threshold
    0.5
    >>> load_config(p.with_name("missing.yaml"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streamon.errors.ConfigError: config .../missing.yaml: file not found
    """
    path = Path(path)
    source = str(path)
    try:
        # utf-8-sig: editors on Windows like to prepend a BOM.
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"config {source}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"config {source}: is a directory, not a file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config {source}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"config {source}: cannot read: {exc.strerror or exc}") from None
    return parse_config_text(text, source=source, base_dir=path.resolve().parent)
