"""``vaportok-rl distill [RECIPE] [key=value ...] [--resume | --overwrite] [--help-config]``: the oracle-distilled head.

Enumerated groups with the psnr and token_cost plugins: every clip of the recipe's pool is decoded on a grid of keep
counts once (cached, reused by reruns), the head is fitted to the per-clip PSNR oracle's Boltzmann targets at the
recipe's price and knob prices, and the run folder loads wherever a head spec is taken.
"""

from __future__ import annotations

from pathlib import Path

from vaportok_rl.cli.recipe import parse_recipe_args, recipe_parser, run_recipe_command
from vaportok_rl.distill import DistillRecipe, load_distill_recipe, run_distill
from vaportok_rl.train import RUN_FILES, TrainingInterrupted


def main(argv: list[str] | None = None) -> int:
    parser = recipe_parser(
        "vaportok-rl distill",
        "Fit a taildrop head to the per-clip PSNR oracle at a price per token (EVATok-style router): "
        "the supervised reference for GRPO, and a valid GRPO start (policy.init).",
        example="recipes/distill_default.yaml",
        epilog="Overrides are dotted config keys, e.g. distill.price=0.1 data.videos=64. --help-config lists them.",
        writes=", ".join(RUN_FILES),
    )
    args = parse_recipe_args(parser, argv, DistillRecipe, recipe_required=False)
    if args is None:
        return 0

    def work() -> tuple[DistillRecipe, dict]:
        recipe = load_distill_recipe(args.recipe, args.overrides)
        progress = not args.no_progress
        return recipe, run_distill(recipe, progress=progress, resume=args.resume, overwrite=args.overwrite)

    code, result = run_recipe_command("distill", work, interrupted=(TrainingInterrupted,))
    if code:
        return code
    recipe, summary = result
    last = summary["last_train"]
    print(
        f"{recipe.data.videos * recipe.data.clips_per_video} pool clips; last minibatch: oracle "
        f"{last['oracle_tokens/mean']:.1f} tokens/clip, head {last['tokens/mean']:.1f}; loss {last['loss']:.4f}; "
        f"{summary['seconds']:.0f} s"
    )
    print(f"wrote {Path(recipe.output_dir)}")
    return 0
