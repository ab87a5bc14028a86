"""The one sweep expander: :func:`load_sweep` turns a sweep recipe (base, overrides, runs, grid, seeds) into its
runs, each with a fully resolved, validated :class:`TrainConfig`; :class:`SweepRun` also reads the state of its
folder (new, resumable, done; damaged)."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaportok_rl.config import from_dict, load_yaml, merge, parse_overrides, to_dict
from vaportok_rl.run_files import RUN_SUMMARY
from vaportok_rl.runs import checkpoint_dirs, load_head
from vaportok_rl.sweep.errors import SweepError, reason
from vaportok_rl.train_config import LogConfig, SweepConfig, TrainConfig


@dataclass
class SweepRun:
    """One training run of a sweep."""

    run_id: str
    """``name`` or ``name/seed<k>``: also the run's folder under the sweep folder."""
    name: str
    """The run's name in the recipe (shared by its seeds)."""
    config: TrainConfig
    """The fully resolved, validated training config (log.output_dir = the run's folder)."""
    overrides: list[str] = field(default_factory=list)
    """The run's own overrides (its entry's and its grid point's), as written in the recipe."""

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def output_dir(self) -> Path:
        return Path(self.config.log.output_dir)

    def status(self) -> str:
        """One of "done" (summary.json present), "resume" (a checkpoint, no summary) or "new"."""
        if (self.output_dir / RUN_SUMMARY).is_file():
            return "done"
        return "resume" if checkpoint_dirs(self.output_dir) else "new"

    def resume_step(self) -> int | None:
        found = checkpoint_dirs(self.output_dir)
        return int(found[-1].name.split("-")[1]) if found else None

    def damage(self) -> str | None:
        """For a finished run: None when its summary.json and head read back, else which file does not and why
        (the sweep then trains the run again)."""
        path = self.output_dir / RUN_SUMMARY
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            return f"{path} is unreadable ({reason(error)})"
        if not isinstance(summary, dict):
            return f"{path} is not a JSON object"
        try:
            load_head(self.output_dir)
        except Exception as error:  # ExportError naming the file; a truncated safetensors file; ...
            return f"its head does not load ({reason(error)})"  # the error names the file
        return None


@dataclass
class Sweep:
    """A loaded sweep recipe: where it came from, its folder and its runs in order."""

    recipe: Path
    base: Path
    root: Path
    runs: list[SweepRun]
    overrides: list[str]

    @property
    def name(self) -> str:
        return self.root.name


def _value_text(value: Any) -> str:
    """A grid value as override text (JSON is valid YAML flow, so it parses back to the same value)."""
    return json.dumps(value)


def _grid_runs(grid: Any, where: Path) -> list[tuple[str, list[str]]]:
    """``{key: [values]}`` -> [(point name, ["key=value", ...])] over the cartesian product, in order."""
    if not isinstance(grid, dict) or not grid:
        raise SweepError(f"{where}: grid: expected a mapping of config key -> list of values, got {grid!r}")
    for key, values in grid.items():
        if not isinstance(key, str) or not key.strip() or "=" in key:
            raise SweepError(f"{where}: grid: expected dotted config keys, got {key!r}")
        if not isinstance(values, list) or not values:
            raise SweepError(f"{where}: grid.{key}: expected a non-empty list of values, got {values!r}")
    keys = list(grid)
    # the shortest dotted suffix (2 parts for deeper keys) that tells them apart: optim.lr -> lr,
    # rewards.X.weight -> X.weight
    short = {}
    for key in keys:
        parts = key.split(".")
        for n in range(min(2, len(parts) - 1) or 1, len(parts) + 1):  # keep 2 parts of deep keys
            tail = ".".join(parts[-n:])
            if sum(1 for other in keys if other == tail or other.endswith("." + tail)) == 1:
                short[key] = tail
                break
        else:
            short[key] = key
    out = []
    for point in itertools.product(*(grid[k] for k in keys)):
        name = "_".join(f"{short[k]}-{_folder_safe(v)}" for k, v in zip(keys, point, strict=True))
        out.append((name, [f"{k}={_value_text(v)}" for k, v in zip(keys, point, strict=True)]))
    return out


def _folder_safe(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return "".join("-" if c in "/\\" or c.isspace() else c for c in text).strip(".") or "x"


def _read_recipe(path: Path) -> SweepConfig:
    """The sweep recipe at ``path`` as a :class:`SweepConfig`, its ``grid`` (if any) expanded into ``runs``."""
    if not path.is_file():
        raise SweepError(f"sweep recipe {path} not found")
    try:
        raw = load_yaml(path)
    except (OSError, ValueError) as error:
        raise SweepError(f"{path}: {error}") from error
    if not isinstance(raw, dict):
        raise SweepError(f"{path}: expected a mapping with base, runs and optional overrides, seeds, grid")
    grid = raw.pop("grid", None)
    if grid is not None:
        points = _grid_runs(grid, path)
        named = raw.get("runs") or [{"name": None}]
        if not isinstance(named, list) or not all(isinstance(r, dict) for r in named):
            raise SweepError(f"{path}: runs: expected a list of {{name, overrides}} mappings")
        raw["runs"] = [
            {
                "name": point if r.get("name") is None else f"{r['name']}-{point}",
                "overrides": [*(r.get("overrides") or []), *extra],
            }
            for r in named
            for point, extra in points
        ]
    try:
        return from_dict(SweepConfig, raw)
    except ValueError as error:
        raise SweepError(f"{path}: {error}") from error


def _expand_runs(sweep: SweepConfig, common: dict, root: Path, path: Path) -> list[SweepRun]:
    """Every (run, seed) of the recipe over the shared config ``common``, each writing to ``<root>/<run_id>``."""
    runs = []
    for spec in sweep.runs:
        try:
            own = parse_overrides(spec.overrides)
        except ValueError as error:
            raise SweepError(f"{path}: run {spec.name!r}: {error}") from error
        for seed in sweep.seeds if sweep.seeds is not None else [None]:
            run_id = spec.name if seed is None else f"{spec.name}/seed{seed}"
            data = merge(common, own)
            if seed is not None:
                data["seed"] = seed
            try:
                config = from_dict(TrainConfig, data)
            except ValueError as error:
                raise SweepError(f"{path}: run {run_id!r}: {error}") from error
            # the sweep owns the layout: every run writes to <sweep folder>/<run_id>, named after it in wandb
            name = run_id.replace("/", "-")
            data["log"] = {
                **to_dict(config.log),
                "output_dir": str(root / run_id),
                "run_name": name if config.log.run_name is None else f"{config.log.run_name}-{name}",
            }
            runs.append(SweepRun(run_id, spec.name, from_dict(TrainConfig, data), list(spec.overrides)))
    return runs


def load_sweep(
    recipe: str | os.PathLike,
    overrides: Sequence[str] = (),
    *,
    output_dir: str | os.PathLike | None = None,
) -> Sweep:
    """Read a sweep recipe and build every run's :class:`TrainConfig` (all validated before returning).

    ``overrides`` (e.g. from the command line) apply to every run after the recipe's shared overrides and before
    the run's own. ``output_dir`` replaces the sweep folder (the shared ``log.output_dir``)."""
    path = Path(recipe)
    sweep = _read_recipe(path)
    base_path = Path(sweep.base)
    if not base_path.is_absolute():
        base_path = path.parent / base_path
    if not base_path.is_file():
        raise SweepError(f"{path}: base: training recipe {base_path} not found")
    base = load_yaml(base_path)
    try:
        shared = merge(parse_overrides(sweep.overrides), parse_overrides(list(overrides)))
    except ValueError as error:
        raise SweepError(f"{path}: overrides: {error}") from error
    if output_dir is not None:
        shared = merge(shared, {"log": {"output_dir": str(output_dir)}})
    common = merge(base, shared)
    log = common.get("log") if isinstance(common.get("log"), dict) else {}
    root = Path(log.get("output_dir") or LogConfig().output_dir)
    runs = _expand_runs(sweep, common, root, path)
    return Sweep(recipe=path, base=base_path, root=root, runs=runs, overrides=[*sweep.overrides, *overrides])
