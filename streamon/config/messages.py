"""One line per validation problem: the dotted path, what is wrong, a suggestion."""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ValidationError,
)

from streamon.config._base import _did_you_mean, _got, _kind, _one_line, _path_part, _PathError


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at ``loc`` (for key suggestions)."""
    from streamon.config.settings import Settings  # the root model; it reports through this module

    current: type[BaseModel] = Settings
    for part in loc:
        if isinstance(part, int):
            continue  # a list index: the item has the same model
        field = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
        inner = _inner_model(field.annotation) if field is not None else None
        if inner is None:
            return None
        current = inner
    return current


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (tuple, list, Union, types.UnionType, Annotated):
        for arg in get_args(annotation):
            found = _inner_model(arg)
            if found is not None:
                return found
    return None


_TYPE_WORDS = {
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "dict_type": "must be a mapping",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "invalid_key": "keys must be strings",
    "missing": "required key missing",
    "recursion_loop": "refers to itself (YAML alias cycle)",
}

_BOUND_WORDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def _message(err: Mapping[str, Any]) -> tuple[tuple[str | int, ...], str]:
    """Turn one pydantic error into (path, plain English message)."""
    loc: tuple[str | int, ...] = tuple(err["loc"])
    kind: str = err["type"]
    ctx: Mapping[str, Any] = err.get("ctx") or {}
    value = err.get("input")
    show_input = True
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = [f.alias or n for n, f in parent.model_fields.items()] if parent else []
        text, show_input = "unknown key" + _did_you_mean(str(loc[-1]), allowed), False
    elif kind == "value_error" and isinstance(ctx.get("error"), _PathError):
        error = ctx["error"]
        loc, text, show_input = loc + error.loc, str(error), False
    elif kind in ("value_error", "assertion_error"):
        text = str(ctx.get("error", err["msg"]))
    elif kind in _TYPE_WORDS:
        text = _TYPE_WORDS[kind]
        show_input = kind not in ("missing", "invalid_key")
    elif kind in _BOUND_WORDS:
        op = _BOUND_WORDS[kind]
        bound = next(iter(ctx.values()))
        text = f"must be {op} {bound:g}" if isinstance(bound, int | float) else f"must be {op} {bound}"
    elif kind == "literal_error":
        text = f"must be one of {ctx.get('expected', '')}"
    elif kind == "too_short" and isinstance(value, list | tuple | dict):
        least = ctx.get("min_length", 1)
        text, show_input = f"must have at least {least} item{'s' if least != 1 else ''}", False
    elif kind == "string_too_short":
        text, show_input = "must not be empty", False
    else:
        text = str(err["msg"])
    if show_input and (value is None or isinstance(value, str | int | float | bool)):
        text = f"{text} (got {_got(value)})"
    elif show_input and value is not None:
        text = f"{text} (got {_kind(value)})"
    return loc, _one_line(text)


def _describe(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    # A list whose item failed is also reported as too short; that echo is noise.
    locs = [tuple(e["loc"]) for e in errors]
    cascade = [
        e
        for e in errors
        if e["type"] == "too_short"
        and any(len(o) > len(e["loc"]) and o[: len(e["loc"])] == e["loc"] for o in locs)
    ]
    errors = [e for e in errors if e not in cascade] or errors
    loc, text = _message(errors[0])
    # pydantic marks a bad dict key with a "[key]" pseudo-part; the key itself is enough.
    path = ".".join(_path_part(part) for part in loc if part != "[key]") or "(top level)"
    more = len(errors) - 1
    suffix = f" (+{more} more error{'s' if more > 1 else ''})" if more else ""
    return f"{path}: {text}{suffix}"
