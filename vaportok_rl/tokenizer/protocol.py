"""The bring-your-own-tokenizer door: everything downstream of the tokenizer talks only to this.

A frozen 1D tokenizer for vaportok-rl must
  * encode a batch of clips once (no grad) into K ordered latent tokens,
  * decode from those latents keeping only the first ``keep[n]`` tokens of each clip (one batch may mix
    many keep counts: the tail is masked per sample, never cut),
  * say, for every position j, whether its AR prior's top-k guess for token j (given tokens < j) was
    right. Because the prior is causal, that single pass gives the prior accuracy for *every* keep
    count: accuracy(k) = mean(correct[:, :k]).

Axis letters: N flattened clips, K latent tokens, D latent width, C/T/H/W clip channels/frames/size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@dataclass
class Encoded:
    """What one ``encode`` call returns; cache it, decoding and scoring never re-encode."""

    latents: Tensor  # [N, K, D] quantized latent embeddings, the decoder's (and the head's) input
    codes: Tensor  # [N, K] long, codebook ids

    def __post_init__(self) -> None:
        if self.latents.ndim != 3:
            raise ValueError(f"Encoded.latents: expected [N, K, D], got shape {tuple(self.latents.shape)}")
        if self.codes.shape != self.latents.shape[:2]:
            raise ValueError(
                f"Encoded.codes: expected shape {tuple(self.latents.shape[:2])} (N, K), got {tuple(self.codes.shape)}"
            )

    def __len__(self) -> int:
        return self.latents.shape[0]

    def index(self, idx: Tensor | slice) -> Encoded:
        """A subset of clips (rows), e.g. ``enc.index(torch.tensor([0, 0, 3]))`` repeats clip 0."""
        return Encoded(latents=self.latents[idx], codes=self.codes[idx])


@runtime_checkable
class FrozenTokenizer(Protocol):
    """A frozen adaptive-length 1D video tokenizer. The built-in :class:`~vaportok_rl.tokenizer.model.Tokenizer`
    implements it; a user's own tokenizer only needs these members."""

    num_latents: int  # K, the longest token sequence; keep counts lie in 1..K
    latent_dim: int  # D, the width of Encoded.latents
    codebook_size: int  # V
    clip_shape: tuple[int, int, int, int]  # (C, T, H, W) of one clip, values in [0, 1]
    fingerprint: str  # identifies the weights; exported heads record it

    def encode(self, clips: Tensor) -> Encoded:
        """clips [N, C, T, H, W] in [0, 1] -> Encoded (no grad, deterministic)."""
        ...

    def decode(self, latents: Tensor, keep: Tensor) -> Tensor:
        """latents [N, K, D], keep [N] long in 1..K -> reconstructions [N, C, T, H, W].

        Tokens at positions >= keep[n] must not influence clip n's output."""
        ...

    def prior_correct(self, encoded: Encoded, topk: int = 5) -> Tensor:
        """[N, K] bool: the AR prior's top-``topk`` prediction for position j (seeing codes < j) holds codes[:, j]."""
        ...


def prior_accuracy(correct: Tensor, keep: Tensor) -> Tensor:
    """Top-k accuracy on retained tokens for each row: mean(correct[n, :keep[n]]).

    correct [..., K] bool, keep [...] long in 1..K -> [...] float."""
    K = correct.shape[-1]
    positions = torch.arange(K, device=correct.device)
    retained = positions < keep.unsqueeze(-1)  # [..., K]
    return (correct & retained).sum(-1).float() / keep.float()


def keep_mask(keep: Tensor, K: int) -> Tensor:
    """[N] keep counts -> [N, K] bool, True where the token is retained."""
    if keep.min() < 1 or keep.max() > K:
        raise ValueError(f"keep: expected values in 1..{K}, got range {int(keep.min())}..{int(keep.max())}")
    return torch.arange(K, device=keep.device) < keep.unsqueeze(-1)
