"""Reward plugins: the public API for saying what a good truncation path is.

A reward plugin is any object with

    name: str                    # the metric key: rewards/{name}/mean
    needs: frozenset[str]        # what the rollout must compute for it; a subset of
                                 # {"reconstructions", "prior_correct"}; missing means none
    __call__(rollout) -> Tensor  # [B, G] float, one value per path of L decisions; higher is better
                                 # or [B, G, L], one value per clip decision (a reward that decomposes
                                 # over clips; its path value is the mean over L)

Subclassing :class:`Reward` is a convenience, not a requirement: plugins are checked by duck typing.
A plugin class is instantiated with the keyword arguments of its config entry, e.g.
``{"spec": "penalty", "kwargs": {"shape": "quadratic"}}``.

Where a plugin comes from (``spec``):

* ``"NAME"``: the file ``NAME.py`` in a search path, else in the built-in folder (so a file of the same
  name in your own folder overrides a built-in). The file holds exactly one reward class, or marks one
  with a module-level ``REWARD = ClassName``.
* ``"path/to/file.py"`` or ``"path/to/file.py:ClassName"``: a file; a relative path is looked up in the
  search paths, then the working directory.
* ``"package.module:ClassName"`` or ``"package.module.ClassName"``: an importable class.

The built-ins (``rewards/`` in the repository, shipped as ``vaportok_rl.builtin_rewards``) go through the
same file door as yours and use only this module's public names: read them as examples.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib
import importlib.resources
import importlib.util
import inspect
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from vaportok_rl.errors import UserError
from vaportok_rl.rollout import NEEDS, Rollout

BUILTIN_PACKAGE = "vaportok_rl.builtin_rewards"
# Plugin files become top-level modules named like this (flat, so pickle's __import__ finds them).
_PLUGIN_MODULE_PREFIX = "_vaportok_reward_"

__all__ = [
    "NEEDS",
    "Reward",
    "RewardError",
    "Rollout",
    "call_reward",
    "check_plugin_paths",
    "check_reward_output",
    "list_rewards",
    "load_reward",
    "required_needs",
    "validate_reward",
]


class RewardError(UserError):
    """A reward plugin could not be found, loaded, or broke its contract. The message names the plugin."""


class Reward:
    """Optional base class for reward plugins.

    Set ``name`` (and ``needs`` if the reward reads ``rollout.reconstructions`` or
    ``rollout.prior_correct``), take your options as keyword arguments in ``__init__`` and validate them
    there, and return a float tensor [B, G] from ``__call__`` -- or [B, G, L] when the reward decomposes over
    clips: then with ``grpo.credit: decision`` each clip's decision gets its own advantage, and with path
    credit the path's value is the mean over its L clips. Useful fields of the rollout:
    ``keep`` [B, G, L] (1..K), ``num_latents`` K, ``videos`` [B, L, C, T, H, W], ``sc``/``tc`` [B, L],
    ``reconstructions`` [B, G, L, C, T, H, W], ``prior_correct`` [B, L, K].
    """

    name: str = ""
    needs: frozenset[str] = frozenset()

    def __call__(self, rollout: Rollout) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__}.__call__: return a float tensor [B, G]")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, needs={sorted(self.needs)})"


# ---------------------------------------------------------------------------------------------- describing


def _source_file(obj: Any) -> str | None:
    cls = obj if isinstance(obj, type) else type(obj)
    try:
        return inspect.getfile(cls)
    except (TypeError, OSError):  # classes defined in C or in an unregistered module
        return None


def describe(reward: Any) -> str:
    """'reward plugin 'name' (path/to/file.py)', for error messages."""
    name = getattr(reward, "name", None)
    where = _source_file(reward) or type(reward).__module__
    return f"reward plugin {name!r} ({type(reward).__name__} in {where})"


# ---------------------------------------------------------------------------------------------- validation


def validate_reward(reward: Any, spec: str | None = None) -> Any:
    """Check a plugin before training starts; returns it unchanged or raises :class:`RewardError`."""
    where = f"{spec!r} ({_source_file(reward) or type(reward).__module__})" if spec else describe(reward)
    if isinstance(reward, type):
        raise RewardError(f"reward {where}: got the class {reward.__name__}, not an instance; instantiate it")
    name = getattr(reward, "name", None)
    if not isinstance(name, str) or not name.strip():
        raise RewardError(
            f"reward {where}: missing or empty `name` (got {name!r}); set a class attribute, e.g. "
            f'`name = "my_reward"`; it becomes the metric key rewards/<name>/mean'
        )
    if any(c.isspace() for c in name) or "/" in name:
        raise RewardError(f"reward {where}: name {name!r} must not contain whitespace or '/' (it is a metric key)")
    if not callable(reward):
        raise RewardError(f"reward {where}: not callable; define `__call__(self, rollout) -> Tensor[B, G]`")
    try:
        inspect.signature(reward).bind(None)
    except TypeError:
        raise RewardError(
            f"reward {where}: `__call__` must accept exactly one argument, the rollout; "
            f"got signature {inspect.signature(reward)}"
        ) from None
    except ValueError:  # no signature available (builtins): nothing to check
        pass
    needs = getattr(reward, "needs", frozenset())
    if isinstance(needs, str) or not isinstance(needs, Iterable):
        raise RewardError(
            f"reward {where}: `needs` must be a set of strings, got {needs!r}; e.g. "
            f'`needs = frozenset({{"reconstructions"}})`'
        )
    unknown = set(needs) - NEEDS
    if unknown:
        raise RewardError(
            f"reward {where}: unknown needs {sorted(map(str, unknown))}; expected a subset of {sorted(NEEDS)}"
        )
    return reward


def _rollout_tensors(rollout: Any) -> dict[str, Tensor]:
    """The tensors a plugin can reach on a rollout: its tensor fields, and those of its dataclass fields
    (``encoded.latents``, ``encoded.codes``), by dotted name."""
    found: dict[str, Tensor] = {}
    if not dataclasses.is_dataclass(rollout) or isinstance(rollout, type):
        return found
    for f in dataclasses.fields(rollout):
        value = getattr(rollout, f.name, None)
        if isinstance(value, Tensor):
            found[f.name] = value
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            found.update({f"{f.name}.{k}": v for k, v in _rollout_tensors(value).items()})
    return found


def _versions(tensors: dict[str, Tensor]) -> dict[str, int]:
    # inference tensors keep no version counter (and cannot be written outside inference mode anyway)
    return {name: t._version for name, t in tensors.items() if not t.is_inference()}


def _plugin_view(rollout: Any) -> Any:
    """A shallow copy of the rollout (and of its dataclass fields) for a plugin: reassigning an attribute
    (``rollout.keep = ...``) changes the copy only. No tensor is copied: the step pays nothing."""
    if not dataclasses.is_dataclass(rollout) or isinstance(rollout, type):
        return rollout
    view = copy.copy(rollout)  # not dataclasses.replace: that would re-run Rollout's checks (a device sync)
    for f in dataclasses.fields(view):
        value = getattr(view, f.name, None)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            object.__setattr__(view, f.name, copy.copy(value))
    return view


def call_reward(label: str, plugin: Any, rollout: Rollout) -> Tensor:
    """The plugin's value on the rollout, checked ([B, G] or [B, G, L]); a plugin that raises (``sys.exit`` and
    any other BaseException but KeyboardInterrupt included), edits a rollout tensor in place, or breaks the output
    contract is a :class:`RewardError` naming its label, class and file.

    The plugin sees a shallow copy of the rollout, so reassigning its attributes does not reach the trainer, and
    every tensor's version counter is compared before and after the call, so an in-place edit (``rollout.keep +=
    1``) is caught without copying a tensor."""
    tensors = _rollout_tensors(rollout)
    before = _versions(tensors)
    try:
        value = plugin(_plugin_view(rollout))
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # noqa: BLE001 - a plugin's sys.exit() must not end the run silently
        detail = f"{type(error).__name__}: {error}"
        if isinstance(error, SystemExit):
            detail = f"SystemExit (sys.exit({error.code!r})); a reward returns a tensor, it must not exit"
        raise RewardError(f"reward {label!r} ({_plugin_where(plugin)}) raised {detail}") from error
    changed = [name for name, version in before.items() if tensors[name]._version != version]
    if changed:
        name = changed[0]
        raise RewardError(
            f"reward {label!r} ({_plugin_where(plugin)}): plugin modified rollout.{name} in place; clone it first "
            f"(rollout.{name}.clone()) - the rollout is shared with the GRPO update and the logs"
        )
    return check_reward_output(plugin, value, rollout.B, rollout.G, rollout.L)


def _plugin_where(plugin: Any) -> str:
    """'ClassName, path/to/file.py' of a plugin instance."""
    where = getattr(inspect.getmodule(type(plugin)), "__file__", None) or type(plugin).__module__
    return f"{type(plugin).__name__}, {where}"


def required_needs(rewards: Iterable[Any]) -> frozenset[str]:
    """The union of the plugins' ``needs``: what :func:`~vaportok_rl.rollout.collect_rollout` must compute."""
    return frozenset().union(*(frozenset(getattr(r, "needs", ())) for r in rewards))


def check_reward_output(reward: Any, value: Any, B: int, G: int, L: int | None = None) -> Tensor:
    """Check what a plugin returned for a rollout with B videos × G paths (× L clips, when given, a per-clip
    [B, G, L] output is accepted too); returns it or raises."""
    if not isinstance(value, Tensor):
        raise RewardError(
            f"{describe(reward)}: expected a torch.Tensor [B, G] = [{B}, {G}], got {type(value).__name__}"
        )
    if tuple(value.shape) != (B, G) and (L is None or tuple(value.shape) != (B, G, L)):
        per_clip = "" if L is None else f" or [B, G, L] = [{B}, {G}, {L}] (one value per clip decision)"
        raise RewardError(
            f"{describe(reward)}: expected shape [B, G] = [{B}, {G}] (one value per path){per_clip}, "
            f"got {tuple(value.shape)}"
        )
    if not value.is_floating_point():
        raise RewardError(
            f"{describe(reward)}: expected a floating-point tensor, got dtype {value.dtype}; add .float()"
        )
    bad = ~torch.isfinite(value)
    if bad.any():
        first = tuple(int(i) for i in bad.nonzero()[0])
        where = ", ".join(f"{axis}={i}" for axis, i in zip("bgl", first, strict=False))
        raise RewardError(
            f"{describe(reward)}: expected finite values, got {int(bad.sum())} NaN/inf "
            f"(first at [{where}]: {value[first].item()})"
        )
    return value


# ---------------------------------------------------------------------------------------------- loading


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
    import traceback

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
    """Find, import, instantiate (with ``kwargs``) and validate a reward plugin; see the module docstring."""
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
    from vaportok_rl.config import ConfigError

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
