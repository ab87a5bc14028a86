"""Judging a taildrop head: everything ``vaportok-rl eval`` and the scripts measure a head by.

- ``inputs.py``: what an evaluation is given, checked before any work (options, head and clips, the shared k grid,
  the sweep's budgets, the memory it holds); :class:`EvalError`; ``load_head_spec`` (``--head``).
- ``candidates.py``: :class:`CandidateMetrics`, every (clip, k) decoded once, its MSE / PSNR / SSIM / LPIPS memoised.
- ``choosers.py``: how each chooser picks k per clip: the head (policy points, its logits for the price knob), its
  scores fed to AdapTok's allocators. ``search.py``: the search chooser (binary search per clip, decodes counted).
- ``oracles.py``: the exact knapsack on the true quality (``DistortionScorer``, ``exact_oracle``, ``oracle_keep``).
- ``curves.py``: rate–quality curves: tokens saved against Fixed at equal quality, the oracle's share.
- ``measures.py``: judging by a reward's own measure (measure tables, eval's held-out sets, ``judge_head``).
- ``records.py``: one allocation's metric record. ``report.py``: :func:`evaluate`, the report (schema
  ``vaportok-eval/3``, docs/eval.md), step by step. ``tables.py`` / ``plots.py``: the report as text and PNGs.
"""

from vaportok_rl.data import HELDOUT_SEED
from vaportok_rl.judge.candidates import SSIM_MIN_SIDE, CandidateMetrics
from vaportok_rl.judge.choosers import BASELINES, HEAD_ILP_OPTIONS, HeadScorer
from vaportok_rl.judge.curves import (
    CURVE_KEYS,
    fixed_curve,
    fixed_tokens_for,
    rate_quality,
    savings_record,
    tokens_saved,
)
from vaportok_rl.judge.inputs import (
    ORACLES,
    EvalError,
    default_budgets,
    default_k_grid,
    eval_memory_problem,
    load_head_spec,
    peak_bytes,
)
from vaportok_rl.judge.measures import (
    BUILTIN_MEASURES,
    HELDOUT_SETS,
    heldout_pool,
    heldout_quality,
    judge_head,
    load_measure,
    measure_table,
    seed_spread,
)
from vaportok_rl.judge.oracles import DistortionScorer, oracle_keep
from vaportok_rl.judge.plots import PLOTS, write_plots
from vaportok_rl.judge.records import RECORD_KEYS
from vaportok_rl.judge.report import SCHEMA, TIMING_KEYS, evaluate
from vaportok_rl.judge.search import SearchResult, search_for_budget, search_keep
from vaportok_rl.judge.tables import format_rate_quality, format_side_by_side, format_table
from vaportok_rl.metrics import shared_lpips

__all__ = [
    "BASELINES",
    "BUILTIN_MEASURES",
    "CURVE_KEYS",
    "HEAD_ILP_OPTIONS",
    "HELDOUT_SEED",
    "HELDOUT_SETS",
    "ORACLES",
    "PLOTS",
    "RECORD_KEYS",
    "SCHEMA",
    "SSIM_MIN_SIDE",
    "TIMING_KEYS",
    "CandidateMetrics",
    "DistortionScorer",
    "EvalError",
    "HeadScorer",
    "SearchResult",
    "default_budgets",
    "default_k_grid",
    "eval_memory_problem",
    "evaluate",
    "fixed_curve",
    "fixed_tokens_for",
    "format_rate_quality",
    "format_side_by_side",
    "format_table",
    "heldout_pool",
    "heldout_quality",
    "judge_head",
    "load_head_spec",
    "load_measure",
    "measure_table",
    "oracle_keep",
    "peak_bytes",
    "rate_quality",
    "savings_record",
    "search_for_budget",
    "search_keep",
    "seed_spread",
    "shared_lpips",
    "tokens_saved",
    "write_plots",
]
