"""The clips a tokenizer pretraining run learns from: its training pool (synthetic clips, then texture clips), which
``tokenizer-report`` rebuilds to fit its PCA floor on."""

from __future__ import annotations

import torch

from vaportok_rl.data import load_videos
from vaportok_rl.tokenizer.pretrain_config import PretrainConfig, PretrainDataConfig

__all__ = ["build_pool", "training_clips"]


def training_clips(data: PretrainDataConfig, *, frames: int, size: int, limit: int | None = None) -> torch.Tensor:
    """The training pool [N, C, T, H, W]: synthetic clips, then texture clips (train images). ``limit`` keeps a
    proportional share of each, the first clips of each source (so it is a subset of the full pool)."""
    n_syn, n_tex = data.synthetic_clips, data.texture_clips
    if limit is not None and limit < n_syn + n_tex:
        n_syn = round(limit * n_syn / (n_syn + n_tex))
        n_tex = limit - n_syn
    L = data.clips_per_video
    parts = []
    for source, n in (("synthetic", n_syn), ("textures", n_tex)):
        if n:
            videos = load_videos(source, -(-n // L), L, seed=data.seed, frames=frames, size=size, split="train")
            parts.append(videos.flatten(0, 1)[:n])
    return torch.cat(parts)


def build_pool(config: PretrainConfig) -> torch.Tensor:
    """The training pool of ``config`` at its model's clip shape."""
    return training_clips(config.data, frames=config.model.frames, size=config.model.size)
