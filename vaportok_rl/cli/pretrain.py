"""``vaportok-rl pretrain RECIPE [key=value ...] [--resume] [--help-config]``: the built-in tokenizer."""

from __future__ import annotations

import sys
from pathlib import Path

from vaportok_rl.tokenizer.pretrain import PretrainConfig, run_pretrain


def main(argv: list[str] | None = None) -> int:
    import argparse

    from vaportok_rl.config import ConfigError, describe, load_config
    from vaportok_rl.tokenizer.default import save_tokenizer

    parser = argparse.ArgumentParser(
        prog="vaportok-rl pretrain",
        description="Pretrain the built-in tokenizer, AR prior and taildrop head; "
        "writes OUTPUT_DIR/tokenizer.safetensors.",
    )
    parser.add_argument("recipe", nargs="?", help="YAML recipe, e.g. recipes/pretrain_tiny.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.steps=100 model.num_latents=64")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/checkpoint if it exists")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--help-config", action="store_true", help="list every config key with its doc and exit")
    args = parser.parse_args(argv)
    if args.help_config:
        print(describe(PretrainConfig))
        return 0
    try:
        config = load_config(PretrainConfig, args.recipe, args.overrides)
    except (ConfigError, FileNotFoundError) as err:
        print(f"vaportok-rl pretrain: {err}", file=sys.stderr)
        return 2
    trainer = run_pretrain(config, resume=args.resume, progress=not args.no_progress)
    path = save_tokenizer(
        trainer.model, Path(config.log.output_dir) / "tokenizer.safetensors", extra=trainer.tokenizer_metadata()
    )
    print(f"wrote {path} (fingerprint {trainer.model.fingerprint[:16]})")
    return 0
