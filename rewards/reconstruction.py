"""Reconstruction: how well the kept tokens reproduce each clip.

    r[b, g] = - mean_l MSE(decode(z[b, l], k[b, g, l]), x[b, l])

with the MSE a mean over channels, frames and pixels (clips in [0, 1]). Needs the rollout to decode every
truncation (``needs = {"reconstructions"}``), the costliest thing a reward can ask for.
"""

from torch import Tensor

from vaportok_rl.rewards import Reward, Rollout


class Reconstruction(Reward):
    """Minus the per-clip MSE of the truncated reconstruction, mean over clips."""

    name = "reconstruction"
    needs = frozenset({"reconstructions"})

    def __call__(self, rollout: Rollout) -> Tensor:
        target = rollout.videos.unsqueeze(1)  # [B, 1, L, C, T, H, W], shared by the G paths
        squared_error = (rollout.reconstructions.float() - target.float()) ** 2  # [B, G, L, C, T, H, W]
        mse = squared_error.flatten(3).mean(-1)  # [B, G, L]
        return -mse.mean(-1)  # [B, G]
