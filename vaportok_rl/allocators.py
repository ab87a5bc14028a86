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

Axis letters: ``N`` clips, ``C`` candidates per clip.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

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
class _Problem:
    quality: np.ndarray  # [N, C] float64
    tokens: np.ndarray  # [N, C] int64 (a broadcast view when shared)
    shared: bool  # tokens were given as [C]
    budget: float
    cap: int  # largest allowed total token count, floor(budget * N)

    @property
    def n(self) -> int:
        return self.quality.shape[0]


def _check(quality, tokens, budget) -> _Problem:
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
    return _Problem(quality=q, tokens=t2, shared=shared, budget=budget, cap=cap)


def _result(p: _Problem, choice: np.ndarray, method: str, **extras: float) -> Allocation:
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


# ----------------------------------------------------------------------------------------------------
# Fixed
# ----------------------------------------------------------------------------------------------------


def fixed(quality, tokens, budget) -> Allocation:
    """AdapTok's Fixed allocation: each clip keeps the largest candidate ``<= budget``.

    quality [N, C] (only its shape is used), tokens [C] or [N, C], budget: mean tokens per clip.
    With shared candidates every clip gets the same count. Raises ``ValueError`` if some clip has no
    candidate ``<= budget``.
    """
    p = _check(quality, tokens, budget)
    fits = p.tokens <= p.budget  # [N, C]
    if not fits[:, 0].all():
        n = int(np.argmin(fits[:, 0]))
        raise ValueError(
            f"budget: {p.budget} is below clip {n}'s smallest candidate {int(p.tokens[n, 0])}; fixed allocation"
            " needs a candidate <= budget in every clip"
        )
    choice = fits.sum(axis=1) - 1  # candidates ascend, so the fitting ones are a prefix
    return _result(p, choice, "fixed")


# ----------------------------------------------------------------------------------------------------
# BiThr / BiDelta (AdapTok supplement, Algorithm 1)
# ----------------------------------------------------------------------------------------------------


def _threshold_search(p: _Problem, keys: np.ndarray, fill: bool, method: str) -> Allocation:
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
    return _result(p, choice, method, **extras)


def _fill_by_priority(p: _Problem, choice: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, int]:
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
    p = _check(quality, tokens, budget)
    keys = -p.quality.copy()  # [N, C] predicted loss
    keys[:, -1] = -np.inf
    return _threshold_search(p, keys, fill, "bithr")


def bidelta(quality, tokens, budget, *, fill: bool = True) -> Allocation:
    """AdapTok's BiDelta: bisect a global threshold t on delta scores ``d[c] = s[c] - s[c+1]``
    (``s = -quality``: the gain of stepping from candidate c to c+1); each clip stops at the first
    candidate whose next step gains less than t (its last candidate if none does).

    Arguments, result and ``fill`` as in :func:`bithr`.
    """
    p = _check(quality, tokens, budget)
    s = -p.quality
    keys = np.empty_like(s)  # [N, C]
    keys[:, :-1] = s[:, :-1] - s[:, 1:]
    keys[:, -1] = -np.inf
    return _threshold_search(p, keys, fill, "bidelta")


# ----------------------------------------------------------------------------------------------------
# Exact ILP (scipy milp / HiGHS)
# ----------------------------------------------------------------------------------------------------


def ilp(quality, tokens, budget, *, mip_rel_gap: float = 0.0, time_limit: float | None = None) -> Allocation:
    """The exact multiple-choice knapsack (AdapTok's ILP) with ``scipy.optimize.milp``.

    quality [N, C], tokens [C] or [N, C], budget: mean tokens per clip. ``mip_rel_gap`` is HiGHS's
    relative optimality gap (0: prove optimality; HiGHS's own default is 1e-4); ``time_limit`` in
    seconds (``None``: none). Raises ``RuntimeError`` if the solver returns no feasible solution.
    Zero-gain upgrades that still fit are taken afterwards (the budget is used within one step).
    """
    import scipy.sparse as sp
    from scipy.optimize import Bounds, LinearConstraint, milp

    p = _check(quality, tokens, budget)
    n_clips, n_cand = p.quality.shape
    nv = n_clips * n_cand
    one_each = sp.csr_array(
        (np.ones(nv), np.arange(nv), np.arange(0, nv + 1, n_cand)), shape=(n_clips, nv)
    )  # row n sums x[n, :]
    spend = sp.csr_array(p.tokens.reshape(1, nv).astype(np.float64))
    constraints = [
        LinearConstraint(one_each, 1.0, 1.0),
        LinearConstraint(spend, -np.inf, float(p.cap)),
    ]
    options: dict = {"mip_rel_gap": float(mip_rel_gap)}
    if time_limit is not None:
        options["time_limit"] = float(time_limit)
    res = milp(
        c=-p.quality.ravel(),
        constraints=constraints,
        integrality=np.ones(nv),
        bounds=Bounds(0.0, 1.0),
        options=options,
    )
    if res.x is None:
        raise RuntimeError(f"ilp: scipy milp found no solution (status {res.status}: {res.message})")
    choice = np.argmax(res.x.reshape(n_clips, n_cand), axis=1)
    if int(p.tokens[np.arange(n_clips), choice].sum()) > p.cap:  # guard against solver tolerance
        raise RuntimeError(f"ilp: scipy milp returned a solution over the budget (status {res.status})")
    choice, _ = _repair(p, choice, by="ratio")
    gap = getattr(res, "mip_gap", None)
    return _result(p, choice, "ilp", status=res.status, mip_gap=np.nan if gap is None else gap)


# ----------------------------------------------------------------------------------------------------
# Fast: Lagrangian / LP relaxation over upper convex hulls + greedy repair
# ----------------------------------------------------------------------------------------------------


def _upper_hulls(q: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper concave hull of each row's points ``(t[n, c], q[n, c])`` (``t`` strictly ascending), from
    the first candidate on: Andrew's monotone chain, vectorised over rows (the Python loop is over
    candidates and pops, never over clips). Candidates not above every earlier one are skipped: they
    can only lie on the hull's non-increasing tail, which no Lagrange multiplier >= 0 selects.

    Returns ``H [N, C]`` (hull vertex indices, first ``h[n]`` valid, ascending) and ``h [N]``.
    """
    n_rows, n_cand = q.shape
    qT, tT = np.ascontiguousarray(q.T), np.ascontiguousarray(t.T)  # [C, N]: one candidate's column is contiguous
    prior_max = np.maximum.accumulate(q, axis=1)
    rise = np.ascontiguousarray((q[:, 1:] > prior_max[:, :-1]).T)  # [C-1, N]: c above every earlier candidate
    H = np.zeros((n_rows, n_cand), dtype=np.int64)  # vertex indices
    Ht = np.zeros((n_rows, n_cand))  # their tokens and qualities, so the pops gather from one place
    Hq = np.zeros((n_rows, n_cand))
    Ht[:, 0], Hq[:, 0] = t[:, 0], q[:, 0]
    Hf, Htf, Hqf = H.reshape(-1), Ht.reshape(-1), Hq.reshape(-1)  # flat views
    row0 = np.arange(n_rows) * n_cand  # flat offset of each row
    h = np.ones(n_rows, dtype=np.int64)
    for c in range(1, n_cand):
        up = np.flatnonzero(rise[c - 1])  # rows where candidate c can be a rising hull vertex
        if up.size == 0:
            continue
        qc, tc = qT[c], tT[c]
        act = up[h[up] >= 2]
        while act.size:
            top = row0[act] + h[act] - 1  # flat index of the last vertex j; the one before is i
            ti, qi = Htf[top - 1], Hqf[top - 1]
            # pop j if it lies on or below the chord i -> c
            act = act[(Hqf[top] - qi) * (tc[act] - ti) <= (qc[act] - qi) * (Htf[top] - ti)]
            h[act] -= 1
            act = act[h[act] >= 2]
        pos = row0[up] + h[up]
        Hf[pos] = c
        Htf[pos] = tc[up]
        Hqf[pos] = qc[up]
        h[up] += 1
    return H, h


def _repair(p: _Problem, choice: np.ndarray, by: str = "ratio") -> tuple[np.ndarray, int]:
    """Spend the leftover budget greedily: repeatedly move one clip from its candidate to any larger one
    that still fits and does not lower quality, best first (``by="ratio"``: gain per token; ``"gain"``:
    absolute gain). Considers every candidate, not only hull vertices. Returns (choice, moves)."""
    rows = np.arange(p.n)
    choice = np.asarray(choice, dtype=np.int64).copy()
    slack = p.cap - int(p.tokens[rows, choice].sum())
    cur_t = p.tokens[rows, choice]
    cur_q = p.quality[rows, choice]
    cost = p.tokens - cur_t[:, None]  # [N, C]
    ok = (cost > 0) & (cost <= slack)
    rr, cc = np.nonzero(ok)
    dg = p.quality[rr, cc] - cur_q[rr]
    keep = dg >= 0
    rr, cc, dg = rr[keep], cc[keep], dg[keep]
    dc = cost[rr, cc]
    moves = 0
    while rr.size:
        score = dg / dc if by == "ratio" else dg
        k = int(np.argmax(score))
        n, c = int(rr[k]), int(cc[k])
        slack -= int(dc[k])
        choice[n] = c
        moves += 1
        keep = (rr != n) & (dc <= slack)
        rr, cc, dg, dc = rr[keep], cc[keep], dg[keep], dc[keep]
        # clip n's own further upgrades, relative to its new candidate
        nc = np.arange(c + 1, p.tokens.shape[1])
        ndc = p.tokens[n, nc] - p.tokens[n, c]
        ndg = p.quality[n, nc] - p.quality[n, c]
        m = (ndc <= slack) & (ndg >= 0)
        if m.any():
            rr = np.concatenate([rr, np.full(int(m.sum()), n)])
            cc = np.concatenate([cc, nc[m]])
            dg = np.concatenate([dg, ndg[m]])
            dc = np.concatenate([dc, ndc[m]])
    return choice, moves


def fast(quality, tokens, budget, *, max_core_clips: int = 64, max_core_states: int = 200_000) -> Allocation:
    """Near-exact multiple-choice knapsack, far faster than :func:`ilp`.

    quality [N, C], tokens [C] or [N, C], budget: mean tokens per clip.

    1. Each clip's upper convex hull of (tokens, quality); its rising segments have decreasing slopes.
    2. The LP relaxation (= the Lagrangian dual, each clip picking ``argmax quality - lam * tokens``):
       sort all rising segments by slope and take them while the budget lasts. The first segment that
       does not fit gives ``lam`` (``extras["lambda"]``) and, taken fractionally, the LP value: an upper
       bound on the optimum (``extras["upper_bound"]``).
    3. Two integer starts: (a) the segments that fit; (b) also the break segment, giving back the
       lowest-slope taken segments of other clips until it fits. Each is repaired by :func:`_repair`
       (leftover spent on the best upgrades over all candidates, hull or not); the better one wins.
    4. If that is not provably optimal (bound gap > 1e-9 relative), an exact search around the
       Lagrangian solution (:func:`_core_search`): reduced-cost fixing leaves only the "core" clips
       whose choice could still change, solved by a Pareto dynamic programme -- run when there are at
       most ``max_core_clips`` of them and its front stays under ``max_core_states`` states.

    ``extras``: ``lambda``; ``upper_bound`` >= the optimum, so ``upper_bound - objective`` bounds the
    loss against it (the objective itself when ``certified``); ``lp_bound``, the LP value;
    ``certified`` (1.0 when the result is proven optimal); ``core_clips``; ``hull_segments``;
    ``repair_moves``. ``max_core_clips=0`` skips step 4 (pure heuristic).
    """
    p = _check(quality, tokens, budget)
    q, t = p.quality, p.tokens
    n_clips, n_cand = q.shape
    rows = np.arange(n_clips)
    tf = t.astype(np.float64)

    H, h = _upper_hulls(q, tf)  # [N, C], [N]
    # rising segments k = 1 .. h-1 of each hull: vertex H[:, k-1] -> H[:, k]
    k_idx = np.arange(1, n_cand)
    valid = k_idx[None, :] < h[:, None]  # [N, C-1]
    seg_r, seg_k = np.nonzero(valid)
    seg_k = seg_k + 1
    v0, v1 = H[seg_r, seg_k - 1], H[seg_r, seg_k]
    seg_cost = t[seg_r, v1] - t[seg_r, v0]
    seg_gain = q[seg_r, v1] - q[seg_r, v0]
    seg_slope = seg_gain / seg_cost
    # slopes decrease along a hull; guard the order against round-off so a row's segments stay in order
    slope_mat = np.full(valid.shape, np.inf)
    slope_mat[seg_r, seg_k - 1] = seg_slope
    slope_mat = np.minimum.accumulate(slope_mat, axis=1)
    seg_slope = slope_mat[seg_r, seg_k - 1]
    order = np.lexsort((seg_k, -seg_slope))  # steepest first; a row's segments in hull order

    base_q = float(q[:, 0].sum())
    base_t = int(t[:, 0].sum())
    cum = base_t + np.cumsum(seg_cost[order])
    n_take = int(np.searchsorted(cum, p.cap, side="right"))  # segments taken while they fit

    def vertices(taken: np.ndarray) -> np.ndarray:
        cnt = np.bincount(seg_r[taken], minlength=n_clips)
        return H[rows, cnt]

    upper = base_q + float(seg_gain[order[:n_take]].sum())
    lam = 0.0
    starts = [vertices(order[:n_take])]
    if n_take < len(order):
        brk = order[n_take]
        used = int(cum[n_take - 1]) if n_take else base_t
        upper += (p.cap - used) / float(seg_cost[brk]) * float(seg_gain[brk])
        lam = float(seg_slope[brk])
        # (b): take the break segment, give back the flattest taken segments of other clips
        over = int(cum[n_take]) - p.cap
        prefix = order[:n_take][::-1]
        others = prefix[seg_r[prefix] != seg_r[brk]]
        freed = np.cumsum(seg_cost[others])
        m = int(np.searchsorted(freed, over, side="left"))  # give back others[: m + 1]
        if m < len(others):
            drop = np.zeros(len(seg_r), dtype=bool)
            drop[others[: m + 1]] = True
            taken = np.append(order[:n_take], brk)
            starts.append(vertices(taken[~drop[taken]]))

    best, best_obj, best_moves = starts[0], -np.inf, 0
    for start in starts:
        for by in ("ratio", "gain"):
            choice, moves = _repair(p, start, by=by)
            obj = float(q[rows, choice].sum())
            if obj > best_obj:
                best, best_obj, best_moves = choice, obj, moves

    # Lagrangian bound at lam (weak duality, valid for any lam >= 0): obj(x) <= sum_n max_c (q - lam t) + lam cap.
    reduced = q - lam * tf  # [N, C]
    peak = reduced.max(axis=1)  # [N]
    ub_lam = float(peak.sum()) + lam * p.cap  # equals the LP value up to round-off; the bound r refers to
    upper = min(upper, ub_lam)
    extras = {"lambda": lam, "repair_moves": best_moves, "hull_segments": len(order)}
    certified, core = upper - best_obj <= _tol(upper), 0
    if not certified:
        found, core = _core_search(p, best, best_obj, ub_lam, peak[:, None] - reduced, max_core_clips, max_core_states)
        if found is not None:
            best, certified = found, True
            best_obj = float(q[rows, best].sum())
    extras.update(
        upper_bound=best_obj if certified else max(upper, best_obj),
        lp_bound=upper,
        certified=float(certified),
        core_clips=core,
    )
    return _result(p, best, "fast", **extras)


def _tol(scale: float) -> float:
    return 1e-9 * max(1.0, abs(scale))


def _core_search(
    p: _Problem, incumbent: np.ndarray, lower: float, upper: float, r: np.ndarray, max_clips: int, max_states: int
) -> tuple[np.ndarray | None, int]:
    """Exact search around the Lagrangian solution (reduced-cost fixing + a Pareto dynamic programme).

    ``r [N, C] >= 0`` are reduced costs at the multiplier lam: for any feasible x,
    ``obj(x) <= upper - sum_n r[n, x_n]``, so a solution better than ``lower`` only uses candidates
    with ``r < gap = upper - lower``, and their reduced costs sum to less than ``gap``. Clips with a
    single such candidate are fixed; the others ("core" clips, few when the bound is tight) go through
    a DP over (tokens, quality) states, keeping the Pareto front and dropping states whose reduced cost
    already reaches the gap. Returns (the optimal choice, number of core clips), or (None, core) when
    the front exceeds ``max_states`` (the caller keeps its heuristic answer).
    """
    gap = upper - lower + _tol(upper)
    rel = r < gap  # [N, C]; every row has its Lagrangian argmax (r = 0)
    n_rel = rel.sum(axis=1)
    core = np.flatnonzero(n_rel > 1)
    if core.size == 0 or core.size > max_clips:
        return None, int(core.size)
    choice = np.argmin(r, axis=1)  # the only relevant candidate of every non-core clip
    fixed_mask = np.ones(p.n, dtype=bool)
    fixed_mask[core] = False
    rows = np.arange(p.n)
    fixed_t = int(p.tokens[rows[fixed_mask], choice[fixed_mask]].sum())
    fixed_q = float(p.quality[rows[fixed_mask], choice[fixed_mask]].sum())
    room = p.cap - fixed_t
    if room < 0:
        return None, int(core.size)
    # states: tokens used by processed core clips, their quality, their reduced cost, back-pointers
    st_t = np.zeros(1, dtype=np.int64)
    st_q = np.zeros(1)
    st_r = np.zeros(1)
    trail: list[tuple[np.ndarray, np.ndarray]] = []  # per core clip: (parent state, candidate)
    for n in core:
        cands = np.flatnonzero(rel[n])
        nt = (st_t[:, None] + p.tokens[n, cands][None, :]).ravel()
        nq = (st_q[:, None] + p.quality[n, cands][None, :]).ravel()
        nr = (st_r[:, None] + r[n, cands][None, :]).ravel()
        parent = np.repeat(np.arange(st_t.size), cands.size)
        cand = np.tile(cands, st_t.size)
        ok = (nt <= room) & (nr < gap)
        nt, nq, nr, parent, cand = nt[ok], nq[ok], nr[ok], parent[ok], cand[ok]
        # Pareto front: by tokens ascending (quality descending on ties), keep strict quality records
        o = np.lexsort((-nq, nt))
        nt, nq, nr, parent, cand = nt[o], nq[o], nr[o], parent[o], cand[o]
        prev_best = np.maximum.accumulate(np.concatenate([[-np.inf], nq[:-1]]))
        keep = nq > prev_best
        st_t, st_q, st_r = nt[keep], nq[keep], nr[keep]
        trail.append((parent[keep], cand[keep]))
        if st_t.size == 0:
            return incumbent, int(core.size)  # nothing beats the incumbent: it is optimal
        if st_t.size > max_states:
            return None, int(core.size)
    k = int(np.argmax(st_q))
    if fixed_q + float(st_q[k]) <= lower:
        return incumbent, int(core.size)
    out = choice.copy()
    for n, (parent, cand) in zip(core[::-1], trail[::-1], strict=True):
        out[n] = cand[k]
        k = int(parent[k])
    out, _ = _repair(p, out, by="ratio")  # zero-gain upgrades that still fit
    return out, int(core.size)


# ----------------------------------------------------------------------------------------------------
# Dispatch
# ----------------------------------------------------------------------------------------------------

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
