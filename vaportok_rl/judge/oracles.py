"""The oracles: the best allocation of a mean token budget when the true per-clip quality of every candidate is
known (decoded), solved exactly as a multiple-choice knapsack.

- :class:`DistortionScorer`: the true quality of every k-grid candidate (``-MSE``, PSNR, SSIM or ``-LPIPS``),
  decoded through :class:`~vaportok_rl.judge.candidates.CandidateMetrics`; fed to ``ilp`` / ``fast`` it gives
  the report's oracle (:func:`exact_oracle`: ``fast``, or a gap-0 ILP when ``fast`` cannot certify itself).
- :func:`oracle_keep`: the oracle on a full quality table (every k), the yardstick of tokens saved and share.

Budget filling is the allocators' (:mod:`vaportok_rl.allocators`): the mean never exceeds the budget and lies
within one grid step of it.

Axis letters: N clips, Q k-grid points, J candidate keep counts (docs/design.md).
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from vaportok_rl.allocators import Allocation, allocate
from vaportok_rl.judge.candidates import SSIM_MIN_SIDE, CandidateMetrics
from vaportok_rl.judge.inputs import EvalError, check_k_grid
from vaportok_rl.metrics import psnr_from_mse, shared_lpips
from vaportok_rl.tokenizer.protocol import Encoded, FrozenTokenizer

__all__ = ["ORACLE_ILP_TIME_LIMIT", "DistortionScorer", "exact_oracle", "oracle_keep"]

ORACLE_ILP_TIME_LIMIT = 300.0


class DistortionScorer:
    """The true quality of every grid candidate, by decoding it: ``-MSE`` (default), ``psnr``, ``ssim`` or
    ``-lpips`` (``metric``), higher = better. Fed to ``ilp`` / ``fast`` it gives the **oracle**.

    Decodes ``N × Q`` candidates in batches of ``chunk`` clips (one batched decode per chunk, each sample
    masking its own tail). Pass ``cache`` (a :class:`CandidateMetrics` over the same clips) to share decodes.
    """

    METRICS = ("mse", "psnr", "ssim", "lpips")

    def __init__(self, metric: str = "mse", chunk: int = 256):
        if metric not in self.METRICS:
            raise EvalError(f"metric: expected one of {self.METRICS}, got {metric!r}")
        self.metric = metric
        self.name = f"true_{metric}"
        self.chunk = chunk

    def __call__(
        self,
        tokenizer: FrozenTokenizer,
        encoded: Encoded,
        clips: Tensor,
        k_grid,
        cache: CandidateMetrics | None = None,
    ) -> np.ndarray:
        grid = check_k_grid(k_grid, tokenizer.num_latents)
        if cache is None:
            lp = shared_lpips(clips.device) if self.metric == "lpips" else None
            cache = CandidateMetrics(tokenizer, encoded, clips, lpips_metric=lp, chunk=self.chunk)
        N = len(encoded)
        rows = np.repeat(np.arange(N), len(grid))
        ks = np.tile(grid, N)
        cache.ensure(rows, ks, lpips=self.metric == "lpips", ssim=self.metric == "ssim")
        if self.metric == "mse":
            return -cache.mse[:, grid]
        if self.metric == "psnr":
            return psnr_from_mse(cache.mse[:, grid])
        if self.metric == "ssim":
            q = cache.ssim[:, grid]
            if np.isnan(q).any():
                raise EvalError(f"metric: SSIM needs frames of at least {SSIM_MIN_SIDE} px")
            return q
        return -cache.lpips[:, grid]


def exact_oracle(quality: np.ndarray, grid: np.ndarray, budget: float, solver: str) -> tuple[Allocation, bool, bool]:
    """The exact allocation on true quality: ``ilp`` (gap 0), or ``fast`` with a gap-0 ILP fallback when ``fast``
    cannot certify its result optimal. Returns (allocation, whether the ILP ran as a fallback, whether optimality
    is proven -- false only if the ILP hit ``ORACLE_ILP_TIME_LIMIT``; the better of both is kept then)."""
    exact_options = {"mip_rel_gap": 0.0, "time_limit": ORACLE_ILP_TIME_LIMIT}
    if solver == "ilp":
        result = allocate("ilp", quality, grid, budget, **exact_options)
        return result, False, result.extras.get("status") == 0
    result = allocate("fast", quality, grid, budget)
    if result.extras.get("certified", 0.0) >= 1.0:
        return result, False, True
    exact = allocate("ilp", quality, grid, budget, **exact_options)
    best = exact if exact.objective >= result.objective else result
    return best, True, exact.extras.get("status") == 0


def oracle_keep(quality: np.ndarray, ks: np.ndarray, budget: float) -> np.ndarray:
    """The allocation [N] (keep counts) maximising mean per-clip ``quality`` [N, J] at a mean budget (exact
    multiple-choice knapsack, ``allocators.fast``; within one grid step of the budget)."""
    ks = np.asarray(ks, dtype=np.int64)
    return ks[allocate("fast", np.asarray(quality, dtype=np.float64), ks, float(budget)).choice]
