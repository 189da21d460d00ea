"""Model configurations: frozen dataclasses, validated when built, filled from files or --set.

Every model has a frozen dataclass config. Values arrive as Python objects (library use), as
``key=value`` strings (``--set`` on the CLI) or from a TOML/JSON file (``--config``); the latter
two are parsed here, once, by the type of the field they set. Unknown keys are errors that name
the closest valid key.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import json
import textwrap
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from prnn.errors import ConfigError

ConfigT = TypeVar("ConfigT")


def check_choice(config: object, field: str, choices: Iterable[str]) -> None:
    """Raise ConfigError unless ``config.<field>`` is one of ``choices``."""
    value = getattr(config, field)
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(
            f"{field!r} of {type(config).__name__} must be one of {', '.join(choices)}; "
            f"got {value!r}"
        )


def check_number(
    config: object,
    field: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
) -> None:
    """Raise ConfigError unless ``config.<field>`` lies in the given range."""
    value = getattr(config, field)
    name = f"{field!r} of {type(config).__name__}"
    if minimum is not None and (value <= minimum if exclusive_minimum else value < minimum):
        relation = ">" if exclusive_minimum else ">="
        raise ConfigError(f"{name} must be {relation} {minimum}; got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be <= {maximum}; got {value!r}")


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _unknown_key_error(cls: type, key: str, source: str, owner: str | None) -> ConfigError:
    valid = [f.name for f in dataclasses.fields(cls)]
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    listing = ", ".join(valid) if valid else "none: it has no settings"
    return ConfigError(
        f"{source}: unknown key {key!r} for {owner or cls.__name__}{hint}. Valid keys: {listing}"
    )


def _coerce(value: Any, annotation: Any, key: str, source: str) -> Any:
    """Convert a string (from --set) or a JSON/TOML value to the field's declared type."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return _coerce(value, members[0], key, source)
    if origin is tuple:
        element = typing.get_args(annotation)[0]
        if isinstance(value, str):
            # GRU4Rec writes layer lists as "100/100"; commas are accepted too.
            parts = [p for p in value.replace("/", ",").split(",") if p.strip()]
        elif isinstance(value, list | tuple):
            parts = list(value)
        else:
            parts = [value]
        return tuple(_coerce(p, element, key, source) for p in parts)
    try:
        if annotation is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("true", "1", "yes", "on"):
                return True
            if text in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if annotation is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            if isinstance(value, bool):
                raise ValueError
            return (
                int(float(value)) if isinstance(value, str) and "e" in value.lower() else int(value)
            )
        if annotation is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if annotation is str:
            return str(value)
    except (TypeError, ValueError):
        type_name = getattr(annotation, "__name__", str(annotation))
        raise ConfigError(f"{source}: {key!r} expects {type_name}; got {value!r}") from None
    return value


def build_config(
    cls: type[ConfigT],
    values: Mapping[str, Any],
    source: str = "config",
    owner: str | None = None,
) -> ConfigT:
    """Build ``cls`` from a mapping of field names to raw values, coercing each to its type.

    ``source`` (where the values came from) and ``owner`` (what the settings are of, e.g.
    "model item-knn"; default: the class name) name the input in errors."""
    types_by_field = _field_types(cls)
    kwargs = {}
    for key, raw in values.items():
        if key not in types_by_field:
            raise _unknown_key_error(cls, key, source, owner)
        kwargs[key] = _coerce(raw, types_by_field[key], key, source)
    return cls(**kwargs)


def parse_overrides(
    pairs: Iterable[str], source: str = "--set", form: str = "key=value"
) -> dict[str, str]:
    """Turn ``["key=value", ...]`` into a dict; the values stay strings until build_config.

    ``source`` and ``form`` (e.g. ``--where`` and ``COLUMN=VALUE``) name the input in errors.
    """
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{source}: expected {form}, got {pair!r}")
        result[key.strip()] = value.strip()
    return result


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML (``.toml``) or JSON settings file into a flat dict; config is data, not code."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid {path.suffix.lstrip('.') or 'TOML'}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a table of key = value settings")
    return data


def setting_docs(cls: type) -> dict[str, str]:
    """Each field's docstring (the string literal under it in the class body, this class's or a
    base's), by field name; fields without one are absent."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):  # no source (frozen or compiled)
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for statement, following in zip(body, body[1:]):
            if (
                isinstance(statement, ast.AnnAssign)
                and isinstance(statement.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[statement.target.id] = " ".join(following.value.value.split())
    return docs


def format_setting(value: Any) -> str:
    """A setting as ``--set`` takes it: ``100,100`` for tuples, ``true``/``false`` for flags."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple | list):
        return ",".join(format_setting(v) for v in value)
    return str(value)


def changed_settings(config: object) -> dict[str, Any]:
    """The fields of ``config`` whose values differ from its class's defaults."""
    defaults = type(config)()
    return {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(config)
        if getattr(config, f.name) != getattr(defaults, f.name)
    }


def config_to_dict(config: object) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return {
        key: list(value) if isinstance(value, tuple) else value
        for key, value in dataclasses.asdict(config).items()
    }


def preset_names() -> list[str]:
    """Names of the hyper-parameter presets shipped with prnn (``src/prnn/presets/*.toml``)."""
    folder = resources.files("prnn") / "presets"
    return sorted(
        entry.name.removesuffix(".toml")
        for entry in folder.iterdir()
        if entry.name.endswith(".toml")
    )


def read_preset(name: str) -> dict[str, Any]:
    """The settings of a shipped preset, e.g. ``rsc15`` (GRU4Rec's published best for RSC15)."""
    names = preset_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown preset {name!r}{hint} Available: {', '.join(names)}")
    path = resources.files("prnn") / "presets" / f"{name}.toml"
    return tomllib.loads(path.read_text(encoding="utf-8"))
