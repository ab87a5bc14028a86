"""The prior-only stage after the main pretraining loop: the AR prior fitted on the frozen tokenizer's codes."""

from __future__ import annotations

import math

import torch

from vaportok_rl.tokenizer.model import Tokenizer
from vaportok_rl.tokenizer.pretrain_config import PretrainOptimConfig
from vaportok_rl.tokenizer.protocol import keep_mask

__all__ = ["encode_pool", "train_prior"]


@torch.no_grad()
def encode_pool(model: Tokenizer, clips: torch.Tensor, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents [N, K, D] and codes [N, K] of ``clips`` [N, C, T, H, W], ``chunk`` clips per encode."""
    enc = [model.encode(clips[i : i + chunk]) for i in range(0, len(clips), chunk)]
    return torch.cat([e.latents for e in enc]), torch.cat([e.codes for e in enc])


def train_prior(model: Tokenizer, clips: torch.Tensor, optim: PretrainOptimConfig, generator: torch.Generator) -> float:
    """Prior-only stage: encode the pool once, then fit the causal prior on retained tokens (random keep per
    sample, as in the main loop). Returns the last cross-entropy."""
    was_training = model.training
    model.eval()
    latents, codes = encode_pool(model, clips)
    model.train(was_training)
    params = list(model.prior.parameters())
    opt = torch.optim.AdamW(params, lr=optim.prior_lr, weight_decay=0.0, fused=True)
    K, batch, ce = model.num_latents, 4 * optim.batch_size, float("nan")
    for step in range(optim.prior_steps):
        for group in opt.param_groups:
            group["lr"] = optim.prior_lr * 0.5 * (1 + math.cos(math.pi * step / optim.prior_steps))
        idx = torch.randint(len(latents), (batch,), generator=generator)
        keep = torch.randint(1, K + 1, (batch,), generator=generator)
        loss = model.prior.loss(latents[idx], codes[idx], keep_mask(keep, K))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, optim.max_grad_norm)
        opt.step()
        ce = loss.item()
    return ce
