"""Issue 17, item 5(b): the paper's sweeps rerun with the per-clip rewards enumerated, each head judged by tokens saved
against Fixed at equal mean PSNR and by the AR prior's top-5 accuracy on the tokens it keeps.

    vaportok-rl sweep recipes/ablation_leave_one_out_enumerated.yaml
    vaportok-rl sweep recipes/sweep_recon_gen_enumerated.yaml
    python scripts/paper_sweeps_enumerated.py runs/ablation_leave_one_out_enumerated runs/sweep_recon_gen_enumerated

Every ``<sweep>/<run>/seed<s>`` folder holding a head is judged on ``vaportok-rl eval``'s held-out sets (32 videos ×
4 clips each, every clip at every k): at the head's own budget (its argmax per clip) the mean tokens, mean PSNR,
tokens saved against Fixed at that PSNR, the PSNR oracle's share, and the prior's top-5 accuracy on the retained
tokens (mean over clips); and, to tell the head from its objective, tokens saved by the argmax of the run's own
utility (its per-clip rewards tabulated on the held-out clips, weighted and normalised as its recipe says: what the
reward itself asks for). Rows are runs, mean ± std over seeds; writes results.json and table.md into ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from torch import Tensor

from vaportok_rl.judge import HELDOUT_SETS, heldout_quality, judge_head, seed_spread
from vaportok_rl.policy import head_logits
from vaportok_rl.rewards import RewardError
from vaportok_rl.run_files import RUN_CONFIG, RUN_HEAD
from vaportok_rl.runs import load_head
from vaportok_rl.target_fit import normalize_rows
from vaportok_rl.tokenizer import load_tokenizer_spec
from vaportok_rl.train_config import load_train_config

COLUMNS = ("tokens", "psnr", "saved", "share", "prior_top5", "reward_argmax_saved")


def reward_utility(tokenizer, source: str, run: Path, cache: dict) -> Tensor:
    """[N, K] the run's fitted utility Σ_i w_i r_i (its per-clip rewards, normalised as its recipe says) on the
    held-out set ``source``: every clip at every k (tables shared between runs through ``cache``)."""
    config = load_train_config(run / RUN_CONFIG)
    utility = 0.0
    for label, spec in config.active_rewards().items():
        key = (source, spec.spec or label, json.dumps(spec.kwargs, sort_keys=True))
        if key not in cache:
            try:
                cache[key] = heldout_quality(tokenizer, source, spec.spec or label, kwargs=spec.kwargs)[1].double()
            except RewardError:  # it scores whole paths ([B, G]): not in the fit's utility either
                cache[key] = None
        table = cache[key]
        if table is None:
            continue
        if config.grpo.table_normalization == "clip":
            table = normalize_rows(table)
        utility = utility + spec.weight * table
    return utility


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweeps", nargs="+", help="sweep folders (<sweep>/<run>/seed<s>)")
    parser.add_argument("--out", default="docs/results/paper_sweeps_enumerated")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)  # before any work
    tokenizer = load_tokenizer_spec("default")
    psnr = {s: heldout_quality(tokenizer, s) for s in HELDOUT_SETS}
    prior = {s: heldout_quality(tokenizer, s, "generation", kwargs={"per_clip": True})[1] for s in HELDOUT_SETS}
    results: dict = {}
    tables: dict = {}
    for sweep in map(Path, args.sweeps):
        for head_file in sorted(sweep.glob(f"*/seed*/{RUN_HEAD}")):
            run, seed = head_file.parent.parent.name, head_file.parent.name
            head = load_head(head_file.parent, tokenizer)
            row = {}
            for source, (latents, quality) in psnr.items():
                logits = head_logits(head, latents)
                own = judge_head(logits, quality, [16.0])["own"]
                keep = logits.argmax(-1)  # [N], k - 1
                accuracy = prior[source].gather(1, keep[:, None]).mean().item()
                row[source] = {
                    "tokens": own["tokens"],
                    "psnr": own["quality"],
                    "saved": own["tokens_saved"],
                    "share": own["oracle_share"],
                    "prior_top5": accuracy,
                }
            for source in HELDOUT_SETS:  # what the run's reward itself asks for: its utility's argmax per clip
                utility = reward_utility(tokenizer, source, head_file.parent, tables)
                row[source]["reward_argmax_saved"] = judge_head(utility, psnr[source][1], [16.0])["own"]["tokens_saved"]
            results.setdefault(f"{sweep.name}/{run}", {})[seed] = row
            print(sweep.name, run, seed, json.dumps(row), flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    lines = [
        "| run | set | #tokens | PSNR (dB) | saved vs Fixed (PSNR) | PSNR oracle's share | prior top-5 (%) | "
        "the reward's argmax: saved vs Fixed (PSNR) | seeds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run, seeds in results.items():
        for source in HELDOUT_SETS:
            values = {c: [seeds[s][source][c] for s in seeds] for c in COLUMNS}
            lines.append(
                f"| {run} | {source} | {seed_spread(values['tokens'], pct=False)} | "
                f"{seed_spread(values['psnr'], pct=False)} | {seed_spread(values['saved'])} | "
                f"{seed_spread(values['share'])} | {seed_spread([100 * v for v in values['prior_top5']], pct=False)} | "
                f"{seed_spread(values['reward_argmax_saved'])} | {len(seeds)} |"
            )
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
