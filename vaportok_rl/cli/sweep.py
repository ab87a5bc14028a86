"""``vaportok-rl sweep RECIPE [key=value ...] [--dry-run] [--output-dir DIR] [--overwrite] [--keep-going]
[--no-progress]``."""

from __future__ import annotations

import sys
import traceback

from vaportok_rl.cli.recipe import parse_recipe_args, recipe_parser
from vaportok_rl.errors import UserError
from vaportok_rl.sweep import check_run_folders, describe_runs, load_sweep, run_sweep
from vaportok_rl.sweep_config import SweepConfig
from vaportok_rl.train import TrainingInterrupted


def _warn(message: str) -> None:
    print(f"vaportok-rl sweep: warning: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = recipe_parser(
        "vaportok-rl sweep",
        "Run a sweep recipe: named override sets (and/or a grid) over a base training recipe, one folder per run, "
        "resumable; then results.csv, rewards.png, pareto.png and table.md in the sweep folder.",
        example="recipes/sweep_recon_gen.yaml",
        epilog="Overrides (key=value) apply to every run, e.g. steps=20 rollout.videos_per_step=4. Re-running the "
        "same command skips finished runs and resumes a killed one from its checkpoint.",
        writes="its runs and report files",
        resume=False,
    )
    parser.add_argument("--dry-run", action="store_true", help="list the runs and their status; train nothing")
    parser.add_argument("--output-dir", help="sweep folder (default: the recipe's log.output_dir)")
    parser.add_argument("--keep-going", action="store_true", help="go on with the next run when one fails")
    args = parse_recipe_args(parser, argv, SweepConfig, recipe_required=True)
    if args is None:
        return 0
    try:
        if args.dry_run:
            sweep = load_sweep(args.recipe, args.overrides, output_dir=args.output_dir)
            print(describe_runs(sweep))
            check_run_folders(sweep)
            return 0
        result = run_sweep(
            args.recipe,
            args.overrides,
            output_dir=args.output_dir,
            progress=not args.no_progress,
            keep_going=args.keep_going,
            overwrite=args.overwrite,
            log=print,
            warn=_warn,
        )
    except TrainingInterrupted as error:  # Ctrl-C inside a run: that run keeps its checkpoints
        print(f"vaportok-rl sweep: {error}; re-run the same command to continue the sweep", file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # Ctrl-C between runs
        print("vaportok-rl sweep: interrupted (Ctrl-C); re-run the same command to continue the sweep", file=sys.stderr)
        return 130
    except UserError as error:  # a bad recipe, run folder, plugin; a run's TrainingError (bad file, disk)
        print(f"vaportok-rl sweep: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # an unwritable sweep folder, a full disk
        print(
            f"vaportok-rl sweep: error: cannot write {error.filename or ''} ({error.strerror or error}); finished runs "
            f"are kept: free space or fix permissions and re-run the same command",
            file=sys.stderr,
        )
        return 2
    except Exception as error:  # a run crashed: what is finished stays finished
        traceback.print_exc()
        print(
            f"vaportok-rl sweep: a run failed ({type(error).__name__}: {error}). Finished runs are kept; re-run "
            f"the same command to resume (--keep-going runs the others past a failing one).",
            file=sys.stderr,
        )
        return 1
    if result["table"]:
        print()
        print(result["table"])
    for name, path in result["files"].items():
        print(f"wrote {path}" + ("" if name != "results" else f" ({len(result['rows'])} runs)"))
    for run_id, text in result.get("errors", {}).items():
        print(f"vaportok-rl sweep: run {run_id} failed:\n{text}", file=sys.stderr)
    if result["failed"]:
        print(
            f"vaportok-rl sweep: {len(result['failed'])} run(s) failed: {', '.join(result['failed'])}", file=sys.stderr
        )
        return 1
    return 0
