"""Tokens saved against Fixed at equal quality, and the share of the oracle's savings a chooser captures.

The point of a taildrop head is to cut each clip where it should be cut, better than cutting every clip at
the same k. So a chooser (head, allocator, search) that spends ``t`` tokens per clip on average for a mean
per-clip quality ``q`` is compared with **Fixed**, every clip at one k, whose mean quality ``F(k)`` is
interpolated linearly between integer (or grid) k::

    k_fixed(q)   = the least k with F(k) >= q          (on the piecewise-linear F)
    tokens_saved = 1 - t / k_fixed(q)                  (> 0: fewer tokens than Fixed for the same quality;
                                                        past Fixed's best quality, k_fixed = its largest k)
    oracle_share = tokens_saved / oracle_saved          (oracle: best mean quality at the same budget t)

Quality is a per-clip measure averaged over clips (mean PSNR in dB, or minus mean LPIPS), never a total
(a total MSE would reward spending tokens where MSE is largest, not where dB are cheapest).

Axis letters: N clips, J candidate keep counts (see docs/design.md).
"""

from __future__ import annotations

import math

import numpy as np

from vaportok_rl.allocators import allocate

__all__ = ["fixed_curve", "fixed_tokens_for", "oracle_keep", "tokens_saved", "savings_record"]


def fixed_curve(quality: np.ndarray, ks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fixed's curve from a per-clip quality table: quality [N, J] at keep counts ks [J] (increasing) ->
    (ks [J], mean quality over clips [J])."""
    quality, ks = np.asarray(quality, dtype=np.float64), np.asarray(ks, dtype=np.float64)
    if quality.ndim != 2 or quality.shape[1] != len(ks):
        raise ValueError(f"quality: expected [N, J] with J = len(ks) = {len(ks)}, got {quality.shape}")
    if len(ks) < 2 or np.any(np.diff(ks) <= 0):
        raise ValueError(f"ks: expected at least 2 strictly increasing keep counts, got {ks.tolist()}")
    return ks, quality.mean(0)


def fixed_tokens_for(q: float, fixed_ks: np.ndarray, fixed_q: np.ndarray) -> float:
    """The least (fractional) k at which Fixed's interpolated curve reaches mean quality ``q``.

    Below the curve's first point: its first k (Fixed cannot spend less). Above its best point: ``inf``."""
    ks, fq = np.asarray(fixed_ks, dtype=np.float64), np.asarray(fixed_q, dtype=np.float64)
    if not math.isfinite(q):
        return math.nan
    if q <= fq[0]:
        return float(ks[0])
    for j in range(1, len(ks)):
        if fq[j] >= q:  # first segment that reaches q: F rises from fq[j-1] < q to fq[j] >= q
            lo, hi = fq[j - 1], fq[j]
            return float(ks[j - 1] + (ks[j] - ks[j - 1]) * (q - lo) / (hi - lo))
    return math.inf


def tokens_saved(tokens: float, q: float, fixed_ks: np.ndarray, fixed_q: np.ndarray) -> float:
    """1 - tokens / k_fixed(q): the share of Fixed's tokens a chooser saves at its own quality ``q``."""
    k_fixed = fixed_tokens_for(q, fixed_ks, fixed_q)
    if math.isinf(k_fixed):  # Fixed never reaches q: its largest k is a (conservative) stand-in
        k_fixed = float(np.asarray(fixed_ks)[-1])
    return 1.0 - float(tokens) / k_fixed


def oracle_keep(quality: np.ndarray, ks: np.ndarray, budget: float) -> np.ndarray:
    """The allocation [N] (keep counts) maximising mean per-clip ``quality`` [N, J] at a mean budget (exact
    multiple-choice knapsack, ``allocators.fast``; within one grid step of the budget)."""
    ks = np.asarray(ks, dtype=np.int64)
    return ks[allocate("fast", np.asarray(quality, dtype=np.float64), ks, float(budget)).choice]


def savings_record(
    keep: np.ndarray, quality: np.ndarray, ks: np.ndarray, *, oracle: np.ndarray | None = None
) -> dict[str, float]:
    """Tokens saved by the allocation ``keep`` [N] judged on the quality table [N, J] at ``ks`` [J].

    ``oracle``: the oracle's allocation at the same budget (default: computed here). Returns
    ``tokens``, ``quality``, ``fixed_tokens`` (what Fixed needs for that quality), ``tokens_saved``,
    ``oracle_quality``, ``oracle_saved`` and ``oracle_share`` (NaN when the oracle saves nothing)."""
    ks = np.asarray(ks, dtype=np.int64)
    quality = np.asarray(quality, dtype=np.float64)
    column = np.full(int(ks.max()) + 1, -1)
    column[ks] = np.arange(len(ks))
    keep = np.asarray(keep, dtype=np.int64)
    if keep.shape != (quality.shape[0],) or np.any(column[np.clip(keep, 0, len(column) - 1)] < 0):
        raise ValueError(f"keep: expected [{quality.shape[0]}] keep counts among ks, got shape {keep.shape}")
    rows = np.arange(len(keep))
    fixed_ks, fixed_q = fixed_curve(quality, ks)
    tokens, q = float(keep.mean()), float(quality[rows, column[keep]].mean())
    if oracle is None:
        oracle = oracle_keep(quality, ks, tokens)
    oracle = np.asarray(oracle, dtype=np.int64)
    oracle_tokens, oracle_q = float(oracle.mean()), float(quality[rows, column[oracle]].mean())
    saved = tokens_saved(tokens, q, fixed_ks, fixed_q)
    oracle_saved = tokens_saved(oracle_tokens, oracle_q, fixed_ks, fixed_q)
    return {
        "tokens": tokens,
        "quality": q,
        "fixed_tokens": fixed_tokens_for(q, fixed_ks, fixed_q),
        "tokens_saved": saved,
        "oracle_tokens": oracle_tokens,
        "oracle_quality": oracle_q,
        "oracle_saved": oracle_saved,
        "oracle_share": saved / oracle_saved if oracle_saved > 0 else math.nan,
    }
