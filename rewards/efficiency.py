"""Efficiency: the fraction of tokens a path drops, averaged over its clips.

    r[b, g] = mean_l (1 - k[b, g, l] / K)          (per_clip: r[b, g, l] = 1 - k[b, g, l] / K, for enumerated groups)

0 when every clip keeps all K tokens, approaching 1 as every clip keeps a single one. On its own it
collapses the policy to k = 1; pair it with reconstruction and/or generation (and the penalty).
"""

from torch import Tensor

from vaportok_rl.rewards import Reward, Rollout


class Efficiency(Reward):
    """Fraction of tokens dropped, mean over clips: mean_l (1 - k/K)."""

    name = "efficiency"

    def __init__(self, per_clip: bool = False):
        if not isinstance(per_clip, bool):
            raise ValueError(f"{self.name}.per_clip: expected true or false, got {per_clip!r}")
        self.per_clip = per_clip

    def __call__(self, rollout: Rollout) -> Tensor:
        dropped = 1.0 - rollout.keep.float() / rollout.num_latents  # [B, G, L]
        return dropped if self.per_clip else dropped.mean(-1)  # [B, G, L] or [B, G]
