"""Generation: how predictable the kept tokens are for the tokenizer's autoregressive prior.

    r[b, g] = mean_l mean_{j < k[b, g, l]} correct[b, l, j]

where correct[b, l, j] says the prior's top-5 guess for token j (seeing tokens < j) held the true code.
The prior is causal, so one pass per clip (``needs = {"prior_correct"}``) scores every keep count.
A short, predictable prefix scores high: this pulls towards sequences a generator can model.
"""

from torch import Tensor

from vaportok_rl.rewards import Reward, Rollout
from vaportok_rl.tokenizer.protocol import prior_accuracy


class Generation(Reward):
    """AR-prior top-5 accuracy on the retained tokens, mean over clips."""

    name = "generation"
    needs = frozenset({"prior_correct"})

    def __call__(self, rollout: Rollout) -> Tensor:
        correct = rollout.prior_correct.unsqueeze(1)  # [B, 1, L, K], shared by the G paths
        return prior_accuracy(correct, rollout.keep).mean(-1)  # [B, G, L] -> [B, G]
