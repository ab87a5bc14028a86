"""YAML recipes + dotted CLI overrides -> nested, validated dataclasses.

Module owners define one dataclass per concern, with every field documented by an attribute docstring::

    @dataclass
    class GRPOConfig:
        beta: float = 0.1
        \"\"\"KL penalty weight.\"\"\"

and build it with :func:`load_config` (``recipe.yaml`` merged with ``a.b.c=VALUE`` overrides) or :func:`from_dict`.

Supported field types: ``int``, ``float`` (ints accepted and converted; bools rejected for both), ``bool``, ``str``,
``Literal[...]``, ``X | None`` / ``Optional[X]`` (and other unions, tried in order), ``list[X]``, ``tuple[X, ...]`` and
fixed ``tuple[X, Y]``, ``dict[str, X]``, ``typing.Any``, nested dataclasses (also lists/tuples/dicts/optionals of
them) and ``pathlib.Path`` (from a string). Values are checked strictly (``"3"`` is not an int); nothing is eval()'d.

Numbers: every ``float`` value (also inside lists, tuples, dicts and optionals) must be finite; ``.nan`` / ``.inf``
are rejected by :func:`from_dict` for every config dataclass, naming the key, unless the field opts out with
``field(default=..., metadata={"finite": False})``. Ranges belong to the owning dataclass's ``__post_init__``, written
with :func:`check_number` (``check_number("optim.lr", self.lr, low=0, low_open=True)``), which raises a ValueError
naming the key, the value and the expected range; from_dict runs ``__post_init__`` first, so a NaN in a field with a
range reports that range.

YAML (files and override values) is read with a ``yaml.SafeLoader`` subclass that differs from ``yaml.safe_load`` in
two ways: ``1e-4`` / ``3E5`` (exponent without a dot, a string in YAML 1.1) load as floats, and a mapping with a
duplicated key is an error instead of silently keeping the last value. A recipe file must be UTF-8 text holding a
mapping: an empty one (or only comments, or ``null``) is an error, not "all defaults".
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import difflib
import functools
import inspect
import math
import os
import re
import tempfile
import textwrap
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from vaportok_rl.errors import UserError

__all__ = [
    "ConfigError",
    "check_documented",
    "check_number",
    "describe",
    "field_docs",
    "from_dict",
    "load_config",
    "load_yaml",
    "merge",
    "parse_overrides",
    "save_yaml",
    "to_dict",
]

T = TypeVar("T")
_NoneType = type(None)
_UNION_ORIGINS = (Union, types.UnionType)


class ConfigError(UserError):
    """A configuration (YAML recipe, CLI override or dict) that does not fit the config dataclasses."""


# --------------------------------------------------------------------------------------------------------------------
# YAML


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


def _yaml_load(text: str) -> Any:
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
        data = _yaml_load(text)
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
    """Write a config dataclass (or a mapping) as YAML, atomically: temp file in the same folder + ``os.replace``."""
    data = to_dict(obj)
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return p


# --------------------------------------------------------------------------------------------------------------------
# Overrides


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
            value = _yaml_load(raw)
        except yaml.YAMLError as e:
            if raw.strip()[:1] in ("[", "{", '"', "'"):
                raise ConfigError(f"override {item!r}: cannot parse {raw!r} as YAML: {e}") from e
            value = raw.strip()  # e.g. "tag=@v1": not valid YAML, clearly meant as a string
        for part in reversed(parts):
            value = {part: value}
        result = merge(result, value)
    return result


# --------------------------------------------------------------------------------------------------------------------
# dict -> dataclass


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _where(key: str) -> str:
    return f"config key {key!r}" if key else "config"


def _show(value: Any) -> str:
    r = repr(value)
    if len(r) > 200:
        r = r[:197] + "..."
    return f"{r} ({type(value).__name__})"


def _type_error(key: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"{_where(key)}: expected {expected}, got {_show(value)}")


def check_number(
    key: str, value: Any, *, low: float | None = None, high: float | None = None, low_open: bool = False
) -> None:
    """The one range check of config numbers, for ``__post_init__``: ``value`` must be a finite int or float (not a
    bool) with ``value >= low`` (``> low`` when ``low_open``) and ``value <= high`` where given. Raises a ValueError
    (a ConfigError once :func:`from_dict` adds context) naming ``key``, the value and the expected range, e.g.
    ``optim.lr: expected a finite number > 0, got nan``."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        bounds = []
        if low is not None:
            bounds.append(f"{'>' if low_open else '>='} {low:g}")
        if high is not None:
            bounds.append(f"<= {high:g}")
        where = " " + " and ".join(bounds) if bounds else ""
        raise ValueError(f"{key}: expected a finite number{where}, got {value!r}")


def _holds_float(tp: Any) -> bool:
    """Whether values of field type tp can hold a float directly (not inside a nested dataclass or an Any)."""
    if tp is float:
        return True
    return any(_holds_float(a) for a in get_args(tp) if a is not Ellipsis and not _is_dataclass_type(a))


def _non_finite(value: Any, key: str) -> tuple[str, float] | None:
    """The first (dotted key, value) of a NaN/inf float in a converted field value (lists, tuples, dicts walked)."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (key, value)
    if isinstance(value, list | tuple):
        return next((bad for i, v in enumerate(value) if (bad := _non_finite(v, f"{key}[{i}]"))), None)
    if isinstance(value, Mapping):
        return next((bad for k, v in value.items() if (bad := _non_finite(v, _join(key, str(k))))), None)
    return None


def _type_name(tp: Any) -> str:
    if tp is Any:
        return "Any"
    if tp is _NoneType or tp is None:
        return "None"
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return "Literal[" + ", ".join(repr(a) for a in args) + "]"
    if origin in _UNION_ORIGINS:
        return " | ".join(_type_name(a) for a in args)
    if origin is list or tp is list:
        return f"list[{_type_name(args[0]) if args else 'Any'}]"
    if origin is tuple or tp is tuple:
        if not args or (len(args) == 2 and args[1] is Ellipsis):
            return f"tuple[{_type_name(args[0]) if args else 'Any'}, ...]"
        return "tuple[" + ", ".join(_type_name(a) for a in args) + "]"
    if origin is dict or tp is dict:
        return f"dict[{_type_name(args[0])}, {_type_name(args[1])}]" if args else "dict[str, Any]"
    return getattr(tp, "__name__", repr(tp))


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception as e:  # an annotation that cannot be resolved is a programming error
        raise TypeError(f"cannot resolve the field types of {cls.__qualname__}: {e}") from e


def _init_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.init]


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _leaf_keys(cls: type, prefix: str = "", _stack: tuple = ()) -> list[str]:
    """Dotted keys of cls, recursing into nested dataclass fields (for 'did you mean' on misplaced keys)."""
    out = []
    for f in _init_fields(cls):
        key = _join(prefix, f.name)
        out.append(key)
        tp = _hints(cls)[f.name]
        if _is_dataclass_type(tp) and tp not in _stack:
            out.extend(_leaf_keys(tp, key, (*_stack, cls)))
    return out


def _unknown_key_message(cls: type, prefix: str, name: Any, valid: list[str]) -> str:
    msg = f"unknown config key {_join(prefix, str(name))!r}"
    suggestion = None
    close = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.6)
    if close:
        suggestion = _join(prefix, close[0])
    else:  # maybe the key belongs one level down (e.g. 'lr' for 'optim.lr')
        nested = [k for k in _leaf_keys(cls) if "." in k]
        leaves = {}
        for k in nested:
            leaves.setdefault(k.rsplit(".", 1)[1], k)
        close = difflib.get_close_matches(str(name), list(leaves), n=1, cutoff=0.8)
        if close:
            suggestion = _join(prefix, leaves[close[0]])
    msg += f"; did you mean {suggestion!r}?" if suggestion else "."
    where = f"under {prefix!r}" if prefix else "at the top level"
    return msg + f" Valid keys {where}: {', '.join(valid) if valid else '(none)'}"


def _with_prefix(prefix: str, msg: str, fields: Iterable[str] = ()) -> str:
    """Add the dataclass's dotted prefix to an error raised in its __post_init__, unless it is already there.
    A message that starts with one of the class's own field names ("size: ...") becomes "prefix.size: ..."."""
    if not prefix or re.search(r"(?<![\w.])" + re.escape(prefix) + r"(?!\w)", msg):
        return msg
    first = re.match(r"(\w+):", msg)
    if first and first.group(1) in fields:
        return f"{prefix}.{msg}"
    last = prefix.rsplit(".", 1)[-1]
    if "." in prefix and re.match(re.escape(last) + r"[.:\s]", msg):  # "head.x: ..." nested under "model.head"
        return prefix + msg[len(last) :]
    return f"{prefix}: {msg}"


def _shape_matches(tp: Any, value: Any) -> bool:
    origin = get_origin(tp)
    if _is_dataclass_type(tp) or origin is dict or tp is dict:
        return isinstance(value, Mapping)
    if origin in (list, tuple) or tp in (list, tuple):
        return isinstance(value, list | tuple)
    return False


def _convert(tp: Any, value: Any, key: str) -> Any:
    if tp is Any:
        return value
    if tp is _NoneType or tp is None:
        if value is None:
            return None
        raise _type_error(key, value, "None")
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        for allowed in args:
            if value == allowed and type(value) is type(allowed):
                return allowed
        raise _type_error(key, value, "one of " + ", ".join(repr(a) for a in args))
    if origin in _UNION_ORIGINS:
        if value is None:
            if _NoneType in args:
                return None
            raise _type_error(key, value, _type_name(tp))
        arms = [a for a in args if a is not _NoneType]
        for arm in arms:  # a container/dataclass arm whose shape fits: let its detailed errors through
            if _shape_matches(arm, value):
                return _convert(arm, value, key)
        for arm in arms:
            try:
                return _convert(arm, value, key)
            except ConfigError:
                pass
        raise _type_error(key, value, _type_name(tp))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _type_error(key, value, "bool")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _type_error(key, value, "int")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise _type_error(key, value, "float")
    if tp is str:
        if isinstance(value, str):
            return value
        raise _type_error(key, value, "str")
    if isinstance(tp, type) and issubclass(tp, PurePath):
        if isinstance(value, str | os.PathLike):
            return tp(value)
        raise _type_error(key, value, f"{tp.__name__} (a string)")
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return from_dict(tp, value, prefix=key)
        raise _type_error(key, value, f"a mapping ({tp.__name__})")
    if origin is list or tp is list:
        if not isinstance(value, list | tuple):
            raise _type_error(key, value, _type_name(tp))
        item_tp = args[0] if args else Any
        return [_convert(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is tuple or tp is tuple:
        if not isinstance(value, list | tuple):
            raise _type_error(key, value, _type_name(tp))
        if not args or (len(args) == 2 and args[1] is Ellipsis):
            item_tp = args[0] if args else Any
            return tuple(_convert(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value))
        if args == ((),):  # tuple[()]
            args = ()
        if len(value) != len(args):
            raise _type_error(key, value, f"{_type_name(tp)} ({len(args)} items)")
        return tuple(_convert(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise _type_error(key, value, _type_name(tp))
        key_tp, val_tp = args if args else (str, Any)
        if key_tp not in (str, Any):
            raise TypeError(f"{_where(key)}: unsupported dict key type {_type_name(key_tp)} (use dict[str, X])")
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"{_where(key)}: expected {_type_name(tp)}, but key {_show(k)} is not a string")
            out[k] = _convert(val_tp, v, _join(key, k))
        return out
    raise TypeError(f"{_where(key)}: unsupported config field type {tp!r}")


def from_dict(cls: type[T], data: Mapping, *, prefix: str = "") -> T:
    """Build dataclass ``cls`` (recursively) from ``data``, validating every value. Missing keys take defaults.

    ``prefix`` is the dotted key of ``cls`` in a larger config; it is only used in error messages.
    """
    if not _is_dataclass_type(cls):
        raise TypeError(f"from_dict expects a dataclass type, got {cls!r}")
    if not isinstance(data, Mapping):
        raise _type_error(prefix, data, f"a mapping ({cls.__name__})")
    hints = _hints(cls)
    flds = {f.name: f for f in _init_fields(cls)}
    unknown = [k for k in data if k not in flds]
    if unknown:
        raise ConfigError("\n".join(_unknown_key_message(cls, prefix, k, list(flds)) for k in unknown))
    kwargs = {name: _convert(hints[name], value, _join(prefix, name)) for name, value in data.items()}
    missing = [
        _join(prefix, name)
        for name, f in flds.items()
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"missing required config key(s): {', '.join(repr(k) for k in missing)}")
    bad = next(
        (
            found
            for name, value in kwargs.items()
            if flds[name].metadata.get("finite", True)
            and _holds_float(hints[name])
            and (found := _non_finite(value, _join(prefix, name)))
        ),
        None,
    )
    try:
        obj = cls(**kwargs)  # __post_init__ first: a field with a range names it, NaN/inf included
    except ValueError as e:  # ConfigError included
        raise ConfigError(_with_prefix(prefix, str(e), flds)) from e
    except Exception as e:  # arithmetic on a NaN/inf in __post_init__ (int(inf): OverflowError)
        if bad is None:
            raise
        raise _type_error(bad[0], bad[1], "a finite number (not NaN or infinity)") from e
    if bad is not None:
        raise _type_error(bad[0], bad[1], "a finite number (not NaN or infinity)")
    return obj


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


# --------------------------------------------------------------------------------------------------------------------
# dataclass -> dict


def _plain(value: Any, key: str) -> Any:
    if value is None:
        return None
    for base in (bool, int, float, str):  # exact builtin types (numpy.float64, IntEnum... are subclasses)
        if isinstance(value, base):
            return value if type(value) is base else base(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name), _join(key, f.name)) for f in _init_fields(type(value))}
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not (k is None or isinstance(k, bool | int | float | str)):
                raise ConfigError(f"{_where(key)}: cannot convert dict key {_show(k)} to a YAML-safe value")
            out[k] = _plain(v, _join(key, str(k)))
        return out
    if isinstance(value, list | tuple):
        return [_plain(v, f"{key}[{i}]") for i, v in enumerate(value)]
    if getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None)):  # numpy / torch scalars
        return _plain(value.item(), key)
    raise ConfigError(f"{_where(key)}: cannot convert {_show(value)} to a YAML-safe value")


def to_dict(obj: Any) -> dict:
    """Dataclass (or mapping) -> plain, YAML-safe dict: nested dataclasses as dicts, Paths as str, tuples as lists.
    Fields with ``init=False`` are left out (``from_dict`` would reject them)."""
    if not (isinstance(obj, Mapping) or (dataclasses.is_dataclass(obj) and not isinstance(obj, type))):
        raise TypeError(f"to_dict expects a dataclass instance or a mapping, got {type(obj).__name__}")
    return _plain(obj, "")


# --------------------------------------------------------------------------------------------------------------------
# Documentation


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
