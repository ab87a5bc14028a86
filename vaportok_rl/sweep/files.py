"""The names of the files a sweep writes: in its folder (report files) and in each run's folder."""

from __future__ import annotations

SWEEP_METRICS = "sweep_metrics.json"  # in each run's folder: the sweep's own measurements of its head
SWEEP_JSON, RESULTS_CSV, TABLE_MD = "sweep.json", "results.csv", "table.md"
REWARDS_PNG, PARETO_PNG = "rewards.png", "pareto.png"
SWEEP_FILES = (SWEEP_JSON, RESULTS_CSV, REWARDS_PNG, PARETO_PNG, TABLE_MD)
"""What a sweep writes at the top of its folder, beside one folder per run (what --overwrite may replace)."""
