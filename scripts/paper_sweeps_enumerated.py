"""Issue 17, item 5(b): the paper's sweeps rerun with the per-clip rewards enumerated, each head judged by tokens saved
against Fixed at equal mean PSNR and by the AR prior's top-5 accuracy on the tokens it keeps.

    vaportok-rl sweep recipes/ablation_leave_one_out_enumerated.yaml
    vaportok-rl sweep recipes/sweep_recon_gen_enumerated.yaml
    python scripts/paper_sweeps_enumerated.py runs/ablation_leave_one_out_enumerated runs/sweep_recon_gen_enumerated

Every ``<sweep>/<run>/seed<s>`` folder holding a head is judged on ``vaportok-rl eval``'s held-out sets (32 videos ×
4 clips each, every clip at every k): at the head's own budget (its argmax per clip) the mean tokens, mean PSNR,
tokens saved against Fixed at that PSNR, the PSNR oracle's share, and the prior's top-5 accuracy on the retained
tokens (mean over clips). Rows are runs, mean ± std over seeds; writes results.json and table.md into ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vaportok_rl.judge import HELDOUT_SETS, heldout_quality, judge_head, seed_spread
from vaportok_rl.policy import head_logits
from vaportok_rl.run_files import RUN_HEAD
from vaportok_rl.runs import load_head
from vaportok_rl.tokenizer import load_tokenizer_spec

COLUMNS = ("tokens", "psnr", "saved", "share", "prior_top5")


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
            results.setdefault(f"{sweep.name}/{run}", {})[seed] = row
            print(sweep.name, run, seed, json.dumps(row), flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    lines = [
        "| run | set | #tokens | PSNR (dB) | saved vs Fixed (PSNR) | PSNR oracle's share | prior top-5 (%) | seeds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run, seeds in results.items():
        for source in HELDOUT_SETS:
            values = {c: [seeds[s][source][c] for s in seeds] for c in COLUMNS}
            lines.append(
                f"| {run} | {source} | {seed_spread(values['tokens'], pct=False)} | "
                f"{seed_spread(values['psnr'], pct=False)} | {seed_spread(values['saved'])} | "
                f"{seed_spread(values['share'])} | {seed_spread([100 * v for v in values['prior_top5']], pct=False)} | "
                f"{len(seeds)} |"
            )
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
