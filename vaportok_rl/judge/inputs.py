"""What an evaluation is given, checked before any work: the options (allocators, oracle solver, the head's
modes), the head and its clips, the shared k grid of candidate keep counts, the sweep's budgets, the memory it
will hold; and the one error every bad option or input raises (:class:`EvalError`).

The **k grid** (candidate keep counts, shared by every allocator and the oracle): by default ``1`` plus every
multiple of ``max(1, K // 32)`` up to K -- 33 points for K = 128, every k for K <= 32. AdapTok's allocators work
on a coarse grid (blocks of tokens); 1/32 of K keeps the oracle's ``N × Q`` decodes affordable while the steps
stay fine (4 tokens at K = 128). The head's own policy points are *not* restricted to the grid: they may keep
any k in 1..K (so with a coarse grid the oracle is the best *grid* allocation, not a strict bound on them).

Axis letters: docs/design.md; ``Q`` is the number of k-grid points.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from einops import rearrange
from torch import Tensor

from vaportok_rl import runs
from vaportok_rl.allocators import ALLOCATORS
from vaportok_rl.errors import UserError
from vaportok_rl.policy import check_mode
from vaportok_rl.resources import memory_problem, tensor_bytes
from vaportok_rl.tokenizer.head import ExportError, TaildropHead, shape_mismatch
from vaportok_rl.tokenizer.protocol import FrozenTokenizer

__all__ = [
    "ORACLES",
    "EvalError",
    "check_clips",
    "check_k_grid",
    "check_options",
    "default_budgets",
    "default_k_grid",
    "eval_memory_problem",
    "load_head_spec",
    "peak_bytes",
]

ORACLES = ("fast", "ilp")
"""The oracle's solvers (:func:`vaportok_rl.judge.oracles.exact_oracle`)."""


class EvalError(UserError):
    """A bad option or input; the CLI prints it and exits with code 2."""


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
    """About the most memory :func:`vaportok_rl.judge.evaluate` holds at once for ``num_clips`` clips (to check
    before loading them): the clips with one clip-sized temporary (complexity), one chunk of decoded grid
    candidates with their gathered references and differences, and the per-(clip, k) metric tables."""
    clip = [int(v) for v in clip_shape]
    candidates = min(int(chunk), int(num_clips) * len(default_k_grid(int(num_latents))))
    clips = tensor_bytes(2 * int(num_clips), *clip)
    decoded = tensor_bytes(4 * candidates, *clip)
    tables = tensor_bytes(int(num_clips), int(num_latents) + 1, 4, dtype=torch.float64)
    return clips + decoded + tables


def eval_memory_problem(
    clip_shape: Sequence[int], num_clips: int, num_latents: int, device: torch.device, what: str
) -> str | None:
    """The first memory problem (:func:`vaportok_rl.resources.memory_problem`) of judging ``what``, ``num_clips``
    clips: with their decoded candidates on ``device``, and loaded in RAM first when ``device`` is not the CPU."""
    checks = [(f"{what} with its decoded candidates", peak_bytes(clip_shape, num_clips, num_latents), device)]
    if device.type != "cpu":  # the videos are loaded in RAM before they move to the device
        checks.append((f"loading {what}", tensor_bytes(num_clips, *clip_shape), "cpu"))
    for name, nbytes, where in checks:
        problem = memory_problem(name, nbytes, where)
        if problem:
            return problem
    return None


def check_options(allocator: str, baselines: Sequence[str], oracle: str, modes: Sequence[str]) -> tuple[str, ...]:
    """The allocators, the oracle's solver and the head's modes, before any work; the modes without repeats."""
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
    return modes


def check_clips(tokenizer: FrozenTokenizer, head: TaildropHead, videos_or_clips: Tensor) -> Tensor:
    """The head against the tokenizer, and the clips as [N, C, T, H, W] float, before any work."""
    mismatch = shape_mismatch(head.config, tokenizer)
    if mismatch:
        raise EvalError(f"head: {mismatch}")
    x = videos_or_clips
    if x.ndim == 6:
        x = rearrange(x, "b l c t h w -> (b l) c t h w")
    if x.ndim != 5 or tuple(x.shape[1:]) != tuple(tokenizer.clip_shape) or len(x) < 1:
        raise EvalError(
            f"videos_or_clips: expected [B, L, *clip_shape] or [N, *clip_shape] with clip_shape "
            f"{tuple(tokenizer.clip_shape)} and at least one clip, got {tuple(videos_or_clips.shape)}"
        )
    return x.float()


def load_head_spec(spec: str, tokenizer: FrozenTokenizer, *, force: bool = False) -> TaildropHead:
    """``--head``: :func:`vaportok_rl.runs.load_head` (the one head loader: "default", "pretrained", an export,
    run or checkpoint folder), its errors raised as :class:`EvalError` naming ``--head``."""
    try:
        return runs.load_head(spec, tokenizer=tokenizer, force=force)
    except (ExportError, OSError) as err:
        raise EvalError(f"--head: {err}") from None
