"""The documentation of config dataclasses, read from their source: :func:`field_docs` (attribute docstrings),
:func:`describe` (the ``--help-config`` listing of every dotted key with type, default and doc) and
:func:`check_documented` (every field has a docstring)."""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import textwrap
from typing import Any, get_args, get_origin

from vaportok_rl.config.convert import (
    _UNION_ORIGINS,
    _hints,
    _init_fields,
    _is_dataclass_type,
    _join,
    _plain,
    _type_name,
)
from vaportok_rl.config.errors import ConfigError

__all__ = ["check_documented", "describe", "field_docs"]


@functools.cache
def _own_field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings written in cls's own class body ({} if its source cannot be read)."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError):
        return {}
    node = next((n for n in tree.body if isinstance(n, ast.ClassDef)), None)
    if node is None:
        return {}
    docs = {}
    body = node.body
    for stmt, nxt in zip(body, body[1:], strict=False):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[stmt.target.id] = inspect.cleandoc(nxt.value.value)
    return docs


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> its attribute docstring (the string literal on the line after the field), inherited ones too."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is not object:
            docs.update(_own_field_docs(klass))
    names = {f.name for f in dataclasses.fields(cls)} if _is_dataclass_type(cls) else set(docs)
    return {k: v for k, v in docs.items() if k in names}


def _nested_dataclasses(tp: Any, key: str) -> list[tuple[type, str]]:
    """The dataclass types reachable from field type tp, with the dotted prefix their fields get."""
    if _is_dataclass_type(tp):
        return [(tp, key)]
    origin, args = get_origin(tp), get_args(tp)
    if origin in _UNION_ORIGINS:
        return [x for a in args for x in _nested_dataclasses(a, key)]
    if origin in (list, tuple) and args:
        return [x for a in args if a is not Ellipsis for x in _nested_dataclasses(a, f"{key}[]")]
    if origin is dict and args:
        return _nested_dataclasses(args[1], f"{key}.<name>")
    return []


def _default_repr(f: dataclasses.Field) -> str | None:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return None
    if dataclasses.is_dataclass(value):
        return "(see below)"
    try:
        return repr(_plain(value, ""))
    except ConfigError:
        return repr(value)


def _describe(cls: type, prefix: str, lines: list[str], stack: tuple) -> None:
    docs = field_docs(cls)
    hints = _hints(cls)
    for f in _init_fields(cls):
        key = _join(prefix, f.name)
        tp = hints[f.name]
        default = _default_repr(f)
        head = f"{key}: {_type_name(tp)}" + (" (required)" if default is None else f" = {default}")
        lines.append(head)
        doc = docs.get(f.name, "(undocumented)")
        lines.extend("    " + line if line else "" for line in doc.splitlines())
        for sub, sub_prefix in _nested_dataclasses(tp, key):
            if sub not in stack:
                _describe(sub, sub_prefix, lines, (*stack, sub))


def describe(cls: type, prefix: str = "") -> str:
    """Readable listing of every (nested) dotted key of dataclass ``cls``: type, default and docstring.

    Fields of list items are shown as ``key[].field``, of dict values as ``key.<name>.field``."""
    lines: list[str] = []
    _describe(cls, prefix, lines, (cls,))
    return "\n".join(lines)


def _undocumented(cls: type, prefix: str, stack: tuple) -> list[str]:
    docs = field_docs(cls)
    hints = _hints(cls)
    missing = []
    for f in _init_fields(cls):
        key = _join(prefix, f.name)
        if not docs.get(f.name, "").strip():
            missing.append(key)
        for sub, sub_prefix in _nested_dataclasses(hints[f.name], key):
            if sub not in stack:
                missing.extend(_undocumented(sub, sub_prefix, (*stack, sub)))
    return missing


def check_documented(cls: type) -> None:
    """Raise ConfigError listing every (nested) field of dataclass ``cls`` without an attribute docstring."""
    if not _is_dataclass_type(cls):
        raise TypeError(f"check_documented expects a dataclass type, got {cls!r}")
    missing = _undocumented(cls, "", (cls,))
    if missing:
        raise ConfigError(
            f"{cls.__qualname__}: config fields without an attribute docstring "
            f"(a string literal on the line after the field): {', '.join(missing)}"
        )
