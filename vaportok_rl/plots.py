"""Plots of GRPO runs and sweeps, drawn headless (``matplotlib.figure.Figure``, no pyplot state).

* :func:`reward_curves`: the four per-reward training curves of VaporTok Fig. 3 (generation, reconstruction,
  efficiency, diversity), one line per run;
* :func:`pareto`: mean tokens per clip vs PSNR (and vs the AR prior's top-5 accuracy), one labelled point per run;
* :func:`tokens_vs_complexity`: the head's kept tokens per held-out clip against its spatial / temporal
  complexity, plus their histogram (what the trainer logs to wandb at every held-out evaluation).

Every function returns the Figure and, given ``path``, also writes it as PNG. :func:`read_metrics` splits a run's
``metrics.jsonl`` into its training and held-out evaluation lines.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from vaportok_rl.run_files import METRICS_FILE, read_metrics_lines

__all__ = ["FIG3_REWARDS", "pareto", "pareto_front", "read_metrics", "reward_curves", "tokens_vs_complexity"]

FIG3_REWARDS = ("generation", "reconstruction", "efficiency", "diversity")
"""The four panels of VaporTok Fig. 3, in its order."""


def read_metrics(run_dir: str | os.PathLike) -> tuple[list[dict], list[dict]]:
    """``run_dir/metrics.jsonl`` -> (training lines, held-out evaluation lines), each sorted by step (a partial
    last line, which a crash leaves, is skipped)."""
    records, _ = read_metrics_lines(Path(run_dir) / METRICS_FILE)
    train = [r for r in records if "eval/reward" not in r]
    evals = [r for r in records if "eval/reward" in r]
    return sorted(train, key=lambda r: r["step"]), sorted(evals, key=lambda r: r["step"])


def _save(fig: Figure, path: str | os.PathLike | None) -> Figure:
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average that ignores NaNs (a run may lack a step); same length as y."""
    if window <= 1:
        return y
    out = np.full_like(y, np.nan, dtype=float)
    for i in range(len(y)):
        part = y[max(0, i - window + 1) : i + 1]
        part = part[np.isfinite(part)]
        if len(part):
            out[i] = part.mean()
    return out


def reward_curves(
    histories: Mapping[str, Sequence[Sequence[dict]]],
    path: str | os.PathLike | None = None,
    *,
    rewards: Sequence[str] = FIG3_REWARDS,
    smooth: int | None = None,
    title: str | None = None,
) -> Figure:
    """One panel per reward (``rewards/<label>/mean`` over training steps), one line per run.

    ``histories``: run label -> list of training-line lists (one per seed; lines as in metrics.jsonl). Seeds are
    averaged step by step (a band shows their min..max). ``smooth``: moving-average window in steps (default:
    a tenth of the longest run); the raw mean is drawn faintly underneath. A run that does not compute a
    reward (e.g. it was dropped) has no line in that panel."""
    cols = min(4, len(rewards)) or 1
    rows = math.ceil(len(rewards) / cols)
    fig = Figure(figsize=(3.6 * cols, 3.0 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    longest = max((len(lines) for seeds in histories.values() for lines in seeds), default=1)
    window = smooth if smooth is not None else max(1, longest // 10)
    colors = [f"C{i % 10}" for i in range(len(histories))]
    for ax, label in zip(axes, rewards, strict=False):
        key = f"rewards/{label}/mean"
        for color, (run, seeds) in zip(colors, histories.items(), strict=True):
            per_seed = [{r["step"]: r[key] for r in lines if key in r} for lines in seeds]
            per_seed = [s for s in per_seed if s]
            if not per_seed:
                continue
            steps = np.array(sorted(set().union(*per_seed)))
            values = np.array([[s.get(int(t), np.nan) for t in steps] for s in per_seed], dtype=float)
            with np.errstate(all="ignore"), _quiet_nan_warnings():
                mean = np.nanmean(values, axis=0)
            ax.plot(steps, mean, color=color, alpha=0.25, linewidth=0.8)
            ax.plot(steps, _smooth(mean, window), color=color, linewidth=1.8, label=run)
            if len(per_seed) > 1:
                with _quiet_nan_warnings():
                    ax.fill_between(steps, np.nanmin(values, 0), np.nanmax(values, 0), color=color, alpha=0.12)
        ax.set_title(f"{label} reward")
        ax.set_xlabel("training step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in axes[len(rewards) :]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1 : len(rewards)]:  # the first panel may lack a run that dropped its reward
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 6), frameon=False)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


class _quiet_nan_warnings:
    """Silence numpy's 'mean of empty slice' where a step has no value in any seed."""

    def __enter__(self):
        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._catch.__exit__(*exc)


def pareto_front(tokens: Sequence[float], quality: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats on both axes (fewer tokens and higher quality), by tokens."""
    order = sorted(range(len(tokens)), key=lambda i: (tokens[i], -quality[i]))
    front, best = [], -math.inf
    for i in order:
        if quality[i] > best:
            front.append(i)
            best = quality[i]
    return front


def pareto(
    points: Sequence[Mapping],
    path: str | os.PathLike | None = None,
    *,
    reference: Mapping | None = None,
    title: str | None = None,
) -> Figure:
    """Mean tokens per clip vs PSNR (left) and vs prior top-5 accuracy (right), one labelled point per run.

    ``points``: dicts with ``label``, ``tokens``, ``psnr``, ``prior_top5`` and optionally ``tokens_std``,
    ``psnr_std``, ``prior_top5_std`` (error bars over seeds). The PSNR Pareto front (fewer tokens, higher PSNR)
    is drawn as a dashed step line. ``reference``: the same keys for the starting head, drawn as a grey star."""
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, key, name in ((axes[0], "psnr", "PSNR (dB)"), (axes[1], "prior_top5", "AR prior top-5 accuracy")):
        xs = [float(p["tokens"]) for p in points]
        ys = [float(p.get(key, math.nan)) for p in points]
        for i, p in enumerate(points):
            if not (math.isfinite(xs[i]) and math.isfinite(ys[i])):
                continue
            ax.errorbar(
                xs[i],
                ys[i],
                xerr=p.get("tokens_std") or None,
                yerr=p.get(f"{key}_std") or None,
                fmt="o",
                color=f"C{i % 10}",
                capsize=3,
                markersize=7,
            )
            offset, align = ((6, 5), "left") if i % 3 == 0 else ((6, -11), "left") if i % 3 == 1 else ((-6, 5), "right")
            ax.annotate(  # staggered, so labels of nearby points overlap less
                str(p["label"]), (xs[i], ys[i]), textcoords="offset points", xytext=offset, ha=align, fontsize=8
            )
        if key == "psnr":
            finite = [i for i in range(len(xs)) if math.isfinite(xs[i]) and math.isfinite(ys[i])]
            front = [finite[j] for j in pareto_front([xs[i] for i in finite], [ys[i] for i in finite])]
            if len(front) > 1:
                ax.step([xs[i] for i in front], [ys[i] for i in front], where="post", ls="--", color="0.5", lw=1)
        if reference is not None and math.isfinite(float(reference.get(key, math.nan))):
            ax.plot(reference["tokens"], reference[key], "*", color="0.4", markersize=12)
            ax.annotate(
                str(reference.get("label", "start")),
                (reference["tokens"], reference[key]),
                textcoords="offset points",
                xytext=(6, -12),
                fontsize=8,
                color="0.4",
            )
        ax.margins(x=0.18, y=0.12)  # room for the labels inside the axes
        ax.set_xlabel("mean tokens per clip (held-out, argmax head)")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].set_title("tokens vs PSNR (dashed: Pareto front)")
    axes[1].set_title("tokens vs prior accuracy")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def tokens_vs_complexity(
    keep: Sequence[float] | np.ndarray,
    sc: Sequence[float] | np.ndarray,
    tc: Sequence[float] | np.ndarray,
    num_latents: int,
    path: str | os.PathLike | None = None,
    *,
    title: str | None = None,
    label: str = "head",
    compare: Mapping[str, Sequence[float] | np.ndarray] | None = None,
) -> Figure:
    """Kept tokens per clip [N] against the clip's spatial (SC, bits) and temporal (TC, grey levels) complexity,
    and the histogram of kept tokens. ``keep`` is labelled ``label``; ``compare`` adds more keep arrays of the same
    clips under their own labels (e.g. {"start": keep of the starting head})."""
    series = {label: np.asarray(keep, dtype=float)}
    if compare:
        series = {**{k: np.asarray(v, dtype=float) for k, v in compare.items()}, **series}
    sc, tc = np.asarray(sc, dtype=float), np.asarray(tc, dtype=float)
    fig = Figure(figsize=(12, 3.6), layout="constrained")
    axes = fig.subplots(1, 3)
    bins = np.arange(0.5, num_latents + 1.5, max(1, num_latents // 32))
    for i, (label, k) in enumerate(series.items()):
        color = f"C{i % 10}"
        for ax, x in ((axes[0], sc), (axes[1], tc)):
            ax.scatter(x, k, s=14, alpha=0.7, color=color, label=label)
            if len(x) > 2 and np.ptp(x) > 0:
                slope, intercept = np.polyfit(x, k, 1)
                grid = np.linspace(x.min(), x.max(), 2)
                ax.plot(grid, slope * grid + intercept, color=color, lw=1)
        axes[2].hist(k, bins=bins, alpha=0.55, color=color, label=f"{label} (mean {k.mean():.1f})")
    axes[0].set_xlabel("spatial complexity SC (bits)")
    axes[1].set_xlabel("temporal complexity TC (grey levels)")
    for ax in axes[:2]:
        ax.set_ylabel("kept tokens")
        ax.set_ylim(0, num_latents + 1)
        ax.grid(alpha=0.3)
    axes[2].set_xlabel("kept tokens")
    axes[2].set_ylabel("clips")
    axes[2].legend(fontsize=8)
    if len(series) > 1:
        axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)
