"""``vaportok-rl <subcommand>``: a thin dispatcher. Each subcommand lives beside the code it drives, as a
``cli(argv) -> int`` function with its own argparse parser, and is imported only when called (so
``vaportok-rl --help`` stays fast)."""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "pretrain": ("vaportok_rl.tokenizer.pretrain:cli", "pretrain the built-in tokenizer, AR prior and taildrop head"),
    "tokenizer-report": ("vaportok_rl.tokenizer.report:cli", "PSNR/SSIM per k, codebook usage, prior accuracy"),
    "train": ("vaportok_rl.trainer:cli", "GRPO-tune a taildrop head on a frozen tokenizer"),
    "eval": ("vaportok_rl.evaluation:cli", "evaluate a head against budgeted allocators and the oracle"),
    "sweep": ("vaportok_rl.sweep:cli", "run a sweep recipe (grid or list of overrides)"),
    "export": ("vaportok_rl.export:cli", "export a tuned head (safetensors + config + model card)"),
    "rewards": ("vaportok_rl.rewards:cli", "list built-in and plugin rewards"),
}


def usage() -> str:
    lines = ["usage: vaportok-rl <subcommand> [args...]", "", "subcommands:"]
    lines += [f"  {name:<18} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    lines += ["", "Run 'vaportok-rl <subcommand> --help' for its options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"vaportok-rl: unknown subcommand {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module, func = SUBCOMMANDS[name][0].split(":")
    return int(getattr(importlib.import_module(module), func)(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
