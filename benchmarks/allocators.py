"""Benchmark: exact ILP (scipy milp / HiGHS) vs the ``fast`` allocator, on the same problems, in one run.

    python benchmarks/allocators.py --seed 0

Problems are PSNR-like: clip n at t tokens scores ``base_n + 4 * log2(1 + t / (6 * difficulty_n))`` dB
plus i.i.d. noise (sigma 0.1 dB), so curves are increasing and concave-ish but not exactly; per-clip
difficulty is log-normal. Candidates are C evenly spaced counts up to 256 tokens, shared by all clips;
the budget is a fraction of the largest count. Each allocator is timed best-of ``--repeats``
(``time.perf_counter``, input validation and constraint building included for both).

Columns: milp and fast wall time; their ratio; ``gap %`` = (milp objective - fast objective) /
|milp objective|; ``gap % gain`` = the same gap over what the optimum gains above every clip at its
smallest candidate (a stricter, scale-free view); ``bound %`` = fast's own certified bound on its gap
(``extras["upper_bound"]`` - fast objective, over |milp objective|). Exits 1 if a gap exceeds
``--max-gap-pct`` (0.5) or an allocation exceeds the budget.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np
import scipy

from vaportok_rl import allocators as A


def make_problem(n_clips: int, n_cand: int, rng: np.random.Generator, budget_frac: float, max_tokens: int = 256):
    """quality [N, C] (dB), tokens [C], budget (mean tokens per clip)."""
    tokens = np.round(np.linspace(max_tokens / n_cand, max_tokens, n_cand)).astype(np.int64)  # [C]
    difficulty = rng.lognormal(0.0, 0.6, size=(n_clips, 1))  # [N, 1]
    base = rng.normal(18.0, 2.0, size=(n_clips, 1))  # [N, 1]
    quality = base + 4.0 * np.log2(1.0 + tokens[None, :] / (6.0 * difficulty))  # [N, C]
    quality = quality + rng.normal(0.0, 0.1, size=quality.shape)
    return quality, tokens, budget_frac * max_tokens


def best_of(fn, repeats: int):
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0, help="problem RNG seed")
    ap.add_argument("--problems", default="128x64,1024x128", help="comma-separated NxC sizes")
    ap.add_argument("--budget-frac", type=float, default=0.4, help="budget as a fraction of the largest count")
    ap.add_argument("--repeats", type=int, default=3, help="timing repeats for fast (best-of)")
    ap.add_argument("--milp-repeats", type=int, default=3, help="timing repeats for milp (best-of)")
    ap.add_argument("--max-gap-pct", type=float, default=0.5, help="fail above this objective gap")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    warm = make_problem(4, 4, np.random.default_rng(-1 % 2**32), args.budget_frac)
    A.ilp(*warm), A.fast(*warm)  # imports and first-call costs stay out of the timings
    print(
        f"# seed={args.seed} budget_frac={args.budget_frac} repeats fast={args.repeats} milp={args.milp_repeats}"
        f" | numpy {np.__version__} scipy {scipy.__version__} python {platform.python_version()}"
        f" | {platform.machine()}"
    )
    header = (
        f"{'problem':>18} {'milp s':>9} {'fast ms':>9} {'milp/fast':>10} {'gap %':>9} {'gap % gain':>11}"
        f" {'bound %':>9} {'certified':>9}"
    )
    print(header)
    print("-" * len(header))
    ok = True
    for spec in args.problems.split(","):
        n_clips, n_cand = (int(x) for x in spec.lower().split("x"))
        quality, tokens, budget = make_problem(n_clips, n_cand, rng, args.budget_frac)
        t_milp, exact = best_of(lambda: A.ilp(quality, tokens, budget), args.milp_repeats)  # noqa: B023
        t_fast, quick = best_of(lambda: A.fast(quality, tokens, budget), args.repeats)  # noqa: B023
        floor_obj = float(quality[:, 0].sum())
        gap = (exact.objective - quick.objective) / abs(exact.objective) * 100
        gap_gain = (exact.objective - quick.objective) / max(exact.objective - floor_obj, 1e-12) * 100
        bound = (quick.extras["upper_bound"] - quick.objective) / abs(exact.objective) * 100
        within = max(exact.mean_tokens, quick.mean_tokens) <= budget + 1e-9
        ok &= within and gap <= args.max_gap_pct
        name = f"{n_clips}x{n_cand} b={budget:g}"
        print(
            f"{name:>18} {t_milp:9.3f} {t_fast * 1e3:9.2f} {t_milp / t_fast:9.0f}x {gap:9.5f} {gap_gain:11.5f}"
            f" {bound:9.5f} {int(quick.extras['certified']):>9}" + ("" if within else "  OVER BUDGET")
        )
    print("PASS" if ok else f"FAIL: objective gap above {args.max_gap_pct}% or budget exceeded")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
