"""Token allocators: budget semantics, exactness against brute force, AdapTok Algorithm 1 by hand, errors."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from vaportok_rl import allocators as A

NAMES = ["fixed", "bithr", "bidelta", "ilp", "fast"]


# ---------------------------------------------------------------------------------------------------- helpers


def _problem(seed: int, n: int, c: int, per_clip: bool, kind: str = "increasing"):
    """quality [n, c], tokens [c] or [n, c] (strictly ascending), and a budget between min and max."""
    rng = np.random.default_rng(seed)
    tokens = np.cumsum(rng.integers(1, 9, size=(n, c) if per_clip else c), axis=-1)
    if kind == "increasing":  # strictly increasing in tokens
        quality = np.cumsum(rng.uniform(0.01, 1.0, size=(n, c)), axis=1)
    elif kind == "psnr":  # concave-ish with noise, per-clip difficulty
        t2 = np.broadcast_to(tokens, (n, c))
        quality = 20 + 4 * np.log2(1 + t2 / (4 * rng.lognormal(0, 0.5, (n, 1)))) + rng.normal(0, 0.1, (n, c))
    else:  # arbitrary
        quality = rng.normal(size=(n, c))
    t2 = np.broadcast_to(tokens, (n, c))
    budget = float(rng.uniform(t2[:, 0].mean(), t2[:, -1].mean()))
    return quality, tokens, budget


def _brute(quality, tokens, budget) -> float:
    n, c = quality.shape
    t2 = np.broadcast_to(tokens, (n, c))
    cap = math.floor(budget * n + 1e-9)
    rows = np.arange(n)
    best = -np.inf
    for choice in itertools.product(range(c), repeat=n):
        ch = np.array(choice)
        if t2[rows, ch].sum() <= cap:
            best = max(best, float(quality[rows, ch].sum()))
    return best


def _assert_consistent(alloc: A.Allocation, quality, tokens):
    n, c = quality.shape
    t2 = np.broadcast_to(tokens, (n, c))
    rows = np.arange(n)
    assert alloc.choice.shape == (n,) and alloc.tokens.shape == (n,)
    assert alloc.choice.dtype.kind == "i" and alloc.tokens.dtype.kind == "i"
    np.testing.assert_array_equal(alloc.tokens, t2[rows, alloc.choice])
    assert alloc.objective == pytest.approx(quality[rows, alloc.choice].sum())
    assert alloc.mean_tokens == pytest.approx(alloc.tokens.mean())


def _assert_within_one_step(alloc: A.Allocation, tokens, budget):
    """mean <= budget, and no single clip can move to its next larger candidate within the budget."""
    n = len(alloc.choice)
    t2 = np.broadcast_to(tokens, (n, np.shape(tokens)[-1]))
    cap = math.floor(budget * n + 1e-9)
    assert alloc.tokens.sum() <= cap
    assert alloc.mean_tokens <= budget + 1e-9
    slack = cap - int(alloc.tokens.sum())
    open_ = np.flatnonzero(alloc.choice < t2.shape[1] - 1)
    step = t2[open_, alloc.choice[open_] + 1] - t2[open_, alloc.choice[open_]]
    assert (step > slack).all(), f"{alloc.method}: clip {open_[step <= slack]} could still step up"


# ---------------------------------------------------------------------------------------------------- budget


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("per_clip", [False, True])
def test_budget_respected_and_within_one_step(name, per_clip):
    for seed in range(4):
        quality, tokens, budget = _problem(seed, n=10, c=6, per_clip=per_clip)
        if name == "fixed" and per_clip:
            budget = max(budget, float(np.max(tokens[:, 0])))  # fixed needs a candidate <= budget in every clip
        alloc = A.allocate(name, quality, tokens, budget)
        assert alloc.method == name
        _assert_consistent(alloc, quality, tokens)
        if name == "fixed":
            t2 = np.broadcast_to(tokens, quality.shape)
            assert (alloc.tokens <= budget).all()
            nxt = np.minimum(alloc.choice + 1, quality.shape[1] - 1)
            assert ((alloc.choice == quality.shape[1] - 1) | (t2[np.arange(10), nxt] > budget)).all()
            if not per_clip:  # one shared count: the largest candidate <= budget
                assert (alloc.tokens == tokens[tokens <= budget].max()).all()
        else:
            _assert_within_one_step(alloc, tokens, budget)


@pytest.mark.parametrize("name", NAMES)
def test_budget_edges(name):
    quality, tokens, _ = _problem(7, n=5, c=4, per_clip=False)
    low = A.allocate(name, quality, tokens, float(tokens[0]))  # exactly the smallest achievable mean
    assert (low.choice == 0).all()
    high = A.allocate(name, quality, tokens, float(tokens[-1]) + 100)  # more than enough: everything
    assert (high.choice == 3).all()  # quality is increasing, so the largest candidate is best
    with pytest.raises(ValueError, match=r"budget: .*below the smallest achievable"):
        A.allocate(name, quality, tokens, tokens[0] - 0.5)


def test_shared_and_per_clip_tokens_agree():
    quality, tokens, budget = _problem(3, n=8, c=5, per_clip=False, kind="psnr")
    for name in NAMES:
        a = A.allocate(name, quality, tokens, budget)
        b = A.allocate(name, quality, np.tile(tokens, (8, 1)), budget)
        assert a.objective == pytest.approx(b.objective), name
        if name not in ("ilp", "fast"):  # optimisers may break exact ties differently
            np.testing.assert_array_equal(a.choice, b.choice)


# ---------------------------------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("kind", ["increasing", "arbitrary"])
@pytest.mark.parametrize("per_clip", [False, True])
def test_ilp_and_fast_match_brute_force(kind, per_clip):
    for seed in range(6):
        quality, tokens, budget = _problem(100 + seed, n=4, c=4, per_clip=per_clip, kind=kind)
        opt = _brute(quality, tokens, budget)
        exact = A.ilp(quality, tokens, budget)
        assert exact.objective == pytest.approx(opt, abs=1e-9)
        quick = A.fast(quality, tokens, budget)
        assert quick.objective <= opt + 1e-9
        assert quick.objective >= opt - 0.005 * abs(opt)
        assert quick.extras["upper_bound"] >= opt - 1e-9  # the LP bound is a true upper bound
        if quick.extras["certified"]:
            assert quick.objective == pytest.approx(opt, abs=1e-9)


def test_fast_heuristic_alone_is_near_exact():
    """Without the exact core search (max_core_clips=0) fast is the Lagrangian + repair heuristic: its
    bound is still a true upper bound, and on PSNR-like curves with a few dozen clips it is within 0.5 %
    of the optimum (its loss is at most about one clip's step, so it shrinks as N grows)."""
    for seed in range(4):
        quality, tokens, budget = _problem(200 + seed, n=5, c=5, per_clip=seed % 2 == 1, kind="arbitrary")
        opt = _brute(quality, tokens, budget)
        quick = A.fast(quality, tokens, budget, max_core_clips=0)
        assert quick.objective <= opt + 1e-9 <= quick.extras["upper_bound"] + 2e-9
    for seed in range(3):
        quality, tokens, budget = _problem(210 + seed, n=40, c=8, per_clip=seed == 1, kind="psnr")
        exact = A.ilp(quality, tokens, budget)
        quick = A.fast(quality, tokens, budget, max_core_clips=0)
        assert exact.objective - 0.005 * abs(exact.objective) <= quick.objective <= exact.objective + 1e-9
        assert quick.extras["upper_bound"] >= exact.objective - 1e-9
        _assert_within_one_step(quick, tokens, budget)


def test_fast_matches_ilp_on_a_larger_problem():
    quality, tokens, budget = _problem(11, n=24, c=12, per_clip=False, kind="psnr")
    exact = A.ilp(quality, tokens, budget)
    quick = A.fast(quality, tokens, budget)
    assert quick.objective >= exact.objective - 0.005 * abs(exact.objective)
    assert quick.objective <= quick.extras["upper_bound"] + 1e-9
    assert exact.objective <= quick.extras["upper_bound"] + 1e-9


# ---------------------------------------------------------------------------------------------------- Algorithm 1


# Losses s = -quality, non-increasing in k, for 3 clips (hand-made).
LOSS = np.array(
    [
        [10.0, 5.0, 2.0, 1.0],
        [8.0, 7.0, 6.0, 5.0],
        [4.0, 1.0, 0.5, 0.2],
    ]
)


def test_bithr_by_hand():
    # tokens 1..4, budget 2 (total <= 6). Clip n keeps the first candidate with loss < t:
    # t=10 -> (1,0,0) 4 tokens; t=8 -> (1,1,0) 5; t=7 -> (1,2,0) 6 fits; t=6 -> (1,3,0) 7 does not.
    a = A.bithr(-LOSS, [1, 2, 3, 4], 2.0)
    np.testing.assert_array_equal(a.choice, [1, 2, 0])
    assert a.extras["threshold"] == 7.0 and a.extras["threshold_low"] == 6.0
    assert a.mean_tokens == 2.0 and a.extras["fill_steps"] == 0
    # Algorithm 1's float bisection lands anywhere in (6, 7]: same allocation
    for t in (6.0001, 6.5, 7.0):
        np.testing.assert_array_equal(np.argmax(np.c_[LOSS[:, :-1], np.full(3, -np.inf)] < t, axis=1), a.choice)

    # tokens 1,2,4,8: t=8 -> (1,1,0) 5 tokens fits, t=7 -> (1,2,0) 7 does not. Algorithm 1 stops there,
    # one token left; the fill step gives it to the only clip whose next step costs 1 (clip 2: 1 -> 2).
    plain = A.bithr(-LOSS, [1, 2, 4, 8], 2.0, fill=False)
    np.testing.assert_array_equal(plain.choice, [1, 1, 0])
    assert plain.extras["threshold"] == 8.0 and plain.extras["threshold_low"] == 7.0
    filled = A.bithr(-LOSS, [1, 2, 4, 8], 2.0)
    np.testing.assert_array_equal(filled.choice, [1, 1, 1])
    assert filled.extras["fill_steps"] == 1 and filled.mean_tokens == 2.0


def test_bidelta_by_hand():
    # delta scores s[c] - s[c+1]: clip 0 (5, 3, 1), clip 1 (1, 1, 1), clip 2 (3, 0.5, 0.3).
    # A clip stops at the first step gaining < t. tokens 1..4, total <= 6:
    # t=inf -> (0,0,0) 3; t=5 -> (1,0,0) 4; t=3 -> (2,0,1) 6 fits; t=1 -> (3,3,1) 10 does not.
    a = A.bidelta(-LOSS, [1, 2, 3, 4], 2.0)
    np.testing.assert_array_equal(a.choice, [2, 0, 1])
    assert a.extras["threshold"] == 3.0 and a.extras["threshold_low"] == 1.0
    assert a.mean_tokens == 2.0
    # budget 3 (total <= 9): t=1 needs 10, so t=3 stays, 3 tokens left. The fill takes single steps in
    # threshold order, largest delta at the current candidate first: clip 0 (1.0; ties with clip 1, lower
    # index first), then clip 1 (1.0 > clip 2's 0.5) twice.
    b = A.bidelta(-LOSS, [1, 2, 3, 4], 3.0)
    np.testing.assert_array_equal(A.bidelta(-LOSS, [1, 2, 3, 4], 3.0, fill=False).choice, [2, 0, 1])
    np.testing.assert_array_equal(b.choice, [3, 2, 1])
    assert b.mean_tokens == 3.0


@pytest.mark.parametrize("name", ["bithr", "bidelta"])
def test_threshold_search_equals_float_bisection(name):
    """The exact search is Algorithm 1 run to convergence (scores need not even be monotone)."""
    for seed in range(3):
        quality, tokens, budget = _problem(300 + seed, n=16, c=8, per_clip=seed == 2, kind="arbitrary")
        s = -quality
        score = s.copy() if name == "bithr" else np.c_[s[:, :-1] - s[:, 1:], s[:, -1]]
        score[:, -1] = -np.inf  # no candidate below the threshold -> the last one
        t2 = np.broadcast_to(tokens, quality.shape)
        s_max, s_min = np.nextafter(score[:, :-1].max(), np.inf), score[:, :-1].min()
        for _ in range(200):  # Algorithm 1, lines 6-12
            s_mid = (s_max + s_min) / 2
            n_k = np.argmax(score < s_mid, axis=1)
            if t2[np.arange(16), n_k].mean() > budget:
                s_min = s_mid
            else:
                s_max = s_mid
        expected = np.argmax(score < s_max, axis=1)  # the feasible end of the bracket
        got = A.allocate(name, quality, tokens, budget, fill=False)
        np.testing.assert_array_equal(got.choice, expected)


# ---------------------------------------------------------------------------------------------------- errors


def test_unknown_name():
    with pytest.raises(ValueError, match=r"name: unknown allocator 'greedy'.*'bidelta'.*'ilp'"):
        A.allocate("greedy", np.zeros((2, 2)), [1, 2], 1.5)


@pytest.mark.parametrize(
    ("quality", "tokens", "budget", "pattern"),
    [
        (np.zeros(3), [1, 2, 3], 2.0, r"quality: .*\[N clips, C candidates\].*\(3,\)"),
        (np.array([[0.0, np.nan]]), [1, 2], 2.0, r"quality: expected finite.*\[n, c\] = \(0, 1\).*nan"),
        (np.zeros((2, 3)), [1, 2], 2.0, r"tokens: expected shape \(3,\).*\(2, 3\).*got \(2,\)"),
        (np.zeros((2, 3)), [1, 3, 3], 2.0, r"tokens: expected strictly ascending.*\[1, 3, 3\]"),
        (np.zeros((2, 3)), [[1, 2, 3], [1, 5, 4]], 2.0, r"tokens: expected strictly ascending.*\[1, 5, 4\]"),
        (np.zeros((2, 3)), [1.0, 2.5, 3.0], 2.0, r"tokens: expected integer.*2\.5"),
        (np.zeros((2, 3)), [-1, 2, 3], 2.0, r"tokens: expected non-negative.*-1"),
        (np.zeros((2, 3)), [1, 2, 3], float("nan"), r"budget: expected a finite.*nan"),
        (np.zeros((2, 3)), [1, 2, 3], "2", r"budget: expected a real number.*'2'"),
        (np.zeros((2, 3)), [4, 5, 6], 3.0, r"budget: 3.0 is below the smallest achievable mean token count 4"),
    ],
)
@pytest.mark.parametrize("name", NAMES)
def test_bad_input_names_the_argument(name, quality, tokens, budget, pattern):
    with pytest.raises(ValueError, match=pattern):
        A.allocate(name, quality, tokens, budget)


def test_fixed_needs_a_candidate_in_every_clip():
    tokens = np.array([[1, 2, 3], [4, 5, 6]])
    with pytest.raises(ValueError, match=r"budget: 3.0 is below clip 1's smallest candidate 4"):
        A.fixed(np.zeros((2, 3)), tokens, 3.0)
    assert A.fast(np.zeros((2, 3)), tokens, 3.0).mean_tokens <= 3.0  # fine for the others (mean 2.5 <= 3)
