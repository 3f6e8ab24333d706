"""Strict TOML-table -> frozen-dataclass conversion: unknown keys, wrong types and bad values are errors.

A config section is a frozen dataclass; each field may carry `spec(...)` metadata (bounds,
choices, a regex, "must exist" for files, a one-line doc). `build()` converts one TOML table,
raising `ConfigError` that names the dotted key (`device[2].baud`) and the file.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"  # safe as one MQTT topic level
NODE_PATTERN = r"[a-z0-9][a-z0-9_-]*(/[a-z0-9][a-z0-9_-]*)*"  # a node path under the root


class ConfigError(Exception):
    """A configuration problem; str() is the one line a technician needs."""

    def __init__(self, file: Path | str, key: str, message: str) -> None:
        self.file = str(file)
        self.key = key
        self.message = message
        super().__init__(f"{self.file}: {key}: {message}" if key else f"{self.file}: {message}")


@dataclass(frozen=True)
class Spec:
    doc: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    pattern: str | None = None
    must_exist: bool = False  # for Path fields: the file must exist (relative to the config file)


def spec(default: Any = MISSING, **kw: Any) -> Any:
    """A dataclass field with validation metadata."""
    if default is MISSING:
        return dataclasses.field(metadata={"spec": Spec(**kw)})
    return dataclasses.field(default=default, metadata={"spec": Spec(**kw)})


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def build(cls: type[T], table: Any, where: str, file: Path, base_dir: Path | None = None) -> T:
    """Convert one TOML table into `cls`, strictly. `where` is the dotted key of the table."""
    if not isinstance(table, dict):
        raise ConfigError(file, where, f"must be a table, got {_describe(table)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    for key in table:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(file, _join(where, key), f"unknown key (known keys here: {known})")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        key = _join(where, name)
        if name not in table:
            if f.default is MISSING and f.default_factory is MISSING:
                raise ConfigError(file, key, "missing (required)")
            continue
        meta: Spec = f.metadata.get("spec", Spec())
        values[name] = _convert(hints[name], table[name], key, meta, file, base_dir or file.parent)
    try:
        return cls(**values)
    except ValueError as exc:  # a section's own cross-field check (__post_init__)
        raise ConfigError(file, where, str(exc)) from None


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _convert(tp: Any, value: Any, key: str, meta: Spec, file: Path, base: Path) -> Any:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _convert(args[0], value, key, meta, file, base)
    if origin is tuple:
        (item,) = [a for a in typing.get_args(tp) if a is not Ellipsis]
        if not isinstance(value, list):
            raise ConfigError(file, key, f"must be an array, got {_describe(value)}")
        return tuple(_convert(item, v, f"{key}[{i}]", meta, file, base) for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key, file, base)  # type: ignore[arg-type]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(file, key, f"must be true or false, got {_describe(value)}")
        return value
    if tp is int or tp is float:
        ok = isinstance(value, int) or (tp is float and isinstance(value, float))
        if isinstance(value, bool) or not ok:
            kind = "an integer" if tp is int else "a number"
            raise ConfigError(file, key, f"must be {kind}{_bounds(meta)}, got {_describe(value)}")
        if value != value or (meta.min is not None and value < meta.min) or (meta.max is not None and value > meta.max):
            kind = "an integer" if tp is int else "a number"
            raise ConfigError(file, key, f"must be {kind}{_bounds(meta)}, got {_describe(value)}")
        return tp(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(file, key, f"must be a string, got {_describe(value)}")
        if meta.choices is not None and value not in meta.choices:
            raise ConfigError(file, key, f"must be one of {', '.join(meta.choices)}; got {value!r}")
        if meta.pattern is not None and not re.fullmatch(meta.pattern, value):
            hint = f" ({meta.doc})" if meta.doc else ""
            raise ConfigError(file, key, f"invalid value {value!r}{hint}")
        return value
    if tp is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(file, key, f"must be a file path string, got {_describe(value)}")
        path = Path(value)
        if not path.is_absolute():
            path = (base / path).absolute()
        if meta.must_exist and not path.is_file():
            raise ConfigError(file, key, f"file not found: {path}")
        return path
    raise TypeError(f"schema: unsupported field type {tp!r} at {key}")  # a programming error


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _bounds(meta: Spec) -> str:
    if meta.min is not None and meta.max is not None:
        return f" between {_num(meta.min)} and {_num(meta.max)}"
    if meta.min is not None:
        return f" >= {_num(meta.min)}"
    if meta.max is not None:
        return f" <= {_num(meta.max)}"
    return ""


def describe(cls: type[Any]) -> list[tuple[str, str, str, str]]:
    """(key, type, default, doc) rows for a section, for `--help` and the README reference."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta: Spec = f.metadata.get("spec", Spec())
        tp = hints[f.name]
        tname = getattr(tp, "__name__", str(tp).replace("typing.", ""))
        if f.default is not MISSING:
            default = repr(f.default)
        else:
            default = "required" if f.default_factory is MISSING else "[]"
        doc = meta.doc
        if meta.choices:
            doc = f"{doc} One of: {', '.join(meta.choices)}.".strip()
        rows.append((f.name, tname, default, doc))
    return rows
