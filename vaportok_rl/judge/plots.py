"""The report's PNG plots (matplotlib Agg): rate–distortion under PSNR and LPIPS, tokens against complexity, the
token histogram at the budget, and the rate–quality comparison (tokens saved vs Fixed). docs/eval.md shows them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from vaportok_rl.judge.tables import alloc_label, rq_label

__all__ = ["PLOTS", "write_plots"]

PLOTS = ("rd_psnr", "rd_lpips", "tokens_vs_complexity", "token_hist", "rate_quality")
_STYLE = {
    "fixed": ("tab:gray", "s"),
    "bithr": ("tab:blue", "^"),
    "bidelta": ("tab:green", "v"),
    "ilp": ("tab:purple", "D"),
    "fast": ("tab:orange", "o"),
}
_POLICY_STYLE = {"argmax": ("tab:red", "*"), "pre_argmax": ("magenta", "P"), "sample": ("salmon", "X")}


def _title(report: dict) -> str:
    s = report["setup"]
    return f"{s['data'] or 'clips'}: {s['clips']} clips, K={s['num_latents']}, head {s['head'] or '?'}"


def _series(report: dict) -> list[tuple[str, str, str, dict]]:
    """The at-budget allocations the per-clip plots show: (per_clip key, label, colour, record)."""
    at, alloc = report["at_budget"], report["setup"]["allocator"]
    out = [
        (f"policy/{m}", f"head {m}", _POLICY_STYLE.get(m, ("tab:red",))[0], at["policy"][m])
        for m in ("argmax", "pre_argmax")
        if m in at["policy"]
    ]
    out.append(
        (f"allocators/{alloc}", alloc_label(alloc), _STYLE.get(alloc, ("tab:brown",))[0], at["allocators"][alloc])
    )
    out.append(("oracle", "oracle", "black", at["oracle"]))
    return out


def _rd_plot(report: dict, metric: str, label: str, path: Path) -> None:
    fig = Figure(figsize=(7.5, 5.2), dpi=120)
    ax = fig.subplots()
    sweep, at, setup = report["sweep"], report["at_budget"], report["setup"]
    if metric == "lpips" and not setup["lpips"]:
        ax.text(0.5, 0.5, "LPIPS not computed (--no-lpips)", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        for name, points in sweep["allocators"].items():
            color, marker = _STYLE.get(name, ("tab:brown", "o"))
            xs, ys = [p["tokens_mean"] for p in points], [p[metric] for p in points]
            ax.plot(xs, ys, marker=marker, color=color, lw=1.4, ms=5, alpha=0.9, label=alloc_label(name))
        xs, ys = [p["tokens_mean"] for p in sweep["oracle"]], [p[metric] for p in sweep["oracle"]]
        oracle_label = f"oracle frontier (exact, true {setup['oracle']['metric'].upper()})"
        ax.plot(xs, ys, color="black", lw=2.2, ls="--", marker=".", label=oracle_label)
        for mode, rec in at["policy"].items():
            color, marker = _POLICY_STYLE.get(mode, ("tab:red", "*"))
            ax.scatter(
                [rec["tokens_mean"]],
                [rec[metric]],
                s=220,
                marker=marker,
                color=color,
                edgecolor="black",
                zorder=5,
                label=f"head {mode} ({rec['tokens_mean']:.1f} tokens)",
            )
        ax.axvline(setup["budget"], color="0.5", lw=0.9, ls=":", zorder=0, label=f"budget {setup['budget']:.1f}")
        ax.set_xlabel("mean tokens per clip")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper right" if metric == "lpips" else "lower right")
    ax.set_title(f"rate–distortion ({label.split(' ')[0]}) — {_title(report)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


def _complexity_plot(report: dict, path: Path) -> None:
    pc = report["per_clip"]
    series = [s for s in _series(report) if s[0] != "policy/pre_argmax"]
    fig = Figure(figsize=(10, 4.3), dpi=120)
    axes = fig.subplots(1, 2, sharey=True)
    panels = (("sc", "spatial complexity SC (bits)"), ("tc", "temporal complexity TC (grey levels)"))
    for ax, (key, xlabel) in zip(axes, panels, strict=True):
        for name, label, color, rec in series:
            rho = rec[f"spearman_{key}"]
            ax.scatter(
                pc[key],
                pc["tokens"][name],
                s=14,
                alpha=0.6,
                color=color,
                marker="x" if name == "oracle" else "o",
                label=f"{label} (ρ = {'n/a' if rho is None else format(rho, '+.2f')})",
            )
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("tokens kept")
    fig.suptitle(f"tokens vs complexity at budget {report['setup']['budget']:.1f} — {_title(report)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


def _hist_plot(report: dict, path: Path) -> None:
    K = report["setup"]["num_latents"]
    fig = Figure(figsize=(7.5, 4.3), dpi=120)
    ax = fig.subplots()
    bins = np.linspace(0.5, K + 0.5, min(K, 64) + 1)
    for name, label, color, _ in _series(report):
        v = np.asarray(report["per_clip"]["tokens"][name])
        ax.hist(
            v,
            bins=bins,
            histtype="step",
            lw=1.8,
            color=color,
            ls="--" if name == "oracle" else "-",
            label=f"{label} (mean {v.mean():.1f})",
        )
    ax.set_xlabel("tokens kept per clip")
    ax.set_ylabel("clips")
    ax.set_xlim(0, K + 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"token histogram at budget {report['setup']['budget']:.1f} — {_title(report)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


_RQ_STYLE = {"head": ("tab:red", "*"), "oracle": ("black", "."), "search": ("tab:cyan", "x"), **_STYLE}


def _rate_quality_plot(report: dict, path: Path) -> None:
    rq = report["rate_quality"]
    fig = Figure(figsize=(12, 4.8), dpi=120)
    (left, right) = fig.subplots(1, 2)
    if rq is None:
        left.text(0.5, 0.5, "no full table (full_table=False)", ha="center", va="center", transform=left.transAxes)
    else:
        for name, points in rq["curves"].items():
            color, marker = _RQ_STYLE.get(name, ("tab:brown", "o"))
            ls = "--" if name == "oracle" else "-"
            xs, ys = [p["tokens"] for p in points], [p["quality"] for p in points]
            left.plot(xs, ys, color=color, marker=marker, ls=ls, lw=1.5, ms=6, label=rq_label(name))
            right.plot(
                [p["budget"] for p in points],
                [100 * p["tokens_saved"] for p in points],
                color=color,
                marker=marker,
                ls=ls,
                lw=1.5,
                ms=6,
                label=rq_label(name),
            )
        for name, p in rq["own"].items():
            if name.startswith("head/"):
                left.scatter(
                    [p["tokens"]], [p["quality"]], s=200, marker="*", color="gold", edgecolor="black", zorder=5
                )
                left.annotate(
                    name, (p["tokens"], p["quality"]), fontsize=7, xytext=(4, -10), textcoords="offset points"
                )
        right.axhline(0, color="0.4", lw=0.9)
        best = max(p["tokens_saved"] for p in rq["curves"]["oracle"])
        right.set_ylim(-50, 100 * best + 8)  # choosers far below Fixed leave the frame; the table has every value
    left.set_xlabel("mean tokens per clip")
    left.set_ylabel("mean per-clip PSNR (dB) ↑")
    left.grid(alpha=0.3)
    left.legend(fontsize=7, loc="lower right")
    right.set_xlabel("budget (mean tokens per clip)")
    right.set_ylabel("tokens saved vs Fixed at equal PSNR (%) ↑ (clipped at -50)")
    right.grid(alpha=0.3)
    right.set_xscale("log", base=2)
    fig.suptitle(f"rate–quality — {_title(report)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


def write_plots(report: dict, out: str | os.PathLike) -> dict[str, str]:
    """Write ``rd_psnr.png``, ``rd_lpips.png``, ``tokens_vs_complexity.png``, ``token_hist.png`` and
    ``rate_quality.png`` into ``out`` (matplotlib Agg) and record their paths in ``report["plots"]``; returns
    that mapping."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / f"{name}.png" for name in PLOTS}
    _rd_plot(report, "psnr", "PSNR (dB) ↑", paths["rd_psnr"])
    _rd_plot(report, "lpips", "LPIPS ↓", paths["rd_lpips"])
    _complexity_plot(report, paths["tokens_vs_complexity"])
    _hist_plot(report, paths["token_hist"])
    _rate_quality_plot(report, paths["rate_quality"])
    report["plots"] = {name: str(p) for name, p in paths.items()}
    return report["plots"]
