"""AdapTok's budgeted allocators: *Fixed* (every clip at the largest candidate within the budget) and the
threshold bisections *BiThr* and *BiDelta* (AdapTok supplement, Algorithm 1), with the optional fill that spends the
leftover one step at a time. The problem and the budget semantics: ``vaportok_rl.allocators``.

Axis letters: ``N`` clips, ``C`` candidates per clip.
"""

from __future__ import annotations

import numpy as np

from vaportok_rl.allocation import Allocation, AllocationProblem, check_problem, to_allocation

__all__ = ["bidelta", "bithr", "fixed"]


def fixed(quality, tokens, budget) -> Allocation:
    """AdapTok's Fixed allocation: each clip keeps the largest candidate ``<= budget``.

    quality [N, C] (only its shape is used), tokens [C] or [N, C], budget: mean tokens per clip.
    With shared candidates every clip gets the same count. Raises ``ValueError`` if some clip has no
    candidate ``<= budget``.
    """
    p = check_problem(quality, tokens, budget)
    fits = p.tokens <= p.budget  # [N, C]
    if not fits[:, 0].all():
        n = int(np.argmin(fits[:, 0]))
        raise ValueError(
            f"budget: {p.budget} is below clip {n}'s smallest candidate {int(p.tokens[n, 0])}; fixed allocation"
            " needs a candidate <= budget in every clip"
        )
    choice = fits.sum(axis=1) - 1  # candidates ascend, so the fitting ones are a prefix
    return to_allocation(p, choice, "fixed")


def _threshold_search(p: AllocationProblem, keys: np.ndarray, fill: bool, method: str) -> Allocation:
    """Bisect a global threshold t over ``keys`` [N, C] (last column -inf): clip n takes
    ``argmax(keys[n] < t)``, the first candidate whose key is below t. Mean tokens do not increase as t
    grows, for any keys; the allocation only changes when t crosses a key value, so bisecting over the
    sorted distinct keys is Algorithm 1's float bisection run to convergence (an exact number of
    ``ceil(log2(#keys + 1))`` steps instead of a fixed K)."""
    rows = np.arange(p.n)
    values = np.unique(keys[:, :-1])  # sorted ascending, finite
    thresholds = np.append(values, np.inf)  # t = inf: every clip at its first candidate (feasible)

    def assign(t: float) -> np.ndarray:
        return np.argmax(keys < t, axis=1)

    def total(choice: np.ndarray) -> int:
        return int(p.tokens[rows, choice].sum())

    lo, hi = -1, len(thresholds) - 1  # invariant: thresholds[hi] feasible; thresholds[lo] infeasible (or lo = -1)
    iterations = 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        iterations += 1
        if total(assign(thresholds[mid])) <= p.cap:
            hi = mid
        else:
            lo = mid
    choice = assign(thresholds[hi])
    extras = {
        "threshold": thresholds[hi],  # any t in (threshold_low, threshold] gives the same allocation
        "threshold_low": thresholds[lo] if lo >= 0 else -np.inf,
        "iterations": iterations,
    }
    if fill:
        # Algorithm 1 stops where the next threshold event overshoots the budget; keep lowering the
        # threshold but skip the clips whose next step no longer fits: one step at a time, in the order
        # the threshold would grant them (largest key at the current candidate first).
        choice, steps = _fill_by_priority(p, choice, keys)
        extras["fill_steps"] = steps
    return to_allocation(p, choice, method, **extras)


def _fill_by_priority(p: AllocationProblem, choice: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, int]:
    rows = np.arange(p.n)
    n_cand = p.tokens.shape[1]
    choice = choice.copy()
    slack = p.cap - int(p.tokens[rows, choice].sum())
    steps = 0
    while True:
        open_ = choice < n_cand - 1
        nxt = np.minimum(choice + 1, n_cand - 1)
        cost = p.tokens[rows, nxt] - p.tokens[rows, choice]
        ok = open_ & (cost <= slack)
        if not ok.any():
            return choice, steps
        prio = np.where(ok, keys[rows, choice], -np.inf)
        n = int(np.argmax(prio))
        choice[n] += 1
        slack -= int(cost[n])
        steps += 1


def bithr(quality, tokens, budget, *, fill: bool = True) -> Allocation:
    """AdapTok's BiThr: bisect a global loss threshold t; each clip keeps the first candidate whose score
    ``s = -quality`` is below t (its last candidate if none is).

    quality [N, C], tokens [C] or [N, C], budget: mean tokens per clip. Returns the lowest threshold
    (most tokens) whose allocation fits the budget; ``extras`` holds ``threshold`` (any t in
    ``(threshold_low, threshold]`` gives the same allocation) and the number of bisection steps.
    ``fill=True`` then spends any leftover on single steps that still fit, in threshold order
    (``fill=False`` returns Algorithm 1's allocation as is).
    """
    p = check_problem(quality, tokens, budget)
    keys = -p.quality.copy()  # [N, C] predicted loss
    keys[:, -1] = -np.inf
    return _threshold_search(p, keys, fill, "bithr")


def bidelta(quality, tokens, budget, *, fill: bool = True) -> Allocation:
    """AdapTok's BiDelta: bisect a global threshold t on delta scores ``d[c] = s[c] - s[c+1]``
    (``s = -quality``: the gain of stepping from candidate c to c+1); each clip stops at the first
    candidate whose next step gains less than t (its last candidate if none does).

    Arguments, result and ``fill`` as in :func:`bithr`.
    """
    p = check_problem(quality, tokens, budget)
    s = -p.quality
    keys = np.empty_like(s)  # [N, C]
    keys[:, :-1] = s[:, :-1] - s[:, 1:]
    keys[:, -1] = -np.inf
    return _threshold_search(p, keys, fill, "bidelta")
