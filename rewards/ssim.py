"""SSIM: the per-clip structural similarity of the truncated reconstruction, one value per clip decision.

    r[b, g, l] = SSIM(decode(z[b, l], k[b, g, l]), x[b, l])       (mean over frames; Gaussian 11x11 window)

Decomposes over clips, so enumerated groups can tabulate it and ``vaportok-rl eval --measure ssim`` judges by it.
Frames must be at least 11 px on a side.
"""

from einops import rearrange
from torch import Tensor

from vaportok_rl.metrics import ssim
from vaportok_rl.rewards import Reward, Rollout


class SSIM(Reward):
    """Per-clip SSIM (in [-1, 1], higher is better) of the truncated reconstruction ([B, G, L])."""

    name = "ssim"
    needs = frozenset({"reconstructions"})

    def __call__(self, rollout: Rollout) -> Tensor:
        recon = rollout.reconstructions.float().clamp(0.0, 1.0)  # [B, G, L, C, T, H, W]
        B, G, L = recon.shape[:3]
        target = rollout.videos.unsqueeze(1).expand_as(recon).float()  # [B, G, L, C, T, H, W]
        value = ssim(
            rearrange(recon, "b g l c t h w -> (b g l) c t h w"), rearrange(target, "b g l c t h w -> (b g l) c t h w")
        )
        return rearrange(value, "(b g l) -> b g l", b=B, g=G)  # [B, G, L]
