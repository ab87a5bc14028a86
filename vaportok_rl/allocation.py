"""What every allocator takes and returns: the checked problem (:class:`AllocationProblem`, built by
:func:`check_problem`, whose errors name the argument) and the answer (:class:`Allocation`, built by
:func:`to_allocation`, which checks the budget). The allocators themselves: ``vaportok_rl.allocators``.

Axis letters: ``N`` clips, ``C`` candidates per clip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Allocation", "AllocationProblem", "check_problem", "to_allocation"]


@dataclass
class Allocation:
    """One candidate per clip, and what it costs and earns."""

    choice: np.ndarray  # [N] int64, candidate index c chosen for each clip
    tokens: np.ndarray  # [N] int64, tokens[n, choice[n]]
    objective: float  # sum_n quality[n, choice[n]]
    mean_tokens: float  # tokens.mean(), <= budget
    method: str = ""  # the allocator that produced it
    extras: dict[str, float] = field(default_factory=dict)
    """Allocator-specific diagnostics, e.g. ``threshold`` (bithr/bidelta), ``upper_bound`` (fast)."""


# ----------------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------------


@dataclass
class AllocationProblem:
    """An allocation problem, checked: what every allocator works on."""

    quality: np.ndarray  # [N, C] float64
    tokens: np.ndarray  # [N, C] int64 (a broadcast view when shared)
    shared: bool  # tokens were given as [C]
    budget: float
    cap: int  # largest allowed total token count, floor(budget * N)

    @property
    def n(self) -> int:
        return self.quality.shape[0]


def check_problem(quality, tokens, budget) -> AllocationProblem:
    """Check an allocator's arguments (quality [N, C], tokens [C] or [N, C], budget) and return them as a problem;
    a ``ValueError`` names the argument. The cap is ``floor(budget * N)`` up to float noise."""
    q = np.asarray(quality)
    if q.ndim != 2 or q.shape[0] < 1 or q.shape[1] < 1:
        raise ValueError(f"quality: expected a non-empty 2-D array [N clips, C candidates], got shape {q.shape}")
    if not (np.issubdtype(q.dtype, np.floating) or np.issubdtype(q.dtype, np.integer)):
        raise ValueError(f"quality: expected real numbers, got dtype {q.dtype}")
    q = q.astype(np.float64, copy=False)
    if not np.isfinite(q).all():
        bad = np.argwhere(~np.isfinite(q))
        raise ValueError(
            f"quality: expected finite values, got {len(bad)} non-finite (first at [n, c] = {tuple(bad[0].tolist())}:"
            f" {q[tuple(bad[0])]})"
        )
    n_clips, n_cand = q.shape

    t = np.asarray(tokens)
    if t.shape not in ((n_cand,), (n_clips, n_cand)):
        raise ValueError(
            f"tokens: expected shape ({n_cand},) (shared) or ({n_clips}, {n_cand}) (per clip) to match quality"
            f" {q.shape}, got {t.shape}"
        )
    if not (np.issubdtype(t.dtype, np.integer) or np.issubdtype(t.dtype, np.floating)):
        raise ValueError(f"tokens: expected integer token counts, got dtype {t.dtype}")
    if np.issubdtype(t.dtype, np.floating):
        bad = ~np.isfinite(t) | (t != np.round(t))
        if bad.any():
            raise ValueError(
                f"tokens: expected integer token counts, got non-integer values such as {t[bad][:3].tolist()}"
            )
    t = t.astype(np.int64)
    if (t < 0).any():
        raise ValueError(f"tokens: expected non-negative token counts, got minimum {t.min()}")
    if n_cand > 1 and (np.diff(t, axis=-1) <= 0).any():
        where = tuple(np.argwhere(np.diff(t, axis=-1) <= 0)[0].tolist())
        row = t if t.ndim == 1 else t[where[0]]
        raise ValueError(
            f"tokens: expected strictly ascending candidate counts along the last axis, got {row.tolist()}"
            f" (not ascending at index {where} -> next)"
        )
    shared = t.ndim == 1
    t2 = np.broadcast_to(t, (n_clips, n_cand)) if shared else t

    if isinstance(budget, bool) or not isinstance(budget, (int, float, np.integer, np.floating)):
        raise ValueError(f"budget: expected a real number (mean tokens per clip), got {budget!r}")
    budget = float(budget)
    if not math.isfinite(budget):
        raise ValueError(f"budget: expected a finite mean token count, got {budget}")
    total = budget * n_clips
    cap = math.floor(total + 1e-9 * max(1.0, abs(total)))
    least = int(t2[:, 0].sum())
    if least > cap:
        raise ValueError(
            f"budget: {budget} is below the smallest achievable mean token count {least / n_clips:g}"
            " (every clip at its first candidate); expected budget >= that"
        )
    return AllocationProblem(quality=q, tokens=t2, shared=shared, budget=budget, cap=cap)


def to_allocation(p: AllocationProblem, choice: np.ndarray, method: str, **extras: float) -> Allocation:
    """The :class:`Allocation` of ``choice`` [N] on ``p``, checked against the budget."""
    choice = np.asarray(choice, dtype=np.int64)
    rows = np.arange(p.n)
    tok = np.ascontiguousarray(p.tokens[rows, choice])
    if int(tok.sum()) > p.cap:  # every allocator guarantees this; a failure here is a bug
        raise AssertionError(f"{method}: allocation uses {int(tok.sum())} tokens, budget allows {p.cap}")
    return Allocation(
        choice=choice,
        tokens=tok,
        objective=float(p.quality[rows, choice].sum()),
        mean_tokens=float(tok.mean()),
        method=method,
        extras={k: float(v) for k, v in extras.items()},
    )
