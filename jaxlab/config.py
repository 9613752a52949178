"""Frozen dataclass configs: dotted-key overrides with type checks, and JSON round trips.

Every config in jaxlab is a frozen (hence hashable, hence jit-static) dataclass. An experiment
builds one; the runner applies ``--set a.b=value`` overrides with :func:`apply_overrides`,
which parses each value by the field's annotation and names the nearest valid key when a key
does not exist.

A field annotated as a union of config classes that each have a ``family`` field (e.g.
``model: transformer.Config | mamba.Config``) switches class when ``<field>.family`` is set:
the new family's config keeps the values of the fields both classes share (``vocab_size``,
``d_model``, ``n_layers``, dtypes...) and takes its defaults for the rest; the other overrides
then apply to it. ``from_dict`` picks the class by the stored ``family``.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import types
import typing
from typing import Any, Literal


class ConfigError(ValueError):
    """A config key that does not exist, or a value of the wrong type."""


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def leaf_keys(cfg: Any, prefix: str = "") -> list[str]:
    """All dotted keys of the non-dataclass fields of ``cfg``, depth first."""
    keys = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            keys.extend(leaf_keys(value, key + "."))
        else:
            keys.append(key)
    return keys


def _nearest(key: str, candidates: list[str]) -> str:
    """'; did you mean ...?' with the closest key, looking first inside the key's own group."""
    parent, _, name = key.rpartition(".")
    siblings = {c.rpartition(".")[2]: c for c in candidates if c.rpartition(".")[0] == parent}
    close = difflib.get_close_matches(name, list(siblings), n=1, cutoff=0.5) if siblings else []
    if close:
        return f"; did you mean '{siblings[close[0]]}'?"
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.0)
    return f"; did you mean '{close[0]}'?" if close else ""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def parse_value(text: str, tp: Any, key: str = "value") -> Any:
    """Parses the command-line text ``text`` as a value of annotation ``tp``.

    Supports bool, int, float, str, Literal[...], X | None and tuple[X, ...] (comma separated).
    """
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and text.strip().lower() in ("none", "null"):
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return parse_value(text, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}: cannot parse {text!r} as {_type_name(tp)}")
    if origin is Literal:
        for choice in args:
            if str(choice) == text:
                return choice
        raise ConfigError(f"{key}: {text!r} is not one of {list(args)}")
    if origin is tuple:
        parts = [p for p in (s.strip() for s in text.split(",")) if p]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(parse_value(p, args[0], key) for p in parts)
        if len(parts) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} comma-separated values, got {text!r}")
        return tuple(parse_value(p, a, key) for p, a in zip(parts, args))
    if tp is bool:
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ConfigError(f"{key}: expected a bool (true/false), got {text!r}")
    if tp is int:
        try:
            return int(text.replace("_", ""))
        except ValueError:
            raise ConfigError(f"{key}: expected an int, got {text!r}") from None
    if tp is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{key}: expected a float, got {text!r}") from None
    if tp is str:
        return text
    raise ConfigError(f"{key}: cannot set a field of type {_type_name(tp)} from the command line")


def _check_type(value: Any, tp: Any, key: str) -> Any:
    """Checks a Python value (not text) against an annotation; ints are accepted as floats."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            try:
                return _check_type(value, arg, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: {value!r} is not a {_type_name(tp)}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key}: expected None, got {value!r}")
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{key}: {value!r} is not one of {list(args)}")
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            raise ConfigError(f"{key}: expected a tuple, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_check_type(v, args[0], key) for v in value)
        return tuple(_check_type(v, a, key) for v, a in zip(value, args, strict=True))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (bool, int, float, str):
        if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
            return value
        raise ConfigError(f"{key}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        raise ConfigError(f"{key}: expected a {tp.__name__}, got {value!r}")
    return value


def _families(tp: Any) -> dict[str, type]:
    """{family: class} of a union annotation of config classes with a ``family`` field; {}
    for any other annotation."""
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return {}
    out = {}
    for arg in typing.get_args(tp):
        if not dataclasses.is_dataclass(arg):
            return {}
        default = {f.name: f.default for f in dataclasses.fields(arg)}.get("family", dataclasses.MISSING)
        if default is dataclasses.MISSING:
            return {}
        out[default] = arg
    return out


def _switch_family(cfg: Any, key: str, value: Any) -> Any:
    """``cfg`` with the config at ``key``'s parent rebuilt as the class of family ``value``."""
    *parents, _ = key.split(".")
    owner = cfg
    for part in parents[:-1]:
        owner = getattr(owner, part)
    choices = _families(_field_types(type(owner))[parents[-1]])
    family = str(value).strip()
    if family not in choices:
        raise ConfigError(f"{key}: {family!r} is not one of {sorted(choices)}")
    current = getattr(owner, parents[-1])
    if current.family == family:
        return cfg
    cls = choices[family]
    shared = {f.name for f in dataclasses.fields(cls)} & {f.name for f in dataclasses.fields(current)}
    replaced = cls(**{k: getattr(current, k) for k in shared - {"family"}})

    def rebuild(node, path):
        if not path:
            return replaced
        return dataclasses.replace(node, **{path[0]: rebuild(getattr(node, path[0]), path[1:])})

    return rebuild(cfg, parents)


def _is_family_key(cfg: Any, key: str) -> bool:
    *parents, name = key.split(".")
    if name != "family" or not parents:
        return False
    owner = cfg
    try:
        for part in parents[:-1]:
            owner = getattr(owner, part)
        tp = _field_types(type(owner))[parents[-1]]
    except (AttributeError, KeyError, TypeError):
        return False
    return bool(_families(tp))


class _Group(dict):
    """Overrides of one nested config, keyed by field name."""


def _typed_value(cfg: Any, key: str, value: Any, parse: bool) -> Any:
    """The override's value, parsed (text) or checked (Python value) against the field type."""
    *parents, name = key.split(".")
    for part in parents:
        cfg = getattr(cfg, part)
    current = getattr(cfg, name)
    if dataclasses.is_dataclass(current):
        allowed = (type(current),) + tuple(_families(_field_types(type(cfg))[name]).values())
        if not parse and isinstance(value, allowed):
            return value
        sub = ", ".join(f"{key}.{k}" for k in leaf_keys(current)[:4])
        raise ConfigError(f"'{key}' is a group of settings; set one of its keys ({sub}, ...)")
    tp = _field_types(type(cfg))[name]
    return parse_value(value, tp, key) if parse else _check_type(value, tp, key)


def _rebuild(cfg: Any, group: _Group, prefix: str = "") -> Any:
    """Replaces the fields named in ``group`` (recursively), validating each config once."""
    changes = {name: _rebuild(getattr(cfg, name), sub, f"{prefix}{name}.") if isinstance(sub, _Group)
               else sub for name, sub in group.items()}
    try:
        return dataclasses.replace(cfg, **changes)
    except ConfigError:
        raise
    except ValueError as e:  # the config's own validation (__post_init__) refused the values
        settings = ", ".join(f"{prefix}{k}={v}" for k, v in group.items() if not isinstance(v, _Group))
        raise ConfigError(f"{settings}: {e}") from None


def apply_overrides(cfg: Any, overrides: list[str] | dict[str, Any]) -> Any:
    """Applies ``["a.b=1", ...]`` (text, parsed) or ``{"a.b": 1}`` (values, type-checked).

    All overrides are applied together, so settings that must agree (``n_heads`` and
    ``n_kv_heads``) can change in one call. Raises ConfigError naming the key (and the nearest
    valid key when it does not exist).
    """
    if isinstance(overrides, dict):
        items = [(k, v, False) for k, v in overrides.items()]
    else:
        items = []
        for item in overrides:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"override {item!r} is not of the form key=value")
            items.append((key.strip(), value, True))
    for key, value, _ in items:  # family switches first: they decide which keys exist
        if _is_family_key(cfg, key):
            cfg = _switch_family(cfg, key, value)
    valid = leaf_keys(cfg)
    groups = {k.rsplit(".", i)[0] for k in valid for i in range(1, k.count(".") + 1)}
    tree = _Group()
    for key, value, parse in items:
        if key not in valid and key not in groups:
            raise ConfigError(f"unknown config key '{key}'{_nearest(key, valid)}")
        node = tree
        *parents, name = key.split(".")
        for part in parents:
            node = node.setdefault(part, _Group())
        node[name] = _typed_value(cfg, key, value, parse)
    return _rebuild(cfg, tree)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Nested dict of a config (tuples become lists in JSON)."""
    return dataclasses.asdict(cfg)


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuilds a config of class ``cls`` from :func:`to_dict` output, type-checking every field."""
    hints = _field_types(cls)
    kwargs = {}
    known = {f.name for f in dataclasses.fields(cls)}
    for name, value in data.items():
        if name not in known:
            raise ConfigError(f"unknown config key '{name}'{_nearest(name, sorted(known))}")
        tp = hints[name]
        families = _families(tp)
        if families and isinstance(value, dict):
            family = value.get("family", next(iter(families)))
            if family not in families:
                raise ConfigError(f"{name}.family: {family!r} is not one of {sorted(families)}")
            kwargs[name] = from_dict(families[family], value)
        elif dataclasses.is_dataclass(tp) and isinstance(value, dict):
            kwargs[name] = from_dict(tp, value)
        else:
            kwargs[name] = _check_type(tuple(value) if isinstance(value, list) else value, tp, name)
    return cls(**kwargs)


def to_json(cfg: Any) -> str:
    return json.dumps(to_dict(cfg), indent=2, sort_keys=True)


def diff(a: Any, b: Any) -> list[str]:
    """Dotted keys whose values differ between two configs of the same class."""
    flat_a = {k: _get(a, k) for k in leaf_keys(a)}
    flat_b = {k: _get(b, k) for k in leaf_keys(b)}
    return sorted(k for k in flat_a.keys() | flat_b.keys() if flat_a.get(k) != flat_b.get(k))


def _get(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg
