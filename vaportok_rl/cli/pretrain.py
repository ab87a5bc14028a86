"""``vaportok-rl pretrain RECIPE [key=value ...] [--resume | --overwrite] [--help-config]``: the built-in tokenizer.

Flags and overrides mix freely. Every user mistake (a bad key or value, an output folder that is a file, unwritable,
or holds something else, a full disk) ends in one line naming it and exit status 2; Ctrl-C in one line saying which
checkpoint ``--resume`` continues from, exit status 130.
"""

from __future__ import annotations

import sys

from vaportok_rl.tokenizer.pretrain import PretrainConfig, PretrainInterrupted, run_pretrain


def _fail(message: str, code: int = 2) -> int:
    print(f"vaportok-rl pretrain: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    import argparse

    from vaportok_rl.config import ConfigError, describe, load_config
    from vaportok_rl.run_folder import RunFolderError

    parser = argparse.ArgumentParser(
        prog="vaportok-rl pretrain",
        description="Pretrain the built-in tokenizer, AR prior and taildrop head; "
        "writes OUTPUT_DIR/tokenizer.safetensors.",
    )
    parser.add_argument("recipe", nargs="?", help="YAML recipe, e.g. recipes/pretrain_tiny.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.steps=100 model.num_latents=64")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/checkpoint if it exists")
    how.add_argument(
        "--overwrite",
        action="store_true",
        help="replace what pretraining writes (checkpoint, metrics.jsonl, tokenizer.safetensors) in a "
        "log.output_dir that holds anything; other files there are left alone",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--help-config", action="store_true", help="list every config key with its doc and exit")
    args = parser.parse_intermixed_args(argv)  # flags and overrides mix freely: R.yaml --resume optim.steps=12
    if args.help_config:
        print(describe(PretrainConfig))
        return 0
    if args.recipe is not None and "=" in args.recipe:
        parser.error(f"the first argument must be a recipe file, got the override {args.recipe!r}")
    try:
        config = load_config(PretrainConfig, args.recipe, args.overrides)
        trainer = run_pretrain(config, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    except PretrainInterrupted as error:  # Ctrl-C: where the run stands, how to resume
        return _fail(str(error), 130)
    except KeyboardInterrupt:  # before the run started (reading the recipe or the checkpoint): nothing written
        return _fail("interrupted (Ctrl-C) before pretraining started; nothing was written", 130)
    except (ConfigError, RunFolderError) as error:  # PretrainError too: a bad key, folder, checkpoint, full disk
        return _fail(f"error: {error}")
    except OSError as error:  # e.g. an unreadable recipe
        return _fail(f"error: {error.filename or ''}: {error.strerror or error}")
    print(f"wrote {trainer.tokenizer_path} (fingerprint {trainer.model.fingerprint[:16]})")
    return 0
