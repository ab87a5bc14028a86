"""A head trained on a reward, judged by that reward's own measure (issue 17, item 5): train (or reuse) one run of a
training recipe per seed, then judge each head on ``vaportok-rl eval``'s held-out sets under the measure and under
PSNR, side by side, and against a comparison head (the shipped PSNR head by default) moved by its price knob to the
same mean budget and judged by the same measure. Mean ± std over seeds.

    python scripts/measure_showcase.py recipes/lpips_head.yaml --measure lpips --measure-kwargs '{"frame_stride": 2}'

Runs go to ``--runs``/s<seed> (a folder holding a head is judged as it is; one holding checkpoints is resumed).
Writes results.json, table.md and curves.png into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from vaportok_rl.budget import keep_for_budget
from vaportok_rl.judge import HELDOUT_SETS, heldout_quality, judge_head, savings_record
from vaportok_rl.judge import seed_spread as stat
from vaportok_rl.policy import head_logits
from vaportok_rl.runs import load_head
from vaportok_rl.tokenizer import load_tokenizer_spec
from vaportok_rl.train import run_training
from vaportok_rl.train_config import load_train_config

BUDGETS = [8.0, 16.0, 24.0, 32.0, 48.0, 64.0]
KEYS = ("tokens", "quality", "tokens_saved", "oracle_saved", "oracle_share")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe", help="a training recipe, e.g. recipes/lpips_head.yaml")
    parser.add_argument("--measure", required=True, help="psnr, mse, ssim, lpips or a reward plugin spec")
    parser.add_argument(
        "--measure-kwargs", default="{}", help='JSON kwargs of the measure plugin, e.g. {"frame_stride": 2}'
    )
    parser.add_argument("--plugin-path", action="append", default=[], help="folder of a --measure plugin")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--compare", nargs="*", default=["distilled"], help="heads moved to the same budget")
    parser.add_argument("--runs", default=None, help="run folders (default runs/showcase/<recipe name>)")
    parser.add_argument("--out", default=None, help="results folder (default docs/results/<recipe name>)")
    parser.add_argument("overrides", nargs="*", help="recipe overrides for every run (key=value)")
    args = parser.parse_intermixed_args(argv)  # overrides may come after the options
    name = Path(args.recipe).stem
    runs = Path(args.runs or f"runs/showcase/{name}")
    out = Path(args.out or f"docs/results/{name}")
    out.mkdir(parents=True, exist_ok=True)  # before any work
    kwargs = json.loads(args.measure_kwargs)
    torch.set_flush_denormal(True)
    base = load_train_config(args.recipe, args.overrides)
    tokenizer = load_tokenizer_spec(base.tokenizer)
    t0 = time.perf_counter()
    tables = {
        s: {
            args.measure: heldout_quality(tokenizer, s, args.measure, plugin_paths=args.plugin_path, kwargs=kwargs),
            "psnr": heldout_quality(tokenizer, s),
        }
        for s in HELDOUT_SETS
    }
    print(f"held-out tables under {args.measure} and psnr: {time.perf_counter() - t0:.0f} s", flush=True)
    compare = {spec: load_head(spec, tokenizer) for spec in args.compare}
    results: dict = {}
    for seed in args.seeds:
        folder = runs / f"s{seed}"
        if not (folder / "head.safetensors").is_file():
            config = load_train_config(args.recipe, [*args.overrides, f"seed={seed}", f"log.output_dir={folder}"])
            t0 = time.perf_counter()
            run_training(config, tokenizer=tokenizer, progress=False, resume=(folder / "checkpoints").is_dir())
            print(f"seed {seed}: trained in {time.perf_counter() - t0:.0f} s", flush=True)
        head = load_head(folder, tokenizer)
        row = {}
        for source, by in tables.items():
            latents = by["psnr"][0]
            logits = head_logits(head, latents)
            row[source] = {m: judge_head(logits, quality, BUDGETS, m) for m, (_, quality) in by.items()}
            tokens = row[source][args.measure]["own"]["tokens"]
            measure_table = by[args.measure][1].double().numpy()
            ks = np.arange(1, measure_table.shape[1] + 1)
            for spec, other in compare.items():
                keep, _ = keep_for_budget(head_logits(other, latents).double(), tokens)
                row[source][f"compare/{spec}"] = savings_record(keep.numpy(), measure_table, ks)
        results[str(seed)] = row
        print(
            f"seed {seed}: "
            + ", ".join(
                f"{s} {100 * r[args.measure]['own']['tokens_saved']:+.1f} % under {args.measure} "
                f"(share {100 * r[args.measure]['own']['oracle_share']:.0f} %), "
                f"{100 * r['psnr']['own']['tokens_saved']:+.1f} % under psnr"
                for s, r in row.items()
            ),
            flush=True,
        )
    md = table(results, args.measure, list(compare))
    (out / "results.json").write_text(
        json.dumps({"measure": args.measure, "kwargs": kwargs, "results": results}, indent=1)
    )
    (out / "table.md").write_text(md + "\n")
    plot(results, args.measure, out / "curves.png")
    print(md)
    print(f"wrote {out / 'results.json'}, {out / 'table.md'}, {out / 'curves.png'}")
    return 0


def table(results: dict, measure: str, compare: list[str]) -> str:
    seeds = list(results.values())
    lines = [
        f"| set | tokens | saved vs Fixed ({measure}) | {measure} oracle saves | share ({measure}) | "
        "saved vs Fixed (PSNR) | share (PSNR) | "
        + " | ".join(f"{c} at the same budget: saved ({measure})" for c in compare)
        + " |",
        "|---|---|---|---|---|---|---|" + "---|" * len(compare),
    ]
    for s in HELDOUT_SETS:
        own = {m: {k: [r[s][m]["own"][k] for r in seeds] for k in KEYS} for m in (measure, "psnr")}
        cells = [
            s,
            stat(own[measure]["tokens"], False),
            stat(own[measure]["tokens_saved"]),
            stat(own[measure]["oracle_saved"]),
            stat(own[measure]["oracle_share"]),
            stat(own["psnr"]["tokens_saved"]),
            stat(own["psnr"]["oracle_share"]),
        ]
        cells += [stat([r[s][f"compare/{c}"]["tokens_saved"] for r in seeds]) for c in compare]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Along the price knob: tokens saved vs Fixed under {measure} (share of its oracle's savings)", ""]
    lines += ["| set | " + " | ".join(f"@{b:g}" for b in BUDGETS) + " |", "|---|" + "---|" * len(BUDGETS)]
    for s in HELDOUT_SETS:
        saved = np.array([[p["tokens_saved"] for p in r[s][measure]["curve"]] for r in seeds], dtype=np.float64)
        share = np.array([[p["oracle_share"] for p in r[s][measure]["curve"]] for r in seeds], dtype=np.float64)
        cells = [f"{stat(saved[:, j])} ({100 * np.nanmean(share[:, j]):.0f} %)" for j in range(len(BUDGETS))]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: dict, measure: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(HELDOUT_SETS), figsize=(11, 4.2), dpi=120, sharey=True)
    for ax, s in zip(axes, HELDOUT_SETS, strict=True):
        for m, color in ((measure, "tab:red"), ("psnr", "tab:blue")):
            curves = 100 * np.array([[p["tokens_saved"] for p in r[s][m]["curve"]] for r in results.values()])
            oracle = 100 * np.array([p["tokens_saved"] for p in next(iter(results.values()))[s][m]["oracle_curve"]])
            ax.errorbar(
                BUDGETS,
                curves.mean(0),
                yerr=curves.std(0, ddof=1) if len(curves) > 1 else None,
                color=color,
                marker="o",
                capsize=3,
                label=f"head, judged by {m}",
            )
            ax.plot(BUDGETS, oracle, color=color, ls="--", label=f"{m} oracle")
        ax.axhline(0, color="0.3", lw=1)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("budget (mean tokens per clip), head through its price knob")
        ax.set_title(f"{s} (held-out)", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("tokens saved vs Fixed at equal mean quality (%)")
    axes[-1].legend(fontsize=7)
    fig.suptitle(f"a head trained on {measure}, judged by {measure} and by PSNR (mean ± std over seeds)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
