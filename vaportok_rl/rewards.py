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

from vaportok_rl.rollout import NEEDS, Rollout

BUILTIN_PACKAGE = "vaportok_rl.builtin_rewards"
# Plugin files become top-level modules named like this (flat, so pickle's __import__ finds them).
_PLUGIN_MODULE_PREFIX = "_vaportok_reward_"

__all__ = [
    "NEEDS",
    "Reward",
    "RewardError",
    "Rollout",
    "check_reward_output",
    "cli",
    "list_rewards",
    "load_reward",
    "required_needs",
    "validate_reward",
]


class RewardError(ValueError):
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
    except Exception as error:
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
    return validate_reward(reward, spec)


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


# ---------------------------------------------------------------------------------------------- CLI


def _examples_folder() -> Path:
    return _builtin_folder() / "examples"


def _recipe_configs(recipe: str) -> list:
    """The TrainConfig(s) of a training recipe, or of every run of a sweep recipe (``base`` + ``runs``)."""
    from vaportok_rl.config import load_yaml
    from vaportok_rl.train_config import expand_sweep, load_train_config

    data = load_yaml(recipe)
    if "base" in data and "runs" in data:
        return [config for _, config in expand_sweep(recipe)]
    return [load_train_config(recipe)]


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _entry_rows(entries: list[dict], errors: list[str]) -> list[list[str]]:
    rows = []
    for e in entries:
        where = e.get("where") or ("built-in" if e["builtin"] else e["file"])
        if e.get("error"):
            errors.append(e["error"])
            rows.append([e["spec"], "-", "-", where, f"ERROR (see below, #{len(errors)})"])
            continue
        doc = ("(shadowed by an earlier file of the same name) " if e["shadowed"] else "") + e["doc"]
        rows.append([e["spec"], e["name"], ", ".join(e["needs"]) or "-", where, _short(doc)])
    return rows


def cli(argv: list[str] | None = None) -> int:
    """``vaportok-rl rewards list [--recipe R] [--path DIR ...] [--json]``."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="vaportok-rl rewards", description="Reward plugins (see docs/rewards.md).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="list")
    ls = sub.add_parser(
        "list",
        help="list built-in rewards and plugins with their declared needs",
        description="List the reward plugins a recipe can name by short name: files in the recipe's plugin_paths "
        "and --path folders (searched first), then the built-ins; plus the example plugins shipped with "
        "vaportok-rl. With --recipe, also load and validate every reward the recipe uses (exit status 1 if one "
        "fails), as training would before its first step.",
    )
    ls.add_argument("--recipe", help="a training (or sweep) recipe: adds its plugin_paths and checks its rewards")
    ls.add_argument("--path", action="append", default=[], metavar="DIR", help="a plugin folder (repeatable)")
    ls.add_argument("--json", action="store_true", help="print machine-readable JSON instead of tables")
    args = parser.parse_args(argv)

    configs = []
    if args.recipe:
        from vaportok_rl.config import ConfigError

        try:
            configs = _recipe_configs(args.recipe)
        except ConfigError as error:
            print(f"vaportok-rl rewards list: error: {error}", file=sys.stderr)
            return 2
    paths: list[str] = []
    for folder in [p for c in configs for p in c.plugin_paths] + list(args.path):
        if folder not in paths:
            paths.append(folder)
    missing = [p for p in paths if not Path(p).is_dir()]
    entries = list_rewards(paths)
    examples = [
        {**e, "spec": f"{BUILTIN_PACKAGE}.examples.{e['spec']}", "where": "example"}
        for e in list_rewards([_examples_folder()])
        if not e["builtin"]
    ]

    # ---- the recipe's rewards, loaded and validated exactly as the trainer does
    used: list[dict] = []
    for config in configs:
        for label, spec in config.active_rewards().items():
            row = {"label": label, "spec": spec.spec or label, "weight": spec.weight, "kwargs": spec.kwargs}
            if row in [{k: u[k] for k in row} for u in used]:
                continue
            try:
                reward = load_reward(row["spec"], row["kwargs"], search_paths=[Path(p) for p in config.plugin_paths])
                row.update(needs=sorted(getattr(reward, "needs", ())), file=_source_file(reward), error=None)
            except RewardError as error:
                row.update(needs=[], file=None, error=str(error))
            used.append(row)

    if args.json:
        print(json.dumps({"plugin_paths": paths, "rewards": entries, "examples": examples, "recipe": used}, indent=1))
        return 1 if any(u["error"] for u in used) else 0

    errors: list[str] = []
    header = ["SPEC", "NAME", "NEEDS", "FILE", "DESCRIPTION"]
    searched = ", ".join(paths) if paths else "none (add folders with --path or the recipe's plugin_paths)"
    print(f"Reward plugins by short name (plugin folders searched first: {searched})\n")
    print(_table(_entry_rows(entries, errors), header))
    for folder in missing:
        print(f"\nwarning: plugin folder {folder!r} does not exist")
    if examples:
        print(
            "\nExample plugins shipped with vaportok-rl (use the dotted spec below, or add their folder "
            f"{_examples_folder()} to plugin_paths and use the file name)\n"
        )
        print(_table(_entry_rows(examples, errors), header))
    if used:
        print(f"\nRewards of {args.recipe} (loaded and validated as training would)\n")
        rows = []
        for u in used:
            status = "ok" if u["error"] is None else f"ERROR (see below, #{len(errors) + 1})"
            if u["error"] is not None:
                errors.append(u["error"])
            kwargs = json.dumps(u["kwargs"]) if u["kwargs"] else "-"
            rows.append([u["label"], u["spec"], f"{u['weight']:g}", kwargs, ", ".join(u["needs"]) or "-", status])
        print(_table(rows, ["LABEL", "SPEC", "WEIGHT", "KWARGS", "NEEDS", "STATUS"]))
    if errors:
        print("\nErrors:")
        for i, message in enumerate(errors, 1):
            print(f"  #{i}: {message}")
    print(
        "\nNEEDS is what the rollout computes for the plugin: 'reconstructions' (decode every truncation), "
        "'prior_correct' (one AR-prior pass per clip); '-' = keep counts, videos and complexity only."
    )
    return 1 if any(u["error"] for u in used) else 0
