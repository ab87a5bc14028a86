"""Issue 17, item 6, as measured for the README: a path-level reward (``diversity``, [B, G]) tuned by sampled GRPO from
enumerated heads, judged by what it rewards and by the per-clip allocation it must keep.

    for s in 0 1 2; do vaportok-rl train recipes/grpo_default.yaml "rewards.diversity={weight: 20.0}" \\
        policy.init=runs/grid_cost/g0_s$s seed=$s log.output_dir=runs/item6_s$s; done
    python scripts/path_reward_after_enumerated.py

The starting heads are benchmarks/grid_cost.py's every-k heads (runs/grid_cost/g0_s<seed>). Prints, per seed and as
mean ± std: the held-out diversity reward before and after (the trainer's eval), the spread of the argmax keep counts
over eval's held-out clips (mean |k - mean k| / K), and tokens saved vs Fixed at equal mean PSNR at the own budget.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vaportok_rl.judge import HELDOUT_SETS, heldout_quality, judge_head, seed_spread
from vaportok_rl.policy import head_logits
from vaportok_rl.runs import load_head
from vaportok_rl.tokenizer import load_tokenizer_spec


def main() -> None:
    tokenizer = load_tokenizer_spec("default")
    tables = {s: heldout_quality(tokenizer, s) for s in HELDOUT_SETS}
    rows = {}
    for seed in (0, 1, 2):
        summary = json.loads(Path(f"runs/item6_s{seed}/summary.json").read_text())
        row = {
            key: summary[f"{when}_eval"]["eval/rewards/diversity/mean"]
            for key, when in (("div0", "initial"), ("div1", "final"))
        }
        for name, spec in (("init", f"runs/grid_cost/g0_s{seed}"), ("tuned", f"runs/item6_s{seed}")):
            head = load_head(spec, tokenizer)
            for source, (latents, quality) in tables.items():
                logits = head_logits(head, latents)
                judged = judge_head(logits, quality, [8, 16, 24, 32, 48, 64])
                keep = (logits.argmax(-1) + 1).numpy().astype(float)
                row[f"{name}/{source}/saved"] = judged["own"]["tokens_saved"]
                row[f"{name}/{source}/tokens"] = judged["own"]["tokens"]
                row[f"{name}/{source}/spread"] = float(np.abs(keep - keep.mean()).mean() / tokenizer.num_latents)
        rows[seed] = row
        print(seed, {k: round(v, 4) for k, v in row.items()})
    for key in rows[0]:
        print(key, seed_spread([rows[s][key] for s in rows], pct="saved" in key))


if __name__ == "__main__":
    main()
