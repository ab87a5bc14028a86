"""Penalty: discourage truncations so short the clip cannot be represented at all.

With t the threshold in tokens and k[b, g, l] the kept count of clip l on path (b, g):

    r[b, g] = - sum_l Penalty(k[b, g, l]) · [k[b, g, l] < t]
    Penalty(k) = (t - k) / t          shape="linear"
    Penalty(k) = ((t - k) / t) ** 2  shape="quadratic"

Each term lies in (0, 1); it is 0 at k >= t and grows as k falls towards 0. The sum (not the mean) over
clips means one badly starved clip costs the same however long the video is. ``threshold`` is a fraction
of K (default 0.125, i.e. K/8); ``threshold_tokens`` gives t in tokens instead (one or the other).
``per_clip=True`` returns each clip's own term, -Penalty(k[b, g, l]) [B, G, L] (for enumerated groups).
"""

import torch
from torch import Tensor

from vaportok_rl.rewards import Reward, Rollout

SHAPES = ("linear", "quadratic")


class Penalty(Reward):
    """Minus the sum over clips of (t - k)/t (or its square) wherever k < t."""

    name = "penalty"

    def __init__(
        self,
        shape: str = "linear",
        threshold: float | None = None,
        threshold_tokens: int | None = None,
        per_clip: bool = False,
    ):
        if not isinstance(per_clip, bool):
            raise ValueError(f"penalty.per_clip: expected true or false, got {per_clip!r}")
        self.per_clip = per_clip
        if shape not in SHAPES:
            raise ValueError(f"penalty.shape: expected one of {SHAPES}, got {shape!r}")
        if threshold is not None and threshold_tokens is not None:
            raise ValueError(
                f"penalty: give threshold (fraction of K) or threshold_tokens (absolute), not both; "
                f"got threshold={threshold!r}, threshold_tokens={threshold_tokens!r}"
            )
        if threshold_tokens is not None and (
            isinstance(threshold_tokens, bool) or not isinstance(threshold_tokens, int) or threshold_tokens < 1
        ):
            raise ValueError(f"penalty.threshold_tokens: expected a positive integer, got {threshold_tokens!r}")
        if threshold_tokens is None:
            threshold = 0.125 if threshold is None else threshold
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
                raise ValueError(f"penalty.threshold: expected a fraction of K in (0, 1], got {threshold!r}")
        self.shape = shape
        self.threshold = threshold
        self.threshold_tokens = threshold_tokens

    def tokens(self, K: int) -> float:
        """The threshold t in tokens for a tokenizer with K latents."""
        if self.threshold_tokens is None:
            return self.threshold * K
        if self.threshold_tokens > K:
            raise ValueError(f"penalty.threshold_tokens: expected <= K = {K}, got {self.threshold_tokens}")
        return float(self.threshold_tokens)

    def __call__(self, rollout: Rollout) -> Tensor:
        t = self.tokens(rollout.num_latents)
        shortfall = ((t - rollout.keep.float()) / t).clamp(min=0.0)  # [B, G, L], 0 where k >= t
        per_clip = shortfall if self.shape == "linear" else shortfall**2  # [B, G, L]
        return -per_clip if self.per_clip else -torch.sum(per_clip, dim=-1)  # [B, G, L] or [B, G]
