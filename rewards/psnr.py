"""PSNR: reconstruction quality in dB, one value per clip decision.

    r[b, g, l] = 10 log10(1 / MSE(decode(z[b, l], k[b, g, l]), x[b, l]))

Decomposes over clips ([B, G, L]): with ``grpo.credit: decision`` every clip's keep count is judged against
the G counts drawn for that same clip. In dB, not -MSE: the head is judged by mean per-clip PSNR, and a
dB is worth the same on an easy clip as on a hard one (-MSE would spend tokens where MSE is largest).
"""

from torch import Tensor

from vaportok_rl.metrics import psnr_from_mse
from vaportok_rl.rewards import Reward, Rollout, reconstruction_mse


class PSNR(Reward):
    """Per-clip PSNR (dB) of the truncated reconstruction, clips in [0, 1].

    ``min_mse`` floors the MSE (caps the dB of a perfect decode); below 1e-10 the floor of
    :func:`vaportok_rl.metrics.psnr_from_mse` (100 dB) applies."""

    name = "psnr"
    needs = frozenset({"reconstructions"})

    def __init__(self, min_mse: float = 1e-10):
        if not min_mse > 0:
            raise ValueError(f"psnr: min_mse must be > 0 (it caps the dB of a perfect decode), got {min_mse!r}")
        self.min_mse = float(min_mse)

    def __call__(self, rollout: Rollout) -> Tensor:
        mse = reconstruction_mse(rollout)  # [B, G, L], reconstructions clipped to [0, 1]
        return psnr_from_mse(mse.clamp(min=self.min_mse))  # [B, G, L]
