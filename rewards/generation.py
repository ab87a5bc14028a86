"""Generation: how predictable the kept tokens are for the tokenizer's autoregressive prior.

    r[b, g] = mean_l mean_{j < k[b, g, l]} correct[b, l, j]

where correct[b, l, j] says the prior's top-5 guess for token j (seeing tokens < j) held the true code.
The prior is causal, so one pass per clip (``needs = {"prior_correct"}``) scores every keep count.
A short, predictable prefix scores high: this pulls towards sequences a generator can model.
``per_clip=True`` returns each clip's own accuracy [B, G, L] (for enumerated groups, which tabulate clips).
"""

from torch import Tensor

from vaportok_rl.rewards import Reward, Rollout
from vaportok_rl.tokenizer.protocol import prior_accuracy


class Generation(Reward):
    """AR-prior top-5 accuracy on the retained tokens, mean over clips."""

    name = "generation"
    needs = frozenset({"prior_correct"})

    def __init__(self, per_clip: bool = False):
        if not isinstance(per_clip, bool):
            raise ValueError(f"{self.name}.per_clip: expected true or false, got {per_clip!r}")
        self.per_clip = per_clip

    def __call__(self, rollout: Rollout) -> Tensor:
        correct = rollout.prior_correct.unsqueeze(1)  # [B, 1, L, K], shared by the G paths
        accuracy = prior_accuracy(correct, rollout.keep)  # [B, G, L]
        return accuracy if self.per_clip else accuracy.mean(-1)  # [B, G, L] or [B, G]
