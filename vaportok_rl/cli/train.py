"""``vaportok-rl train RECIPE [key=value ...] [--resume | --overwrite] [--help-config] [--no-progress]``: tune a head.

Every user mistake (a bad key, file, plugin, output folder, bad video, a plugin raising mid-training) ends in one
line naming it and exit status 2; Ctrl-C in one line saying how to resume, exit 130 (:mod:`vaportok_rl.cli.recipe`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from vaportok_rl.cli.recipe import main_rank, parse_recipe_args, recipe_parser, run_recipe_command
from vaportok_rl.run_files import RUN_SUMMARY
from vaportok_rl.train import RUN_FILES, TrainingInterrupted, run_training
from vaportok_rl.train_config import TrainConfig, load_train_config


def main(argv: list[str] | None = None) -> int:
    parser = recipe_parser(
        "vaportok-rl train",
        "Tune the taildrop head of a frozen tokenizer (sampled GRPO or enumerated groups). Multi-process: "
        "torchrun --standalone --nproc_per_node P -m vaportok_rl.cli train RECIPE ...",
        example="recipes/grpo_default.yaml",
        epilog="Overrides are dotted config keys, e.g. steps=50 grpo.beta=0 rewards.efficiency=null "
        "rewards.penalty.kwargs.shape=quadratic. --help-config lists every key.",
        writes=", ".join(RUN_FILES),
    )
    args = parse_recipe_args(parser, argv, TrainConfig, recipe_required=True)
    if args is None:
        return 0

    def work() -> tuple[TrainConfig, dict]:
        config = load_train_config(args.recipe, args.overrides)
        progress = not args.no_progress
        return config, run_training(config, resume=args.resume, overwrite=args.overwrite, progress=progress)

    try:
        code, result = run_recipe_command("train", work, interrupted=(TrainingInterrupted,))
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if code or not main_rank():
        return code
    config, summary = result
    final = summary.get("final_eval") or {}
    if final:
        print(
            f"held-out reward {summary['initial_eval']['eval/reward']:.4g} -> {final['eval/reward']:.4g}, "
            f"argmax tokens {final['eval/argmax_tokens/mean']:.1f}, argmax PSNR {final['eval/argmax_psnr']:.2f} dB"
        )
    print(f"wrote {Path(config.log.output_dir) / RUN_SUMMARY}")
    return 0
