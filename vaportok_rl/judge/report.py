"""``vaportok-rl eval``'s report: is a taildrop head any good against budgeted allocators and the oracle frontier?

At the same mean token budget, compare the head acting as a policy (argmax / pre_argmax keep counts), AdapTok's
allocators (``fixed``, ``bithr``, ``bidelta``, ``ilp``, and our ``fast``) driven by the head's distribution, and
the **oracle**: the exact multiple-choice knapsack on the *true* distortion, decoded for every candidate::

    clips [N, C, T, H, W] ──encode once──► latents [N, K, D] ──► head ──► P(k) [N, K]
        │                                                       │
        │            scorers on the shared k grid [Q] ──────────┤ HeadScorer: P(k <= k_q)       [N, Q]
        │                                                       └ DistortionScorer: -MSE(k_q)   [N, Q]
        │                                                                │
        │          allocators (same grid, same budget) ◄─────────────────┘
        ▼                                │
    CandidateMetrics: MSE / PSNR / SSIM / LPIPS per (clip, k), decoded once per pair, memoised
        ▼
    records per allocation (tokens, MSE, PSNR, SSIM, LPIPS, AR-prior top-5, Spearman vs SC / TC)
    + a rate–distortion sweep over budgets + PNG plots (see docs/eval.md for the JSON schema and the plots)

:func:`evaluate` runs these steps in order, each its own function below; the k grid is
:mod:`vaportok_rl.judge.grid`'s.

Axis letters: docs/design.md; ``Q`` is the number of k-grid points (``G``, the group size, does not occur here).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from vaportok_rl.complexity import complexity
from vaportok_rl.data import HELDOUT_SEED
from vaportok_rl.judge.candidates import CandidateMetrics
from vaportok_rl.judge.choosers import BASELINES, HeadScorer, allocator_keep, policy_keeps
from vaportok_rl.judge.curves import rate_quality
from vaportok_rl.judge.inputs import (
    EvalError,
    check_clips,
    check_k_grid,
    check_options,
    default_budgets,
    default_k_grid,
)
from vaportok_rl.judge.oracles import DistortionScorer, exact_oracle
from vaportok_rl.judge.records import nan_to_none
from vaportok_rl.judge.records import record as judge_record
from vaportok_rl.metrics import LPIPSMetric, psnr_from_mse, shared_lpips
from vaportok_rl.policy import TaildropPolicy, head_logits
from vaportok_rl.tokenizer.head import TaildropHead
from vaportok_rl.tokenizer.protocol import Encoded, FrozenTokenizer

__all__ = ["SCHEMA", "TIMING_KEYS", "evaluate"]

SCHEMA = "vaportok-eval/3"
TIMING_KEYS = ("encode", "head_scorer", "oracle_scorer", "allocate", "rate_quality", "metrics", "total")


# ================================================================================================ what steps share
class _Clock:
    """``timing_s``: each step's seconds since the previous lap; ``total`` since the evaluation started."""

    def __init__(self) -> None:
        self.started = self.t0 = time.perf_counter()
        self.timing: dict[str, float] = {}

    def restart(self) -> None:
        self.t0 = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timing[name] = round(now - self.t0, 3)
        self.t0 = now

    def seconds(self) -> dict[str, float]:
        self.timing["total"] = round(time.perf_counter() - self.started, 3)
        return {k: self.timing.get(k, 0.0) for k in TIMING_KEYS}


@dataclass
class _Eval:
    """One evaluation's checked settings and clips, and the clips encoded once (:func:`_encode`)."""

    tokenizer: FrozenTokenizer
    head: TaildropHead
    clips: Tensor  # [N, C, T, H, W] float
    grid: np.ndarray  # [Q] the shared k grid
    allocators: tuple[str, ...]  # the baselines, then the headline allocator
    modes: tuple[str, ...]  # the head's policy points
    solver: str  # the oracle's: "fast" or "ilp"
    metric: str  # the oracle's quality
    lpips: bool
    chunk: int
    say: Callable[[str], None]
    clock: _Clock
    encoded: Encoded | None = None
    correct: Tensor | None = None  # [N, K] the AR prior's top-5 correctness per kept token
    sc: np.ndarray | None = None  # [N] spatial complexity
    tc: np.ndarray | None = None  # [N] temporal complexity


@dataclass
class _Chosen:
    """Every allocation the report judges, as keep counts [N]."""

    keeps: dict[str, np.ndarray]  # "policy/<mode>": the head's own
    budget: float
    budget_source: str  # "head_argmax" or "given"
    at_alloc: dict[str, np.ndarray] = field(default_factory=dict)  # each allocator at the budget
    oracle: np.ndarray | None = None  # the oracle at the budget
    budgets: list[float] = field(default_factory=list)  # the sweep's
    sweep: dict[str, list[np.ndarray]] = field(default_factory=dict)  # allocator or "oracle": one per budget
    fallbacks: int = 0  # oracle solves that fell back to the ILP
    unproven: int = 0  # oracle solves whose optimality the ILP did not prove
    other_oracles: dict[str, np.ndarray] = field(default_factory=dict)  # metric: its oracle at the budget


# ================================================================================================ evaluate
@torch.no_grad()
def evaluate(
    tokenizer: FrozenTokenizer,
    head: TaildropHead,
    videos_or_clips: Tensor,
    *,
    allocator: str = "fast",
    budget: float | None = None,
    k_grid: Sequence[int] | None = None,
    lpips: bool = True,
    modes: Sequence[str] = ("argmax", "pre_argmax"),
    seed: int = HELDOUT_SEED,
    baselines: Sequence[str] = BASELINES,
    oracle: str = "fast",
    oracle_metric: str = "psnr",
    sweep_budgets: Sequence[float] | None = None,
    full_table: bool = True,
    chunk: int = 256,
    lpips_metric: LPIPSMetric | None = None,
    measure: tuple[str, np.ndarray] | None = None,
    info: dict | None = None,
    log=None,
) -> dict:
    """Evaluate ``head`` on a frozen ``tokenizer`` against budgeted allocators and the oracle frontier.

    videos_or_clips: ``[B, L, C, T, H, W]`` or ``[N, C, T, H, W]`` in [0, 1], on the device to evaluate on
    (the tokenizer and head must already be there). ``allocator``: the headline allocator (one of
    ``ALLOCATORS``), compared together with ``baselines``, all fed the :class:`HeadScorer`'s quality on the same
    ``k_grid`` (default :func:`default_k_grid`) at ``budget`` mean tokens per clip (default: the head's own argmax
    mean token count; ``ilp`` there runs with ``HEAD_ILP_OPTIONS``). The oracle runs ``oracle`` ("fast" -- with
    a gap-0 ILP fallback when not certified -- or "ilp") on the :class:`DistortionScorer` (``oracle_metric``,
    default PSNR: the best *mean per-clip PSNR*, the quality the table reports) at the same budget; the oracles
    on the other metrics (-MSE, i.e. total MSE; -LPIPS when ``lpips``) are reported beside it. ``modes``: the
    head's policy points (``argmax``, ``pre_argmax``, ``sample``; the sampled ones draw from a generator seeded
    with ``seed``).
    ``sweep_budgets`` (default :func:`default_budgets`): the rate–distortion sweep; every baseline (and the
    headline allocator) and the oracle at each. ``full_table``: decode every clip at every k (N·K decodes) for
    ``report["rate_quality"]`` (:func:`vaportok_rl.judge.curves.rate_quality`): tokens saved against Fixed at
    equal mean PSNR and the share of the PSNR oracle's savings, for the head through its price knob, each
    allocator, the search chooser and the oracle, at every sweep budget. ``measure``: (name, quality [N, K]), a
    per-clip quality of every clip at every k (:func:`vaportok_rl.judge.measures.measure_table`): the same
    comparison under it, as ``report["measure"]`` (Fixed, the oracle, tokens saved and share all under that
    measure; no search). ``info``: extra ``setup`` entries (data source, ...).
    Returns the report (schema ``vaportok-eval/3``, documented in docs/eval.md; JSON-ready, NaN as ``None``).
    """
    clock = _Clock()
    modes = check_options(allocator, baselines, oracle, modes)
    clips = check_clips(tokenizer, head, videos_or_clips)
    K = tokenizer.num_latents
    grid = check_k_grid(default_k_grid(K) if k_grid is None else k_grid, K)
    allocators = tuple(dict.fromkeys([*baselines, allocator]))
    head.eval()
    say = log or (lambda msg: None)
    ev = _Eval(tokenizer, head, clips, grid, allocators, modes, oracle, oracle_metric, lpips, chunk, say, clock)
    _encode(ev)
    chosen = _head_points(ev, budget, seed)
    head_quality = HeadScorer(head, chunk=chunk)(tokenizer, ev.encoded, ev.clips, ev.grid)  # [N, Q]
    ev.clock.lap("head_scorer")
    cache, true_quality = _true_quality(ev, lpips_metric)
    _allocate(ev, chosen, head_quality, true_quality, sweep_budgets)
    _other_oracles(ev, chosen, cache)
    rq = _full_table(ev, chosen, cache) if full_table else None
    judged = None if measure is None else _under_measure(ev, chosen, measure)
    at_budget, sweep = _records(ev, chosen, cache)
    report = {
        "schema": SCHEMA,
        "setup": _setup(ev, chosen, videos_or_clips, allocator, seed, info),
        "at_budget": at_budget,
        "sweep": sweep,
        "per_clip": _per_clip(ev, chosen),
        "rate_quality": rq,
        "measure": judged,
        "plots": {},
        "timing_s": ev.clock.seconds(),
    }
    return nan_to_none(report)


# ================================================================================================ the steps
def _encode(ev: _Eval) -> None:
    """Encode once; complexity; prior correctness (one causal pass per clip covers every keep count)."""
    tokenizer, clips, chunk, N = ev.tokenizer, ev.clips, ev.chunk, len(ev.clips)
    ev.clock.restart()
    parts = [tokenizer.encode(clips[i : i + chunk]) for i in range(0, N, chunk)]
    ev.encoded = Encoded(latents=torch.cat([e.latents for e in parts]), codes=torch.cat([e.codes for e in parts]))
    ev.correct = torch.cat(
        [tokenizer.prior_correct(ev.encoded.index(slice(i, i + chunk)), topk=5) for i in range(0, N, chunk)]
    )
    ev.sc, ev.tc = (v.double().cpu().numpy() for v in complexity(clips))
    ev.clock.lap("encode")
    ev.say(f"encoded {N} clips (K={tokenizer.num_latents})")


def _head_points(ev: _Eval, budget: float | None, seed: int) -> _Chosen:
    """The head's policy points, and the budget: the one given, else the head's own argmax mean token count."""
    K = ev.tokenizer.num_latents
    argmax_keep, keeps = policy_keeps(TaildropPolicy(ev.head), ev.encoded.latents, ev.modes, seed, ev.chunk)
    if budget is None:
        budget, budget_source = float(argmax_keep.double().mean()), "head_argmax"
    else:
        budget_source = "given"
    budget = float(budget)
    if not (math.isfinite(budget) and ev.grid[0] <= budget <= K):
        raise EvalError(
            f"budget: expected a mean token count in [{int(ev.grid[0])}, {K}] (the k grid's range), got {budget}"
        )
    return _Chosen(keeps=keeps, budget=budget, budget_source=budget_source)


def _true_quality(ev: _Eval, lpips_metric: LPIPSMetric | None) -> tuple[CandidateMetrics, np.ndarray]:
    """The metric cache over the clips, and the oracle's true quality of every grid candidate [N, Q]."""
    if (ev.lpips or ev.metric == "lpips") and lpips_metric is None:
        lpips_metric = shared_lpips(ev.clips.device)
    cache = CandidateMetrics(ev.tokenizer, ev.encoded, ev.clips, lpips_metric=lpips_metric, chunk=ev.chunk)
    scorer = DistortionScorer(ev.metric, chunk=ev.chunk)
    true_quality = scorer(ev.tokenizer, ev.encoded, ev.clips, ev.grid, cache=cache)
    ev.clock.lap("oracle_scorer")
    ev.say(f"decoded {len(ev.clips)} x {len(ev.grid)} grid candidates")
    return cache, true_quality


def _allocate(ev: _Eval, chosen: _Chosen, head_quality: np.ndarray, true_quality: np.ndarray, sweep_budgets) -> None:
    """Every allocator (on the head's scores) and the oracle (on the true quality), at the budget and at every
    sweep budget."""
    grid, K = ev.grid, ev.tokenizer.num_latents
    for name in ev.allocators:
        chosen.at_alloc[name] = allocator_keep(name, head_quality, grid, chosen.budget)
    oracle_alloc, fell_back, proven = exact_oracle(true_quality, grid, chosen.budget, ev.solver)
    chosen.oracle = grid[oracle_alloc.choice]
    chosen.fallbacks, chosen.unproven = int(fell_back), int(not proven)
    budgets = default_budgets(K, int(grid[0])) if sweep_budgets is None else [float(b) for b in sweep_budgets]
    for b in budgets:
        if not (math.isfinite(b) and grid[0] <= b <= K):
            raise EvalError(f"sweep_budgets: expected mean token counts in [{int(grid[0])}, {K}], got {b}")
    chosen.budgets = budgets
    chosen.sweep = {name: [] for name in (*ev.allocators, "oracle")}
    for b in budgets:
        for name in ev.allocators:
            chosen.sweep[name].append(allocator_keep(name, head_quality, grid, b))
        result, fell_back, proven = exact_oracle(true_quality, grid, b, ev.solver)
        chosen.fallbacks, chosen.unproven = chosen.fallbacks + int(fell_back), chosen.unproven + int(not proven)
        chosen.sweep["oracle"].append(grid[result.choice])
    ev.clock.lap("allocate")
    ev.say(f"allocated: {len(ev.allocators)} allocators + oracle at the budget and at {len(budgets)} sweep budgets")


def _other_oracles(ev: _Eval, chosen: _Chosen, cache: CandidateMetrics) -> None:
    """The other oracles at the budget (mean PSNR, total MSE, mean LPIPS): which quality is maximised matters."""
    for metric in ("psnr", "mse", *(("lpips",) if ev.lpips else ())):
        if metric != ev.metric:
            q = DistortionScorer(metric, chunk=ev.chunk)(ev.tokenizer, ev.encoded, ev.clips, ev.grid, cache=cache)
            chosen.other_oracles[metric] = ev.grid[exact_oracle(q, ev.grid, chosen.budget, ev.solver)[0].choice]


def _full_table(ev: _Eval, chosen: _Chosen, cache: CandidateMetrics) -> dict:
    """The rate–quality comparison on the full PSNR table (every clip at every k, each decoded once)."""
    N, K = len(ev.clips), ev.tokenizer.num_latents
    cache.ensure(np.repeat(np.arange(N), K), np.tile(np.arange(1, K + 1), N))
    own = {f"head/{mode}": keep for mode, keep in ((m, chosen.keeps[f"policy/{m}"]) for m in ev.modes)}
    rq = rate_quality(
        psnr_from_mse(cache.mse[:, 1:]),
        chosen.budgets,
        head_logits=head_logits(ev.head, ev.encoded.latents, ev.chunk),
        allocations={name: chosen.sweep[name] for name in ev.allocators},
        own={**own, **{f"allocators/{n}": k for n, k in chosen.at_alloc.items()}},
    )
    ev.clock.lap("rate_quality")
    ev.say(f"rate–quality on the full table ({N} x {K} pairs)")
    return rq


def _under_measure(ev: _Eval, chosen: _Chosen, measure: tuple[str, np.ndarray]) -> dict:
    """The same comparison under the measure the head was trained for (its own Fixed curve and oracle)."""
    N, K = len(ev.clips), ev.tokenizer.num_latents
    name, table = measure
    table = np.asarray(table, dtype=np.float64)
    if table.shape != (N, K):
        raise EvalError(f"measure {name!r}: expected a quality table [N, K] = [{N}, {K}], got {table.shape}")
    judged = rate_quality(
        table,
        chosen.budgets,
        head_logits=head_logits(ev.head, ev.encoded.latents, ev.chunk),
        allocations={n: chosen.sweep[n] for n in ev.allocators},
        own={f"head/{m}": chosen.keeps[f"policy/{m}"] for m in ev.modes},
        search=False,
        measure=name,
    )
    ev.say(f"rate–quality under {name}")
    return judged


def _records(ev: _Eval, chosen: _Chosen, cache: CandidateMetrics) -> tuple[dict, dict]:
    """(at_budget, sweep): the metric record of every allocation (LPIPS for every pair any of them uses first,
    in one pass)."""
    N = len(ev.clips)
    if ev.lpips:
        every = [*chosen.keeps.values(), *chosen.at_alloc.values(), chosen.oracle, *chosen.other_oracles.values()]
        every += [k for ks in chosen.sweep.values() for k in ks]
        cache.ensure(np.tile(np.arange(N), len(every)), np.concatenate(every), lpips=True)

    def record(keep: np.ndarray) -> dict:
        return judge_record(cache, keep, lpips=ev.lpips, correct=ev.correct, sc=ev.sc, tc=ev.tc)

    at_budget = {
        "policy": {mode: record(chosen.keeps[f"policy/{mode}"]) for mode in ev.modes},
        "allocators": {name: record(chosen.at_alloc[name]) for name in ev.allocators},
        "oracle": record(chosen.oracle),
        "oracles": {ev.metric: record(chosen.oracle), **{m: record(k) for m, k in chosen.other_oracles.items()}},
    }
    sweep = {
        "budgets": chosen.budgets,
        "allocators": {
            name: [{"budget": b, **record(k)} for b, k in zip(chosen.budgets, chosen.sweep[name], strict=True)]
            for name in ev.allocators
        },
        "oracle": [{"budget": b, **record(k)} for b, k in zip(chosen.budgets, chosen.sweep["oracle"], strict=True)],
    }
    ev.clock.lap("metrics")
    ev.say(f"metrics of {int(cache._done.sum())} (clip, k) pairs ({cache.decodes} decodes)")
    return at_budget, sweep


def _setup(ev: _Eval, chosen: _Chosen, videos_or_clips: Tensor, allocator: str, seed: int, info: dict | None):
    """``report["setup"]``: what was evaluated and how, plus ``info``'s entries (data source, ...)."""
    videos = videos_or_clips.ndim == 6
    oracle = {"solver": ev.solver, "metric": ev.metric, "ilp_fallbacks": chosen.fallbacks, "unproven": chosen.unproven}
    setup = {
        "head": None,
        "tokenizer": str(getattr(ev.tokenizer, "fingerprint", "")),
        "data": None,
        "split": None,
        "seed": int(seed),
        "videos": int(videos_or_clips.shape[0]) if videos else None,
        "clips_per_video": int(videos_or_clips.shape[1]) if videos else None,
        "clips": len(ev.clips),
        "num_latents": ev.tokenizer.num_latents,
        "clip_shape": [int(v) for v in ev.tokenizer.clip_shape],
        "k_grid": ev.grid.tolist(),
        "budget": chosen.budget,
        "budget_source": chosen.budget_source,
        "allocator": allocator,
        "allocators": list(ev.allocators),
        "modes": list(ev.modes),
        "oracle": oracle,
        "lpips": bool(ev.lpips),
    }
    for key, value in (info or {}).items():
        if key not in setup:
            raise ValueError(f"info: unknown setup key {key!r}; expected some of {sorted(setup)}")
        setup[key] = value
    return setup


def _per_clip(ev: _Eval, chosen: _Chosen) -> dict:
    """``report["per_clip"]``: complexity and the tokens of every allocation at the budget, clip by clip."""
    at_alloc = {f"allocators/{n}": k for n, k in chosen.at_alloc.items()}
    tokens = {**chosen.keeps, **at_alloc, "oracle": chosen.oracle}
    return {
        "sc": ev.sc.tolist(),
        "tc": ev.tc.tolist(),
        "tokens": {name: k.astype(int).tolist() for name, k in tokens.items()},
    }
