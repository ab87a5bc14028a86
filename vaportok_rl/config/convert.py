"""dict <-> config dataclass: :func:`from_dict` (every value checked strictly, NaN/inf rejected, errors naming the
dotted key) and :func:`to_dict` (plain, YAML-safe values). The type and field helpers here are shared with
:mod:`vaportok_rl.config.docs`; the range checks of ``__post_init__`` are in :mod:`vaportok_rl.config.checks`."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import PurePath
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from vaportok_rl.config.errors import ConfigError

__all__ = ["from_dict", "to_dict"]

T = TypeVar("T")
_NoneType = type(None)
_UNION_ORIGINS = (Union, types.UnionType)


# --------------------------------------------------------------------------------------------------------------------
# Keys and messages


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


# --------------------------------------------------------------------------------------------------------------------
# Field types


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


# --------------------------------------------------------------------------------------------------------------------
# Error messages of from_dict


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
        nested = sorted((k for k in _leaf_keys(cls) if "." in k), key=lambda k: k.count("."))  # shallowest first
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


# --------------------------------------------------------------------------------------------------------------------
# dict -> dataclass


def _shape_matches(tp: Any, value: Any) -> bool:
    origin = get_origin(tp)
    if _is_dataclass_type(tp) or origin is dict or tp is dict:
        return isinstance(value, Mapping)
    if origin in (list, tuple) or tp in (list, tuple):
        return isinstance(value, list | tuple)
    return False


def _convert_literal(tp: Any, value: Any, key: str) -> Any:
    args = get_args(tp)
    for allowed in args:
        if value == allowed and type(value) is type(allowed):
            return allowed
    raise _type_error(key, value, "one of " + ", ".join(repr(a) for a in args))


def _convert_union(tp: Any, value: Any, key: str) -> Any:
    """``X | Y | None``: None where allowed; else the first arm whose container/dataclass shape fits the value (its
    detailed errors come through), else the first arm that converts it."""
    args = get_args(tp)
    if value is None:
        if _NoneType in args:
            return None
        raise _type_error(key, value, _type_name(tp))
    arms = [a for a in args if a is not _NoneType]
    for arm in arms:
        if _shape_matches(arm, value):
            return _convert(arm, value, key)
    for arm in arms:
        try:
            return _convert(arm, value, key)
        except ConfigError:
            pass
    raise _type_error(key, value, _type_name(tp))


def _convert_scalar(tp: type, value: Any, key: str) -> Any:
    """bool, int, float or str, strictly: a bool is never a number, an int is accepted (and converted) as a float."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    ok = {
        bool: isinstance(value, bool),
        int: number and isinstance(value, int),
        float: number,
        str: isinstance(value, str),
    }[tp]
    if not ok:
        raise _type_error(key, value, tp.__name__)
    return float(value) if tp is float else value


def _convert_tuple(tp: Any, value: Any, key: str) -> tuple:
    if not isinstance(value, list | tuple):
        raise _type_error(key, value, _type_name(tp))
    args = get_args(tp)
    if not args or (len(args) == 2 and args[1] is Ellipsis):  # tuple[X, ...]
        item_tp = args[0] if args else Any
        return tuple(_convert(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value))
    if args == ((),):  # tuple[()]
        args = ()
    if len(value) != len(args):
        raise _type_error(key, value, f"{_type_name(tp)} ({len(args)} items)")
    return tuple(_convert(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))


def _convert_dict(tp: Any, value: Any, key: str) -> dict:
    if not isinstance(value, Mapping):
        raise _type_error(key, value, _type_name(tp))
    args = get_args(tp)
    key_tp, val_tp = args if args else (str, Any)
    if key_tp not in (str, Any):
        raise TypeError(f"{_where(key)}: unsupported dict key type {_type_name(key_tp)} (use dict[str, X])")
    out = {}
    for k, v in value.items():
        if not isinstance(k, str):
            raise ConfigError(f"{_where(key)}: expected {_type_name(tp)}, but key {_show(k)} is not a string")
        out[k] = _convert(val_tp, v, _join(key, k))
    return out


def _convert(tp: Any, value: Any, key: str) -> Any:
    """``value`` checked against (and converted to) field type ``tp``; errors name the dotted ``key``."""
    if tp is Any:
        return value
    if tp is _NoneType or tp is None:
        if value is None:
            return None
        raise _type_error(key, value, "None")
    origin = get_origin(tp)
    if origin is Literal:
        return _convert_literal(tp, value, key)
    if origin in _UNION_ORIGINS:
        return _convert_union(tp, value, key)
    if tp is bool or tp is int or tp is float or tp is str:
        return _convert_scalar(tp, value, key)
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
        item_tp = get_args(tp)[0] if get_args(tp) else Any
        return [_convert(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is tuple or tp is tuple:
        return _convert_tuple(tp, value, key)
    if origin is dict or tp is dict:
        return _convert_dict(tp, value, key)
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
