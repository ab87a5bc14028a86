"""TaildropPolicy: the taildrop head seen as a policy over how many tokens to keep, k in 1..K.

The head gives logits [N, K] over index j = k - 1. Three ways to act on them (``mode``):

``"sample"``
    The full distribution P(k) = softmax(logits). GRPO's default.
``"pre_argmax"``
    P(k) restricted to k <= k* and renormalised, where k* = argmax_k P(k) is taken without grad. The
    policy never keeps more tokens than its own mode, so exploration only ever *drops* tokens.
    The cut k* is part of the action's context: a rollout records it (``max_keep``) and every later
    log-prob of that rollout (old, reference, current) is taken on the same support k <= max_keep.
    Otherwise a policy whose argmax moved below a sampled k would score it -inf and the GRPO ratio and
    the KL term would blow up.
``"argmax"``
    The degenerate distribution at k*: sampling is deterministic. Its own log-prob would be 0 everywhere
    (no gradient, no KL signal), so ``log_prob`` and ``entropy`` in this mode score the action under the
    *full* distribution instead: the policy is the full softmax, argmax is only how it acts.

Axis letters: N clips, K latent tokens, D latent width (see docs/design.md).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.distributions import Categorical

from vaportok_rl.tokenizer.head import TaildropHead

MODES = ("sample", "pre_argmax", "argmax")


class NonFiniteLogits(ArithmeticError):
    """The head produced NaN or infinite logits."""


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    return mode


class TaildropPolicy(nn.Module):
    """Wraps a :class:`TaildropHead`; every method takes latents [N, K, D] of N clips.

    Keep counts are 1-based (k in 1..K); the underlying ``Categorical`` is over j = k - 1.
    """

    def __init__(self, head: TaildropHead):
        super().__init__()
        self.head = head

    @property
    def num_latents(self) -> int:
        return self.head.config.num_latents

    def logits(self, latents: Tensor) -> Tensor:
        """latents [N, K, D] -> logits [N, K] over k = 1..K (already divided by the temperature).

        Raises :class:`NonFiniteLogits` when a head gives NaN or +-inf (weights blown up by too large a learning
        rate): a NaN would otherwise pick k = 1 silently, or fail deep inside torch.distributions."""
        logits = self.head(latents)
        if not bool(torch.isfinite(logits).all()):
            raise NonFiniteLogits(f"the head's logits hold {int((~torch.isfinite(logits)).sum())} non-finite values")
        return logits

    forward = logits

    def argmax_keep(self, latents: Tensor) -> Tensor:
        """[N] long in 1..K: the most likely keep count k* (no grad)."""
        with torch.no_grad():
            return self.logits(latents).argmax(-1) + 1

    def distribution(
        self,
        latents: Tensor | None,
        mode: str = "sample",
        max_keep: Tensor | None = None,
        *,
        logits: Tensor | None = None,
    ) -> Categorical:
        """The distribution this policy *acts* with, over j = k - 1 (batch shape [N]).

        ``max_keep`` [N] (only for ``"pre_argmax"``) overrides the cut k*: pass the one recorded at sampling
        time to score an old action on the support it was drawn from. ``logits`` [N, K], this head's on
        ``latents`` computed already, saves running the head again (one head pass serves a whole step).
        """
        check_mode(mode)
        if max_keep is not None and mode != "pre_argmax":
            raise ValueError(f"max_keep: only meaningful for mode='pre_argmax', got mode={mode!r}")
        logits = self.logits(latents) if logits is None else logits  # [N, K]
        if mode == "sample":
            return Categorical(logits=logits)
        if mode == "argmax":
            j_star = logits.detach().argmax(-1)  # [N]
            one_hot = torch.nn.functional.one_hot(j_star, logits.shape[-1]).to(logits.dtype)  # [N, K]
            return Categorical(probs=one_hot)
        return Categorical(logits=self._restrict(logits, max_keep))

    def _restrict(self, logits: Tensor, max_keep: Tensor | None) -> Tensor:
        """Mask logits [N, K] to k <= max_keep (default: the argmax k*, chosen without grad)."""
        K = logits.shape[-1]
        if max_keep is None:
            max_keep = logits.detach().argmax(-1) + 1  # [N]
        elif max_keep.shape != logits.shape[:1] or max_keep.min() < 1 or max_keep.max() > K:
            raise ValueError(
                f"max_keep: expected shape {tuple(logits.shape[:1])} with values in 1..{K}, got shape "
                f"{tuple(max_keep.shape)}, range {int(max_keep.min())}..{int(max_keep.max())}"
            )
        beyond = torch.arange(K, device=logits.device) >= max_keep.unsqueeze(-1)  # [N, K]
        return logits.masked_fill(beyond, float("-inf"))

    def _scoring_distribution(
        self, latents: Tensor | None, mode: str, max_keep: Tensor | None, logits: Tensor | None
    ) -> Categorical:
        # "argmax" acts deterministically but is scored under the full softmax (module docstring).
        if check_mode(mode) == "argmax":
            return self.distribution(latents, "sample", logits=logits)
        return self.distribution(latents, mode, max_keep, logits=logits)

    def sample(
        self,
        latents: Tensor,
        mode: str = "sample",
        generator: torch.Generator | None = None,
        num_samples: int | None = None,
        max_keep: Tensor | None = None,
        *,
        logits: Tensor | None = None,
    ) -> Tensor:
        """Draw keep counts (no grad): [N] long in 1..K, or [num_samples, N] when ``num_samples`` is given.

        Randomness comes only from ``generator`` (on the latents' device); the global RNG is untouched.
        """
        n = 1 if num_samples is None else num_samples
        if n < 1:
            raise ValueError(f"num_samples: expected a positive integer, got {num_samples!r}")
        with torch.no_grad():
            probs = self.distribution(latents, mode, max_keep, logits=logits).probs  # [N, K]
            if mode == "argmax":
                j = probs.argmax(-1, keepdim=True).expand(-1, n)  # [N, n]
            else:
                j = torch.multinomial(probs, n, replacement=True, generator=generator)  # [N, n]
        keep = j.T + 1  # [n, N], sample dim first so it broadcasts against batch shape [N] in log_prob
        return keep[0] if num_samples is None else keep

    def log_prob(
        self,
        latents: Tensor | None,
        keep: Tensor,
        mode: str = "sample",
        max_keep: Tensor | None = None,
        *,
        logits: Tensor | None = None,
    ) -> Tensor:
        """log P(keep) with grad. keep [N] or [S, N] (S samples per clip, head run once) -> same shape.

        In ``"argmax"`` mode this is the full-distribution log-prob (see the module docstring)."""
        K = self.num_latents
        if keep.min() < 1 or keep.max() > K:
            raise ValueError(f"keep: expected values in 1..{K}, got range {int(keep.min())}..{int(keep.max())}")
        return self._scoring_distribution(latents, mode, max_keep, logits).log_prob(keep - 1)

    def entropy(
        self,
        latents: Tensor | None,
        mode: str = "sample",
        max_keep: Tensor | None = None,
        *,
        logits: Tensor | None = None,
    ) -> Tensor:
        """[N] entropy of the distribution log_prob scores under (the full one in ``"argmax"`` mode)."""
        return self._scoring_distribution(latents, mode, max_keep, logits).entropy()

    def reference_copy(self) -> TaildropPolicy:
        """A frozen deep copy (no grad, eval mode) to anchor the KL term."""
        reference = copy.deepcopy(self)
        reference.requires_grad_(False)
        return reference.eval()


def head_logits(head: torch.nn.Module, latents: Tensor, chunk: int = 1024) -> Tensor:
    """The head's logits [N, K] for latents [N, K, D], ``chunk`` clips per call, no grad (a pool's or an
    evaluation set's, for the price knob and the enumerated targets' reference)."""
    with torch.no_grad():
        return torch.cat([head(latents[i : i + chunk]) for i in range(0, len(latents), chunk)])
