"""Mean absolute error: a per-clip reward written the way a user would, after docs/rewards.md, and the one issue 17's
acceptance trains a head on through ``recipes/custom_reward.yaml`` (README, "Your reward, your head"). Nothing in the
toolkit was built around it: it reads the public :class:`~vaportok_rl.rewards.Rollout` and returns [B, G, L].

    r[b, g, l] = -100 · mean |clamp(x̂, 0, 1) - x|      (x̂ the clip decoded from its first keep[b, g, l] tokens)

so 1 unit is 0.01 of mean absolute error (pixels in [0, 1]).
L1 weighs every pixel's error linearly where PSNR takes the log of the squared error, so the two disagree on which
clips deserve tokens: under L1 a clip with large errors buys more for each token than under PSNR.
"""

from torch import Tensor

from vaportok_rl.rewards import Reward, Rollout


class L1(Reward):
    """Minus 100 x the mean absolute error of each clip's truncated reconstruction."""

    name = "l1"
    needs = frozenset({"reconstructions"})

    def __call__(self, rollout: Rollout) -> Tensor:
        recon = rollout.reconstructions.clamp(0, 1)  # [B, G, L, C, T, H, W]
        ref = rollout.videos.unsqueeze(1)  # [B, 1, L, C, T, H, W]
        return -100 * (recon - ref).abs().flatten(3).mean(-1)  # [B, G, L]
