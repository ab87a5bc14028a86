"""The exact multiple-choice knapsack: *ILP* (``scipy.optimize.milp``, HiGHS) and *fast* (the LP relaxation over
each clip's upper convex hull, a greedy repair, and an exact core search when the bound does not already prove the
answer optimal). The problem and the budget semantics: ``vaportok_rl.allocators``.

Axis letters: ``N`` clips, ``C`` candidates per clip.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, milp

from vaportok_rl.allocation import Allocation, AllocationProblem, check_problem, to_allocation

__all__ = ["fast", "ilp"]


def ilp(quality, tokens, budget, *, mip_rel_gap: float = 0.0, time_limit: float | None = None) -> Allocation:
    """The exact multiple-choice knapsack (AdapTok's ILP) with ``scipy.optimize.milp``.

    quality [N, C], tokens [C] or [N, C], budget: mean tokens per clip. ``mip_rel_gap`` is HiGHS's
    relative optimality gap (0: prove optimality; HiGHS's own default is 1e-4); ``time_limit`` in
    seconds (``None``: none). Raises ``RuntimeError`` if the solver returns no feasible solution.
    Zero-gain upgrades that still fit are taken afterwards (the budget is used within one step).
    """
    p = check_problem(quality, tokens, budget)
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
    return to_allocation(p, choice, "ilp", status=res.status, mip_gap=np.nan if gap is None else gap)


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


def _repair(p: AllocationProblem, choice: np.ndarray, by: str = "ratio") -> tuple[np.ndarray, int]:
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
    p = check_problem(quality, tokens, budget)
    q, tf = p.quality, p.tokens.astype(np.float64)
    rows = np.arange(p.n)
    segments = _hull_segments(q, p.tokens, tf)
    lam, upper, starts = _lp_starts(p, segments)
    best, best_obj, best_moves = _best_repair(p, starts)

    # Lagrangian bound at lam (weak duality, valid for any lam >= 0): obj(x) <= sum_n max_c (q - lam t) + lam cap.
    reduced = q - lam * tf  # [N, C]
    peak = reduced.max(axis=1)  # [N]
    ub_lam = float(peak.sum()) + lam * p.cap  # equals the LP value up to round-off; the bound r refers to
    upper = min(upper, ub_lam)
    extras = {"lambda": lam, "repair_moves": best_moves, "hull_segments": len(segments.order)}
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
    return to_allocation(p, best, "fast", **extras)


class _Segments(NamedTuple):
    """The rising segments of every clip's upper hull (``fast``'s step 1), one entry per segment."""

    hull: np.ndarray  # [N, C] hull vertices (_upper_hulls); segment k of clip n: hull[n, k-1] -> hull[n, k]
    row: np.ndarray  # [segments] the segment's clip
    cost: np.ndarray  # [segments] its tokens
    gain: np.ndarray  # [segments] its quality gain
    slope: np.ndarray  # [segments] gain per token, non-increasing along a hull
    order: np.ndarray  # [segments] steepest first; a row's segments in hull order


def _hull_segments(q: np.ndarray, t: np.ndarray, tf: np.ndarray) -> _Segments:
    """The rising segments of the upper hulls of (tokens ``t`` [N, C] (``tf`` as float64), quality ``q`` [N, C]),
    sorted by slope."""
    n_cand = q.shape[1]
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
    return _Segments(hull=H, row=seg_r, cost=seg_cost, gain=seg_gain, slope=seg_slope, order=order)


def _lp_starts(p: AllocationProblem, seg: _Segments) -> tuple[float, float, list[np.ndarray]]:
    """``fast``'s steps 2 and 3: the LP relaxation's multiplier ``lam`` and value (an upper bound on the optimum),
    and the integer starts [N] (a) and, when a segment breaks the budget, (b)."""
    q, t = p.quality, p.tokens
    rows = np.arange(p.n)
    order = seg.order
    base_q = float(q[:, 0].sum())
    base_t = int(t[:, 0].sum())
    cum = base_t + np.cumsum(seg.cost[order])
    n_take = int(np.searchsorted(cum, p.cap, side="right"))  # segments taken while they fit

    def vertices(taken: np.ndarray) -> np.ndarray:
        cnt = np.bincount(seg.row[taken], minlength=p.n)
        return seg.hull[rows, cnt]

    upper = base_q + float(seg.gain[order[:n_take]].sum())
    lam = 0.0
    starts = [vertices(order[:n_take])]
    if n_take < len(order):
        brk = order[n_take]
        used = int(cum[n_take - 1]) if n_take else base_t
        upper += (p.cap - used) / float(seg.cost[brk]) * float(seg.gain[brk])
        lam = float(seg.slope[brk])
        # (b): take the break segment, give back the flattest taken segments of other clips
        over = int(cum[n_take]) - p.cap
        prefix = order[:n_take][::-1]
        others = prefix[seg.row[prefix] != seg.row[brk]]
        freed = np.cumsum(seg.cost[others])
        m = int(np.searchsorted(freed, over, side="left"))  # give back others[: m + 1]
        if m < len(others):
            drop = np.zeros(len(seg.row), dtype=bool)
            drop[others[: m + 1]] = True
            taken = np.append(order[:n_take], brk)
            starts.append(vertices(taken[~drop[taken]]))
    return lam, upper, starts


def _best_repair(p: AllocationProblem, starts: list[np.ndarray]) -> tuple[np.ndarray, float, int]:
    """Each start [N] repaired both ways (:func:`_repair` by ratio and by gain); the best: (choice, objective,
    repair moves)."""
    rows = np.arange(p.n)
    best, best_obj, best_moves = starts[0], -np.inf, 0
    for start in starts:
        for by in ("ratio", "gain"):
            choice, moves = _repair(p, start, by=by)
            obj = float(p.quality[rows, choice].sum())
            if obj > best_obj:
                best, best_obj, best_moves = choice, obj, moves
    return best, best_obj, best_moves


def _tol(scale: float) -> float:
    return 1e-9 * max(1.0, abs(scale))


def _core_search(
    p: AllocationProblem,
    incumbent: np.ndarray,
    lower: float,
    upper: float,
    r: np.ndarray,
    max_clips: int,
    max_states: int,
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
