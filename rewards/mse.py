"""MSE: minus the per-clip mean squared error of the truncated reconstruction, one value per clip decision.

    r[b, g, l] = - MSE(decode(z[b, l], k[b, g, l]), x[b, l])

The per-clip counterpart of ``reconstruction`` (which averages over a path's clips): it decomposes over clips, so
enumerated groups and decision credit can use it, and ``vaportok-rl eval --measure mse`` judges by it. Judged by
its mean over clips it is total MSE, which spends tokens where MSE is largest; ``psnr`` spends them where dB are
cheapest.
"""

from torch import Tensor

from vaportok_rl.rewards import Reward, Rollout, reconstruction_mse


class MSE(Reward):
    """Minus the per-clip MSE of the truncated reconstruction ([B, G, L]), clips in [0, 1]."""

    name = "mse"
    needs = frozenset({"reconstructions"})

    def __call__(self, rollout: Rollout) -> Tensor:
        return -reconstruction_mse(rollout)  # [B, G, L]
