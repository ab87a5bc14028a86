"""``vaportok-rl distill RECIPE [key=value ...] [--help-config] [--no-progress]``: the oracle-distilled head.

Enumerated groups with the psnr and token_cost plugins: every clip of the recipe's pool is decoded on a grid of keep
counts once (cached, reused by reruns), the head is fitted to the per-clip PSNR oracle's Boltzmann targets at the
recipe's price and knob prices, and the run folder loads wherever a head spec is taken.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vaportok_rl.config import ConfigError, describe
from vaportok_rl.distill import DistillRecipe, load_distill_recipe, run_distill
from vaportok_rl.train import TrainingInterrupted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vaportok-rl distill",
        description="Fit a taildrop head to the per-clip PSNR oracle at a price per token (EVATok-style router): "
        "the supervised reference for GRPO, and a valid GRPO start (policy.init).",
        epilog="Overrides are dotted config keys, e.g. distill.price=0.1 data.videos=64. --help-config lists them.",
    )
    parser.add_argument("recipe", nargs="?", help="YAML recipe, e.g. recipes/distill_default.yaml")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    parser.add_argument("--help-config", action="store_true", help="list every config key with type, default, doc")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in output_dir")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace what distill writes in an output_dir that holds anything"
    )
    args = parser.parse_intermixed_args(argv)
    if args.help_config:
        print(describe(DistillRecipe))
        return 0
    if args.recipe is not None and "=" in args.recipe:
        args.overrides.insert(0, args.recipe)
        args.recipe = None
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        parser.error(f"overrides must look like key=value, got {bad}")
    try:
        recipe = load_distill_recipe(args.recipe, args.overrides)
        summary = run_distill(recipe, progress=not args.no_progress, resume=args.resume, overwrite=args.overwrite)
    except TrainingInterrupted as error:  # Ctrl-C: where the run stands, how to resume
        print(f"vaportok-rl distill: {error}", file=sys.stderr)
        return 130
    except (ConfigError, ValueError) as error:
        print(f"vaportok-rl distill: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"vaportok-rl distill: error: {error.filename or ''}: {error.strerror or error}", file=sys.stderr)
        return 2
    last = summary["last_train"]
    print(
        f"{recipe.data.videos * recipe.data.clips_per_video} pool clips; last minibatch: oracle "
        f"{last['oracle_tokens/mean']:.1f} tokens/clip, head {last['tokens/mean']:.1f}; loss {last['loss']:.4f}; "
        f"{summary['seconds']:.0f} s"
    )
    print(f"wrote {Path(recipe.output_dir)}")
    return 0
