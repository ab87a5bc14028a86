"""The search chooser: ElasticTok-style binary search per clip for the fewest tokens that reach a PSNR target.

It needs no head, only the decoder: every probe of a keep count is one decode (and one PSNR). It is the
baseline that a head must beat on *cost*: the head picks k from one forward pass over the latents, search
spends about log2(K) + 1 decodes per clip. Searching assumes PSNR rises with k; where it dips, search keeps
the least probed k it saw reaching the target.

    target ──► per clip: lo = 1, hi = K; probe mid; PSNR(mid) >= target ? hi = mid : lo = mid + 1 ──► keep [N]

Axis letters: N clips, K tokens (see docs/design.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["SearchResult", "search_keep", "search_for_budget"]

Probe = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""psnr(rows [M], keep [M]) -> PSNR dB [M]: decodes clip rows[m] keeping keep[m] tokens."""


@dataclass
class SearchResult:
    keep: np.ndarray  # [N] long in 1..K
    decodes: np.ndarray  # [N] probes (decodes) spent per clip
    target: float  # the PSNR target searched for


def search_keep(psnr: Probe, num_clips: int, num_latents: int, target: float) -> SearchResult:
    """Binary search, all clips in lock-step (one batched probe per round): the least k with PSNR >= target,
    or K when even K misses it."""
    N, K = int(num_clips), int(num_latents)
    lo, hi = np.ones(N, dtype=np.int64), np.full(N, K, dtype=np.int64)
    decodes = np.zeros(N, dtype=np.int64)
    rows = np.arange(N)
    while True:
        active = lo < hi
        if not active.any():
            break
        mid = (lo + hi) // 2
        ok = np.asarray(psnr(rows[active], mid[active]), dtype=np.float64) >= target
        decodes[active] += 1
        a = rows[active]
        hi[a[ok]] = mid[active][ok]
        lo[a[~ok]] = mid[active][~ok] + 1
    return SearchResult(keep=lo, decodes=decodes, target=float(target))


def search_for_budget(
    psnr: Probe, num_clips: int, num_latents: int, budget: float, *, lo: float = 0.0, hi: float = 60.0, rounds: int = 30
) -> SearchResult:
    """The search chooser whose mean keep count is closest to ``budget`` from below: bisection on the PSNR
    target (higher target, more tokens). ``decodes`` counts the final search only (a user with a PSNR target
    runs one search)."""
    best = search_keep(psnr, num_clips, num_latents, lo)
    for _ in range(rounds):
        mid = 0.5 * (lo + hi)
        result = search_keep(psnr, num_clips, num_latents, mid)
        if result.keep.mean() <= budget:
            best, lo = result, mid
        else:
            hi = mid
    return best
