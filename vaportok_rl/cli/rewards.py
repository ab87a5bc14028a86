"""``vaportok-rl rewards list [--recipe R] [--path DIR ...] [--json]``: the reward plugins a recipe can name."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vaportok_rl.config import ConfigError, load_yaml
from vaportok_rl.reward_api import _source_file
from vaportok_rl.reward_loading import _builtin_folder
from vaportok_rl.rewards import BUILTIN_PACKAGE, RewardError, list_rewards, load_reward
from vaportok_rl.sweep import load_sweep
from vaportok_rl.train_config import load_train_config


def _examples_folder() -> Path:
    return _builtin_folder() / "examples"


def _recipe_configs(recipe: str) -> list:
    """The TrainConfig(s) of a training recipe, or of every run of a sweep recipe (``base`` + ``runs``)."""

    data = load_yaml(recipe)
    if isinstance(data, dict) and "base" in data and ("runs" in data or "grid" in data):
        return [run.config for run in load_sweep(recipe).runs]
    return [load_train_config(recipe)]


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _entry_rows(entries: list[dict], errors: list[str]) -> list[list[str]]:
    rows = []
    for e in entries:
        where = e.get("where") or ("built-in" if e["builtin"] else e["file"])
        if e.get("error"):
            errors.append(e["error"])
            rows.append([e["spec"], "-", "-", where, f"ERROR (see below, #{len(errors)})"])
            continue
        doc = ("(shadowed by an earlier file of the same name) " if e["shadowed"] else "") + e["doc"]
        rows.append([e["spec"], e["name"], ", ".join(e["needs"]) or "-", where, _short(doc)])
    return rows


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vaportok-rl rewards", description="Reward plugins (see docs/rewards.md).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="list")
    ls = sub.add_parser(
        "list",
        help="list built-in rewards and plugins with their declared needs",
        description="List the reward plugins a recipe can name by short name: files in the recipe's plugin_paths "
        "and --path folders (searched first), then the built-ins; plus the example plugins shipped with "
        "vaportok-rl. With --recipe, also load and validate every reward the recipe uses (exit status 1 if one "
        "fails), as training would before its first step.",
    )
    ls.add_argument("--recipe", help="a training (or sweep) recipe: adds its plugin_paths and checks its rewards")
    ls.add_argument("--path", action="append", default=[], metavar="DIR", help="a plugin folder (repeatable)")
    ls.add_argument("--json", action="store_true", help="print machine-readable JSON instead of tables")
    return parser


def _recipe_rewards(configs: list) -> list[dict]:
    """The recipe's rewards, loaded and validated exactly as the trainer does (one row per distinct reward)."""
    used: list[dict] = []
    for config in configs:
        for label, spec in config.active_rewards().items():
            row = {"label": label, "spec": spec.spec or label, "weight": spec.weight, "kwargs": spec.kwargs}
            if row in [{k: u[k] for k in row} for u in used]:
                continue
            try:
                reward = load_reward(row["spec"], row["kwargs"], search_paths=[Path(p) for p in config.plugin_paths])
                row.update(needs=sorted(getattr(reward, "needs", ())), file=_source_file(reward), error=None)
            except (RewardError, ConfigError) as error:  # ConfigError: a plugin_paths folder that does not exist
                row.update(needs=[], file=None, error=str(error))
            used.append(row)
    return used


def _print_tables(entries: list, examples: list, used: list[dict], paths: list[str], recipe: str | None) -> None:
    errors: list[str] = []
    header = ["SPEC", "NAME", "NEEDS", "FILE", "DESCRIPTION"]
    searched = ", ".join(paths) if paths else "none (add folders with --path or the recipe's plugin_paths)"
    print(f"Reward plugins by short name (plugin folders searched first: {searched})\n")
    print(_table(_entry_rows(entries, errors), header))
    for folder in [p for p in paths if not Path(p).is_dir()]:
        print(f"\nwarning: plugin folder {folder!r} does not exist")
    if examples:
        print(
            "\nExample plugins shipped with vaportok-rl (use the dotted spec below, or add their folder "
            f"{_examples_folder()} to plugin_paths and use the file name)\n"
        )
        print(_table(_entry_rows(examples, errors), header))
    if used:
        print(f"\nRewards of {recipe} (loaded and validated as training would)\n")
        rows = []
        for u in used:
            status = "ok" if u["error"] is None else f"ERROR (see below, #{len(errors) + 1})"
            if u["error"] is not None:
                errors.append(u["error"])
            kwargs = json.dumps(u["kwargs"]) if u["kwargs"] else "-"
            rows.append([u["label"], u["spec"], f"{u['weight']:g}", kwargs, ", ".join(u["needs"]) or "-", status])
        print(_table(rows, ["LABEL", "SPEC", "WEIGHT", "KWARGS", "NEEDS", "STATUS"]))
    if errors:
        print("\nErrors:")
        for i, message in enumerate(errors, 1):
            print(f"  #{i}: {message}")
    print(
        "\nNEEDS is what the rollout computes for the plugin: 'reconstructions' (decode every truncation), "
        "'prior_correct' (one AR-prior pass per clip); '-' = keep counts, videos and complexity only."
    )


def main(argv: list[str] | None = None) -> int:
    """``vaportok-rl rewards list [--recipe R] [--path DIR ...] [--json]``."""
    args = _parser().parse_args(argv)
    configs = []
    if args.recipe:
        try:
            configs = _recipe_configs(args.recipe)
        except ConfigError as error:
            print(f"vaportok-rl rewards list: error: {error}", file=sys.stderr)
            return 2
    paths: list[str] = []
    for folder in [p for c in configs for p in c.plugin_paths] + list(args.path):
        if folder not in paths:
            paths.append(folder)
    entries = list_rewards(paths)
    examples = [
        {**e, "spec": f"{BUILTIN_PACKAGE}.examples.{e['spec']}", "where": "example"}
        for e in list_rewards([_examples_folder()])
        if not e["builtin"]
    ]
    used = _recipe_rewards(configs)
    if args.json:
        print(json.dumps({"plugin_paths": paths, "rewards": entries, "examples": examples, "recipe": used}, indent=1))
    else:
        _print_tables(entries, examples, used, paths, args.recipe)
    return 1 if any(u["error"] for u in used) else 0
