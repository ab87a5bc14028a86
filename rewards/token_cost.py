"""Token cost: minus the tokens each clip keeps, so that its weight is a price per token.

    r[b, g, l] = - k[b, g, l]

With ``psnr`` at weight 1, this reward at weight λ makes each decision's reward PSNR - λ·k: the Lagrangian
of "best mean PSNR at a mean token budget", whose maximiser per clip is the budgeted oracle at the budget
that price implies. Use ``reward_aggregation: sum_then_normalize`` with ``scale_rewards: batch`` so the
price is the same for every clip of the batch (per-group normalisation would give each video its own).
"""

from torch import Tensor

from vaportok_rl.rewards import Reward, Rollout


class TokenCost(Reward):
    """Minus the kept tokens per clip decision ([B, G, L]); weight it by a price in reward units per token."""

    name = "token_cost"
    price_per_token = 1.0  # it charges one reward unit per kept token: its weight is the run's price

    def __call__(self, rollout: Rollout) -> Tensor:
        return -rollout.keep.float()  # [B, G, L]
