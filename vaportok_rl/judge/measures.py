"""Judging a head by a reward's own measure: the per-clip quality table of any measure, on any clips.

A *measure* is a per-clip quality, higher is better: ``psnr`` (dB), ``mse`` (minus MSE), ``ssim``, ``lpips`` (minus
LPIPS), or any reward plugin that decomposes over clips ([B, G, L]). A plugin that folds a price per token into
its value declares it (``price_per_token``) and the price is kept apart: the measure is value + price·k. The
table [N, K] (every clip at every k) comes from the same scoring path as enumerated training
(:func:`vaportok_rl.enumerated.reward_tables`, every k, cached), and feeds
:func:`vaportok_rl.judge.curves.rate_quality`: Fixed's curve, the oracle, tokens saved and share, all under that
measure.

Axis letters: N clips, K tokens, D latent width.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vaportok_rl.data import heldout_videos
from vaportok_rl.enumerated import TableCache, default_cache_dir, reward_price, reward_tables
from vaportok_rl.judge.curves import rate_quality
from vaportok_rl.rewards import load_reward
from vaportok_rl.tokenizer.protocol import FrozenTokenizer

__all__ = [
    "BUILTIN_MEASURES",
    "HELDOUT_SETS",
    "heldout_pool",
    "heldout_quality",
    "judge_head",
    "load_measure",
    "measure_table",
    "seed_spread",
]

BUILTIN_MEASURES = {
    "psnr": "psnr",
    "mse": "mse",
    "ssim": "ssim",
    "lpips": "vaportok_rl.builtin_rewards.examples.lpips",
}
"""Measure names and the built-in plugins that compute them (per clip)."""


def load_measure(measure: str, plugin_paths: Sequence[str | Path] = (), kwargs: dict | None = None) -> tuple[str, Any]:
    """(spec, plugin) of a measure name or a reward plugin spec (a RewardError names a bad one)."""
    spec = BUILTIN_MEASURES.get(measure, measure)
    return spec, load_reward(spec, kwargs or {}, search_paths=list(plugin_paths))


@torch.no_grad()
def measure_table(
    tokenizer: FrozenTokenizer,
    videos: Tensor,
    plugin: Any,
    spec: str,
    *,
    pool: dict,
    kwargs: dict | None = None,
    cache: TableCache | None = None,
    decode_chunk: int = 16,
    progress: Callable[[int], None] | None = None,
) -> tuple[Tensor, Tensor]:
    """(latents [N, K, D], quality [N, K]) of videos [B, L, C, T, H, W] under the measure: the plugin's value at
    every k plus its declared price·k. ``pool`` names the videos in the cache key (e.g. the held-out set's source,
    seed and size); ``cache`` None computes without caching."""
    K = tokenizer.num_latents
    latents, tables, _ = reward_tables(
        tokenizer,
        lambda start, stop: videos[start:stop],
        len(videos),
        {"measure": plugin},
        {"measure": (spec, kwargs or {})},
        torch.arange(1, K + 1),
        pool=pool,
        cache=cache or TableCache(None),
        videos_per_chunk=max(1, 512 // (K * videos.shape[1])),
        decode_chunk=decode_chunk,
        progress=progress,
    )
    k = torch.arange(1, K + 1, dtype=torch.float64)
    return latents, tables["measure"] + reward_price(plugin) * k  # [N, K]


HELDOUT_SETS = {"synthetic": "all", "textures": "test"}
"""The held-out sets a head is judged on (``vaportok-rl eval``'s: 32 videos × 4 clips, seed 1000003; textures from
the test images) and their image split."""


def heldout_pool(data: str, split: str | None, seed: int, videos: int, clips_per_video: int) -> dict:
    """How a measure table names held-out videos in its cache key: their source, split, seed and size."""
    return {"heldout": data, "split": split, "seed": seed, "videos": videos, "clips_per_video": clips_per_video}


def heldout_quality(
    tokenizer: FrozenTokenizer,
    data: str,
    measure: str = "psnr",
    *,
    plugin_paths: Sequence[str | Path] = (),
    kwargs: dict | None = None,
    cache: TableCache | None = None,
    videos: int = 32,
    clips_per_video: int = 4,
    progress: Callable[[int], None] | None = None,
) -> tuple[Tensor, Tensor]:
    """(latents [N, K, D], quality [N, K]) of ``vaportok-rl eval``'s held-out set ``data`` under ``measure`` (its
    plugin built with ``kwargs``); cached in ``cache`` (default: the table cache)."""
    C, T, H, W = tokenizer.clip_shape
    clips, meta = heldout_videos(data, frames=T, size=H, videos=videos, clips_per_video=clips_per_video)
    spec, plugin = load_measure(measure, plugin_paths, kwargs)
    pool = heldout_pool(meta["data"], meta["split"], meta["seed"], meta["videos"], clips_per_video)
    cache = cache or TableCache(default_cache_dir())
    return measure_table(tokenizer, clips, plugin, spec, pool=pool, kwargs=kwargs, cache=cache, progress=progress)


def judge_head(logits: Tensor, quality: Tensor, budgets: Sequence[float], measure: str = "psnr") -> dict:
    """A head (its logits [N, K] on the judged clips) under a quality table [N, K]: at its own budget (argmax) and
    along its price-knob curve at ``budgets``: ``{"own": point, "curve": [point], "oracle_curve": [point]}``,
    every point with tokens, quality, tokens_saved, oracle_saved and oracle_share (rate_quality's keys)."""
    keep = (logits.argmax(-1) + 1).cpu().numpy()
    rq = rate_quality(
        quality.double().cpu().numpy(), budgets, head_logits=logits, own={"head": keep}, search=False, measure=measure
    )
    return {"own": rq["own"]["head"], "curve": rq["curves"]["head"], "oracle_curve": rq["curves"]["oracle"]}


def seed_spread(values: Sequence[float], pct: bool = True) -> str:
    """How results over seeds are reported: "mean ± sample std" (a percentage of a fraction when ``pct``); one
    value alone is shown as it is."""
    v = np.asarray(values, dtype=np.float64) * (100 if pct else 1)
    if len(v) == 1:
        return f"{v[0]:+.1f} %" if pct else f"{v[0]:.4g}"
    return f"{v.mean():+.1f} ± {v.std(ddof=1):.1f} %" if pct else f"{v.mean():.4g} ± {v.std(ddof=1):.2g}"
