"""YAML in and out: the safe loader every recipe and override value is read with, :func:`load_yaml` (the one recipe
reader: UTF-8 text holding a non-empty mapping) and :func:`save_yaml` (atomic, through
:func:`vaportok_rl.checkpoint.atomic_write_file`)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from vaportok_rl.checkpoint import atomic_write_file
from vaportok_rl.config.convert import to_dict
from vaportok_rl.config.errors import ConfigError

__all__ = ["load_yaml", "save_yaml", "yaml_load"]


class _Loader(yaml.SafeLoader):
    """SafeLoader + floats written without a dot (``1e-4``) + duplicate-key detection."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, _ in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                    if key_node.value in seen:
                        raise yaml.constructor.ConstructorError(
                            "while constructing a mapping",
                            node.start_mark,
                            f"found duplicate key {key_node.value!r}",
                            key_node.start_mark,
                        )
                    seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def yaml_load(text: str) -> Any:
    """YAML text -> Python values with the config loader (safe; ``1e-4`` a float; a duplicated key an error)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a yaml.SafeLoader subclass


def _yaml_problem(error: yaml.YAMLError) -> str:
    """A YAML error on one line: 'line L, column C: problem (context)'."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None)
    if mark is not None and problem:
        context = getattr(error, "context", None)
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" + (f" ({context})" if context else "")
    return " ".join(str(error).split())


def load_yaml(path: str | os.PathLike) -> dict:
    """Read a YAML recipe: UTF-8 text holding a mapping at the top level. A missing or unreadable file, text that
    is not UTF-8 (a binary file), invalid YAML, an empty recipe (nothing but whitespace, comments or ``null``) and a
    top level that is not a mapping are each a :class:`ConfigError` naming the file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{p}: not UTF-8 text YAML: byte 0x{e.object[e.start]:02x} at offset {e.start} is not valid UTF-8 "
            f"(a binary file, or text saved in another encoding?); expected a YAML recipe saved as UTF-8"
        ) from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {p}: {e}") from e
    try:
        data = yaml_load(text)
    except yaml.reader.ReaderError as e:  # control characters, e.g. NUL: binary data that happens to decode
        raise ConfigError(
            f"{p}: not UTF-8 text YAML: character #x{e.character:04x} at offset {e.position} is not allowed in YAML "
            f"(a binary file?); expected a YAML recipe saved as UTF-8"
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: invalid YAML: {_yaml_problem(e)}") from e
    if data is None:
        raise ConfigError(f"{p}: empty recipe; expected a mapping of settings (see --help-config)")
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of config keys, got {type(data).__name__}")
    return data


def save_yaml(obj: Any, path: str | os.PathLike) -> Path:
    """Write a config dataclass (or a mapping) as YAML, atomically (:func:`~vaportok_rl.checkpoint.atomic_write_file`:
    a temporary sibling file renamed into place, so a crash leaves the previous file or none, never half of one)."""
    text = yaml.safe_dump(to_dict(obj), sort_keys=False, allow_unicode=True, default_flow_style=False)
    return atomic_write_file(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
