"""Rate–quality curves, and tokens saved against Fixed at equal quality: what says whether a head is worth having.

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

:func:`rate_quality` draws these over a range of budgets for the head (through its price knob), AdapTok's
allocators, the search chooser and the per-clip oracle, all judged on one table of every clip's quality at
every keep count::

    psnr [N, K] (every k decoded once) ──► Fixed's curve F(k) = mean_n psnr[n, k]
        head logits [N, K] ──price knob──► keep [N] at each budget ┐
        allocations {name: [keep [N] per budget]} ─────────────────┼─► tokens, mean PSNR, tokens saved vs F,
        search (binary search per clip, decodes counted) ─────────┤   share of the oracle's savings
        oracle: max mean per-clip PSNR at each budget ────────────┘

Axis letters: N clips, K tokens, J candidate keep counts (see docs/design.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from torch import Tensor

from vaportok_rl.budget import keep_for_budget
from vaportok_rl.judge.oracles import oracle_keep
from vaportok_rl.judge.search import search_for_budget

__all__ = ["CURVE_KEYS", "fixed_curve", "fixed_tokens_for", "rate_quality", "savings_record", "tokens_saved"]


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


def _fixed_point(budget: float, oracle_point: dict, fixed_ks: np.ndarray, fixed_q: np.ndarray) -> dict:
    """Fixed at a fractional budget: its curve interpolated in k (the yardstick itself, 0 saved), beside the
    oracle's point at that budget."""
    K = len(fixed_q)
    lo = int(np.clip(np.floor(budget), 1, K))
    hi = min(lo + 1, K)
    q = float(np.interp(budget, [lo, hi], [fixed_q[lo - 1], fixed_q[hi - 1]])) if hi > lo else float(fixed_q[lo - 1])
    fixed_point = dict(oracle_point, tokens=float(budget), quality=q, decodes_per_clip=0.0)
    fixed_point["tokens_saved"] = tokens_saved(budget, q, fixed_ks, fixed_q)
    saved = oracle_point["oracle_saved"]
    fixed_point["oracle_share"] = fixed_point["tokens_saved"] / saved if saved > 0 else float("nan")
    return fixed_point


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
        oracle = oracle_keep(psnr, ks, b)
        oracle_point = _point(b, oracle, psnr, ks, oracle, 0.0)
        curves.setdefault("fixed", []).append(_fixed_point(b, oracle_point, fixed_ks, fixed_q))
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
