"""One allocation's metric record: what the report says of every keep-count vector it judges, at the budget and
along the sweep (tokens, mean MSE / PSNR / SSIM / LPIPS over clips, the AR prior's top-5 accuracy on the kept
tokens, Spearman of tokens against spatial and temporal complexity), and the report made JSON-ready."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from vaportok_rl.judge.candidates import CandidateMetrics
from vaportok_rl.metrics import spearman
from vaportok_rl.tokenizer.protocol import prior_accuracy

__all__ = ["RECORD_KEYS", "nan_to_none", "record"]

RECORD_KEYS = (
    "tokens_mean",
    "tokens_std",
    "tokens_min",
    "tokens_max",
    "mse",
    "psnr",
    "ssim",
    "lpips",
    "prior_top5",
    "spearman_sc",
    "spearman_tc",
)
"""The keys of every metric record (a sweep record has ``budget`` too)."""


def record(
    cache: CandidateMetrics, keep: np.ndarray, *, lpips: bool, correct: Tensor, sc: np.ndarray, tc: np.ndarray
) -> dict:
    """The record (:data:`RECORD_KEYS`) of keep [N] on the cached clips: ``correct`` [N, K] the prior's top-5
    correctness per token, ``sc`` / ``tc`` [N] the clips' complexity; NaN where a metric is missing."""
    m = cache.gather(keep, lpips)
    acc = prior_accuracy(correct, torch.as_tensor(keep, device=correct.device)).double().cpu().numpy()
    tok = keep.astype(np.float64)
    return {
        "tokens_mean": float(tok.mean()),
        "tokens_std": float(tok.std()),
        "tokens_min": int(keep.min()),
        "tokens_max": int(keep.max()),
        "mse": _mean(m["mse"]),
        "psnr": _mean(m["psnr"]),
        "ssim": _mean(m["ssim"]),
        "lpips": _mean(m["lpips"]),
        "prior_top5": _mean(acc),
        "spearman_sc": spearman(tok, sc),
        "spearman_tc": spearman(tok, tc),
    }


def nan_to_none(x):
    """``x`` JSON-ready: NaN and infinities as None, numpy scalars as Python numbers, through dicts and lists."""
    if isinstance(x, dict):
        return {k: nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [nan_to_none(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def _mean(a: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    return float(a.mean()) if a.size and np.isfinite(a).all() else math.nan
