"""Temporal consistency: penalise flicker and seams, frame changes the reconstruction has but the original has not.

For path (b, g), put its L decoded clips end to end (L·T frames) and do the same with the original clips. With
Δx_t = x_{t+1} - x_t the change between consecutive frames (x̂ decoded, x original), each transition t scores

    e_t = mean_{c,h,w} |Δx̂_t - Δx_t|                 mode="error"  (temporal-gradient error, default)
    e_t = mean_{c,h,w} max(|Δx̂_t| - |Δx_t|, 0)       mode="excess" (only change the decoder *adds*)

and the reward is minus their weighted mean over the L·T - 1 transitions:

    r[b, g] = - (Σ_within e_t + w · Σ_boundary e_t) / (n_within + w · n_boundary),   w = boundary_weight

Why it is useful for taildrop. Per-frame rewards (MSE, LPIPS, PSNR) are blind to time: a clip can be close to
the original frame by frame and still shimmer, because each frame's error is different. And the head decides k
*per clip*, so two neighbouring clips decoded with different k can differ in sharpness or colour: a visible jump
at the clip boundary that no per-clip reward sees. The L - 1 boundary transitions (last frame of clip l to
first frame of clip l + 1) are weighted by ``boundary_weight`` against the within-clip ones (1 = every
transition counts the same; raise it to target seams, 0 scores within-clip flicker only). It therefore favours
paths whose k changes smoothly where the content does not.

"error" also penalises motion the reconstruction smooths away (a static, blurry decode of a moving scene);
"excess" ignores that (reconstruction rewards already punish it) and counts only added flicker. ``norm="l2"``
squares the per-pixel differences instead. Values are in pixel units (clips in [0, 1]): typically 1e-3..1e-1.

In a recipe::

    rewards:
      temporal:
        spec: vaportok_rl.builtin_rewards.examples.temporal_consistency
        weight: 1.0
        kwargs: {mode: excess, boundary_weight: 2.0}
"""

from __future__ import annotations

import torch
from torch import Tensor

from vaportok_rl.rewards import Reward, Rollout

MODES = ("error", "excess")
NORMS = ("l1", "l2")


class TemporalConsistency(Reward):
    """Minus the mean temporal-gradient error of the decoded video (within clips and across clip boundaries)."""

    name = "temporal_consistency"
    needs = frozenset({"reconstructions"})

    def __init__(self, mode: str = "error", boundary_weight: float = 1.0, norm: str = "l1"):
        if mode not in MODES:
            raise ValueError(f"temporal_consistency.mode: expected one of {MODES}, got {mode!r}")
        if norm not in NORMS:
            raise ValueError(f"temporal_consistency.norm: expected one of {NORMS}, got {norm!r}")
        if isinstance(boundary_weight, bool) or not isinstance(boundary_weight, int | float) or boundary_weight < 0:
            raise ValueError(f"temporal_consistency.boundary_weight: expected a number >= 0, got {boundary_weight!r}")
        self.mode, self.norm, self.boundary_weight = mode, norm, float(boundary_weight)

    def _score(self, decoded_change: Tensor, original_change: Tensor) -> Tensor:
        """Per-pixel inconsistency of frame changes, same shape as the inputs."""
        if self.mode == "error":
            d = decoded_change - original_change
            return d.abs() if self.norm == "l1" else d**2
        excess = (decoded_change.abs() - original_change.abs()).clamp(min=0)
        return excess if self.norm == "l1" else excess**2

    def __call__(self, rollout: Rollout) -> Tensor:
        x_hat = rollout.reconstructions.float()  # [B, G, L, C, T, H, W]
        x = rollout.videos.unsqueeze(1).float()  # [B, 1, L, C, T, H, W], shared by the G paths
        B, G, L, _, T = x_hat.shape[:5]
        # within clips: T - 1 transitions per clip -> [B, G, L, T-1]
        within = self._score(x_hat[..., 1:, :, :] - x_hat[..., :-1, :, :], x[..., 1:, :, :] - x[..., :-1, :, :])
        within_sum = within.mean(dim=(3, 5, 6)).sum(dim=(2, 3))  # mean over C, H, W; sum over clips, transitions
        n_within = L * (T - 1)
        # across boundaries: last frame of clip l -> first frame of clip l + 1, L - 1 transitions -> [B, G, L-1]
        n_boundary = L - 1
        boundary_sum = torch.zeros_like(within_sum)
        if n_boundary and self.boundary_weight:
            seam = self._score(x_hat[:, :, 1:, :, 0] - x_hat[:, :, :-1, :, -1], x[:, :, 1:, :, 0] - x[:, :, :-1, :, -1])
            boundary_sum = seam.mean(dim=(3, 4, 5)).sum(dim=2)  # [B, G]
        denominator = n_within + self.boundary_weight * n_boundary
        if denominator == 0:  # one single-frame clip: no transitions at all
            return torch.zeros(B, G, device=x_hat.device)
        return -(within_sum + self.boundary_weight * boundary_sum) / denominator  # [B, G]
