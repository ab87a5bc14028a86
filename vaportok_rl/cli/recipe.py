"""The one front end of the recipe commands (``train``, ``distill``, ``pretrain``, ``sweep``): their shared arguments
(recipe, dotted overrides, ``--help-config``, ``--resume`` | ``--overwrite``, ``--no-progress``), the checks of
what was typed, and how a command ends: one line and exit 2 for a user's mistake (any
:class:`~vaportok_rl.errors.UserError`, or a file the OS refuses), one line and exit 130 for Ctrl-C, one line
per warning. Under ``torchrun`` only rank 0 speaks."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from vaportok_rl.config import describe
from vaportok_rl.errors import UserError

__all__ = ["main_rank", "recipe_parser", "run_recipe_command"]

T = TypeVar("T")


def main_rank() -> bool:
    """True on the process that speaks (rank 0 under torchrun, the only one otherwise)."""
    return int(os.environ.get("RANK", "0")) == 0


def recipe_parser(
    prog: str, description: str, *, example: str, epilog: str, writes: str, resume: bool = True
) -> argparse.ArgumentParser:
    """The parser of a recipe command: ``prog RECIPE [key=value ...] [--resume | --overwrite] [--help-config]``
    (flags and overrides mix freely: ``R.yaml --resume steps=12``); ``writes`` says what --overwrite replaces;
    ``resume=False`` for a command that continues by being run again (sweep)."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog)
    parser.add_argument("recipe", nargs="?", help=f"YAML recipe, e.g. {example}")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    how = parser.add_mutually_exclusive_group()
    if resume:
        how.add_argument("--resume", action="store_true", help="continue from the newest checkpoint there")
    how.add_argument(
        "--overwrite",
        action="store_true",
        help=f"replace what this command writes ({writes}) in an output folder that holds anything; other files "
        "there are left alone",
    )
    parser.add_argument("--help-config", action="store_true", help="list every config key with type, default, doc")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def parse_recipe_args(
    parser: argparse.ArgumentParser, argv: list[str] | None, schema: type, *, recipe_required: bool
) -> argparse.Namespace | None:
    """Parse; None when ``--help-config`` was printed. A first argument that is an override is one when the
    recipe is optional (``distill price=0.2``), an error when it is required."""
    args = parser.parse_intermixed_args(argv)
    if args.help_config:
        print(describe(schema))
        return None
    if args.recipe is not None and "=" in args.recipe:
        if recipe_required:
            parser.error(f"the first argument must be a recipe file, got the override {args.recipe!r}")
        args.overrides.insert(0, args.recipe)
        args.recipe = None
    if args.recipe is None and recipe_required:
        parser.error(f"a recipe is required: {parser.prog} RECIPE.yaml")
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        parser.error(f"overrides must look like key=value, got {bad}")
    return args


def run_recipe_command(
    name: str, work: Callable[[], T], *, interrupted: tuple[type[BaseException], ...] = ()
) -> tuple[int, T | None]:
    """``work()`` with the command's ending rules: (0, result), or (2 or 130, None) after one line on stderr.
    ``interrupted``: the command's Ctrl-C errors, whose message says where the run stands and how to resume."""

    def say(message: str) -> None:
        if main_rank():
            print(f"vaportok-rl {name}: {message}", file=sys.stderr)

    def one_line_warning(message: Any, *args: Any, **kwargs: Any) -> None:
        say(f"warning: {message}")

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", RuntimeWarning)
            warnings.showwarning = one_line_warning  # e.g. "resuming from the newest *readable* checkpoint"
            return 0, work()
    except interrupted as error:
        say(str(error))
        return 130, None
    except UserError as error:  # a bad key, file, plugin, output folder, checkpoint; a full disk mid-run
        say(f"error: {error}")
        return 2, None
    except OSError as error:  # the OS refused a file outside the run (e.g. reading the recipe)
        say(f"error: {error.filename or ''}: {error.strerror or error}")
        return 2, None
