"""Durations, frequencies, client values and the frozen base of every section; the
helpers that turn validation problems into readable text."""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    Strict,
    ValidationInfo,
)

# --------------------------------------------------------------------------- durations

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_DURATION_FULL = re.compile(r"(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d|w)\s*)+")
_DURATION_HINT = 'use a number of seconds or a string like "30s", "5m", "24h", "7d"'


def parse_duration(value: object) -> float:
    """Return ``value`` as seconds: a number (already seconds) or a string like ``"1h30m"``.

    >>> parse_duration("5m"), parse_duration("1h30m"), parse_duration(2.5), parse_duration("500ms")
    (300.0, 5400.0, 2.5, 0.5)
    >>> parse_duration("soon")
    Traceback (most recent call last):
    ...
    ValueError: not a duration; use a number of seconds or a string like "30s", "5m", "24h", "7d"
    """
    # bool is an int subclass: `for: yes` must not silently mean 1 second.
    if isinstance(value, bool):
        raise ValueError(f"not a duration; {_DURATION_HINT}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        try:
            # A quoted plain number ("300") is unambiguous: seconds, like an unquoted one.
            seconds = float(text)
        except ValueError:
            if not _DURATION_FULL.fullmatch(text):
                raise ValueError(f"not a duration; {_DURATION_HINT}") from None
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    else:
        raise ValueError(f"not a duration; {_DURATION_HINT}")
    if not math.isfinite(seconds):
        raise ValueError("duration must be finite")
    if seconds < 0:
        raise ValueError("duration must be >= 0")
    return seconds


def format_duration(seconds: float) -> str:
    """Format seconds back in the largest unit that divides them exactly (for messages).

    Days only from two days up: people write a day as "24h".

    >>> format_duration(86400), format_duration(604800), format_duration(5400), format_duration(1.5)
    ('24h', '7d', '90m', '1.5s')
    """
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count = seconds / size
        if count >= (2 if unit == "d" else 1) and count == int(count):
            return f"{int(count)}{unit}"
    return f"{seconds:g}s"


def _duration(value: object) -> float:
    return parse_duration(value)


_FREQUENCY_NAMES = {"minutely": 60.0, "hourly": 3600.0, "daily": 86400.0, "weekly": 604800.0}


def _frequency(value: object) -> float:
    # The guide writes `frequency: "hourly"`; a duration is accepted as well.
    if isinstance(value, str) and value.strip().lower() in _FREQUENCY_NAMES:
        return _FREQUENCY_NAMES[value.strip().lower()]
    try:
        return parse_duration(value)
    except ValueError:
        names = ", ".join(_FREQUENCY_NAMES)
        raise ValueError(f'not a frequency; use one of {names} or a duration like "30m"') from None


# Strict scalars: YAML already types values, so a string where a number belongs (or `true`
# where a count belongs) is a mistake to report, not to coerce.
Duration = Annotated[float, BeforeValidator(_duration)]
Frequency = Annotated[float, BeforeValidator(_frequency)]
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]
NonEmptyStr = Annotated[str, Strict(), Field(min_length=1)]
Probability = Annotated[float, Strict(), Field(ge=0.0, le=1.0)]


def _client_value(value: object) -> str | int | float | bool:
    # A plain validator (not a Union) so an error's path is just the property name.
    if isinstance(value, str | int | float | bool) and not (
        isinstance(value, float) and not math.isfinite(value)
    ):
        return value
    raise ValueError("librdkafka property values must be a string, number or boolean")


ClientValue = Annotated[str | int | float | bool, PlainValidator(_client_value)]


class _PathError(ValueError):
    """A cross-field error raised inside a validator, with the path of the key to blame.

    Pydantic only knows the location of the model whose validator failed; ``loc`` is the
    rest of the path (relative to that model) so the message names the exact key.
    """

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


class _Section(BaseModel):
    # frozen: settings are shared by every component of a worker and must not drift apart.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# --------------------------------------------------------------------------- error text


def _config_relative_path(value: object, info: ValidationInfo) -> Path:
    """A file path from the config; a relative one is relative to the config file's directory."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a file path (a non-empty string) or null")
    path = Path(value).expanduser()
    base = (info.context or {}).get("base_dir")
    return base / path if not path.is_absolute() and isinstance(base, Path) else path


def _require_positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be > 0")
    return value


def _check_unique(names: list[str], field: str, attr: str | None, what: str) -> None:
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in first:
            loc: tuple[str | int, ...] = (field, i, attr) if attr else (field, i)
            raise _PathError(loc, f"duplicate {what} '{name}' (also {field}.{first[name]})")
        first[name] = i


def _did_you_mean(word: str, choices: Any) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _kind(value: object) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    for typ, name in names.items():
        if isinstance(value, typ):
            return name
    if isinstance(value, int | float):
        return "a number"
    return f"a {type(value).__name__}"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _path_part(part: str | int) -> str:
    """A key as written in a dotted path; quoted when empty, padded or not printable (one line)."""
    text = str(part)
    return text if text and text.isprintable() and text.strip() == text else repr(text)


def _got(value: object) -> str:
    text = _one_line(repr(value))
    return text if len(text) <= 60 else text[:57] + "..."
