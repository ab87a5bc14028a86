"""Running a sweep: :func:`run_sweep` claims the sweep folder, checks every run before the first starts, trains
the unfinished runs in order (skipping finished ones, resuming killed ones, training damaged ones again), then
measures every finished run and writes the report."""

from __future__ import annotations

import contextlib
import json
import os
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from vaportok_rl.config import ConfigError, to_dict
from vaportok_rl.rewards import RewardError
from vaportok_rl.sweep.errors import SweepError, reason, warn_recovery
from vaportok_rl.sweep.expand import Sweep, SweepRun, load_sweep
from vaportok_rl.sweep.files import SWEEP_JSON
from vaportok_rl.sweep.folders import check_run_folders, claim_sweep_folder
from vaportok_rl.sweep.report import write_report
from vaportok_rl.sweep.results import evaluate_run, reference_point, result_row
from vaportok_rl.tokenizer.default import load_tokenizer_spec
from vaportok_rl.tokenizer.head import ExportError
from vaportok_rl.train import load_rewards, run_training

# run_training and load_tokenizer_spec are looked up here at call time (tests wrap them in this module);
__all__ = ["run_sweep"]


@contextlib.contextmanager
def _env(**values: str):
    """Set environment variables that are not set yet, for the duration (e.g. the wandb group of the sweep)."""
    added = [k for k in values if k not in os.environ]
    for k in added:
        os.environ[k] = values[k]
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def run_sweep(
    recipe: str | os.PathLike,
    overrides: Sequence[str] = (),
    *,
    output_dir: str | os.PathLike | None = None,
    tokenizer=None,
    progress: bool = True,
    keep_going: bool = False,
    overwrite: bool = False,
    log=None,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run every unfinished run of a sweep recipe, then evaluate all runs and write the report.

    ``tokenizer``: an already-built FrozenTokenizer for every run (default: each distinct ``tokenizer`` spec of
    the runs is loaded once). ``keep_going``: a failing run is reported and the sweep goes on (default: the
    exception propagates; finished runs stay finished, a re-run resumes). ``overwrite``: replace what the sweep
    writes in a sweep folder that holds anything else (:func:`claim_sweep_folder`). ``log``: called with one
    progress line per run (e.g. ``print``; default: silent); ``warn``: with one line per recovery (a finished
    run trained again, a cache recomputed; default: a RuntimeWarning). Returns {"sweep", "rows", "failed" (run
    ids), "errors" ({run id: the failure's traceback text}), "trained", "skipped", "files", "table"}."""
    log = log or (lambda message: None)
    warn = warn or warn_recovery
    sweep = load_sweep(recipe, overrides, output_dir=output_dir)
    folder = claim_sweep_folder(sweep, overwrite=overwrite)
    try:
        result = _run_claimed(sweep, tokenizer, progress, keep_going, log, warn)
        if not result["failed"]:
            folder.finish(runs=len(sweep.runs))
        return result
    finally:
        folder.release()


def _run_claimed(sweep: Sweep, tokenizer, progress: bool, keep_going: bool, log, warn) -> dict[str, Any]:
    """:func:`run_sweep` once its folder is claimed: check, train, measure, report."""
    check_run_folders(sweep)
    _write_sweep_json(sweep)
    tokenizer_for = _tokenizer_loader(tokenizer)
    _check_rewards(sweep)
    outcome = _train_runs(sweep, tokenizer_for, progress, keep_going, log, warn)
    rows, files, table = _measure_and_report(sweep, tokenizer_for, warn)
    return {
        "sweep": sweep,
        "rows": rows,
        "failed": outcome["failed"],
        "errors": outcome["errors"],
        "trained": outcome["trained"],
        "skipped": outcome["skipped"],
        "files": files,
        "table": table,
    }


def _write_sweep_json(sweep: Sweep) -> None:
    """sweep.json: the resolved sweep (recipe, base, shared overrides, every run with its folder)."""
    (sweep.root / SWEEP_JSON).write_text(
        json.dumps(
            {
                "recipe": str(sweep.recipe),
                "base": str(sweep.base),
                "overrides": sweep.overrides,
                "runs": [
                    {
                        "run": r.run_id,
                        "name": r.name,
                        "seed": r.seed,
                        "overrides": r.overrides,
                        "dir": str(r.output_dir),
                    }
                    for r in sweep.runs
                ],
            },
            indent=1,
        )
    )


def _tokenizer_loader(tokenizer) -> Callable[[SweepRun], Any]:
    """run -> its tokenizer: ``tokenizer`` when given, else its ``tokenizer`` spec's, each spec loaded once."""
    tokenizers: dict[str, Any] = {}

    def tokenizer_for(run: SweepRun):
        if tokenizer is not None:
            return tokenizer
        spec = run.config.tokenizer
        if spec not in tokenizers:
            tokenizers[spec] = load_tokenizer_spec(spec)
        return tokenizers[spec]

    return tokenizer_for


def _check_rewards(sweep: Sweep) -> None:
    """Every reward plugin loads and passes its checks before the first run starts (each distinct set once)."""
    seen = set()
    for run in sweep.runs:
        key = json.dumps([to_dict(run.config)["rewards"], run.config.plugin_paths], sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            try:
                load_rewards(run.config)
            except (RewardError, ConfigError) as error:
                raise SweepError(f"{sweep.recipe}: run {run.run_id!r}: {error}") from error


def _train_runs(sweep: Sweep, tokenizer_for, progress: bool, keep_going: bool, log, warn) -> dict[str, Any]:
    """Train every run that is not finished (a damaged finished run: again from scratch), in order. Returns
    {"trained", "skipped", "failed" (run ids), "errors" ({run id: traceback text})}."""
    trained, skipped, failed, errors = [], [], [], {}
    wandb_group = {"WANDB_RUN_GROUP": sweep.name} if any(r.config.log.report_to == "wandb" for r in sweep.runs) else {}
    with _env(**wandb_group):
        for i, run in enumerate(sweep.runs, 1):
            status = run.status()
            head = f"[{i}/{len(sweep.runs)}] {run.run_id}"
            damage = run.damage() if status == "done" else None
            if status == "done" and damage is None:
                log(f"{head}: finished earlier, skipped")
                skipped.append(run.run_id)
                continue
            if damage is not None:
                warn(f"run {run.run_id}: {damage}; training it again from scratch in {run.output_dir}")
            elif status == "resume":
                log(f"{head}: resuming from step {run.resume_step()}/{run.config.total_steps} in {run.output_dir}")
            else:
                log(f"{head}: training {run.config.total_steps} steps in {run.output_dir}")
            t0 = time.perf_counter()
            try:
                again = {"overwrite": True} if damage is not None else {}  # only what a run writes in its folder
                run_training(
                    run.config, tokenizer=tokenizer_for(run), resume=status == "resume", progress=progress, **again
                )
            except Exception as error:
                if not keep_going:
                    raise
                log(f"{head}: FAILED: {type(error).__name__}: {error}")
                errors[run.run_id] = traceback.format_exc()
                failed.append(run.run_id)
                continue
            trained.append(run.run_id)
            log(f"{head}: done in {time.perf_counter() - t0:.0f} s")
    return {"trained": trained, "skipped": skipped, "failed": failed, "errors": errors}


def _measure_and_report(sweep: Sweep, tokenizer_for, warn) -> tuple[list[dict], dict, str]:
    """Held-out metrics of every finished run's head, then the report: (rows, report files, table text)."""
    finished = [run for run in sweep.runs if run.status() == "done"]
    rows, files, table = [], {}, ""
    if finished:
        lpips_metric = None  # metrics.shared_lpips, loaded on first use (not at all when every run is cached)
        for run in finished:
            try:
                rows.append(result_row(run, evaluate_run(run, tokenizer_for(run), lpips_metric, warn)))
            except (OSError, json.JSONDecodeError, ExportError) as error:  # a finished run's file no longer reads
                raise SweepError(
                    f"run {run.run_id} ({run.output_dir}): cannot read its results ({reason(error)}); "
                    f"delete that folder and re-run the same command to train it again"
                ) from None
        reference = reference_point(finished[0], tokenizer_for(finished[0]), lpips_metric)
        files = write_report(sweep, rows, reference=reference)
        table = files["table"].read_text()
    return rows, files, table
