"""A sweep's report from its results rows: table.md (runs averaged over seeds, the Table 1 analogue for a
leave-one-out ablation), rewards.png (Fig. 3) and pareto.png, written with results.csv in the sweep folder."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vaportok_rl.plots import FIG3_REWARDS, pareto, read_metrics, reward_curves
from vaportok_rl.sweep.expand import Sweep
from vaportok_rl.sweep.files import PARETO_PNG, RESULTS_CSV, REWARDS_PNG, TABLE_MD
from vaportok_rl.sweep.results import write_results_csv
from vaportok_rl.train_config import DEFAULT_REWARDS


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
