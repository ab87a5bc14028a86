"""``vaportok-rl eval``: is a taildrop head any good against budgeted allocators and the oracle frontier?

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

The **k grid** (candidate keep counts, shared by every allocator and the oracle): by default ``1`` plus every
multiple of ``max(1, K // 32)`` up to K -- 33 points for K = 128, every k for K <= 32. AdapTok's allocators work
on a coarse grid (blocks of tokens); 1/32 of K keeps the oracle's ``N × Q`` decodes affordable while the steps
stay fine (4 tokens at K = 128). The head's own policy points are *not* restricted to the grid: they may keep
any k in 1..K (so with a coarse grid the oracle is the best *grid* allocation, not a strict bound on them).

Axis letters: docs/design.md; ``Q`` is the number of k-grid points (``G``, the group size, does not occur here).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from torch import Tensor

from vaportok_rl.allocators import ALLOCATORS, Allocation, allocate
from vaportok_rl.complexity import complexity
from vaportok_rl.data import HELDOUT_SEED
from vaportok_rl.metrics import LPIPSMetric, lpips_features, lpips_to_references, spearman, ssim
from vaportok_rl.policy import TaildropPolicy, check_mode
from vaportok_rl.rate_quality import head_logits, rate_quality
from vaportok_rl.resources import tensor_bytes
from vaportok_rl.tokenizer.head import TaildropHead
from vaportok_rl.tokenizer.protocol import Encoded, FrozenTokenizer, prior_accuracy

__all__ = [
    "BASELINES",
    "HELDOUT_SEED",
    "RECORD_KEYS",
    "SCHEMA",
    "CandidateMetrics",
    "DistortionScorer",
    "EvalError",
    "HeadScorer",
    "default_budgets",
    "default_k_grid",
    "evaluate",
    "format_table",
    "load_head_spec",
    "peak_bytes",
    "write_plots",
]

SCHEMA = "vaportok-eval/3"
BASELINES = ("fixed", "bithr", "bidelta", "ilp")
"""AdapTok's allocators, always compared (plus ``--allocator`` when it is ``fast``)."""
ORACLES = ("fast", "ilp")
RECORD_KEYS = (
    "tokens_mean",
    "tokens_std",
    "tokens_min",
    "tokens_max",
    "mse",
    "psnr",
    "ssim",
    "lpips",
    "prior_top5",
    "spearman_sc",
    "spearman_tc",
)
"""The keys of every metric record (a sweep record has ``budget`` too)."""
TIMING_KEYS = ("encode", "head_scorer", "oracle_scorer", "allocate", "rate_quality", "metrics", "total")
PLOTS = ("rd_psnr", "rd_lpips", "tokens_vs_complexity", "token_hist", "rate_quality")
HEAD_ILP_OPTIONS = {"mip_rel_gap": 1e-4, "time_limit": 10.0}
"""``ilp`` on the head's scores: HiGHS's default relative gap and a time limit. The head's CDFs can be nearly
linear (many near-ties), where proving a gap of exactly 0 takes HiGHS minutes for a 1e-4 difference in a proxy
objective; the oracle, whose objective is the one that matters, is solved to gap 0 (``ORACLE_ILP_TIME_LIMIT``)."""
ORACLE_ILP_TIME_LIMIT = 300.0
SSIM_MIN_SIDE = 11  # SSIM's Gaussian window; smaller frames get ssim = null


class EvalError(ValueError):
    """A bad option or input; the CLI prints it and exits with code 2."""


# ================================================================================================ k grid, budgets
def default_k_grid(K: int) -> list[int]:
    """``[1, s, 2s, ..., K]`` with ``s = max(1, K // 32)`` (K always included): 33 points at K = 128."""
    step = max(1, K // 32)
    return sorted({1, K, *range(step, K + 1, step)})


def check_k_grid(k_grid: Sequence[int], K: int) -> np.ndarray:
    grid = np.asarray(list(k_grid))
    if grid.ndim != 1 or grid.size < 1 or not np.issubdtype(grid.dtype, np.integer):
        raise EvalError(f"k_grid: expected a non-empty list of integer keep counts in 1..{K}, got {list(k_grid)!r}")
    if grid.min() < 1 or grid.max() > K or (np.diff(grid) <= 0).any():
        raise EvalError(f"k_grid: expected strictly ascending keep counts in 1..{K}, got {grid.tolist()}")
    return grid.astype(np.int64)


def default_budgets(K: int, k_min: int = 1, points: int = 8) -> list[float]:
    """``points`` budgets evenly spaced from ``max(K / 16, k_min)`` to K (rounded to 0.01)."""
    lo = max(K / 16, float(k_min))
    return sorted({round(float(b), 2) for b in np.linspace(lo, K, points)})


def peak_bytes(clip_shape: Sequence[int], num_clips: int, num_latents: int, chunk: int = 256) -> int:
    """About the most memory :func:`evaluate` holds at once for ``num_clips`` clips (to check before loading
    them): the clips with one clip-sized temporary (complexity), one chunk of decoded grid candidates with their
    gathered references and differences, and the per-(clip, k) metric tables."""
    clip = [int(v) for v in clip_shape]
    candidates = min(int(chunk), int(num_clips) * len(default_k_grid(int(num_latents))))
    clips = tensor_bytes(2 * int(num_clips), *clip)
    decoded = tensor_bytes(4 * candidates, *clip)
    tables = tensor_bytes(int(num_clips), int(num_latents) + 1, 4, dtype=torch.float64)
    return clips + decoded + tables


# ================================================================================================ scorers
class HeadScorer:
    """Quality from the head's distribution: ``quality[n, q] = P(k <= k_grid[q])``, the head's CDF.

    Why the CDF. The head puts mass on "how many tokens this clip needs"; ``P(k <= x)`` is its probability that
    ``x`` tokens suffice. Unlike ``P(k = x)`` (which peaks at the mode and falls after it), it is non-decreasing
    in ``x`` like a true quality curve -- more tokens never hurt -- which AdapTok's threshold searches assume
    (their score must fall as tokens are added) and the knapsack rewards sensibly. It lies in [0, 1] for every
    clip, so one global threshold means the same thing everywhere: ``bithr`` on it keeps each clip's head quantile
    at a common level, ``bidelta`` stops where the next grid step holds less than a common share of mass, and
    ``ilp`` / ``fast`` maximise the expected number of clips whose needed count is covered.
    """

    name = "head"

    def __init__(self, head: TaildropHead, chunk: int = 1024):
        self.head = head
        self.chunk = chunk

    @torch.no_grad()
    def __call__(self, tokenizer: FrozenTokenizer, encoded: Encoded, clips: Tensor | None, k_grid) -> np.ndarray:
        grid = check_k_grid(k_grid, self.head.config.num_latents)
        dev = next(self.head.parameters()).device
        parts = []
        for i in range(0, len(encoded), self.chunk):
            logits = self.head(encoded.latents[i : i + self.chunk].to(dev)).double()  # [n, K]
            parts.append(torch.softmax(logits, -1).cumsum(-1).clamp(0.0, 1.0).cpu())  # CDF over k = 1..K
        cdf = torch.cat(parts).numpy()  # [N, K]
        return cdf[:, grid - 1]  # [N, Q]


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
            return _psnr_np(cache.mse[:, grid])
        if self.metric == "ssim":
            q = cache.ssim[:, grid]
            if np.isnan(q).any():
                raise EvalError(f"metric: SSIM needs frames of at least {SSIM_MIN_SIDE} px")
            return q
        return -cache.lpips[:, grid]


_LPIPS: dict[str, LPIPSMetric] = {}


def shared_lpips(device: str | torch.device = "cpu") -> LPIPSMetric:
    """One :class:`LPIPSMetric` per device for the whole process (loading it costs about a second)."""
    key = str(torch.device(device))
    if key not in _LPIPS:
        _LPIPS[key] = LPIPSMetric(device=device)
    return _LPIPS[key]


def _psnr_np(mse: np.ndarray) -> np.ndarray:
    """Same convention as :func:`vaportok_rl.metrics.psnr` (data range 1, MSE clamped at 1e-10)."""
    return 10.0 * np.log10(1.0 / np.maximum(mse, 1e-10))


# ================================================================================================ candidate metrics
class CandidateMetrics:
    """Reconstruction metrics per (clip n, keep count k), computed on demand and memoised.

    ``ensure(rows, ks, lpips, ssim)`` decodes each missing pair once (batches of ``chunk`` clips, sorted by clip),
    clamps it to [0, 1] and records MSE, and SSIM and LPIPS when asked (a pair asked again for a metric it lacks
    is decoded again). LPIPS is the real AlexNet LPIPS of
    :func:`vaportok_rl.metrics.lpips_video` (mean over frames; frames upsampled to >= 64 px), computed with the
    reference clip's features shared by all its candidates. ``mse`` / ``ssim`` / ``lpips`` are ``[N, K + 1]``
    arrays (column k; NaN where not computed).
    """

    def __init__(
        self,
        tokenizer: FrozenTokenizer,
        encoded: Encoded,
        clips: Tensor,
        *,
        lpips_metric: LPIPSMetric | None = None,
        chunk: int = 256,
        lpips_chunk_frames: int = 256,
    ):
        if len(encoded) != len(clips):
            raise ValueError(f"encoded: {len(encoded)} clips, but clips has {len(clips)}")
        self.tokenizer, self.encoded, self.clips = tokenizer, encoded, clips
        self.lpips_metric = lpips_metric
        self.chunk, self.lpips_chunk_frames = int(chunk), int(lpips_chunk_frames)
        N, K = len(encoded), tokenizer.num_latents
        self.num_latents = K
        self.mse = np.full((N, K + 1), np.nan)
        self.ssim = np.full((N, K + 1), np.nan)
        self.lpips = np.full((N, K + 1), np.nan)
        self._done = np.zeros((N, K + 1), dtype=bool)
        self._done_ssim = np.zeros((N, K + 1), dtype=bool)
        self._done_lpips = np.zeros((N, K + 1), dtype=bool)
        h, w = clips.shape[-2:]
        self._ssim_ok = min(h, w) >= SSIM_MIN_SIDE
        self.decodes = 0

    @torch.no_grad()
    def ensure(self, rows: np.ndarray, ks: np.ndarray, lpips: bool = False, ssim: bool = False) -> None:
        rows, ks = np.asarray(rows, dtype=np.int64).ravel(), np.asarray(ks, dtype=np.int64).ravel()
        if lpips and self.lpips_metric is None:
            raise ValueError("CandidateMetrics: LPIPS requested but no lpips_metric was given")
        ssim = ssim and self._ssim_ok
        flat = np.unique(rows * (self.num_latents + 1) + ks)  # sorted: by clip, then k
        r, k = np.divmod(flat, self.num_latents + 1)
        todo = ~self._done[r, k] | (lpips & ~self._done_lpips[r, k]) | (ssim & ~self._done_ssim[r, k])
        r, k = r[todo], k[todo]
        for i in range(0, len(r), self.chunk):
            self._compute(r[i : i + self.chunk], k[i : i + self.chunk], lpips, ssim)

    def _compute(self, r: np.ndarray, k: np.ndarray, lpips: bool, with_ssim: bool) -> None:
        dev = self.clips.device
        rt = torch.from_numpy(r).to(dev)
        keep = torch.from_numpy(k).to(dev)
        rec = self.tokenizer.decode(self.encoded.latents[rt], keep).float().clamp(0.0, 1.0)  # [M, C, T, H, W]
        self.decodes += len(r)
        ref = self.clips[rt].float()
        self.mse[r, k] = (rec - ref).pow(2).flatten(1).mean(1).double().cpu().numpy()
        if with_ssim:
            self.ssim[r, k] = ssim(rec, ref).double().cpu().numpy()
            self._done_ssim[r, k] = True
        self._done[r, k] = True
        if lpips:
            self.lpips[r, k] = self._lpips(rec, r)
            self._done_lpips[r, k] = True

    def _lpips(self, rec: Tensor, r: np.ndarray) -> np.ndarray:
        """LPIPS of reconstructions rec [M, C, T, H, W] against clips r [M]; reference features once per clip."""
        module = self.lpips_metric.module
        T = rec.shape[2]
        per = max(1, self.lpips_chunk_frames // T)  # pairs per network pass
        out = []
        for i in range(0, len(r), per):
            rows = r[i : i + per]
            uniq, inv = np.unique(rows, return_inverse=True)
            ref_feats = lpips_features(module, self.clips[torch.from_numpy(uniq).to(self.clips.device)])
            index = torch.from_numpy(inv.reshape(-1))  # [m]: each reconstruction's reference among uniq
            distance = lpips_to_references(module, rec[i : i + per], ref_feats, index, self.lpips_chunk_frames)
            out.append(distance.double().cpu())
        return torch.cat(out).numpy()

    def gather(self, keep: np.ndarray, lpips: bool) -> dict[str, np.ndarray]:
        """Per-clip metrics of one allocation (keep [N] in 1..K): mse, psnr, ssim, lpips arrays [N]."""
        keep = np.asarray(keep, dtype=np.int64)
        rows = np.arange(len(keep))
        self.ensure(rows, keep, lpips=lpips, ssim=True)
        mse = self.mse[rows, keep]
        return {
            "mse": mse,
            "psnr": _psnr_np(mse),
            "ssim": self.ssim[rows, keep],
            "lpips": self.lpips[rows, keep] if lpips else np.full(len(keep), np.nan),
        }


# ================================================================================================ evaluate
def _nan_to_none(x):
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_nan_to_none(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def _mean(a: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    return float(a.mean()) if a.size and np.isfinite(a).all() else math.nan


def _oracle(quality: np.ndarray, grid: np.ndarray, budget: float, solver: str) -> tuple[Allocation, bool, bool]:
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


def _allocator_options(name: str) -> dict:
    return dict(HEAD_ILP_OPTIONS) if name == "ilp" else {}


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
    ``report["rate_quality"]`` (:func:`vaportok_rl.rate_quality.rate_quality`): tokens saved against Fixed at
    equal mean PSNR and the share of the PSNR oracle's savings, for the head through its price knob, each
    allocator, the search chooser and the oracle, at every sweep budget. ``measure``: (name, quality [N, K]), a
    per-clip quality of every clip at every k (:func:`vaportok_rl.judge.measure_table`): the same comparison under
    it, as ``report["measure"]`` (Fixed, the oracle, tokens saved and share all under that measure; no search).
    ``info``: extra ``setup`` entries (data source, ...).
    Returns the report (schema ``vaportok-eval/3``, documented in docs/eval.md; JSON-ready, NaN as ``None``).
    """
    started = time.perf_counter()
    timing: dict[str, float] = {}
    say = log or (lambda msg: None)

    def lap(name: str, t0: float) -> float:
        now = time.perf_counter()
        timing[name] = round(now - t0, 3)
        return now

    # ---- validate
    if allocator not in ALLOCATORS:
        raise EvalError(f"allocator: unknown allocator {allocator!r}; expected one of {sorted(ALLOCATORS)}")
    for name in baselines:
        if name not in ALLOCATORS:
            raise EvalError(f"baselines: unknown allocator {name!r}; expected names from {sorted(ALLOCATORS)}")
    if oracle not in ORACLES:
        raise EvalError(f"oracle: expected one of {ORACLES}, got {oracle!r}")
    modes = tuple(dict.fromkeys(modes))
    for mode in modes:
        try:
            check_mode(mode)
        except ValueError as err:
            raise EvalError(f"modes: {err}") from None
    K = tokenizer.num_latents
    if (head.config.num_latents, head.config.latent_dim) != (K, tokenizer.latent_dim):
        raise EvalError(
            f"head: reads latents [K, D] = [{head.config.num_latents}, {head.config.latent_dim}] but the tokenizer "
            f"gives [{K}, {tokenizer.latent_dim}]"
        )
    x = videos_or_clips
    if x.ndim == 6:
        x = rearrange(x, "b l c t h w -> (b l) c t h w")
    if x.ndim != 5 or tuple(x.shape[1:]) != tuple(tokenizer.clip_shape) or len(x) < 1:
        raise EvalError(
            f"videos_or_clips: expected [B, L, *clip_shape] or [N, *clip_shape] with clip_shape "
            f"{tuple(tokenizer.clip_shape)} and at least one clip, got {tuple(videos_or_clips.shape)}"
        )
    clips = x.float()
    N = len(clips)
    grid = check_k_grid(default_k_grid(K) if k_grid is None else k_grid, K)
    allocators = tuple(dict.fromkeys([*baselines, allocator]))
    head.eval()
    policy = TaildropPolicy(head)

    # ---- encode once; complexity; prior correctness (one causal pass per clip covers every keep count)
    t0 = time.perf_counter()
    enc_parts = [tokenizer.encode(clips[i : i + chunk]) for i in range(0, N, chunk)]
    encoded = Encoded(latents=torch.cat([e.latents for e in enc_parts]), codes=torch.cat([e.codes for e in enc_parts]))
    correct = torch.cat(
        [tokenizer.prior_correct(encoded.index(slice(i, i + chunk)), topk=5) for i in range(0, N, chunk)]
    )
    sc, tc = (v.double().cpu().numpy() for v in complexity(clips))
    t0 = lap("encode", t0)
    say(f"encoded {N} clips (K={K})")

    # ---- the head's policy points
    latents = encoded.latents
    argmax_keep = torch.cat([policy.argmax_keep(latents[i : i + chunk]) for i in range(0, N, chunk)])
    generator = torch.Generator(device=latents.device).manual_seed(int(seed))
    keeps: dict[str, np.ndarray] = {}
    for mode in modes:
        if mode == "argmax":
            k = argmax_keep
        else:
            k = torch.cat([policy.sample(latents[i : i + chunk], mode, generator) for i in range(0, N, chunk)])
        keeps[f"policy/{mode}"] = k.cpu().numpy().astype(np.int64)
    if budget is None:
        budget, budget_source = float(argmax_keep.double().mean()), "head_argmax"
    else:
        budget_source = "given"
    budget = float(budget)
    if not (math.isfinite(budget) and grid[0] <= budget <= K):
        raise EvalError(
            f"budget: expected a mean token count in [{int(grid[0])}, {K}] (the k grid's range), got {budget}"
        )

    # ---- scorers
    head_quality = HeadScorer(head, chunk=chunk)(tokenizer, encoded, clips, grid)  # [N, Q]
    t0 = lap("head_scorer", t0)
    need_lpips_metric = lpips or oracle_metric == "lpips"
    if need_lpips_metric and lpips_metric is None:
        lpips_metric = shared_lpips(clips.device)
    cache = CandidateMetrics(tokenizer, encoded, clips, lpips_metric=lpips_metric, chunk=chunk)
    true_quality = DistortionScorer(oracle_metric, chunk=chunk)(tokenizer, encoded, clips, grid, cache=cache)
    t0 = lap("oracle_scorer", t0)
    say(f"decoded {N} x {len(grid)} grid candidates")

    # ---- allocations at the budget, and the sweep
    at_alloc: dict[str, np.ndarray] = {}
    for name in allocators:
        at_alloc[name] = grid[allocate(name, head_quality, grid, budget, **_allocator_options(name)).choice]
    oracle_alloc, fell_back, proven = _oracle(true_quality, grid, budget, oracle)
    fallbacks, unproven = int(fell_back), int(not proven)
    budgets = default_budgets(K, int(grid[0])) if sweep_budgets is None else [float(b) for b in sweep_budgets]
    for b in budgets:
        if not (math.isfinite(b) and grid[0] <= b <= K):
            raise EvalError(f"sweep_budgets: expected mean token counts in [{int(grid[0])}, {K}], got {b}")
    sweep_keep: dict[str, list[np.ndarray]] = {name: [] for name in (*allocators, "oracle")}
    for b in budgets:
        for name in allocators:
            sweep_keep[name].append(grid[allocate(name, head_quality, grid, b, **_allocator_options(name)).choice])
        result, fell_back, proven = _oracle(true_quality, grid, b, oracle)
        fallbacks, unproven = fallbacks + int(fell_back), unproven + int(not proven)
        sweep_keep["oracle"].append(grid[result.choice])
    t0 = lap("allocate", t0)
    say(f"allocated: {len(allocators)} allocators + oracle at the budget and at {len(budgets)} sweep budgets")

    # ---- the other oracles at the budget (mean PSNR, total MSE, mean LPIPS): which quality is maximised matters
    other_oracles = {}
    for metric in ("psnr", "mse", *(("lpips",) if lpips else ())):
        if metric != oracle_metric:
            q = DistortionScorer(metric, chunk=chunk)(tokenizer, encoded, clips, grid, cache=cache)
            other_oracles[metric] = grid[_oracle(q, grid, budget, oracle)[0].choice]

    # ---- the rate–quality comparison on the full PSNR table (every clip at every k, each decoded once)
    rq = None
    if full_table:
        cache.ensure(np.repeat(np.arange(N), K), np.tile(np.arange(1, K + 1), N))
        own = {f"head/{mode}": keep for mode, keep in ((m, keeps[f"policy/{m}"]) for m in modes)}
        rq = rate_quality(
            _psnr_np(cache.mse[:, 1:]),
            budgets,
            head_logits=head_logits(head, latents, chunk),
            allocations={name: sweep_keep[name] for name in allocators},
            own={**own, **{f"allocators/{n}": k for n, k in at_alloc.items()}},
        )
        t0 = lap("rate_quality", t0)
        say(f"rate–quality on the full table ({N} x {K} pairs)")

    # ---- the same comparison under the measure the head was trained for (its own Fixed curve and oracle)
    judged = None
    if measure is not None:
        name, table = measure
        table = np.asarray(table, dtype=np.float64)
        if table.shape != (N, K):
            raise EvalError(f"measure {name!r}: expected a quality table [N, K] = [{N}, {K}], got {table.shape}")
        judged = rate_quality(
            table,
            budgets,
            head_logits=head_logits(head, latents, chunk),
            allocations={n: sweep_keep[n] for n in allocators},
            own={f"head/{m}": keeps[f"policy/{m}"] for m in modes},
            search=False,
            measure=name,
        )
        say(f"rate–quality under {name}")

    # ---- metrics (LPIPS for every pair any allocation uses, in one pass)
    if lpips:
        every = [*keeps.values(), *at_alloc.values(), grid[oracle_alloc.choice], *other_oracles.values()]
        every += [k for ks in sweep_keep.values() for k in ks]
        cache.ensure(np.tile(np.arange(N), len(every)), np.concatenate(every), lpips=True)

    def record(keep: np.ndarray) -> dict:
        m = cache.gather(keep, lpips)
        acc = prior_accuracy(correct, torch.as_tensor(keep, device=correct.device)).double().cpu().numpy()
        tok = keep.astype(np.float64)
        return {
            "tokens_mean": float(tok.mean()),
            "tokens_std": float(tok.std()),
            "tokens_min": int(keep.min()),
            "tokens_max": int(keep.max()),
            "mse": _mean(m["mse"]),
            "psnr": _mean(m["psnr"]),
            "ssim": _mean(m["ssim"]),
            "lpips": _mean(m["lpips"]),
            "prior_top5": _mean(acc),
            "spearman_sc": spearman(tok, sc),
            "spearman_tc": spearman(tok, tc),
        }

    oracle_keep = grid[oracle_alloc.choice]
    at_budget = {
        "policy": {mode: record(keeps[f"policy/{mode}"]) for mode in modes},
        "allocators": {name: record(at_alloc[name]) for name in allocators},
        "oracle": record(oracle_keep),
        "oracles": {oracle_metric: record(oracle_keep), **{m: record(k) for m, k in other_oracles.items()}},
    }
    sweep = {
        "budgets": budgets,
        "allocators": {
            name: [{"budget": b, **record(k)} for b, k in zip(budgets, sweep_keep[name], strict=True)]
            for name in allocators
        },
        "oracle": [{"budget": b, **record(k)} for b, k in zip(budgets, sweep_keep["oracle"], strict=True)],
    }
    lap("metrics", t0)
    say(f"metrics of {int(cache._done.sum())} (clip, k) pairs ({cache.decodes} decodes)")

    per_clip_tokens = {**keeps, **{f"allocators/{n}": k for n, k in at_alloc.items()}, "oracle": oracle_keep}
    setup = {
        "head": None,
        "tokenizer": str(getattr(tokenizer, "fingerprint", "")),
        "data": None,
        "split": None,
        "seed": int(seed),
        "videos": int(videos_or_clips.shape[0]) if videos_or_clips.ndim == 6 else None,
        "clips_per_video": int(videos_or_clips.shape[1]) if videos_or_clips.ndim == 6 else None,
        "clips": N,
        "num_latents": K,
        "clip_shape": [int(v) for v in tokenizer.clip_shape],
        "k_grid": grid.tolist(),
        "budget": budget,
        "budget_source": budget_source,
        "allocator": allocator,
        "allocators": list(allocators),
        "modes": list(modes),
        "oracle": {"solver": oracle, "metric": oracle_metric, "ilp_fallbacks": fallbacks, "unproven": unproven},
        "lpips": bool(lpips),
    }
    for key, value in (info or {}).items():
        if key not in setup:
            raise ValueError(f"info: unknown setup key {key!r}; expected some of {sorted(setup)}")
        setup[key] = value
    timing["total"] = round(time.perf_counter() - started, 3)
    report = {
        "schema": SCHEMA,
        "setup": setup,
        "at_budget": at_budget,
        "sweep": sweep,
        "per_clip": {
            "sc": sc.tolist(),
            "tc": tc.tolist(),
            "tokens": {name: k.astype(int).tolist() for name, k in per_clip_tokens.items()},
        },
        "rate_quality": rq,
        "measure": judged,
        "plots": {},
        "timing_s": {k: timing.get(k, 0.0) for k in TIMING_KEYS},
    }
    return _nan_to_none(report)


# ================================================================================================ plots
_STYLE = {
    "fixed": ("tab:gray", "s"),
    "bithr": ("tab:blue", "^"),
    "bidelta": ("tab:green", "v"),
    "ilp": ("tab:purple", "D"),
    "fast": ("tab:orange", "o"),
}
_POLICY_STYLE = {"argmax": ("tab:red", "*"), "pre_argmax": ("magenta", "P"), "sample": ("salmon", "X")}


def _alloc_label(name: str) -> str:
    return name if name == "fixed" else f"{name} (head scorer)"


def _title(report: dict) -> str:
    s = report["setup"]
    return f"{s['data'] or 'clips'}: {s['clips']} clips, K={s['num_latents']}, head {s['head'] or '?'}"


def _series(report: dict) -> list[tuple[str, str, str, dict]]:
    """The at-budget allocations the per-clip plots show: (per_clip key, label, colour, record)."""
    at, alloc = report["at_budget"], report["setup"]["allocator"]
    out = [
        (f"policy/{m}", f"head {m}", _POLICY_STYLE.get(m, ("tab:red",))[0], at["policy"][m])
        for m in ("argmax", "pre_argmax")
        if m in at["policy"]
    ]
    out.append(
        (f"allocators/{alloc}", _alloc_label(alloc), _STYLE.get(alloc, ("tab:brown",))[0], at["allocators"][alloc])
    )
    out.append(("oracle", "oracle", "black", at["oracle"]))
    return out


def _rd_plot(report: dict, metric: str, label: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5.2), dpi=120)
    sweep, at, setup = report["sweep"], report["at_budget"], report["setup"]
    if metric == "lpips" and not setup["lpips"]:
        ax.text(0.5, 0.5, "LPIPS not computed (--no-lpips)", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        for name, points in sweep["allocators"].items():
            color, marker = _STYLE.get(name, ("tab:brown", "o"))
            xs, ys = [p["tokens_mean"] for p in points], [p[metric] for p in points]
            ax.plot(xs, ys, marker=marker, color=color, lw=1.4, ms=5, alpha=0.9, label=_alloc_label(name))
        xs, ys = [p["tokens_mean"] for p in sweep["oracle"]], [p[metric] for p in sweep["oracle"]]
        oracle_label = f"oracle frontier (exact, true {setup['oracle']['metric'].upper()})"
        ax.plot(xs, ys, color="black", lw=2.2, ls="--", marker=".", label=oracle_label)
        for mode, rec in at["policy"].items():
            color, marker = _POLICY_STYLE.get(mode, ("tab:red", "*"))
            ax.scatter(
                [rec["tokens_mean"]],
                [rec[metric]],
                s=220,
                marker=marker,
                color=color,
                edgecolor="black",
                zorder=5,
                label=f"head {mode} ({rec['tokens_mean']:.1f} tokens)",
            )
        ax.axvline(setup["budget"], color="0.5", lw=0.9, ls=":", zorder=0, label=f"budget {setup['budget']:.1f}")
        ax.set_xlabel("mean tokens per clip")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper right" if metric == "lpips" else "lower right")
    ax.set_title(f"rate–distortion ({label.split(' ')[0]}) — {_title(report)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _complexity_plot(report: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    pc = report["per_clip"]
    series = [s for s in _series(report) if s[0] != "policy/pre_argmax"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.3), dpi=120, sharey=True)
    panels = (("sc", "spatial complexity SC (bits)"), ("tc", "temporal complexity TC (grey levels)"))
    for ax, (key, xlabel) in zip(axes, panels, strict=True):
        for name, label, color, rec in series:
            rho = rec[f"spearman_{key}"]
            ax.scatter(
                pc[key],
                pc["tokens"][name],
                s=14,
                alpha=0.6,
                color=color,
                marker="x" if name == "oracle" else "o",
                label=f"{label} (ρ = {'n/a' if rho is None else format(rho, '+.2f')})",
            )
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("tokens kept")
    fig.suptitle(f"tokens vs complexity at budget {report['setup']['budget']:.1f} — {_title(report)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _hist_plot(report: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    K = report["setup"]["num_latents"]
    fig, ax = plt.subplots(figsize=(7.5, 4.3), dpi=120)
    bins = np.linspace(0.5, K + 0.5, min(K, 64) + 1)
    for name, label, color, _ in _series(report):
        v = np.asarray(report["per_clip"]["tokens"][name])
        ax.hist(
            v,
            bins=bins,
            histtype="step",
            lw=1.8,
            color=color,
            ls="--" if name == "oracle" else "-",
            label=f"{label} (mean {v.mean():.1f})",
        )
    ax.set_xlabel("tokens kept per clip")
    ax.set_ylabel("clips")
    ax.set_xlim(0, K + 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"token histogram at budget {report['setup']['budget']:.1f} — {_title(report)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


_RQ_STYLE = {"head": ("tab:red", "*"), "oracle": ("black", "."), "search": ("tab:cyan", "x"), **_STYLE}


def _rq_label(name: str) -> str:
    return {
        "head": "head (price knob)",
        "oracle": "oracle (max mean PSNR)",
        "search": "search (binary, per clip)",
    }.get(name, _alloc_label(name))


def _rate_quality_plot(report: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    rq = report["rate_quality"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), dpi=120)
    if rq is None:
        left.text(0.5, 0.5, "no full table (full_table=False)", ha="center", va="center", transform=left.transAxes)
    else:
        for name, points in rq["curves"].items():
            color, marker = _RQ_STYLE.get(name, ("tab:brown", "o"))
            ls = "--" if name == "oracle" else "-"
            xs, ys = [p["tokens"] for p in points], [p["quality"] for p in points]
            left.plot(xs, ys, color=color, marker=marker, ls=ls, lw=1.5, ms=6, label=_rq_label(name))
            right.plot(
                [p["budget"] for p in points],
                [100 * p["tokens_saved"] for p in points],
                color=color,
                marker=marker,
                ls=ls,
                lw=1.5,
                ms=6,
                label=_rq_label(name),
            )
        for name, p in rq["own"].items():
            if name.startswith("head/"):
                left.scatter(
                    [p["tokens"]], [p["quality"]], s=200, marker="*", color="gold", edgecolor="black", zorder=5
                )
                left.annotate(
                    name, (p["tokens"], p["quality"]), fontsize=7, xytext=(4, -10), textcoords="offset points"
                )
        right.axhline(0, color="0.4", lw=0.9)
        best = max(p["tokens_saved"] for p in rq["curves"]["oracle"])
        right.set_ylim(-50, 100 * best + 8)  # choosers far below Fixed leave the frame; the table has every value
    left.set_xlabel("mean tokens per clip")
    left.set_ylabel("mean per-clip PSNR (dB) ↑")
    left.grid(alpha=0.3)
    left.legend(fontsize=7, loc="lower right")
    right.set_xlabel("budget (mean tokens per clip)")
    right.set_ylabel("tokens saved vs Fixed at equal PSNR (%) ↑ (clipped at -50)")
    right.grid(alpha=0.3)
    right.set_xscale("log", base=2)
    fig.suptitle(f"rate–quality — {_title(report)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_plots(report: dict, out: str | os.PathLike) -> dict[str, str]:
    """Write ``rd_psnr.png``, ``rd_lpips.png``, ``tokens_vs_complexity.png``, ``token_hist.png`` and
    ``rate_quality.png`` into ``out`` (matplotlib Agg) and record their paths in ``report["plots"]``; returns
    that mapping."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / f"{name}.png" for name in PLOTS}
    _rd_plot(report, "psnr", "PSNR (dB) ↑", paths["rd_psnr"])
    _rd_plot(report, "lpips", "LPIPS ↓", paths["rd_lpips"])
    _complexity_plot(report, paths["tokens_vs_complexity"])
    _hist_plot(report, paths["token_hist"])
    _rate_quality_plot(report, paths["rate_quality"])
    report["plots"] = {name: str(p) for name, p in paths.items()}
    return report["plots"]


# ================================================================================================ table
def _f(v, fmt: str) -> str:
    return "–" if v is None else format(v, fmt)


def format_table(report: dict) -> str:
    """A readable (markdown) table of the records at the budget, plus the head's margins."""
    s, at = report["setup"], report["at_budget"]
    rows = [(f"head {m}", r) for m, r in at["policy"].items()]
    rows += [(_alloc_label(n) + (" *" if n == s["allocator"] else ""), r) for n, r in at["allocators"].items()]
    oracles = at.get("oracles") or {s["oracle"]["metric"]: at["oracle"]}
    rows += [(f"oracle ({s['oracle']['solver']}, true {metric})", r) for metric, r in oracles.items()]
    held_out = f"{s['split']} split, seed {s['seed']}" if s["split"] else f"seed {s['seed']}"
    lines = [
        f"eval  head={s['head']}  data={s['data']} ({held_out})  clips={s['clips']}  K={s['num_latents']}  "
        f"grid={len(s['k_grid'])} points",
        f"budget {s['budget']:.2f} mean tokens/clip ({s['budget_source'].replace('_', ' ')})",
        "",
        "| allocation | tokens mean ± std | PSNR dB | SSIM | LPIPS | MSE | prior top-5 | ρ(tok,SC) | ρ(tok,TC) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        lines.append(
            f"| {name} | {r['tokens_mean']:.2f} ± {r['tokens_std']:.2f} | {_f(r['psnr'], '.3f')} | "
            f"{_f(r['ssim'], '.4f')} | {_f(r['lpips'], '.4f')} | {_f(r['mse'], '.3e')} | "
            f"{_f(r['prior_top5'], '.3f')} | {_f(r['spearman_sc'], '+.3f')} | {_f(r['spearman_tc'], '+.3f')} |"
        )
    if "argmax" in at["policy"]:
        h = at["policy"]["argmax"]
        parts = []
        for name, r in [*at["allocators"].items(), ("oracle", at["oracle"])]:
            d = None if h["psnr"] is None or r["psnr"] is None else h["psnr"] - r["psnr"]
            parts.append(f"{name} {_f(d, '+.3f')} dB")
        lines += ["", "head argmax PSNR minus: " + ", ".join(parts)]
    if report.get("rate_quality"):
        lines += ["", format_rate_quality(report["rate_quality"])]
    if report.get("measure"):
        lines += ["", format_rate_quality(report["measure"])]
        if report.get("rate_quality") and "head" in report["measure"]["curves"]:
            lines += ["", format_side_by_side(report["measure"], report["rate_quality"])]
    if report.get("plots"):
        lines += ["", "plots: " + ", ".join(report["plots"].values())]
    return "\n".join(lines)


def _unit(measure: str) -> str:
    return " dB" if measure == "psnr" else ""


def format_rate_quality(rq: dict) -> str:
    """Markdown: tokens saved vs Fixed at equal mean quality (PSNR unless ``rq["measure"]`` says otherwise) and the
    share of that measure's oracle's savings, per chooser and budget, then each chooser at its own budget."""
    budgets, measure = rq["budgets"], rq.get("measure", "psnr")
    unit, name_ = _unit(measure), measure.upper() if measure in ("psnr", "mse", "ssim", "lpips") else measure
    lines = [
        f"tokens saved vs Fixed at equal mean {name_} (share of the {name_} oracle's savings at the same tokens)",
        "",
        "| chooser | " + " | ".join(f"budget {b:g}" for b in budgets) + " |",
        "|---|" + "---|" * len(budgets),
    ]
    for name, points in rq["curves"].items():
        cells = []
        for p in points:
            share = "" if name in ("fixed", "oracle") or p["oracle_share"] is None else f" ({p['oracle_share']:.0%})"
            cells.append(f"{p['quality']:.4g}{unit} @ {p['tokens']:.1f}: {_f(p['tokens_saved'], '+.1%')}{share}")
        decodes = f" [{points[0]['decodes_per_clip']:.1f} decodes/clip]" if name == "search" else ""
        lines.append(f"| {_rq_label(name)}{decodes} | " + " | ".join(cells) + " |")
    if rq["own"]:
        lines += [
            "",
            f"| at its own budget | tokens | {name_}{unit} | saved vs Fixed | oracle saves | share |",
            "|---|---|---|---|---|---|",
        ]
        for name, p in rq["own"].items():
            lines.append(
                f"| {name} | {p['tokens']:.2f} | {p['quality']:.4g} | {_f(p['tokens_saved'], '+.1%')} | "
                f"{_f(p['oracle_saved'], '.1%')} | {_f(p['oracle_share'], '.0%')} |"
            )
    return "\n".join(lines)


def format_side_by_side(judged: dict, psnr: dict) -> str:
    """Markdown: the head (knob curve and own budget) under a measure and under PSNR, side by side."""
    m = judged["measure"]
    lines = [
        f"the head under {m} and under PSNR (tokens saved vs Fixed at equal mean quality; share of each oracle's)",
        "",
        f"| head | tokens | saved ({m}) | share ({m}) | saved (PSNR) | share (PSNR) |",
        "|---|---|---|---|---|---|",
    ]
    knob = zip(judged["curves"]["head"], psnr["curves"]["head"], strict=True)
    pairs = [(f"knob @ {a['budget']:g}", a, b) for a, b in knob]
    pairs += [(name, judged["own"][name], psnr["own"][name]) for name in judged["own"] if name in psnr["own"]]
    for name, a, b in pairs:
        lines.append(
            f"| {name} | {a['tokens']:.2f} | {_f(a['tokens_saved'], '+.1%')} | {_f(a['oracle_share'], '.0%')} | "
            f"{_f(b['tokens_saved'], '+.1%')} | {_f(b['oracle_share'], '.0%')} |"
        )
    return "\n".join(lines)


# ================================================================================================ loading heads
def load_head_spec(spec: str, tokenizer: FrozenTokenizer, *, force: bool = False) -> TaildropHead:
    """``--head``: :func:`vaportok_rl.runs.load_head` (the one head loader: "default", "pretrained", an export,
    run or checkpoint folder), its errors raised as :class:`EvalError` naming ``--head``."""
    from vaportok_rl import runs
    from vaportok_rl.tokenizer.head import ExportError

    try:
        return runs.load_head(spec, tokenizer=tokenizer, force=force)
    except (ExportError, OSError) as err:
        raise EvalError(f"--head: {err}") from None
