"""``vaportok-rl distill RECIPE [key=value ...] [--help-config] [--no-progress]``: the oracle-distilled head.

Decodes every truncation of the recipe's training clips once (kept in the run folder, reused on rerun), fits the
head to the per-clip PSNR oracle at the recipe's price, writes a run folder any head spec accepts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vaportok_rl.config import ConfigError, describe
from vaportok_rl.distill import DistillRecipe, load_distill_recipe, run_distill


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
        summary = run_distill(recipe, progress=not args.no_progress)
    except (ConfigError, ValueError) as error:
        print(f"vaportok-rl distill: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"vaportok-rl distill: error: {error.filename or ''}: {error.strerror or error}", file=sys.stderr)
        return 2
    print(
        f"{summary['clips']} training clips; oracle {summary['train_oracle_tokens_mean']:.1f} tokens/clip, head "
        f"{summary['train_head_tokens_mean']:.1f} ({summary['train_head_exact_share']:.0%} exact); "
        f"loss {summary['loss_first']:.4f} -> {summary['loss_last']:.4f}; {summary['seconds']:.0f} s"
    )
    print(f"wrote {Path(recipe.output_dir)}")
    return 0
