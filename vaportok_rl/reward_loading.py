"""Finding and loading reward plugins, in one place: :func:`load_reward` (one spec: a short name, a file or a dotted
path; the rules are in :mod:`vaportok_rl.rewards`), :func:`resolve_rewards` (a run's {label: entry} -> {label:
plugin}, the one resolution the trainer and the gym env share), :func:`load_rewards` (a recipe's active rewards),
:func:`list_rewards` (every plugin reachable by short name) and :func:`check_plugin_paths`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.resources
import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from vaportok_rl.config import ConfigError
from vaportok_rl.reward_api import Reward, RewardError, _source_file, validate_reward
from vaportok_rl.train_config import TrainConfig

__all__ = [
    "BUILTIN_PACKAGE",
    "check_plugin_paths",
    "list_rewards",
    "load_reward",
    "load_rewards",
    "resolve_rewards",
]

BUILTIN_PACKAGE = "vaportok_rl.builtin_rewards"
# Plugin files become top-level modules named like this (flat, so pickle's __import__ finds them).
_PLUGIN_MODULE_PREFIX = "_vaportok_reward_"


def _builtin_folder() -> Path:
    # A regular (non-zipped) install: files() is a real directory, so built-ins load through the file door.
    return Path(str(importlib.resources.files(BUILTIN_PACKAGE)))


def _import_file(path: Path) -> ModuleType:
    """Execute a plugin file as a fresh module registered in sys.modules (so dataclasses and pickling work)."""
    path = path.resolve()
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    module_name = f"{_PLUGIN_MODULE_PREFIX}{path.stem}_{digest}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise RewardError(f"reward plugin file {path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    previous = sys.modules.get(module_name)
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # noqa: BLE001 - a plugin file that calls sys.exit() at import is its error too
        if previous is None:
            del sys.modules[module_name]
        else:
            sys.modules[module_name] = previous
        raise RewardError(
            f"reward plugin file {path}: importing it failed with {type(error).__name__}: {error}"
            f"{_line_in(path, error)}; fix the file (or install the package it imports) and retry"
        ) from error
    return module


def _line_in(path: Path, error: BaseException) -> str:
    """' (line N)': where in the plugin file the import failed, if it did so inside that file."""
    lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__) if Path(frame.filename) == path]
    return f" (at line {lines[-1]})" if lines else ""


def _looks_like_reward_class(obj: Any, module: ModuleType) -> bool:
    if not isinstance(obj, type) or obj.__module__ != module.__name__:
        return False  # imported names (Reward itself, helpers) are not candidates
    if issubclass(obj, Reward):
        return True
    return "__call__" in vars(obj) and hasattr(obj, "name")


def _pick_class(module: ModuleType, where: str, class_name: str | None) -> type:
    if class_name is not None:
        cls = getattr(module, class_name, None)
        if not isinstance(cls, type):
            raise RewardError(f"reward plugin {where}: no class named {class_name!r} (found {cls!r})")
        return cls
    marked = getattr(module, "REWARD", None)
    if marked is not None:
        if not isinstance(marked, type):
            raise RewardError(f"reward plugin {where}: `REWARD` must be a class, got {marked!r}")
        return marked
    candidates = [obj for obj in vars(module).values() if _looks_like_reward_class(obj, module)]
    if len(candidates) != 1:
        found = [c.__name__ for c in candidates] or "none"
        raise RewardError(
            f"reward plugin {where}: expected exactly one reward class (a Reward subclass, or a class with "
            f"`name` and `__call__`), found {found}; mark one with `REWARD = ClassName` or use "
            f"'file.py:ClassName'"
        )
    return candidates[0]


def _resolve_file(path_text: str, search_paths: Sequence[str | Path]) -> Path:
    path = Path(path_text).expanduser()
    tried = [path] if path.is_absolute() else [Path(folder) / path for folder in search_paths] + [Path.cwd() / path]
    for candidate in tried:
        if candidate.is_file():
            return candidate
    raise RewardError(f"reward plugin file {path_text!r}: not found; tried {[str(p) for p in tried]}")


def _find_short_name(name: str, search_paths: Sequence[str | Path]) -> Path:
    folders = [Path(folder) for folder in search_paths] + [_builtin_folder()]
    for folder in folders:
        if (folder / f"{name}.py").is_file():
            return folder / f"{name}.py"
    available = sorted({p.stem for folder in folders if folder.is_dir() for p in folder.glob("[!_]*.py")})
    raise RewardError(
        f"reward {name!r}: no file {name}.py in {[str(f) for f in folders]}; available: {available}; "
        f"or give a file ('path/to/file.py:ClassName') or a dotted path ('package.module:ClassName')"
    )


def _split_spec(spec: str) -> tuple[str, str | None]:
    """'left:Class' -> ('left', 'Class'); a colon that is not followed by an identifier (C:\\...) stays."""
    left, sep, right = spec.rpartition(":")
    if sep and right.isidentifier():
        return left, right
    return spec, None


def _load_class(spec: str, search_paths: Sequence[str | Path]) -> tuple[type, str]:
    """Resolve ``spec`` to (class, where it came from)."""
    target, class_name = _split_spec(spec)
    is_file = target.endswith(".py") or "/" in target or "\\" in target
    if is_file:
        path = _resolve_file(target, search_paths)
        return _pick_class(_import_file(path), str(path), class_name), str(path)
    if class_name is None and "." not in target:
        if not target.isidentifier():
            raise RewardError(f"reward spec {spec!r}: expected a short name, a file path or a dotted path")
        path = _find_short_name(target, search_paths)
        return _pick_class(_import_file(path), str(path), None), str(path)
    # Dotted: 'package.module:Class', 'package.module.Class', or a module holding one reward class.
    if class_name is None:
        module_name, _, attr = target.rpartition(".")
        module = _import_module(module_name, spec, missing_ok=True)
        if module is not None and isinstance(getattr(module, attr, None), type):
            return getattr(module, attr), f"{module_name}.{attr}"
    module = _import_module(target, spec, missing_ok=False)
    return _pick_class(module, f"{spec!r}", class_name), getattr(module, "__file__", None) or target


def _import_module(module_name: str, spec: str, *, missing_ok: bool) -> ModuleType | None:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        # Only "this module does not exist" may fall through; a plugin's own missing import is its error.
        if missing_ok and error.name is not None and (module_name + ".").startswith(error.name + "."):
            return None
        raise RewardError(
            f"reward spec {spec!r}: importing module {module_name!r} failed with ModuleNotFoundError: {error}"
        ) from error
    except Exception as error:
        raise RewardError(
            f"reward spec {spec!r}: importing module {module_name!r} failed with {type(error).__name__}: {error}"
        ) from error


def load_reward(spec: str, kwargs: dict | None = None, *, search_paths: Sequence[str | Path] = ()) -> Any:
    """Find, import, instantiate (with ``kwargs``) and validate a reward plugin; the spec forms are in
    :mod:`vaportok_rl.rewards`."""
    if not isinstance(spec, str) or not spec:
        raise RewardError(f"reward spec: expected a non-empty string, got {spec!r}")
    check_plugin_paths(search_paths)
    cls, where = _load_class(spec, search_paths)
    try:
        reward = cls(**(kwargs or {}))
    except TypeError as error:
        raise RewardError(
            f"reward {spec!r} ({where}): cannot instantiate {cls.__name__}{_signature(cls)} "
            f"with kwargs {kwargs or {}}: {error}"
        ) from error
    except ValueError as error:
        raise RewardError(f"reward {spec!r} ({where}): invalid kwargs {kwargs or {}}: {error}") from error
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # noqa: BLE001 - the plugin's own bug (or sys.exit) in __init__
        file = _source_file(cls)
        line = _line_in(Path(file), error) if file else ""
        raise RewardError(
            f"reward {spec!r} ({where}): {cls.__name__}.__init__ raised {type(error).__name__}: {error}{line}"
        ) from error
    return validate_reward(reward, spec)


def check_plugin_paths(search_paths: Sequence[str | Path], key: str = "plugin_paths") -> None:
    """Every plugin folder must exist: a misspelt one would otherwise be skipped in silence, and a built-in of
    the same short name used instead. Raises :class:`~vaportok_rl.config.ConfigError` naming ``key`` and the
    folder (a relative folder is taken from the working directory, which the message names)."""
    for i, folder in enumerate(search_paths):
        path = Path(folder)
        if path.is_dir():
            continue
        what = "is not a folder" if path.exists() else "does not exist"
        relative = "" if path.is_absolute() else f" (relative to the working directory {Path.cwd()})"
        raise ConfigError(
            f"{key}[{i}]: plugin folder {str(folder)!r} {what}{relative}; expected a folder of reward plugin "
            f"files (fix the path, or remove it from {key})"
        )


def _signature(cls: type) -> str:
    try:
        return str(inspect.signature(cls))
    except (TypeError, ValueError):
        return "(...)"


def list_rewards(search_paths: Sequence[str | Path] = ()) -> list[dict]:
    """Every plugin file reachable by short name: one dict per file, search paths first, then built-ins.

    Keys: ``spec`` (the short name to pass to :func:`load_reward`), ``name``, ``file``, ``needs``,
    ``doc`` (first docstring line), ``builtin``, ``shadowed`` (an earlier folder has the same file name)
    and, for files that fail to import, ``error`` (the message)."""
    builtin = _builtin_folder()
    entries: list[dict] = []
    seen: set[str] = set()
    for folder in [Path(f) for f in search_paths] + [builtin]:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("[!_]*.py")):
            entry: dict = {
                "spec": path.stem,
                "file": str(path),
                "builtin": folder == builtin,
                "shadowed": path.stem in seen,
            }
            seen.add(path.stem)
            try:
                module = _import_file(path)
                cls = _pick_class(module, str(path), None)
            except RewardError as error:
                entries.append({**entry, "name": None, "needs": [], "doc": "", "error": str(error)})
                continue
            doc = inspect.getdoc(cls) if cls.__doc__ else (module.__doc__ or "")
            entry.update(
                name=getattr(cls, "name", None) or path.stem,
                needs=sorted(getattr(cls, "needs", ())),
                doc=(doc or "").strip().splitlines()[0] if (doc or "").strip() else "",
            )
            entries.append(entry)
    return entries


# ---------------------------------------------------------------------------------------------- a run's rewards


def resolve_rewards(entries: Mapping[str, Any], plugin_paths: Sequence[str | os.PathLike] = ()) -> dict[str, Any]:
    """{label: plugin instance}, in the entries' order, from {label: entry}: an entry ``(spec, kwargs)`` is loaded by
    :func:`load_reward` (a spec of None or "" means the label), searching ``plugin_paths`` first; a callable entry is
    an already-built plugin, validated. The one resolution of reward specs: the trainer (:func:`load_rewards`) and
    the gym env (:class:`~vaportok_rl.envs.TaildropEnv`) use it."""
    search = [Path(p) for p in plugin_paths]
    plugins: dict[str, Any] = {}
    for label, entry in entries.items():
        if callable(entry):
            plugins[label] = validate_reward(entry, str(label))
        else:
            spec, kwargs = entry
            plugins[label] = load_reward(spec or label, kwargs, search_paths=search)
    return plugins


def load_rewards(config: TrainConfig) -> dict[str, Any]:
    """{label: plugin instance} for the active rewards of a recipe, in recipe order."""
    entries = {label: (reward.spec, reward.kwargs) for label, reward in config.active_rewards().items()}
    return resolve_rewards(entries, config.plugin_paths)
