"""Token allocation: choose one candidate token count per clip under an average token budget.

The problem. ``N`` clips; clip ``n`` may be kept at any of ``C`` candidate token counts ``tokens[n, c]``
(strictly ascending in ``c``; either shared by all clips, shape ``[C]``, or per clip, ``[N, C]``), and
``quality[n, c]`` estimates how good clip ``n`` is at candidate ``c`` (higher is better: ``-MSE`` from
an actual decode, PSNR, ``-loss`` from a scorer head... where it comes from is the caller's business).
Given ``budget``, a mean token count per clip, pick ``choice[n]`` so that
``mean(tokens[n, choice[n]]) <= budget``.

Allocators (all take and return numpy; ``allocate(name, ...)`` dispatches by name):

``fixed``
    AdapTok's *Fixed*: every clip keeps the same count, the largest candidate ``<= budget``. With
    per-clip candidates each clip takes its own largest candidate ``<= budget``.
``bithr``
    AdapTok's *BiThr* (supplement Alg. 1): scores ``s = -quality`` (a predicted loss, meant to be
    non-increasing in ``c``); a global threshold ``t`` gives each clip the first candidate whose score
    drops below ``t`` (the last candidate if none does); ``t`` is bisected so the mean token count is
    ``<= budget`` and as large as possible.
``bidelta``
    AdapTok's *BiDelta*: the same bisection on delta scores ``s[c] - s[c + 1]`` (the marginal gain of
    the next step): a clip stops at the first candidate whose next step gains less than ``t``.
``ilp``
    The exact multiple-choice knapsack (AdapTok's ILP / IPAL) solved with ``scipy.optimize.milp``:
    binary ``x[n, c]``, ``sum_c x[n, c] = 1``, ``sum tokens * x <= budget * N``, maximise
    ``sum quality * x``.
``fast``
    Lagrangian relaxation over each clip's upper convex hull of ``(tokens, quality)`` (solved exactly
    by one global sort of hull segments by slope, i.e. the LP relaxation), then a greedy repair that
    spends the leftover budget on the best upgrades among *all* candidates, tried from two starting
    points (the LP's rounded-down solution and the one that takes the LP's fractional step and gives
    back the cheapest steps elsewhere); keeps the better. Vectorised over clips; the LP value is
    returned as an upper bound on the optimum (``extras["upper_bound"]``). When the bound does not
    already prove the result optimal and few clips' choices remain open after reduced-cost fixing, a
    small exact search over those clips finishes the job (``extras["certified"] == 1``).

Budget semantics, shared by all allocators: the mean token count never exceeds ``budget`` (the total
is compared with ``floor(budget * N)``, tokens being integers), and the budget is used up "to within
one step": no single clip can move to its next larger candidate without exceeding the budget --
``fixed`` in its own sense (the next larger shared candidate exceeds ``budget``); ``bithr`` and
``bidelta`` with ``fill=True`` (the default); ``ilp`` and ``fast`` for every move that would not lower
the objective (so always, when quality is non-decreasing in tokens).
A budget below the smallest achievable mean (every clip at its first candidate) is an error.

Where they live: ``fixed``, ``bithr`` and ``bidelta`` in ``vaportok_rl.budgeted_allocators``; ``ilp`` and ``fast``
in ``vaportok_rl.exact_allocators``; the problem's checks and :class:`Allocation` in ``vaportok_rl.allocation``.
This module names them all and dispatches (``ALLOCATORS``, :func:`allocate`).

Axis letters: ``N`` clips, ``C`` candidates per clip.
"""

from __future__ import annotations

from collections.abc import Callable

from vaportok_rl.allocation import Allocation
from vaportok_rl.budgeted_allocators import bidelta, bithr, fixed
from vaportok_rl.exact_allocators import fast, ilp

__all__ = [
    "ALLOCATORS",
    "Allocation",
    "allocate",
    "bidelta",
    "bithr",
    "fast",
    "fixed",
    "ilp",
]


ALLOCATORS: dict[str, Callable[..., Allocation]] = {
    "fixed": fixed,
    "bithr": bithr,
    "bidelta": bidelta,
    "ilp": ilp,
    "fast": fast,
}


def allocate(name: str, quality, tokens, budget, **kwargs) -> Allocation:
    """Run the allocator called ``name`` (one of ``ALLOCATORS``): ``allocate("fast", quality, tokens,
    budget)``. ``kwargs`` go to that allocator (e.g. ``fill=False`` for bithr/bidelta)."""
    if name not in ALLOCATORS:
        raise ValueError(f"name: unknown allocator {name!r}; expected one of {sorted(ALLOCATORS)}")
    return ALLOCATORS[name](quality, tokens, budget, **kwargs)
