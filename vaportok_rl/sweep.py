"""``vaportok-rl sweep RECIPE [key=value ...] [--dry-run] [--output-dir DIR]``: many GRPO runs, one report.

A sweep recipe names a base training recipe and the runs to make over it::

    base: grpo_default.yaml                  # relative to the sweep file
    overrides: [log.output_dir=runs/my_sweep, steps=40]   # every run (optional)
    seeds: [0, 1, 2]                         # every run once per seed (optional)
    runs:                                    # named override sets (optional when grid is given)
      - {name: baseline}
      - {name: recon_x4, overrides: [rewards.reconstruction.weight=4]}
    grid:                                    # optional: cartesian product of key -> values
      optim.lr: [1.0e-4, 3.0e-4]
      grpo.beta: [0.0, 0.1]

Run ``name`` with seed ``k`` trains base ⊕ overrides ⊕ command-line overrides ⊕ the run's overrides ⊕ the
grid point ⊕ ``seed=k`` into ``<log.output_dir>/<name>[/seed<k>]``. With both ``runs`` and ``grid``, every run
is crossed with every grid point (named ``<run>-<point>``); with ``grid`` alone the points are the runs, named
after their values (``lr-0.0001_beta-0.0``). Every run's config is built and validated before the first one
starts, so a typo in run 7 fails at once, naming the run and the key.

Resumable: a run whose folder holds ``summary.json`` is finished and skipped; a run with a checkpoint resumes
from it (``run_training(resume=True)``); anything else starts fresh. Killing a sweep therefore loses at most
the steps of the run in flight since its last checkpoint: re-run the same command. A finished run whose
summary.json or head no longer reads (a disk error, an edit) is trained again from scratch, saying so in one
warning line; an unreadable ``sweep_metrics.json`` is recomputed. The tokenizer is loaded once and shared by all
runs.

The sweep folder is claimed (:mod:`vaportok_rl.run_folder`, kind "sweep") before any run starts: re-running the
same sweep into it continues it, while a folder that holds anything else (a user's files, a training run, ...)
is refused unless ``overwrite`` (``--overwrite``: the runs and report files the sweep writes there are removed
and made again; other files are left alone). Each run's own folder is claimed by ``run_training`` (kind "train").

When the runs are done, the sweep evaluates every run's tuned head (argmax keep counts) on its held-out
evaluation videos and writes, in the sweep folder:

    results.csv   one row per run (columns: :data:`RESULT_COLUMNS`, plus w_/reward_ columns of extra rewards)
    rewards.png   generation / reconstruction / efficiency / diversity reward over training, one line per run
                  (VaporTok Fig. 3)
    pareto.png    mean tokens vs PSNR (and vs prior top-5 accuracy), one labelled point per run
    table.md      a Markdown table averaged over seeds (± std); when runs drop rewards (the leave-one-out
                  ablation) it is the Table 1 analogue: missing reward, #tokens, PSNR, MSE, LPIPS, prior top-5
    sweep.json    the resolved sweep: recipe, overrides, runs and their folders

and prints the table. Each run folder also gets ``sweep_metrics.json`` (the held-out metrics of its head,
recomputed only when the head changes).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import itertools
import json
import math
import os
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vaportok_rl.config import ConfigError, from_dict, load_yaml, merge, parse_overrides, to_dict
from vaportok_rl.heldout import evaluate_head
from vaportok_rl.rewards import RewardError
from vaportok_rl.run_files import RUN_CONFIG, RUN_HEAD, RUN_SUMMARY
from vaportok_rl.run_folder import RunFolder, RunFolderError, claim, read_record
from vaportok_rl.runs import checkpoint_dirs, load_head
from vaportok_rl.tokenizer.default import load_tokenizer_spec
from vaportok_rl.tokenizer.head import ExportError
from vaportok_rl.train import load_rewards, run_training
from vaportok_rl.train_config import DEFAULT_REWARDS, LogConfig, SweepConfig, TrainConfig

__all__ = [
    "RESULT_COLUMNS",
    "Sweep",
    "SweepError",
    "SweepRun",
    "evaluate_run",
    "format_table",
    "load_results",
    "load_sweep",
    "run_sweep",
    "write_report",
]

RESULT_COLUMNS = (
    "run",
    "name",
    "seed",
    "steps",
    *(f"w_{label}" for label in DEFAULT_REWARDS),
    "tokens",
    "tokens_std",
    "psnr",
    "mse",
    "lpips",
    "prior_top5",
    "sampled_tokens",
    "eval_reward",
    *(f"reward_{label}" for label in DEFAULT_REWARDS),
    "seconds",
    "output_dir",
)
"""results.csv columns. ``w_<label>``: the reward's weight (0 when the run drops it). ``tokens`` (± ``tokens_std``
over clips), ``psnr`` (mean of per-clip PSNR, dB), ``mse``, ``lpips`` (AlexNet) and ``prior_top5`` (the AR prior's
top-5 accuracy on the kept tokens): the tuned head's argmax keep counts on the run's held-out videos after the
last step. ``sampled_tokens``, ``eval_reward`` and ``reward_<label>`` (each reward's mean, empty when the run does
not compute it): the run's own final held-out evaluation of G sampled paths per video (summary.json)."""

SWEEP_METRICS = "sweep_metrics.json"  # in each run's folder: the sweep's own measurements of its head
SWEEP_JSON, RESULTS_CSV, TABLE_MD = "sweep.json", "results.csv", "table.md"
REWARDS_PNG, PARETO_PNG = "rewards.png", "pareto.png"
SWEEP_FILES = (SWEEP_JSON, RESULTS_CSV, REWARDS_PNG, PARETO_PNG, TABLE_MD)
"""What a sweep writes at the top of its folder, beside one folder per run (what --overwrite may replace)."""


class SweepError(ConfigError):
    """A sweep recipe that cannot run (bad recipe, bad run config, stale run folder); the CLI exits with 2."""


# =============================================================================================== the recipe


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
            return f"{path} is unreadable ({_reason(error)})"
        if not isinstance(summary, dict):
            return f"{path} is not a JSON object"
        try:
            load_head(self.output_dir)
        except Exception as error:  # ExportError naming the file; a truncated safetensors file; ...
            return f"its head does not load ({_reason(error)})"  # the error names the file
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
        sweep = from_dict(SweepConfig, raw)
    except ValueError as error:
        raise SweepError(f"{path}: {error}") from error
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
    return Sweep(recipe=path, base=base_path, root=root, runs=runs, overrides=[*sweep.overrides, *overrides])


def _reason(error: BaseException) -> str:
    text = (getattr(error, "strerror", None) or str(error) or type(error).__name__).strip().splitlines()
    return text[0] if text else type(error).__name__


def _config_changes(run: SweepRun) -> list[str]:
    """Top-level config keys in which the run folder's config.yaml differs from the run's config now."""
    saved_path = run.output_dir / RUN_CONFIG
    if not saved_path.is_file():
        return []
    try:
        saved = to_dict(from_dict(TrainConfig, load_yaml(saved_path)))
    except (OSError, ValueError):
        return ["(unreadable config.yaml)"]
    now = to_dict(run.config)
    ignored = ("log",) if run.status() == "done" else ("log", "steps")  # a resumed run may change steps
    return [k for k in sorted(set(saved) | set(now)) if k not in ignored and saved.get(k) != now.get(k)]


def check_run_folders(sweep: Sweep) -> None:
    """Refuse to mix: a run folder left by a *different* config (edited recipe or overrides) is an error."""
    stale = [(run, changes) for run in sweep.runs if run.status() != "new" and (changes := _config_changes(run))]
    if stale:
        lines = [f"  {run.run_id} ({run.output_dir}): {', '.join(changes)}" for run, changes in stale]
        raise SweepError(
            "these run folders hold a run with a different config than the sweep now asks for:\n"
            + "\n".join(lines)
            + "\ndelete those folders, or pass --output-dir to start the sweep in a new folder"
        )


# =============================================================================================== held-out metrics


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def evaluate_run(run: SweepRun, tokenizer, lpips_metric=None, warn=None) -> dict[str, float]:
    """:func:`evaluate_head` of a finished run's tuned head, cached in the run folder's sweep_metrics.json
    (keyed by the head file's hash, so a re-trained run is re-evaluated; an unreadable cache is recomputed,
    saying so through ``warn``)."""
    cache = run.output_dir / SWEEP_METRICS
    digest = _sha256(run.output_dir / RUN_HEAD)
    if cache.is_file():
        try:
            cached = json.loads(cache.read_text())
            fresh = cached.get("head_sha256") == digest
            fresh = fresh and cached.get("tokenizer_fingerprint") == str(tokenizer.fingerprint)
            if fresh and isinstance(cached.get("metrics"), dict):
                return cached["metrics"]
        except (OSError, ValueError, AttributeError) as error:
            (warn or _warn)(f"run {run.run_id}: {cache} is unreadable ({_reason(error)}); recomputing it")
    metrics = evaluate_head(load_head(run.output_dir), run.config, tokenizer, lpips_metric)
    record = {"head_sha256": digest, "tokenizer_fingerprint": str(tokenizer.fingerprint), "metrics": metrics}
    cache.write_text(json.dumps(record, indent=1))
    return metrics


# =============================================================================================== results and report


def _weights(config: TrainConfig) -> dict[str, float]:
    """{label: weight} of every reward the run knows of; dropped (null) rewards weigh 0."""
    weights = {label: 0.0 for label in DEFAULT_REWARDS}
    weights.update({label: spec.weight for label, spec in config.active_rewards().items()})
    return weights


def result_row(run: SweepRun, metrics: dict[str, float]) -> dict[str, Any]:
    """One results.csv row of a finished run (see :data:`RESULT_COLUMNS`)."""
    summary = json.loads((run.output_dir / RUN_SUMMARY).read_text())
    final = summary.get("final_eval") or {}
    row: dict[str, Any] = {"run": run.run_id, "name": run.name, "seed": run.seed, "steps": run.config.steps}
    row.update({f"w_{label}": w for label, w in _weights(run.config).items()})
    row.update({k: metrics[k] for k in ("tokens", "tokens_std", "psnr", "mse", "lpips", "prior_top5")})
    row["sampled_tokens"] = final.get("eval/tokens/mean")
    row["eval_reward"] = final.get("eval/reward")
    labels = [*DEFAULT_REWARDS, *(lab for lab in run.config.active_rewards() if lab not in DEFAULT_REWARDS)]
    row.update({f"reward_{label}": final.get(f"eval/rewards/{label}/mean") for label in labels})
    row["seconds"] = summary.get("seconds")
    row["output_dir"] = str(run.output_dir)
    return row


def _columns(rows: list[dict]) -> list[str]:
    extra = [k for row in rows for k in row if k not in RESULT_COLUMNS]
    extra_w = list(dict.fromkeys(k for k in extra if k.startswith("w_")))
    extra_r = list(dict.fromkeys(k for k in extra if k.startswith("reward_")))
    cols = list(RESULT_COLUMNS)
    cols[cols.index("tokens") : cols.index("tokens")] = extra_w
    cols[cols.index("seconds") : cols.index("seconds")] = extra_r
    return cols


def write_results_csv(rows: list[dict], path: Path) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=_columns(rows))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return path


def load_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """results.csv (a file, or a sweep folder holding one) -> rows with numbers as floats (empty cells: None)."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_CSV
    out = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            parsed: dict[str, Any] = {}
            for k, v in row.items():
                if k in ("run", "name", "output_dir"):
                    parsed[k] = v
                elif v == "":
                    parsed[k] = None
                else:
                    try:
                        parsed[k] = float(v)
                    except ValueError:
                        parsed[k] = v
            parsed["seed"] = int(parsed["seed"]) if parsed.get("seed") is not None else None
            out.append(parsed)
    return out


def _reward_labels(rows: list[dict]) -> list[str]:
    """The rewards the swept runs use: every label with a non-zero weight in some row (the paper's five in their
    order, then the others in order of appearance). A reward no run uses is no part of the comparison."""
    seen = [k[2:] for row in rows for k, v in row.items() if k.startswith("w_") and v not in (None, "", 0, 0.0)]
    seen = list(dict.fromkeys(seen))
    return [label for label in DEFAULT_REWARDS if label in seen] + [lab for lab in seen if lab not in DEFAULT_REWARDS]


def _missing(row: dict, labels: Sequence[str]) -> list[str]:
    return [label for label in labels if not row.get(f"w_{label}")]


def _weights_title(labels: Sequence[str]) -> str:
    if tuple(labels) == DEFAULT_REWARDS:
        return "Weights E:P:D:R:G"
    return "Weights " + ":".join(labels) if labels else "Weights"


def _group(rows: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["name"], []).append(row)
    return groups


def _stat(values: list, fmt: str, scale: float = 1.0) -> str:
    xs = np.array([float(v) * scale for v in values if v is not None and math.isfinite(float(v))])
    if not len(xs):
        return "–"
    if len(xs) == 1:
        return format(xs[0], fmt)
    return f"{format(xs.mean(), fmt)} ± {format(xs.std(ddof=1), fmt)}"


TABLE_METRICS = (
    ("#Tokens", "tokens", ".1f", 1.0),
    ("PSNR (dB)", "psnr", ".2f", 1.0),
    ("MSE", "mse", ".5f", 1.0),
    ("LPIPS", "lpips", ".4f", 1.0),
    ("Prior top-5 ACC (%)", "prior_top5", ".1f", 100.0),
)


def format_table(rows: list[dict]) -> str:
    """Markdown table of the runs, averaged over seeds (± sample std when a run has several).

    The rewards compared are the swept runs' own (:func:`_reward_labels`: those with a non-zero weight in some
    run). When some run drops one of them (weight 0 or null), the first column is the missing reward (the
    leave-one-out Table 1 analogue, "none" for the full set); otherwise runs are listed by name with their
    reward weights (E:P:D:R:G for the paper's efficiency, penalty, diversity, reconstruction, generation; the
    labels themselves for other reward sets)."""
    groups = _group(rows)
    rewards = _reward_labels(rows)
    leave_out = any(_missing(row, rewards) for row in rows)
    everything = "none (all five)" if tuple(rewards) == DEFAULT_REWARDS else f"none (all {len(rewards)})"
    labels = {name: ", ".join(_missing(group[0], rewards)) or everything for name, group in groups.items()}
    named = not leave_out or len(set(labels.values())) < len(labels)  # the missing reward alone is ambiguous
    header = (["Run"] if named else []) + (["Missing reward"] if leave_out else [])
    header += [] if leave_out and not named else [_weights_title(rewards)]
    header += [title for title, *_ in TABLE_METRICS] + ["Seeds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for name, group in groups.items():
        first = group[0]
        cells = ([name] if named else []) + ([labels[name]] if leave_out else [])
        if not leave_out or named:
            cells.append(":".join(f"{float(first.get(f'w_{label}') or 0):g}" for label in rewards) or "–")
        cells += [_stat([r.get(key) for r in group], fmt, scale) for _, key, fmt, scale in TABLE_METRICS]
        cells.append(str(len(group)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _points(rows: list[dict]) -> list[dict]:
    points = []
    for name, group in _group(rows).items():
        point: dict[str, Any] = {"label": name}
        for key in ("tokens", "psnr", "prior_top5"):
            xs = [float(r[key]) for r in group if r.get(key) is not None]
            point[key] = float(np.mean(xs)) if xs else math.nan
            point[f"{key}_std"] = float(np.std(xs, ddof=1)) if len(xs) > 1 else None
        points.append(point)
    return points


def write_report(
    sweep: Sweep, rows: list[dict], *, reference: dict | None = None, title: str | None = None
) -> dict[str, Path]:
    """results.csv, rewards.png, pareto.png and table.md in the sweep folder, from the finished runs' rows."""
    from vaportok_rl.plots import FIG3_REWARDS, pareto, read_metrics, reward_curves

    root = sweep.root
    root.mkdir(parents=True, exist_ok=True)
    title = title or f"sweep {sweep.name} ({sweep.recipe.name})"
    out = {"results": write_results_csv(rows, root / RESULTS_CSV)}
    done = {row["run"] for row in rows}
    histories: dict[str, list[list[dict]]] = {}
    for run in sweep.runs:
        if run.run_id in done:
            histories.setdefault(run.name, []).append(read_metrics(run.output_dir)[0])
    out["rewards"] = root / REWARDS_PNG
    used = _reward_labels(rows)  # the runs' own rewards: Fig. 3's panels for the paper's, else one per reward
    panels = [label for label in FIG3_REWARDS if label in used] + [lab for lab in used if lab not in DEFAULT_REWARDS]
    reward_curves(histories, out["rewards"], rewards=panels or FIG3_REWARDS, title=title)
    out["pareto"] = root / PARETO_PNG
    pareto(_points(rows), out["pareto"], reference=reference, title=title)
    out["table"] = root / TABLE_MD
    out["table"].write_text(format_table(rows))
    return out


# =============================================================================================== running


@contextlib.contextmanager
def _env(**values: str):
    """Set environment variables that are not set yet, for the duration (e.g. the wandb group of the sweep)."""
    added = [k for k in values if k not in os.environ]
    for k in added:
        os.environ[k] = values[k]
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def describe_runs(sweep: Sweep) -> str:
    """The dry-run listing: one line per run with its status and own overrides."""
    rows = []
    for i, run in enumerate(sweep.runs, 1):
        status = run.status()
        if status == "resume":
            status = f"resume from step {run.resume_step()}/{run.config.steps}"
        elif status == "done":
            status = "done (skipped)" if run.damage() is None else "done, but unreadable: trained again"
        rows.append([str(i), run.run_id, str(run.seed), status, " ".join(run.overrides) or "-"])
    header = ["#", "RUN", "SEED", "STATUS", "OVERRIDES"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = [
        f"sweep {sweep.recipe}: {len(sweep.runs)} run(s) over {sweep.base} -> {sweep.root}",
        f"shared overrides: {' '.join(sweep.overrides) or '-'}",
        "",
    ]
    for r in [header, *rows]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    return "\n".join(lines)


def _warn(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def _is_sweep_json(path: Path) -> bool:
    """A sweep.json written by a sweep (the folder of a sweep made before folders were claimed)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and {"recipe", "runs"} <= set(data)


def claim_sweep_folder(sweep: Sweep, *, overwrite: bool = False) -> RunFolder:
    """Claim the sweep folder (kind "sweep") before any run starts: a sweep's own folder is continued (finished
    runs are skipped, a killed one resumes); anything else in it (a user's files, another kind of run) is refused
    unless ``overwrite``, which removes what the sweep writes there (its report files and run folders) and
    nothing else. Raises :class:`SweepError`."""
    root = sweep.root
    previous = read_record(root)
    ours = previous.get("kind") == "sweep" if previous is not None else _is_sweep_json(root / SWEEP_JSON)
    writes = (*SWEEP_FILES, *dict.fromkeys(run.run_id.split("/")[0] for run in sweep.runs))
    try:
        return claim(
            root,
            "sweep",
            writes=writes,
            resume=ours and not overwrite,
            overwrite=overwrite,
            what="sweep folder",
            resumable=(),
            recipe=str(sweep.recipe),
            runs=[run.run_id for run in sweep.runs],
        )
    except RunFolderError as error:
        raise SweepError(f"{error} (--output-dir sets the sweep folder)") from None


def run_sweep(
    recipe: str | os.PathLike,
    overrides: Sequence[str] = (),
    *,
    output_dir: str | os.PathLike | None = None,
    tokenizer=None,
    progress: bool = True,
    keep_going: bool = False,
    overwrite: bool = False,
    log=None,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run every unfinished run of a sweep recipe, then evaluate all runs and write the report.

    ``tokenizer``: an already-built FrozenTokenizer for every run (default: each distinct ``tokenizer`` spec of
    the runs is loaded once). ``keep_going``: a failing run is reported and the sweep goes on (default: the
    exception propagates; finished runs stay finished, a re-run resumes). ``overwrite``: replace what the sweep
    writes in a sweep folder that holds anything else (:func:`claim_sweep_folder`). ``log``: called with one
    progress line per run (e.g. ``print``; default: silent); ``warn``: with one line per recovery (a finished
    run trained again, a cache recomputed; default: a RuntimeWarning). Returns {"sweep", "rows", "failed" (run
    ids), "errors" ({run id: the failure's traceback text}), "trained", "skipped", "files", "table"}."""
    log = log or (lambda message: None)
    warn = warn or _warn
    sweep = load_sweep(recipe, overrides, output_dir=output_dir)
    folder = claim_sweep_folder(sweep, overwrite=overwrite)
    try:
        result = _run_claimed(sweep, folder, tokenizer, progress, keep_going, log, warn)
        if not result["failed"]:
            folder.finish(runs=len(sweep.runs))
        return result
    finally:
        folder.release()


def _run_claimed(
    sweep: Sweep, folder: RunFolder, tokenizer, progress: bool, keep_going: bool, log, warn
) -> dict[str, Any]:
    check_run_folders(sweep)
    (sweep.root / SWEEP_JSON).write_text(
        json.dumps(
            {
                "recipe": str(sweep.recipe),
                "base": str(sweep.base),
                "overrides": sweep.overrides,
                "runs": [
                    {
                        "run": r.run_id,
                        "name": r.name,
                        "seed": r.seed,
                        "overrides": r.overrides,
                        "dir": str(r.output_dir),
                    }
                    for r in sweep.runs
                ],
            },
            indent=1,
        )
    )
    tokenizers: dict[str, Any] = {}

    def tokenizer_for(run: SweepRun):
        if tokenizer is not None:
            return tokenizer
        spec = run.config.tokenizer
        if spec not in tokenizers:
            tokenizers[spec] = load_tokenizer_spec(spec)
        return tokenizers[spec]

    # every reward plugin loads and passes its checks before the first run starts
    seen = set()
    for run in sweep.runs:
        key = json.dumps([to_dict(run.config)["rewards"], run.config.plugin_paths], sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            try:
                load_rewards(run.config)
            except (RewardError, ConfigError) as error:
                raise SweepError(f"{sweep.recipe}: run {run.run_id!r}: {error}") from error

    trained, skipped, failed, errors = [], [], [], {}
    wandb_group = {"WANDB_RUN_GROUP": sweep.name} if any(r.config.log.report_to == "wandb" for r in sweep.runs) else {}
    with _env(**wandb_group):
        for i, run in enumerate(sweep.runs, 1):
            status = run.status()
            head = f"[{i}/{len(sweep.runs)}] {run.run_id}"
            damage = run.damage() if status == "done" else None
            if status == "done" and damage is None:
                log(f"{head}: finished earlier, skipped")
                skipped.append(run.run_id)
                continue
            if damage is not None:
                warn(f"run {run.run_id}: {damage}; training it again from scratch in {run.output_dir}")
            elif status == "resume":
                log(f"{head}: resuming from step {run.resume_step()}/{run.config.steps} in {run.output_dir}")
            else:
                log(f"{head}: training {run.config.steps} steps in {run.output_dir}")
            t0 = time.perf_counter()
            try:
                again = {"overwrite": True} if damage is not None else {}  # only what a run writes in its folder
                run_training(
                    run.config, tokenizer=tokenizer_for(run), resume=status == "resume", progress=progress, **again
                )
            except Exception as error:
                if not keep_going:
                    raise
                log(f"{head}: FAILED: {type(error).__name__}: {error}")
                errors[run.run_id] = traceback.format_exc()
                failed.append(run.run_id)
                continue
            trained.append(run.run_id)
            log(f"{head}: done in {time.perf_counter() - t0:.0f} s")

    # ---- held-out metrics of every finished run's head, the report
    finished = [run for run in sweep.runs if run.status() == "done"]
    rows, reference, files, table = [], None, {}, ""
    if finished:
        lpips_metric = None  # metrics.shared_lpips, loaded on first use (not at all when every run is cached)
        for run in finished:
            try:
                rows.append(result_row(run, evaluate_run(run, tokenizer_for(run), lpips_metric, warn)))
            except (OSError, json.JSONDecodeError, ExportError) as error:  # a finished run's file no longer reads
                raise SweepError(
                    f"run {run.run_id} ({run.output_dir}): cannot read its results ({_reason(error)}); "
                    f"delete that folder and re-run the same command to train it again"
                ) from None
        reference = _reference_point(finished[0], tokenizer_for(finished[0]), lpips_metric)
        files = write_report(sweep, rows, reference=reference)
        table = files["table"].read_text()
    return {
        "sweep": sweep,
        "rows": rows,
        "failed": failed,
        "errors": errors,
        "trained": trained,
        "skipped": skipped,
        "files": files,
        "table": table,
    }


def _reference_point(run: SweepRun, tokenizer, lpips_metric) -> dict | None:
    """The starting head on the first run's held-out videos: the tokenizer's pretrained head when it has one
    (all metrics), else the first run's step-0 evaluation (argmax tokens and PSNR)."""
    import copy

    from vaportok_rl.tokenizer.head import TaildropHead

    pretrained = getattr(tokenizer, "head", None)
    if isinstance(pretrained, TaildropHead):
        return {"label": "start", **evaluate_head(copy.deepcopy(pretrained), run.config, tokenizer, lpips_metric)}
    summary = json.loads((run.output_dir / RUN_SUMMARY).read_text())
    first = summary.get("initial_eval") or {}
    if first.get("step") != 0 or "eval/argmax_tokens/mean" not in first:
        return None
    return {
        "label": "start",
        "tokens": first["eval/argmax_tokens/mean"],
        "psnr": first.get("eval/argmax_psnr", math.nan),
        "prior_top5": math.nan,
    }
