"""The supervised reference: distil the oracle's per-clip allocation at a price into the taildrop head.

With every k decoded for a pool of training clips (a full quality table, no sampling noise), the oracle at a
price λ per token keeps, for each clip, argmax_k PSNR(k) - λ·k. The head is trained towards the Boltzmann
distribution of that utility (EVATok-style router; the hard oracle k as ``temperature -> 0``)::

    target[n, k] = softmax_k((PSNR[n, k] - λ·k) / temperature)        quality [N, K] ──► target [N, K]
    loss = cross_entropy(head(latents) [N, K], target)

Soft targets keep the *shape* of each clip's utility in the head's logits, so the price knob of
:mod:`vaportok_rl.budget` moves a distilled head along the oracle's own frontier. This is the upper reference
for what the head can represent from latents alone; GRPO may start from it.

Axis letters: N clips, K tokens, D latent width (see docs/design.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vaportok_rl.tokenizer.head import TaildropHead
from vaportok_rl.tokenizer.protocol import Encoded, FrozenTokenizer

__all__ = ["DistillConfig", "oracle_targets", "psnr_table", "distill_head"]


@dataclass
class DistillConfig:
    """How the head is fitted to the oracle's targets."""

    price: float = 0.05
    """λ, dB per token: the oracle keeps argmax_k PSNR(k) - λ·k per clip (a larger price, fewer tokens)."""
    temperature: float = 0.25
    """Of the Boltzmann targets, in dB: the oracle's k and its near-ties share the target's mass."""
    steps: int = 600
    """Optimiser steps."""
    batch: int = 128
    """Clips per step."""
    lr: float = 1e-3
    """AdamW learning rate."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    seed: int = 0
    """Seeds the minibatch order."""

    def __post_init__(self) -> None:
        for name in ("price", "temperature", "lr"):
            if not float(getattr(self, name)) > 0 and not (name == "price" and getattr(self, name) == 0):
                raise ValueError(f"distill.{name}: expected a positive number, got {getattr(self, name)!r}")
        for name in ("steps", "batch"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"distill.{name}: expected a positive integer, got {value!r}")


@torch.no_grad()
def psnr_table(tokenizer: FrozenTokenizer, encoded: Encoded, clips: Tensor, *, chunk: int = 16) -> Tensor:
    """PSNR (dB) of every clip at every keep count: [N, K]; N·K decodes in calls of ``chunk`` clips."""
    N, K = len(encoded), tokenizer.num_latents
    out = torch.empty(N, K, dtype=torch.float64)
    rows = torch.arange(N).repeat_interleave(K)  # [N·K], clip-major
    keep = torch.arange(1, K + 1).repeat(N)  # [N·K]
    for i in range(0, N * K, chunk):
        r, k = rows[i : i + chunk], keep[i : i + chunk]
        rec = tokenizer.decode(encoded.latents[r.to(encoded.latents.device)], k.to(encoded.latents.device))
        mse = (rec.float().clamp(0, 1) - clips[r.to(clips.device)].float()).pow(2).flatten(1).mean(1)
        out[r, k - 1] = (-10.0 * torch.log10(mse.clamp(min=1e-10))).double().cpu()
    return out


def oracle_targets(quality: Tensor, price: float, temperature: float) -> Tensor:
    """Boltzmann targets [N, K] of the utility quality[n, k] - price·k (k = 1..K) at ``temperature``."""
    K = quality.shape[-1]
    k = torch.arange(1, K + 1, dtype=quality.dtype, device=quality.device)
    return torch.softmax((quality - price * k) / temperature, dim=-1)


def distill_head(
    head: TaildropHead, latents: Tensor, quality: Tensor, config: DistillConfig, *, progress=None
) -> list[float]:
    """Fit ``head`` (in place) to the oracle targets of quality [N, K] for latents [N, K, D]; returns the loss
    per step. ``progress``: an optional callable(step, loss)."""
    if latents.shape[0] != quality.shape[0] or quality.shape[1] != head.config.num_latents:
        raise ValueError(
            f"quality: expected [N, K] = [{latents.shape[0]}, {head.config.num_latents}], got {tuple(quality.shape)}"
        )
    targets = oracle_targets(quality.double(), config.price, config.temperature).float()  # [N, K]
    generator = torch.Generator().manual_seed(int(config.seed))
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    head.train()
    N, losses = latents.shape[0], []
    order, at = torch.randperm(N, generator=generator), 0
    for step in range(config.steps):
        if at + config.batch > N:
            order, at = torch.randperm(N, generator=generator), 0
        idx = order[at : at + config.batch]
        at += config.batch
        logits = head(latents[idx])  # [b, K]
        loss = F.cross_entropy(logits, targets[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if progress is not None:
            progress(step, losses[-1])
    head.eval()
    return losses


def hard_oracle_keep(quality: np.ndarray | Tensor, price: float) -> np.ndarray:
    """The oracle's keep count per clip at a price: argmax_k quality[n, k] - price·k -> [N] in 1..K."""
    q = torch.as_tensor(quality, dtype=torch.float64)
    return (oracle_targets(q, price, 1.0).log().argmax(-1) + 1).numpy()
