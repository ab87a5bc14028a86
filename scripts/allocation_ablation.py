"""What each change buys: train (or reuse) every variant of an ablation recipe for every seed, then judge each head
on the held-out sets of ``vaportok-rl eval`` by tokens saved against Fixed at equal mean per-clip PSNR and by the
share of the PSNR oracle's savings, at its own budget and along its price-knob curve. Mean ± std over seeds.

    python scripts/allocation_ablation.py recipes/ablation_allocation.yaml --out docs/results/allocation

Writes ``results.json`` (every seed's numbers), ``table.md`` and ``curves.png`` into ``--out``. Runs that already
hold a head are reused, so a killed ablation resumes where it stopped; the held-out PSNR tables (every clip at
every k, decoded once) come from the reward-table cache ($VAPORTOK_RL_CACHE or ~/.cache/vaportok-rl/tables).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from vaportok_rl.config import load_yaml
from vaportok_rl.judge import HELDOUT_SEED, HELDOUT_SETS, heldout_quality, judge_head
from vaportok_rl.policy import head_logits
from vaportok_rl.runs import load_head
from vaportok_rl.tokenizer import load_tokenizer_spec

SETS = HELDOUT_SETS  # held-out split per source, as `vaportok-rl eval` uses


def heldout_tables(tokenizer) -> dict:
    """{set: (latents [N, K, D], psnr [N, K])} for the eval's held-out sets (every clip at every k, in the cache)."""
    return {source: heldout_quality(tokenizer, source) for source in SETS}


def run_folder(root: Path, variant: str, seed: int) -> Path:
    return root / f"{variant}_s{seed}"


def ensure_run(v: dict, root: Path, seed: int) -> str:
    """The head spec of variant ``v`` at ``seed``: trains it first (via the CLI) unless its folder holds a head."""
    if "head" in v:
        return v["head"]
    folder = run_folder(root, v["name"], seed)
    if (folder / "head.safetensors").is_file():
        return str(folder)
    overrides = [
        re.sub(r"\{run:([\w-]+)\}", lambda m: str(run_folder(root, m.group(1), seed)), o).replace("{seed}", str(seed))
        for o in v.get("overrides", [])
    ]
    key = "log.output_dir" if v["command"] == "train" else "output_dir"
    resume = ["--resume"] if v["command"] == "train" and (folder / "checkpoints").is_dir() else []
    cmd = ["vaportok-rl", v["command"], v["recipe"], *overrides, f"{key}={folder}", "--no-progress", *resume]
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    print(f"  {v['name']} seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
    return str(folder)


def judge(head, tables: dict, budgets: list[float]) -> dict:
    out = {}
    for source, (latents, psnr) in tables.items():
        j = judge_head(head_logits(head, latents), psnr, budgets)
        out[source] = {
            "own": {k: j["own"][k] for k in ("tokens", "psnr", "tokens_saved", "oracle_saved", "oracle_share")},
            "curve": [p["tokens_saved"] for p in j["curve"]],
            "curve_share": [p["oracle_share"] for p in j["curve"]],
            "oracle_curve": [p["tokens_saved"] for p in j["oracle_curve"]],
        }
    return out


def stat(values: list[float], pct: bool = True) -> str:
    v = np.asarray(values, dtype=np.float64) * (100 if pct else 1)
    unit = "%" if pct else ""
    if len(v) == 1:
        return f"{v[0]:+.1f}{unit}" if pct else f"{v[0]:.1f}"
    return f"{v.mean():+.1f} ± {v.std(ddof=1):.1f}{unit}" if pct else f"{v.mean():.1f} ± {v.std(ddof=1):.1f}"


def _oracle_curve(results: dict, source: str) -> np.ndarray:
    """The PSNR oracle's savings at each budget (the same for every head: it depends on the table only)."""
    first_seed = next(iter(next(iter(results.values())).values()))
    return np.asarray(first_seed[source]["oracle_curve"])


def table(results: dict, budgets: list[float]) -> str:
    lines = []
    for source in SETS:
        lines += [
            f"**{source}** (held-out, {HELDOUT_SEED}): at the head's own budget, and tokens saved along its "
            "price-knob curve",
            "",
            "| variant | seeds | tokens | PSNR dB | saved vs Fixed | oracle saves | share | "
            + " | ".join(f"@{b:g}" for b in budgets)
            + " |",
            "|---|---|---|---|---|---|---|" + "---|" * len(budgets),
        ]
        for name, seeds in results.items():
            rows = [r[source] for r in seeds.values()]
            own = {k: [r["own"][k] for r in rows] for k in rows[0]["own"]}
            curve = np.array([r["curve"] for r in rows])
            lines.append(
                f"| {name} | {len(rows)} | {stat(own['tokens'], False)} | {stat(own['psnr'], False)} | "
                f"{stat(own['tokens_saved'])} | {stat(own['oracle_saved'])} | {stat(own['oracle_share'])} | "
                + " | ".join(stat(curve[:, j]) for j in range(len(budgets)))
                + " |"
            )
        oc = _oracle_curve(results, source)
        lines += ["| *PSNR oracle* | – | – | – | – | – | – | " + " | ".join(f"+{100 * x:.1f}%" for x in oc) + " |", ""]
    return "\n".join(lines)


def plot(results: dict, budgets: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SETS), figsize=(12, 4.6), dpi=120, sharey=True)
    for ax, source in zip(axes, SETS, strict=True):
        for name, seeds in results.items():
            curve = 100 * np.array([r[source]["curve"] for r in seeds.values()])
            mean, std = curve.mean(0), curve.std(0, ddof=1) if len(curve) > 1 else np.zeros(len(budgets))
            ax.plot(budgets, mean, marker="o", lw=1.6 if name != "grpo" else 2.6, label=name)
            ax.fill_between(budgets, mean - std, mean + std, alpha=0.15)
        ax.plot(budgets, 100 * _oracle_curve(results, source), color="black", ls="--", lw=2, label="PSNR oracle")
        ax.axhline(0, color="0.3", lw=1)
        ax.set_ylim(-50, 100 * _oracle_curve(results, source).max() + 8)  # heads far below Fixed leave the frame
        ax.set_xscale("log", base=2)
        ax.set_xlabel("budget (mean tokens per clip), head through its price knob")
        ax.set_title(f"{source} (held-out)", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("tokens saved vs Fixed at equal mean PSNR (%)")
    axes[-1].legend(fontsize=7, loc="upper right")
    fig.suptitle("what each change buys (mean ± std over seeds; y clipped at -50 %)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe", help="ablation recipe, e.g. recipes/ablation_allocation.yaml")
    parser.add_argument(
        "--out", default="docs/results/allocation", help="folder for results.json, table.md, curves.png"
    )
    parser.add_argument("--only", nargs="*", default=None, help="variant names to run/judge (default: all)")
    parser.add_argument("--no-train", action="store_true", help="judge only the runs that already hold a head")
    args = parser.parse_args(argv)
    spec = load_yaml(args.recipe)
    root, seeds, budgets = Path(spec["output_dir"]), spec["seeds"], [float(b) for b in spec["budgets"]]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)  # checked before any work
    torch.set_flush_denormal(True)
    tokenizer = load_tokenizer_spec(spec.get("tokenizer", "default"))
    tables = heldout_tables(tokenizer)
    results: dict = {}
    for v in spec["variants"]:
        if args.only is not None and v["name"] not in args.only:
            continue
        for seed in [0] if "head" in v else seeds:
            folder = v.get("head") or run_folder(root, v["name"], seed)
            if args.no_train and "head" not in v and not (Path(folder) / "head.safetensors").is_file():
                continue
            head_spec = ensure_run(v, root, seed)
            results.setdefault(v["name"], {})[seed] = judge(load_head(head_spec, tokenizer), tables, budgets)
            r = results[v["name"]][seed]
            print(
                f"{v['name']} seed {seed}: "
                + ", ".join(
                    f"{s} {100 * r[s]['own']['tokens_saved']:+.1f}% at {r[s]['own']['tokens']:.1f} tokens "
                    f"(share {100 * r[s]['own']['oracle_share']:.0f}%)"
                    for s in SETS
                ),
                flush=True,
            )
    (out / "results.json").write_text(json.dumps({"budgets": budgets, "results": results}, indent=1))
    md = table(results, budgets)
    (out / "table.md").write_text(md + "\n")
    plot(results, budgets, out / "curves.png")
    print(md)
    print(f"wrote {out / 'results.json'}, {out / 'table.md'}, {out / 'curves.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
