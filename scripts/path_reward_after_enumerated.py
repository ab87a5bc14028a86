"""Issue 17, item 6, as measured for the README: a path-level reward (``diversity``, [B, G]) tuned by sampled GRPO after
the enumerated fit, in one run (``recipes/path_reward.yaml``), judged by what it rewards and by the per-clip allocation
it must keep.

    for s in 0 1 2; do vaportok-rl train recipes/path_reward.yaml seed=$s log.output_dir=runs/item6one/s$s; done
    python scripts/path_reward_after_enumerated.py runs/item6one/s0 runs/item6one/s1 runs/item6one/s2

Each run folder holds the fitted head (RUN/fit) and the final one (RUN). Prints, per run and as mean ± std over
them: the held-out diversity reward at the end of the fit and at the end (the trainer's eval), the spread of the
argmax keep counts over ``vaportok-rl eval``'s held-out clips (mean |k - mean k| / K), and tokens saved vs Fixed at
equal mean PSNR at the head's own budget, fitted head against final head. ``--json`` writes the rows.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from vaportok_rl.judge import HELDOUT_SETS, heldout_quality, judge_head, seed_spread
from vaportok_rl.policy import head_logits
from vaportok_rl.run_files import FIT_HEAD, RUN_SUMMARY
from vaportok_rl.runs import load_head
from vaportok_rl.tokenizer import load_tokenizer_spec


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="finished run folders of recipes/path_reward.yaml (one per seed)")
    parser.add_argument("--reward", default="diversity", help="the path-level reward's label")
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args(argv)
    tokenizer = load_tokenizer_spec("default")
    tables = {s: heldout_quality(tokenizer, s) for s in HELDOUT_SETS}
    rows = {}
    for run in map(Path, args.runs):
        summary = json.loads((run / RUN_SUMMARY).read_text())
        fitted_at = json.loads((run / FIT_HEAD / "head_config.json").read_text())["steps"]  # the fit's last step
        by_step = {e["step"]: e for e in summary["eval_history"]}
        key = f"eval/rewards/{args.reward}/mean"
        row = {"reward/fit": by_step[fitted_at][key], "reward/final": by_step[summary["steps"]][key]}
        for name, head_dir in (("fit", run / FIT_HEAD), ("final", run)):
            head = load_head(head_dir, tokenizer)
            for source, (latents, quality) in tables.items():
                logits = head_logits(head, latents)
                judged = judge_head(logits, quality, [8, 16, 24, 32, 48, 64])
                keep = (logits.argmax(-1) + 1).numpy().astype(float)
                row[f"{name}/{source}/saved"] = judged["own"]["tokens_saved"]
                row[f"{name}/{source}/tokens"] = judged["own"]["tokens"]
                row[f"{name}/{source}/spread"] = float(np.abs(keep - keep.mean()).mean() / tokenizer.num_latents)
        rows[str(run)] = row
        print(run, {k: round(v, 4) for k, v in row.items()}, flush=True)
    for key in next(iter(rows.values())):
        print(key, seed_spread([r[key] for r in rows.values()], pct="saved" in key))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
