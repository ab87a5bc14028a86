"""Dotted overrides and the layering of a recipe: :func:`parse_overrides` (``a.b.c=VALUE`` -> nested dict),
:func:`merge` (deep merge) and :func:`load_config` (base, then YAML file, then overrides -> validated dataclass)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import yaml

from vaportok_rl.config.convert import from_dict
from vaportok_rl.config.errors import ConfigError
from vaportok_rl.config.yaml_files import load_yaml, yaml_load

__all__ = ["load_config", "merge", "parse_overrides"]

T = TypeVar("T")


def _copy_tree(value: Any) -> Any:
    """Copy the dict/list structure (leaves are shared)."""
    if isinstance(value, Mapping):
        return {k: _copy_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_tree(v) for v in value]
    return value


def merge(base: Mapping, overrides: Mapping) -> dict:
    """Deep merge: nested mappings are merged key by key; any other value in ``overrides`` replaces the base's.

    Returns a new dict; neither argument is modified.
    """
    out = {k: _copy_tree(v) for k, v in base.items()}
    for k, v in overrides.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge(out[k], v)
        else:
            out[k] = _copy_tree(v)
    return out


def parse_overrides(items: Sequence[str]) -> dict:
    """``["a.b.c=VALUE", ...]`` -> nested dict. VALUE is parsed as YAML (``3``, ``1e-4``, ``true``, ``[1, 2]``,
    ``{a: 1}``, ``null``; an empty VALUE is ``null``); a bare string stays a string. Later items win."""
    if isinstance(items, str | bytes):
        raise TypeError("parse_overrides expects a sequence of 'dotted.key=VALUE' strings, not a single string")
    result: dict = {}
    for item in items:
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(f"malformed override {item!r}: expected 'dotted.key=VALUE'")
        key, _, raw = item.partition("=")
        key = key.strip()
        parts = key.split(".")
        if not key or any(not p or p != p.strip() for p in parts):
            raise ConfigError(f"malformed override {item!r}: empty key or key component (expected 'dotted.key=VALUE')")
        try:
            value = yaml_load(raw)
        except yaml.YAMLError as e:
            if raw.strip()[:1] in ("[", "{", '"', "'"):
                raise ConfigError(f"override {item!r}: cannot parse {raw!r} as YAML: {e}") from e
            value = raw.strip()  # e.g. "tag=@v1": not valid YAML, clearly meant as a string
        for part in reversed(parts):
            value = {part: value}
        result = merge(result, value)
    return result


def load_config(
    cls: type[T],
    path: str | os.PathLike | None = None,
    overrides: Sequence[str] | Mapping = (),
    *,
    base: Mapping | None = None,
) -> T:
    """``base`` (a dict), then the YAML file at ``path`` (if given), then ``overrides`` (``"a.b=VALUE"`` strings or
    an already nested mapping), deep-merged in that order, then :func:`from_dict`."""
    data: dict = merge({}, base) if base else {}
    if path is not None:
        data = merge(data, load_yaml(path))
    nested = overrides if isinstance(overrides, Mapping) else parse_overrides(overrides)
    data = merge(data, nested)
    return from_dict(cls, data)
