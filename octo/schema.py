"""Typed configs from plain YAML dicts, with one-line errors that name the key.

:func:`opt` carries a field's help text and bounds (OLMo-core / TRL style). :func:`from_dict` raises
:class:`~octo.errors.ConfigError` on the first unknown key (listing the allowed ones), wrong type,
value outside ``Literal`` choices or ``ge``/``gt``/``le``/``lt`` bounds, or failed ``validate()``
(its relative key is prefixed with the config's path). Floats accept numeric strings because PyYAML
reads ``3e-5`` as a string. A leaf module: analysis, verifiers and rollout use it too.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union

from octo.errors import ConfigError, OctoError

_MISSING = dataclasses.MISSING


def opt(default: Any = _MISSING, *, help: str, default_factory: Any = _MISSING,
        ge: float | None = None, gt: float | None = None,
        le: float | None = None, lt: float | None = None) -> Any:
    """A dataclass field with help text and optional numeric bounds."""
    meta = {"help": help, "ge": ge, "gt": gt, "le": le, "lt": lt}
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is type(None):
        return "null"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        k, v = typing.get_args(tp)
        return f"a mapping of {_type_name(k)} to {_type_name(v)}"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _convert(value: Any, tp: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        arms = typing.get_args(tp)
        if value is None:
            if type(None) in arms:
                return None
            raise ConfigError(path, f"must be {_type_name(tp)}, not null")
        non_null = [a for a in arms if a is not type(None)]
        last: ConfigError | None = None
        for arm in non_null:
            try:
                return _convert(value, arm, path)
            except ConfigError as err:
                last = err
        if len(non_null) == 1 and last is not None:
            raise last
        raise ConfigError(path, f"must be {_type_name(tp)} (got {_show(value)})")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices or isinstance(value, bool) != any(isinstance(c, bool) for c in choices):
            allowed = ", ".join(str(c) for c in choices)
            raise ConfigError(path, f"must be one of: {allowed} (got {_show(value)})")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, f"must be true or false (got {_show(value)})")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(path, f"must be an integer (got {_show(value)})")
        return value
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(path, f"must be a number (got {_show(value)})")
        if isinstance(value, (int, float)):
            out = float(value)
        elif isinstance(value, str):
            try:
                out = float(value)
            except ValueError:
                raise ConfigError(path, f"must be a number (got {_show(value)})") from None
        else:
            raise ConfigError(path, f"must be a number (got {_show(value)})")
        if math.isnan(out):
            raise ConfigError(path, "must be a number, not NaN")
        return out
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(path, f"must be a string (got {_show(value)})")
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(path, f"must be {_type_name(tp)} (got {_show(value)})")
        return [_convert(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_tp, val_tp = typing.get_args(tp)
        if not isinstance(value, Mapping):
            raise ConfigError(path, f"must be {_type_name(tp)} (got {_show(value)})")
        out_map = {}
        for k, v in value.items():
            if key_tp is int and isinstance(k, str) and k.lstrip("-").isdigit():
                k = int(k)
            ck = _convert(k, key_tp, _join(path, k))
            out_map[ck] = _convert(v, val_tp, _join(path, k))
        return out_map
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    raise TypeError(f"schema: unsupported field type {tp!r} at {path}")  # a bug in a config class


def _check_bounds(value: Any, meta: Mapping[str, Any], path: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    if meta.get("ge") is not None and value < meta["ge"]:
        raise ConfigError(path, f"must be >= {meta['ge']} (got {value})")
    if meta.get("gt") is not None and value <= meta["gt"]:
        raise ConfigError(path, f"must be > {meta['gt']} (got {value})")
    if meta.get("le") is not None and value > meta["le"]:
        raise ConfigError(path, f"must be <= {meta['le']} (got {value})")
    if meta.get("lt") is not None and value >= meta["lt"]:
        raise ConfigError(path, f"must be < {meta['lt']} (got {value})")


def from_dict(cls: type, data: Any, path: str = "") -> Any:
    """Build dataclass ``cls`` from mapping ``data``; raise ConfigError naming the key."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(path, f"must be a mapping of keys to values (got {_show(data)})")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            allowed = ", ".join(fields) or "(none)"
            raise ConfigError(_join(path, key), f"unknown key; allowed keys here: {allowed}")
    kwargs = {}
    for name, f in fields.items():
        key_path = _join(path, name)
        if name in data:
            value = _convert(data[name], hints[name], key_path)
            _check_bounds(value, f.metadata, key_path)
            kwargs[name] = value
        elif f.default is _MISSING and f.default_factory is _MISSING:
            raise ConfigError(key_path, "is required but missing")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        try:
            validate()
        except ConfigError as err:
            raise ConfigError(_join(path, err.key) if err.key else path, err.message) from None
    return obj


def to_dict(obj: Any) -> Any:
    """Plain-data form of a config (dataclasses become dicts, order kept)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def read_recipe_file(path, *, name: str | None = None, advice: str = "") -> dict:
    """The mapping of a recipe YAML file (or a run's recipe.resolved.yaml): the one reader of recipe files."""
    import yaml

    name = name or str(path)
    tail = f"; {advice}" if advice else ""
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise OctoError(f"{name} is not valid YAML{where}: {getattr(err, 'problem', err)}{tail}") from None
    except UnicodeDecodeError:
        raise OctoError(f"{name} is not UTF-8 text{tail}") from None
    except OSError as err:
        raise OctoError(f"cannot read {name} ({err.strerror or err}){tail}") from None
    if not isinstance(raw, dict):
        raise OctoError(f"{name} must be a YAML mapping of keys to values{tail}")
    return raw


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply ``--set a.b=c`` overrides to a raw recipe mapping (values parsed as YAML)."""
    import yaml

    for item in overrides:
        if "=" not in item:
            raise ConfigError("", f"--set expects KEY=VALUE, got {item!r}; write e.g. --set probe.steps=20")
        key, _, text = item.partition("=")
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError("", f"--set has an empty key in {item!r}; write e.g. --set probe.steps=20")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        node = raw
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(".".join(parts[: i + 1]),
                                  f"is {_show(child)}, not a mapping, so --set {key}=... cannot go inside it")
            node = child
        node[parts[-1]] = value
    return raw


def iter_fields(cls: type, path: str = ""):
    """Yield (dotted_key, field, type) for every field of a config tree (for docs and tests)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        key = _join(path, f.name)
        yield key, f, tp
        for inner in _dataclasses_in(tp):
            yield from iter_fields(inner, key + ".*" if typing.get_origin(tp) is dict else key)


def _dataclasses_in(tp: Any) -> list[type]:
    if dataclasses.is_dataclass(tp):
        return [tp]
    out = []
    for arg in typing.get_args(tp):
        out.extend(_dataclasses_in(arg))
    return out
