"""``vaportok-rl pretrain RECIPE [key=value ...] [--resume | --overwrite] [--help-config]``: the built-in tokenizer.

Flags and overrides mix freely. Every user mistake (a bad key or value, an output folder that is a file, unwritable,
or holds something else, a full disk) ends in one line naming it and exit status 2; Ctrl-C in one line saying which
checkpoint ``--resume`` continues from, exit status 130.
"""

from __future__ import annotations

from vaportok_rl.cli.recipe import parse_recipe_args, recipe_parser, run_recipe_command
from vaportok_rl.config import load_config
from vaportok_rl.tokenizer.pretrain import PretrainInterrupted, run_pretrain
from vaportok_rl.tokenizer.pretrain_config import PretrainConfig
from vaportok_rl.tokenizer.pretrain_folder import PRETRAIN_FILES


def main(argv: list[str] | None = None) -> int:
    parser = recipe_parser(
        "vaportok-rl pretrain",
        "Pretrain the built-in tokenizer, AR prior and taildrop head; writes OUTPUT_DIR/tokenizer.safetensors.",
        example="recipes/pretrain_tiny.yaml",
        epilog="Overrides are dotted config keys, e.g. optim.steps=100 model.num_latents=64. --help-config lists them.",
        writes=", ".join(PRETRAIN_FILES),
    )
    args = parse_recipe_args(parser, argv, PretrainConfig, recipe_required=False)
    if args is None:
        return 0

    def work():
        config = load_config(PretrainConfig, args.recipe, args.overrides)
        return run_pretrain(config, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)

    code, trainer = run_recipe_command("pretrain", work, interrupted=(PretrainInterrupted,))
    if code:
        return code
    print(f"wrote {trainer.tokenizer_path} (fingerprint {trainer.model.fingerprint[:16]})")
    return 0
