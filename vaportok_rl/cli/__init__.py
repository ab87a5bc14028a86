"""``vaportok-rl <subcommand>``: the command line. All argparse and printing lives in this package: one module per
subcommand (``vaportok_rl.cli.<name>``), each with a ``main(argv) -> int`` that parses, calls the library (which
returns data and raises errors naming the file, key or plugin) and prints; a user mistake exits with status 2 and
one line, never a traceback. A subcommand's module is imported only when called (``vaportok-rl --help`` stays
fast). ``python -m vaportok_rl.cli`` is the same command (for torchrun)."""

from __future__ import annotations

import importlib
import os
import sys

from vaportok_rl.errors import UserError

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "pretrain": ("vaportok_rl.cli.pretrain:main", "pretrain the built-in tokenizer, AR prior and taildrop head"),
    "tokenizer-report": ("vaportok_rl.cli.tokenizer_report:main", "PSNR/SSIM per k, codebook usage, prior accuracy"),
    "train": ("vaportok_rl.cli.train:main", "GRPO-tune a taildrop head on a frozen tokenizer"),
    "distill": ("vaportok_rl.cli.distill:main", "fit a head to the per-clip PSNR oracle (the supervised reference)"),
    "eval": ("vaportok_rl.cli.eval:main", "evaluate a head against budgeted allocators and the oracle"),
    "sweep": ("vaportok_rl.cli.sweep:main", "run a sweep recipe (grid or list of overrides)"),
    "export": ("vaportok_rl.cli.export:main", "export a tuned head (safetensors + config + model card)"),
    "rewards": ("vaportok_rl.cli.rewards:main", "list built-in and plugin rewards"),
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
    try:
        return int(getattr(importlib.import_module(module), func)(rest) or 0)
    except UserError as error:  # a mistake the subcommand did not word itself: still one line, exit 2
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"vaportok-rl {name}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a subcommand without its own Ctrl-C message (train, distill, pretrain, sweep have one)
        print(
            f"vaportok-rl {name}: interrupted (Ctrl-C); what was written is kept: run the same command again",
            file=sys.stderr,
        )
        return 130
