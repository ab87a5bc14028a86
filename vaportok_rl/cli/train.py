"""``vaportok-rl train RECIPE [key=value ...] [--resume | --overwrite] [--help-config] [--no-progress]``: GRPO.

Flags and overrides mix freely (``train R.yaml --resume steps=12``). Every user mistake (a bad key, file, plugin,
unwritable folder, bad video, a plugin raising mid-training) ends in one line naming it and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import torch

from vaportok_rl.config import ConfigError, describe
from vaportok_rl.rewards import RewardError
from vaportok_rl.train import TrainingInterrupted, run_training
from vaportok_rl.train_config import TrainConfig, load_train_config


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"vaportok-rl train: warning: {message}", file=sys.stderr)


def _fail(message: str, code: int = 2) -> int:
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun: one line, from rank 0
        print(f"vaportok-rl train: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vaportok-rl train",
        description="GRPO-tune the taildrop head of a frozen tokenizer. Multi-process: "
        "torchrun --standalone --nproc_per_node P -m vaportok_rl.cli train RECIPE ...",
        epilog="Overrides are dotted config keys, e.g. steps=50 grpo.beta=0 rewards.efficiency=null "
        "rewards.penalty.kwargs.shape=quadratic. --help-config lists every key.",
    )
    parser.add_argument("recipe", nargs="?", help="YAML recipe, e.g. recipes/grpo_default.yaml")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in log.output_dir")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace what a run writes in a log.output_dir that holds anything"
    )
    parser.add_argument("--help-config", action="store_true", help="list every config key with type, default, doc")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_intermixed_args(argv)  # flags and overrides mix freely: R.yaml --resume steps=12
    if args.help_config:
        print(describe(TrainConfig))
        return 0
    if args.recipe is None:
        parser.error("a recipe is required (e.g. recipes/grpo_default.yaml)")
    if "=" in args.recipe:
        parser.error(f"the first argument must be a recipe file, got the override {args.recipe!r}")
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        parser.error(f"overrides must look like key=value, got {bad}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", RuntimeWarning)
            warnings.showwarning = _one_line_warning  # e.g. "resuming from the newest *readable* checkpoint"
            config = load_train_config(args.recipe, args.overrides)
            summary = run_training(config, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    except TrainingInterrupted as error:  # Ctrl-C: where the run stands, how to resume
        return _fail(f"{error}", 130)
    except (ConfigError, RewardError) as error:  # TrainingError too: bad file, plugin, unwritable folder
        return _fail(f"error: {error}")
    except OSError as error:  # a disk error outside the training loop (e.g. reading the recipe)
        return _fail(f"error: {error.filename or ''}: {error.strerror or error}")
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    final = summary.get("final_eval") or {}
    if final:
        print(
            f"held-out reward {summary['initial_eval']['eval/reward']:.4g} -> {final['eval/reward']:.4g}, "
            f"argmax tokens {final['eval/argmax_tokens/mean']:.1f}, argmax PSNR {final['eval/argmax_psnr']:.2f} dB"
        )
    print(f"wrote {Path(config.log.output_dir) / 'summary.json'}")
    return 0
