"""A sweep's measurements: each finished run's head on its held-out videos (cached in the run folder), the
starting head's reference point, one results.csv row per run, and results.csv itself (written and read back)."""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

from vaportok_rl.heldout import evaluate_head
from vaportok_rl.run_files import RUN_HEAD, RUN_SUMMARY
from vaportok_rl.runs import load_head
from vaportok_rl.sweep.errors import reason, warn_recovery
from vaportok_rl.sweep.expand import SweepRun
from vaportok_rl.sweep.files import RESULTS_CSV, SWEEP_METRICS
from vaportok_rl.tokenizer.head import TaildropHead
from vaportok_rl.train_config import DEFAULT_REWARDS, TrainConfig

RESULT_COLUMNS = (
    "run",
    "name",
    "seed",
    "steps",
    *(f"w_{label}" for label in DEFAULT_REWARDS),
    "tokens",
    "tokens_std",
    "psnr",
    "mse",
    "lpips",
    "prior_top5",
    "sampled_tokens",
    "eval_reward",
    *(f"reward_{label}" for label in DEFAULT_REWARDS),
    "seconds",
    "output_dir",
)
"""results.csv columns. ``w_<label>``: the reward's weight (0 when the run drops it). ``tokens`` (± ``tokens_std``
over clips), ``psnr`` (mean of per-clip PSNR, dB), ``mse``, ``lpips`` (AlexNet) and ``prior_top5`` (the AR prior's
top-5 accuracy on the kept tokens): the tuned head's argmax keep counts on the run's held-out videos after the
last step. ``sampled_tokens``, ``eval_reward`` and ``reward_<label>`` (each reward's mean, empty when the run does
not compute it): the run's own final held-out evaluation of G sampled paths per video (summary.json)."""


# =============================================================================================== held-out metrics


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def evaluate_run(run: SweepRun, tokenizer, lpips_metric=None, warn=None) -> dict[str, float]:
    """:func:`evaluate_head` of a finished run's tuned head, cached in the run folder's sweep_metrics.json
    (keyed by the head file's hash, so a re-trained run is re-evaluated; an unreadable cache is recomputed,
    saying so through ``warn``)."""
    cache = run.output_dir / SWEEP_METRICS
    digest = _sha256(run.output_dir / RUN_HEAD)
    if cache.is_file():
        try:
            cached = json.loads(cache.read_text())
            fresh = cached.get("head_sha256") == digest
            fresh = fresh and cached.get("tokenizer_fingerprint") == str(tokenizer.fingerprint)
            if fresh and isinstance(cached.get("metrics"), dict):
                return cached["metrics"]
        except (OSError, ValueError, AttributeError) as error:
            (warn or warn_recovery)(f"run {run.run_id}: {cache} is unreadable ({reason(error)}); recomputing it")
    metrics = evaluate_head(load_head(run.output_dir), run.config, tokenizer, lpips_metric)
    record = {"head_sha256": digest, "tokenizer_fingerprint": str(tokenizer.fingerprint), "metrics": metrics}
    cache.write_text(json.dumps(record, indent=1))
    return metrics


def reference_point(run: SweepRun, tokenizer, lpips_metric) -> dict | None:
    """The starting head on the first run's held-out videos: the tokenizer's pretrained head when it has one
    (all metrics), else the first run's step-0 evaluation (argmax tokens and PSNR)."""
    pretrained = getattr(tokenizer, "head", None)
    if isinstance(pretrained, TaildropHead):
        return {"label": "start", **evaluate_head(copy.deepcopy(pretrained), run.config, tokenizer, lpips_metric)}
    summary = json.loads((run.output_dir / RUN_SUMMARY).read_text())
    first = summary.get("initial_eval") or {}
    if first.get("step") != 0 or "eval/argmax_tokens/mean" not in first:
        return None
    return {
        "label": "start",
        "tokens": first["eval/argmax_tokens/mean"],
        "psnr": first.get("eval/argmax_psnr", math.nan),
        "prior_top5": math.nan,
    }


# =============================================================================================== results.csv


def _weights(config: TrainConfig) -> dict[str, float]:
    """{label: weight} of every reward the run knows of; dropped (null) rewards weigh 0."""
    weights = {label: 0.0 for label in DEFAULT_REWARDS}
    weights.update({label: spec.weight for label, spec in config.active_rewards().items()})
    return weights


def result_row(run: SweepRun, metrics: dict[str, float]) -> dict[str, Any]:
    """One results.csv row of a finished run (see :data:`RESULT_COLUMNS`)."""
    summary = json.loads((run.output_dir / RUN_SUMMARY).read_text())
    final = summary.get("final_eval") or {}
    row: dict[str, Any] = {"run": run.run_id, "name": run.name, "seed": run.seed, "steps": run.config.total_steps}
    row.update({f"w_{label}": w for label, w in _weights(run.config).items()})
    row.update({k: metrics[k] for k in ("tokens", "tokens_std", "psnr", "mse", "lpips", "prior_top5")})
    row["sampled_tokens"] = final.get("eval/tokens/mean")
    row["eval_reward"] = final.get("eval/reward")
    labels = [*DEFAULT_REWARDS, *(lab for lab in run.config.active_rewards() if lab not in DEFAULT_REWARDS)]
    row.update({f"reward_{label}": final.get(f"eval/rewards/{label}/mean") for label in labels})
    row["seconds"] = summary.get("seconds")
    row["output_dir"] = str(run.output_dir)
    return row


def _columns(rows: list[dict]) -> list[str]:
    extra = [k for row in rows for k in row if k not in RESULT_COLUMNS]
    extra_w = list(dict.fromkeys(k for k in extra if k.startswith("w_")))
    extra_r = list(dict.fromkeys(k for k in extra if k.startswith("reward_")))
    cols = list(RESULT_COLUMNS)
    cols[cols.index("tokens") : cols.index("tokens")] = extra_w
    cols[cols.index("seconds") : cols.index("seconds")] = extra_r
    return cols


def write_results_csv(rows: list[dict], path: Path) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=_columns(rows))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return path


def load_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """results.csv (a file, or a sweep folder holding one) -> rows with numbers as floats (empty cells: None)."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_CSV
    out = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            parsed: dict[str, Any] = {}
            for k, v in row.items():
                if k in ("run", "name", "output_dir"):
                    parsed[k] = v
                elif v == "":
                    parsed[k] = None
                else:
                    try:
                        parsed[k] = float(v)
                    except ValueError:
                        parsed[k] = v
            parsed["seed"] = int(parsed["seed"]) if parsed.get("seed") is not None else None
            out.append(parsed)
    return out
