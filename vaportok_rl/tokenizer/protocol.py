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

import math
from collections.abc import Sequence
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
        """clips [N, C, T, H, W] float in [0, 1] -> Encoded (no grad, deterministic); :func:`check_clips`
        rejects anything else with one clear error (``encode_videos`` runs it for every tokenizer)."""
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


CLIP_RANGE_TOLERANCE = 0.01
"""How far outside [0, 1] clip values may stray (resampling overshoot, half-precision rounding) before
:func:`check_clips` calls them another scale: [0, 255] or [-1, 1] data encode to garbage without an error."""


def check_clips(
    clips: Tensor,
    clip_shape: Sequence[int],
    *,
    name: str = "clips",
    lead: str = "N",
    dtype: torch.dtype | None = None,
) -> None:
    """Raise one ValueError naming ``name`` unless ``clips`` is [lead..., *clip_shape] float in [0, 1].

    A tokenizer fed the wrong layout, integer pixels or 0..255 floats fails deep inside torch or, worse,
    encodes garbage silently; this says what was expected instead. ``lead``: the leading axis letters
    (``"N"`` or ``"B, L"``). ``dtype``: the float dtype the weights need, when they need one. Costs one
    ``aminmax`` (one sync on an accelerator)."""
    want = [*(a.strip() for a in lead.split(",")), *map(int, clip_shape)]
    if clips.ndim != len(want) or tuple(clips.shape[len(want) - len(clip_shape) :]) != tuple(clip_shape):
        raise ValueError(f"{name}: expected [{', '.join(map(str, want))}], got {tuple(clips.shape)}")
    if not clips.is_floating_point():
        raise ValueError(
            f"{name}: expected a {dtype or 'float'} tensor with values in [0, 1], got dtype {clips.dtype};"
            f" convert 8-bit pixels with {name}.float() / 255"
        )
    if dtype is not None and clips.dtype != dtype:
        raise ValueError(
            f"{name}: expected dtype {dtype} (the tokenizer's weights), got {clips.dtype}; convert with"
            f" {name}.to({dtype})"
        )
    if clips.numel() == 0:
        return
    lo, hi = (float(v) for v in torch.aminmax(clips.detach()))
    if math.isnan(lo) or math.isnan(hi):
        raise ValueError(f"{name}: expected float values in [0, 1], got NaN values")
    if lo < -CLIP_RANGE_TOLERANCE or hi > 1 + CLIP_RANGE_TOLERANCE:
        if lo >= -CLIP_RANGE_TOLERANCE and 2 < hi <= 255 + CLIP_RANGE_TOLERANCE:
            hint = f"; 0..255 pixels? divide by 255 ({name} / 255)"
        elif lo >= -1 - CLIP_RANGE_TOLERANCE and hi <= 1 + CLIP_RANGE_TOLERANCE:
            hint = f"; [-1, 1] values? map with ({name} + 1) / 2"
        else:
            hint = ""
        raise ValueError(f"{name}: expected float values in [0, 1], got min {lo:g} max {hi:g}{hint}")


def keep_mask(keep: Tensor, K: int) -> Tensor:
    """[N] keep counts -> [N, K] bool, True where the token is retained."""
    if keep.min() < 1 or keep.max() > K:
        raise ValueError(f"keep: expected values in 1..{K}, got range {int(keep.min())}..{int(keep.max())}")
    return torch.arange(K, device=keep.device) < keep.unsqueeze(-1)
