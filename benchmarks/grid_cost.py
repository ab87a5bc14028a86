"""What a grid costs (issue 17, item 2): tokens saved against Fixed and the share of the PSNR oracle's savings of the
head fitted by enumerated groups, against the number of decodes its table took, for log-spaced grids of 8, 16
and 32 keep counts and for every k, over several seeds, side by side in one run.

    python benchmarks/grid_cost.py recipes/distill_default.yaml --grids 8 16 32 0 --seeds 0 1 2

Every (grid, seed) is ``vaportok-rl distill RECIPE grid_points=Q distill.seed=s`` into ``--runs``/gQ_sS (a folder
that already holds a head is judged as it is, so a killed benchmark resumes). The tables come from the shared
table cache: the every-k table, once decoded, serves every grid (its columns at the grid points), so the decodes
column is what each grid costs on a fresh cache (N clips × Q points), not what this run decoded. Heads are judged
on ``vaportok-rl eval``'s held-out sets (32 videos × 4 clips, every clip at every k) at their own budget and along
their price-knob curve. Writes results.json, table.md and grid_cost.png into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from vaportok_rl.distill import load_distill_recipe, run_distill
from vaportok_rl.enumerated import TableCache, default_cache_dir, keep_grid
from vaportok_rl.judge import HELDOUT_SETS, heldout_quality, judge_head
from vaportok_rl.judge import seed_spread as stat
from vaportok_rl.policy import head_logits
from vaportok_rl.runs import load_head
from vaportok_rl.tokenizer import load_tokenizer_spec

BUDGETS = [8.0, 16.0, 24.0, 32.0, 48.0, 64.0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe", help="a distill recipe, e.g. recipes/distill_default.yaml")
    parser.add_argument("--grids", type=int, nargs="+", default=[8, 16, 32, 0], help="grid points (0 = every k)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs", default="runs/grid_cost", help="folder of the fitted heads")
    parser.add_argument("--out", default="docs/results/grid_cost", help="folder for results.json, table.md, PNG")
    parser.add_argument("overrides", nargs="*", help="distill recipe overrides for every run (key=value)")
    args = parser.parse_args(argv)
    out, runs = Path(args.out), Path(args.runs)
    out.mkdir(parents=True, exist_ok=True)  # before any work
    torch.set_flush_denormal(True)
    base = load_distill_recipe(args.recipe, args.overrides)
    tokenizer = load_tokenizer_spec(base.tokenizer)
    K, N = tokenizer.num_latents, base.data.videos * base.data.clips_per_video
    cache = TableCache(base.table_cache or default_cache_dir())
    tables = {s: heldout_quality(tokenizer, s, cache=cache) for s in HELDOUT_SETS}
    results: dict = {}
    for q in args.grids:
        for seed in args.seeds:
            folder = runs / f"g{q}_s{seed}"
            if not (folder / "head.safetensors").is_file():
                recipe = load_distill_recipe(
                    args.recipe, [*args.overrides, f"grid_points={q}", f"distill.seed={seed}", f"output_dir={folder}"]
                )
                t0 = time.perf_counter()
                run_distill(recipe, tokenizer=tokenizer, progress=False, resume=(folder / "checkpoints").is_dir())
                print(f"grid {q or K} seed {seed}: fitted in {time.perf_counter() - t0:.0f} s", flush=True)
            head = load_head(folder, tokenizer)
            judged = {}
            for source, (latents, quality) in tables.items():
                j = judge_head(head_logits(head, latents), quality, BUDGETS)
                judged[source] = {
                    "own": {
                        k: j["own"][k] for k in ("tokens", "quality", "tokens_saved", "oracle_saved", "oracle_share")
                    },
                    "curve_saved": [p["tokens_saved"] for p in j["curve"]],
                    "curve_share": [p["oracle_share"] for p in j["curve"]],
                }
            results.setdefault(str(q), {})[str(seed)] = judged
            print(
                f"grid {q or K} seed {seed}: "
                + ", ".join(
                    f"{s} {100 * r['own']['tokens_saved']:+.1f} % (share {100 * r['own']['oracle_share']:.0f} %)"
                    for s, r in judged.items()
                ),
                flush=True,
            )
    grids = {str(q): len(keep_grid(K, q)) for q in args.grids}
    md = table(results, grids, N, K)
    (out / "results.json").write_text(
        json.dumps({"clips": N, "K": K, "budgets": BUDGETS, "results": results}, indent=1)
    )
    (out / "table.md").write_text(md + "\n")
    plot(results, grids, N, K, out / "grid_cost.png")
    print(md)
    print(f"wrote {out / 'results.json'}, {out / 'table.md'}, {out / 'grid_cost.png'}")
    return 0


def _own(results: dict, q: str, source: str, key: str) -> list[float]:
    return [r[source]["own"][key] for r in results[q].values()]


def _knob(results: dict, q: str, source: str) -> list[float]:
    """Per seed: the mean of tokens saved along the price knob at BUDGETS (equal budgets for every grid)."""
    return [float(np.mean(r[source]["curve_saved"])) for r in results[q].values()]


def table(results: dict, grids: dict, N: int, K: int) -> str:
    every = "0" if "0" in results else None

    def of_every(values: list[float], reference: list[float] | None) -> str:
        return "–" if reference is None else f"{100 * np.mean(values) / np.mean(reference):.0f} %"

    lines = [
        "At the head's own budget (its argmax), and along its price knob (mean of tokens saved at "
        + ", ".join(f"{b:g}" for b in BUDGETS)
        + " tokens), with the share of the every-k head's saving each keeps:",
        "",
        f"| grid | decodes ({N} clips) | of every k | "
        + " | ".join(f"{s}: own saved | own share | of every-k | knob saved | of every-k" for s in HELDOUT_SETS)
        + " |",
        "|---|---|---|" + "---|---|---|---|---|" * len(HELDOUT_SETS),
    ]
    for q, Q in grids.items():
        cells = [f"{Q if q != '0' else f'every k ({K})'}", f"{N * Q:,}", f"1/{K / Q:.1f}"]
        for s in HELDOUT_SETS:
            own, knob = _own(results, q, s, "tokens_saved"), _knob(results, q, s)
            cells += [stat(own), stat(_own(results, q, s, "oracle_share"))]
            cells += [of_every(own, every and _own(results, every, s, "tokens_saved")), stat(knob)]
            cells += [of_every(knob, every and _knob(results, every, s))]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Along the price knob: share of the PSNR oracle's savings (mean ± std over seeds)", ""]
    lines += ["| grid | set | " + " | ".join(f"@{b:g}" for b in BUDGETS) + " |", "|---|---|" + "---|" * len(BUDGETS)]
    for q, Q in grids.items():
        for s in HELDOUT_SETS:
            shares = np.array([r[s]["curve_share"] for r in results[q].values()], dtype=np.float64)
            lines.append(f"| {Q} | {s} | " + " | ".join(stat(shares[:, j]) for j in range(len(BUDGETS))) + " |")
    return "\n".join(lines)


def plot(results: dict, grids: dict, N: int, K: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    for s, marker in zip(HELDOUT_SETS, "os", strict=True):
        xs = [N * Q for Q in grids.values()]
        saved = [100 * np.array(_own(results, q, s, "tokens_saved")) for q in grids]
        ax.errorbar(
            xs,
            [v.mean() for v in saved],
            yerr=[v.std(ddof=1) if len(v) > 1 else 0 for v in saved],
            marker=marker,
            capsize=3,
            label=f"{s} (held-out)",
        )
    ax.set_xscale("log")
    ax.set_xlabel(f"decodes for the table ({N} training clips × grid points)")
    ax.set_ylabel("tokens saved vs Fixed at equal mean PSNR (%)")
    ax.set_title("what a grid costs (mean ± std over seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
