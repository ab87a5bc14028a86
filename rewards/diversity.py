"""Diversity: keep allocations spread across the videos of a batch, so the head stays content-adaptive.

The failure it guards against is collapse: the efficiency/quality trade-off is often met "on average" by
giving every clip the same k, which a content-blind head can do. With k[b, g, l] the kept count of clip l
on path (b, g) and the leave-one-video-out batch mean

    m[b] = mean_{b' != b, g', l'} k[b', g', l']

the reward of path (b, g) is its mean absolute deviation from what the *other* videos receive:

    r[b, g] = mean_l |k[b, g, l] - m[b]| / K          in [0, 1)

Why this form:
* The reference m[b] leaves video b out and pools all samples of the others, so it is the same for the
  G paths of a group. GRPO compares paths only within their group, so differences in this reward come
  from the path's own decisions alone. (Pairing sample g of video b with sample g of video b', or clip l
  with clip l, would pair unrelated random draws and content, and inject noise into the advantages.)
* It rewards moving *away* from the batch's typical allocation without saying in which direction: the
  reconstruction/generation/efficiency rewards, which see the actual decoder and prior, decide which
  clips go up and which go down. It deliberately does not read SC/TC: tying k to those heuristics would
  hard-code the prior the RL is meant to improve on, and hack the Spearman(k, complexity) evaluation.
* Divided by K, it is on the same scale as efficiency.

With B = 1 there is nothing to compare with and the reward is 0. Keep its weight small: on its own it
pushes allocations to the extremes.
"""

import torch
from torch import Tensor

from vaportok_rl.rewards import Reward, Rollout


class Diversity(Reward):
    """Mean |k - (mean k of the other videos in the batch)| / K over the path's clips."""

    name = "diversity"

    def __call__(self, rollout: Rollout) -> Tensor:
        B, G, L = rollout.keep.shape
        k = rollout.keep.float()  # [B, G, L]
        if B == 1:
            return torch.zeros(B, G, device=k.device)
        per_video_total = k.sum(dim=(1, 2))  # [B]
        others_mean = (per_video_total.sum() - per_video_total) / ((B - 1) * G * L)  # [B], leave video b out
        deviation = (k - others_mean.view(B, 1, 1)).abs() / rollout.num_latents  # [B, G, L]
        return deviation.mean(-1)  # [B, G]
