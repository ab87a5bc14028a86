"""What a pretraining step optimises towards, by step and by clip: the learning-rate and quantisation schedules,
and the taildrop head's Gaussian prior over k centred by the clip's complexity."""

from __future__ import annotations

import math

import torch

from vaportok_rl.tokenizer.pretrain_config import PretrainOptimConfig

__all__ = ["complexity_stats", "gaussian_prior", "lr_at", "quant_mix"]


def complexity_stats(sc: torch.Tensor, tc: torch.Tensor) -> dict[str, float]:
    """5th/95th percentiles of SC and TC over the pool: they map a clip's complexity into [0, 1]."""
    q = torch.tensor([0.05, 0.95])
    sc_lo, sc_hi = torch.quantile(sc, q).tolist()
    tc_lo, tc_hi = torch.quantile(tc, q).tolist()
    return {"sc_lo": sc_lo, "sc_hi": sc_hi, "tc_lo": tc_lo, "tc_hi": tc_hi}


def gaussian_prior(sc, tc, stats: dict, K: int, optim: PretrainOptimConfig) -> torch.Tensor:
    """[N] SC, TC -> [N, K] Gaussian prior over k = 1..K centred by the clip's complexity."""
    c_sc = ((sc - stats["sc_lo"]) / max(stats["sc_hi"] - stats["sc_lo"], 1e-6)).clamp(0, 1)
    c_tc = ((tc - stats["tc_lo"]) / max(stats["tc_hi"] - stats["tc_lo"], 1e-6)).clamp(0, 1)
    level = 0.5 * (c_sc + c_tc)  # [N] in [0, 1]
    center = K * (optim.head_min_center + (optim.head_max_center - optim.head_min_center) * level)
    k = torch.arange(1, K + 1, dtype=torch.float32)
    logits = -0.5 * ((k - center.unsqueeze(-1)) / (optim.head_sigma * K)) ** 2
    return logits.softmax(-1)


def lr_at(step: int, optim: PretrainOptimConfig) -> float:
    """Learning rate of main-loop step ``step`` (0-based): linear warm-up, then cosine decay to 10 %."""
    if step < optim.lr_warmup_steps:
        return optim.lr * (step + 1) / optim.lr_warmup_steps
    progress = (step - optim.lr_warmup_steps) / max(optim.steps - optim.lr_warmup_steps, 1)
    return optim.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def quant_mix(step: int, optim: PretrainOptimConfig) -> float:
    """Share of quantized tokens at step ``step``: 0 during the warm-up, then a linear ramp to 1."""
    if step < optim.quant_warmup_steps:
        return 0.0
    return min(1.0, (step - optim.quant_warmup_steps + 1) / max(optim.quant_ramp_steps, 1))
