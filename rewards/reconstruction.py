"""Reconstruction: how well the kept tokens reproduce each clip.

    r[b, g] = - mean_l MSE(decode(z[b, l], k[b, g, l]), x[b, l])     (per_clip: the clip's own term, [B, G, L])

with the MSE a mean over channels, frames and pixels (clips in [0, 1]). Needs the rollout to decode every
truncation (``needs = {"reconstructions"}``), the costliest thing a reward can ask for.
"""

from torch import Tensor

from vaportok_rl.rewards import Reward, Rollout, reconstruction_mse


class Reconstruction(Reward):
    """Minus the per-clip MSE of the truncated reconstruction, mean over clips."""

    name = "reconstruction"
    needs = frozenset({"reconstructions"})

    def __init__(self, per_clip: bool = False):
        if not isinstance(per_clip, bool):
            raise ValueError(f"{self.name}.per_clip: expected true or false, got {per_clip!r}")
        self.per_clip = per_clip

    def __call__(self, rollout: Rollout) -> Tensor:
        mse = reconstruction_mse(rollout, clamp=False)  # [B, G, L], the reconstructions as decoded
        return -mse if self.per_clip else -mse.mean(-1)  # [B, G, L] or [B, G]
