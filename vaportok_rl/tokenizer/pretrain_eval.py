"""The in-training evaluation of tokenizer pretraining: the held-out clips it is measured on (the first clips of
``vaportok-rl eval``'s held-out videos) and their PSNR at each keep count k."""

from __future__ import annotations

import torch

from vaportok_rl.data import heldout_videos
from vaportok_rl.metrics import psnr
from vaportok_rl.tokenizer.model import Tokenizer

__all__ = ["heldout_clips", "psnr_per_k"]


def heldout_clips(n: int, frames: int, size: int, source: str = "synthetic") -> torch.Tensor:
    """The first ``n`` clips of ``vaportok-rl eval``'s held-out videos of ``source``, [N, C, T, H, W] (what the
    report measures)."""
    videos, _ = heldout_videos(source, frames=frames, size=size, videos=-(-n // 4), clips_per_video=4)
    return videos.flatten(0, 1)[:n]


@torch.no_grad()
def psnr_per_k(model: Tokenizer, clips: torch.Tensor, ks: list[int], chunk: int = 64) -> dict[int, float]:
    """Mean PSNR of ``clips`` [N, C, T, H, W] decoded from their first k tokens, for each k of ``ks``
    (:func:`vaportok_rl.metrics.psnr`, the reconstruction clamped to [0, 1]; ``chunk`` clips per decode)."""
    enc = model.encode(clips)
    out = {}
    for k in ks:
        values = []
        for i in range(0, len(clips), chunk):
            rec = model.decode(enc.latents[i : i + chunk], torch.full((len(clips[i : i + chunk]),), k))
            values.append(psnr(rec.clamp(0, 1), clips[i : i + chunk]))  # [chunk], MSE clamped at 1e-10
        out[k] = float(torch.cat(values).mean())
    return out
