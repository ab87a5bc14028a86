"""LPIPS: how *perceptually* close the truncated reconstructions are, with the shipped LPIPS(AlexNet) backbone.

    r[b, g, l] = - LPIPS(decode(z[b, l], k[b, g, l]), x[b, l])          (one value per clip decision)

LPIPS (Zhang et al., 2018) compares deep AlexNet features of two frames through learned linear heads; it tracks
human judgements of similarity far better than MSE, which rewards blurry averages. It decomposes over clips, so
enumerated groups (``grpo.groups: enumerated``) can tabulate it and ``vaportok-rl eval --measure lpips`` judges by it
(with path credit a path's value is the mean over its clips). Here it is computed per frame
and averaged over the clip's frames by :func:`vaportok_rl.metrics.lpips_video`, with the ImageNet AlexNet trunk and
lpips v0.1 heads shipped in the package (nothing is downloaded; frames smaller than 64 px are upsampled first,
see ``vaportok_rl.metrics.LPIPS_MIN_SIDE``). The reward is minus the distance, in about [-1, 0]; higher is better.

Pair it with (or use it instead of) the built-in ``reconstruction`` reward when the head should spend tokens
where a viewer would notice: textures and edges rather than flat regions, which MSE over-weights.

Cost: every decision is decoded (``needs = {"reconstructions"}``) and B·G·L·T frames go through AlexNet per
training step; each original clip's features are computed once and shared by its G reconstructions.
``frame_stride`` scores every n-th frame of
each clip only (2 halves the cost, and consecutive frames are highly redundant); ``device`` picks where AlexNet
runs (default: wherever the reconstructions are).

In a recipe::

    rewards:
      lpips:
        spec: vaportok_rl.builtin_rewards.examples.lpips   # or plugin_paths: [rewards/examples] and no spec
        weight: 1.0
        kwargs: {frame_stride: 2}
"""

from __future__ import annotations

import torch
from einops import rearrange, repeat
from torch import Tensor

from vaportok_rl.metrics import LPIPSMetric, lpips_features, lpips_to_references
from vaportok_rl.rewards import Reward, Rollout


class LPIPSReward(Reward):
    """Minus the LPIPS(AlexNet) distance of the truncated reconstruction per clip (mean over its frames)."""

    name = "lpips"
    needs = frozenset({"reconstructions"})

    def __init__(self, frame_stride: int = 1, chunk_frames: int = 256, device: str | None = None):
        for key, value in (("frame_stride", frame_stride), ("chunk_frames", chunk_frames)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"lpips.{key}: expected a positive integer, got {value!r}")
        self.frame_stride, self.chunk_frames = frame_stride, chunk_frames
        self.follow_inputs = device is None
        # Loaded here, so missing weights or a missing `lpips` package fail when the recipe is loaded.
        self.metric = LPIPSMetric(device or "cpu", chunk_frames=chunk_frames)

    def __call__(self, rollout: Rollout) -> Tensor:
        recon = rollout.reconstructions  # [B, G, L, C, T, H, W]
        B, G, L = recon.shape[:3]
        s = self.frame_stride
        if self.follow_inputs and self.metric.device != recon.device:
            self.metric.to(recon.device)
        module = self.metric.module
        x = rearrange(recon[..., ::s, :, :], "b g l c t h w -> (b g l) c t h w").float()  # [B·G·L, C, T', H, W]
        y = rearrange(rollout.videos[..., ::s, :, :], "b l c t h w -> (b l) c t h w").float()  # [B·L, ...]
        clip = repeat(torch.arange(B * L), "(b l) -> (b g l)", b=B, g=G)  # [B·G·L]: row -> its reference clip
        with torch.no_grad():
            reference = lpips_features(module, y)  # once per clip, shared by its G paths
            distance = lpips_to_references(module, x, reference, clip, self.chunk_frames)  # [B·G·L]
        return -rearrange(distance.to(recon.device), "(b g l) -> b g l", b=B, g=G)  # [B, G, L]
