"""``vaportok-rl sweep RECIPE [key=value ...] [--dry-run] [--output-dir DIR]``: many GRPO runs, one report.

A sweep recipe names a base training recipe and the runs to make over it::

    base: grpo_default.yaml                  # relative to the sweep file
    overrides: [log.output_dir=runs/my_sweep, steps=40]   # every run (optional)
    seeds: [0, 1, 2]                         # every run once per seed (optional)
    runs:                                    # named override sets (optional when grid is given)
      - {name: baseline}
      - {name: recon_x4, overrides: [rewards.reconstruction.weight=4]}
    grid:                                    # optional: cartesian product of key -> values
      optim.lr: [1.0e-4, 3.0e-4]
      grpo.beta: [0.0, 0.1]

Run ``name`` with seed ``k`` trains base ⊕ overrides ⊕ command-line overrides ⊕ the run's overrides ⊕ the
grid point ⊕ ``seed=k`` into ``<log.output_dir>/<name>[/seed<k>]``. With both ``runs`` and ``grid``, every run
is crossed with every grid point (named ``<run>-<point>``); with ``grid`` alone the points are the runs, named
after their values (``lr-0.0001_beta-0.0``). Every run's config is built and validated before the first one
starts, so a typo in run 7 fails at once, naming the run and the key.

Resumable: a run whose folder holds ``summary.json`` is finished and skipped; a run with a checkpoint resumes
from it (``run_training(resume=True)``); anything else starts fresh. Killing a sweep therefore loses at most
the steps of the run in flight since its last checkpoint: re-run the same command. A finished run whose
summary.json or head no longer reads (a disk error, an edit) is trained again from scratch, saying so in one
warning line; an unreadable ``sweep_metrics.json`` is recomputed. The tokenizer is loaded once and shared by all
runs.

The sweep folder is claimed (:mod:`vaportok_rl.run_folder`, kind "sweep") before any run starts: re-running the
same sweep into it continues it, while a folder that holds anything else (a user's files, a training run, ...)
is refused unless ``overwrite`` (``--overwrite``: the runs and report files the sweep writes there are removed
and made again; other files are left alone). Each run's own folder is claimed by ``run_training`` (kind "train").

When the runs are done, the sweep evaluates every run's tuned head (argmax keep counts) on its held-out
evaluation videos and writes, in the sweep folder:

    results.csv   one row per run (columns: :data:`RESULT_COLUMNS`, plus w_/reward_ columns of extra rewards)
    rewards.png   generation / reconstruction / efficiency / diversity reward over training, one line per run
                  (VaporTok Fig. 3)
    pareto.png    mean tokens vs PSNR (and vs prior top-5 accuracy), one labelled point per run
    table.md      a Markdown table averaged over seeds (± std); when runs drop rewards (the leave-one-out
                  ablation) it is the Table 1 analogue: missing reward, #tokens, PSNR, MSE, LPIPS, prior top-5
    sweep.json    the resolved sweep: recipe, overrides, runs and their folders

and prints the table. Each run folder also gets ``sweep_metrics.json`` (the held-out metrics of its head,
recomputed only when the head changes).

The package, one concern per module: ``expand`` (:func:`load_sweep`, the one sweep expander: runs, grid, seeds),
``folders`` (the sweep folder's claim, stale run folders, the dry-run listing), ``run`` (:func:`run_sweep`:
training and resuming the runs), ``results`` (per-run held-out measurements, results.csv), ``report`` (table.md,
rewards.png, pareto.png), ``files`` (the names of the files a sweep writes), ``errors`` (:class:`SweepError`).
"""

from __future__ import annotations

from vaportok_rl.sweep.errors import SweepError
from vaportok_rl.sweep.expand import Sweep, SweepRun, load_sweep
from vaportok_rl.sweep.files import (
    PARETO_PNG,
    RESULTS_CSV,
    REWARDS_PNG,
    SWEEP_FILES,
    SWEEP_JSON,
    SWEEP_METRICS,
    TABLE_MD,
)
from vaportok_rl.sweep.folders import check_run_folders, claim_sweep_folder, describe_runs
from vaportok_rl.sweep.report import TABLE_METRICS, format_table, write_report
from vaportok_rl.sweep.results import RESULT_COLUMNS, evaluate_run, load_results, result_row, write_results_csv
from vaportok_rl.sweep.run import run_sweep

__all__ = [
    "PARETO_PNG",
    "RESULTS_CSV",
    "RESULT_COLUMNS",
    "REWARDS_PNG",
    "SWEEP_FILES",
    "SWEEP_JSON",
    "SWEEP_METRICS",
    "TABLE_MD",
    "TABLE_METRICS",
    "Sweep",
    "SweepError",
    "SweepRun",
    "check_run_folders",
    "claim_sweep_folder",
    "describe_runs",
    "evaluate_run",
    "format_table",
    "load_results",
    "load_sweep",
    "result_row",
    "run_sweep",
    "write_report",
    "write_results_csv",
]
