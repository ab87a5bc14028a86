"""The rate–quality comparison that says whether a head is worth having: tokens saved against Fixed at equal
mean PSNR, over a range of budgets, for the head (through its price knob), AdapTok's allocators, the search
chooser and the per-clip PSNR oracle, all judged on one table of every clip's PSNR at every keep count.

    psnr [N, K] (every k decoded once) ──► Fixed's curve F(k) = mean_n psnr[n, k]
        head logits [N, K] ──price knob──► keep [N] at each budget ┐
        allocations {name: [keep [N] per budget]} ─────────────────┼─► tokens, mean PSNR, tokens saved vs F,
        search (binary search per clip, decodes counted) ─────────┤   share of the oracle's savings
        oracle: max mean per-clip PSNR at each budget ────────────┘

Axis letters: N clips, K tokens (see docs/design.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from vaportok_rl.budget import keep_for_budget
from vaportok_rl.savings import fixed_curve, oracle_keep, savings_record, tokens_saved
from vaportok_rl.search import search_for_budget

__all__ = ["CURVE_KEYS", "rate_quality"]

CURVE_KEYS = ("budget", "tokens", "quality", "tokens_saved", "oracle_saved", "oracle_share", "decodes_per_clip")
"""The keys of every point of every curve (plus the measure's own name, e.g. "psnr", holding the quality)."""


def _point(budget: float, keep: np.ndarray, psnr: np.ndarray, ks: np.ndarray, oracle: np.ndarray, decodes: float):
    rec = savings_record(keep, psnr, ks, oracle=oracle)
    return {
        "budget": float(budget),
        "tokens": rec["tokens"],
        "quality": rec["quality"],
        "tokens_saved": rec["tokens_saved"],
        "oracle_saved": rec["oracle_saved"],
        "oracle_share": rec["oracle_share"],
        "decodes_per_clip": float(decodes),
    }


def rate_quality(
    psnr: np.ndarray,
    budgets: Sequence[float],
    *,
    head_logits: Tensor | None = None,
    allocations: Mapping[str, Sequence[np.ndarray]] | None = None,
    own: Mapping[str, np.ndarray] | None = None,
    search: bool = True,
    measure: str = "psnr",
) -> dict:
    """Judge choosers on the full table psnr [N, K] (column k - 1 = keep k) of a per-clip quality, higher is better:
    PSNR by default, or any ``measure`` (named in every point beside ``quality``, and in the result).

    ``head_logits`` [N, K]: the head's curve through :func:`~vaportok_rl.budget.keep_for_budget`.
    ``allocations``: other choosers' keep counts, one [N] array per budget. ``own``: allocations judged at
    their own budget (e.g. ``{"head": argmax keep}``). Returns ``{"budgets", "curves": {name: [point]},
    "own": {name: point}, "fixed": {"k", "psnr"}}``, every point with the keys of :data:`CURVE_KEYS`; the
    oracle of each point is the one at that point's own mean token count."""
    psnr = np.asarray(psnr, dtype=np.float64)
    N, K = psnr.shape
    ks = np.arange(1, K + 1)
    fixed_ks, fixed_q = fixed_curve(psnr, ks)

    def judge(keep: np.ndarray, budget: float, decodes: float = 0.0) -> dict:
        return _point(budget, keep, psnr, ks, oracle_keep(psnr, ks, float(np.mean(keep))), decodes)

    curves: dict[str, list[dict]] = {}
    for b in budgets:
        # Fixed at a fractional budget: its curve interpolated in k (the yardstick itself, 0 saved).
        lo = int(np.clip(np.floor(b), 1, K))
        hi = min(lo + 1, K)
        q = float(np.interp(b, [lo, hi], [fixed_q[lo - 1], fixed_q[hi - 1]])) if hi > lo else float(fixed_q[lo - 1])
        oracle = oracle_keep(psnr, ks, b)
        oracle_point = _point(b, oracle, psnr, ks, oracle, 0.0)
        fixed_point = dict(oracle_point, tokens=float(b), quality=q, decodes_per_clip=0.0)
        fixed_point["tokens_saved"] = tokens_saved(b, q, fixed_ks, fixed_q)
        saved = oracle_point["oracle_saved"]
        fixed_point["oracle_share"] = fixed_point["tokens_saved"] / saved if saved > 0 else float("nan")
        curves.setdefault("fixed", []).append(fixed_point)
        curves.setdefault("oracle", []).append(oracle_point)
        if head_logits is not None:
            keep, _ = keep_for_budget(head_logits.detach().double().cpu(), b)
            curves.setdefault("head", []).append(judge(keep.numpy(), b))
        if search:
            result = search_for_budget(lambda r, k: psnr[r, k - 1], N, K, b)
            curves.setdefault("search", []).append(judge(result.keep, b, float(result.decodes.mean())))
    for name, keeps in (allocations or {}).items():
        curves[name] = [judge(np.asarray(k), b) for b, k in zip(budgets, keeps, strict=True)]
    own_points = {name: judge(np.asarray(k), float(np.mean(k))) for name, k in (own or {}).items()}
    for point in [*(p for c in curves.values() for p in c), *own_points.values()]:
        point[measure] = point["quality"]
    return {
        "measure": measure,
        "budgets": [float(b) for b in budgets],
        "curves": curves,
        "own": own_points,
        "fixed": {"k": fixed_ks.tolist(), "quality": fixed_q.tolist(), measure: fixed_q.tolist()},
    }


def head_logits(head: torch.nn.Module, latents: Tensor, chunk: int = 1024) -> Tensor:
    """The head's logits [N, K] for latents [N, K, D], ``chunk`` clips per call, no grad."""
    with torch.no_grad():
        return torch.cat([head(latents[i : i + chunk]) for i in range(0, len(latents), chunk)])
