"""TOML tables into typed dataclasses, with errors that name the file and the key path.

One small reflective builder instead of hand-written checks per section: every config section is
a frozen dataclass, and its field types are the schema (int, float, bool, str, Path, Literal,
tuples, optional values and nested sections). A field's metadata "check" validates its value; a
section's `cross_check()` method validates fields against each other.
"""

from __future__ import annotations

import dataclasses
import types
import typing
import unicodedata
from pathlib import Path
from typing import Any, Literal, Union


class ConfigError(ValueError):
    """`file: key.path: message`, the one line a user needs to fix their config."""

    def __init__(self, file: str, key: str, message: str) -> None:
        self.file = file
        self.key = key
        self.message = message
        super().__init__(f"{file}: {key}: {message}" if key else f"{file}: {message}")


@dataclasses.dataclass(frozen=True)
class Context:
    """Where the values come from: the config file (for messages and relative paths)."""

    file: str
    base_dir: Path

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.file, key, message)


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def build(cls: type, table: Any, key: str, ctx: Context) -> Any:
    """An instance of dataclass `cls` from a TOML table; unknown keys and bad types are errors."""
    if not isinstance(table, dict):
        raise ctx.error(key, f"expected a table, got {_describe(table)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for name in table:
        if name not in fields:
            raise ctx.error(
                _join(key, name), f"unknown key (expected one of: {', '.join(sorted(fields))})"
            )
    values = {}
    for name, field in fields.items():
        path = _join(key, name)
        if name in table:
            values[name] = coerce(hints[name], table[name], path, ctx)
            check = field.metadata.get("check")
            if check is not None:
                problem = check(values[name])
                if problem:
                    raise ctx.error(path, problem)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ctx.error(path, "missing required key")
    instance = cls(**values)
    # Checks across fields: a section's `cross_check()` names the field at fault and the problem.
    cross_check = getattr(instance, "cross_check", None)
    problem = cross_check() if cross_check is not None else None
    if problem:
        name, message = problem
        raise ctx.error(_join(key, name), message)
    return instance


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def coerce(hint: Any, value: Any, key: str, ctx: Context) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return coerce(option, value, key, ctx)
            except ConfigError as exc:
                errors.append(exc.message)
        raise ctx.error(key, " or ".join(dict.fromkeys(errors)))
    if origin is Literal:
        if value in args and type(value) is type(args[args.index(value)]):
            return value
        raise ctx.error(key, f"must be one of {', '.join(map(repr, args))}, got {value!r}")
    if origin is tuple:
        item = args[0]
        items = value if isinstance(value, list) else [value]
        return tuple(coerce(item, v, f"{key}[{i}]", ctx) for i, v in enumerate(items))
    if origin is dict:
        if not isinstance(value, dict):
            raise ctx.error(key, f"expected a table, got {_describe(value)}")
        return dict(value)
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key, ctx)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ctx.error(key, f"expected true or false, got {_describe(value)}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ctx.error(key, f"expected an integer, got {_describe(value)}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ctx.error(key, f"expected a number, got {_describe(value)}")
    if hint is str:
        if isinstance(value, str):
            _no_control_characters(value, key, ctx)
            return value
        raise ctx.error(key, f"expected a string, got {_describe(value)}")
    if hint is Path:
        if not isinstance(value, str) or not value:
            raise ctx.error(key, f"expected a file path, got {_describe(value)}")
        _no_control_characters(value, key, ctx)
        path = Path(value).expanduser()
        return path if path.is_absolute() else ctx.base_dir / path
    raise TypeError(f"config type {hint!r} at {key} is not supported")  # programming error


def control_character(value: str) -> str | None:
    """The first control character in `value` (a newline, a tab, NUL, ...), or None."""
    return next((c for c in value if unicodedata.category(c) == "Cc"), None)


def _no_control_characters(value: str, key: str, ctx: Context) -> None:
    # A trailing newline in a name ends up in MQTT topics and client ids (the broker closes the
    # connection on every publish); no config string has a use for one.
    found = control_character(value)
    if found is not None:
        raise ctx.error(key, f"{value!r} contains the control character {found!r}")


def at_least(minimum: float) -> dict[str, Any]:
    """Field metadata: the value must be >= minimum."""
    return {"check": lambda v: None if v >= minimum else f"must be >= {minimum}, got {v!r}"}
