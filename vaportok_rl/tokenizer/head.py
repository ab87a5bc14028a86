"""The taildrop head: a distribution over how many latent tokens to keep, k in 1..K.

Two transformer blocks read the (frozen, quantized) latent tokens; a linear read-out gives one logit per
position j, meaning "keep k = j + 1 tokens". Softmax at temperature 1.8 (the paper's) turns them into
P(k). This is the only part vaportok-rl's GRPO trains.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from vaportok_rl.tokenizer.blocks import Block


@dataclass
class HeadConfig:
    """Architecture of the taildrop head."""

    latent_dim: int = 128
    """Width D of the tokenizer's latents that the head reads."""
    num_latents: int = 128
    """K: the head outputs a distribution over k in 1..K."""
    width: int = 96
    """Internal width of the head's transformer blocks."""
    layers: int = 2
    """Number of transformer blocks (the paper uses 2)."""
    heads: int = 4
    """Attention heads per block."""
    temperature: float = 1.8
    """Softmax temperature over k (the paper uses 1.8)."""

    def __post_init__(self) -> None:
        for name in ("latent_dim", "num_latents", "width", "layers", "heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"head.{name}: expected a positive integer, got {value!r}")
        if not self.temperature > 0:
            raise ValueError(f"head.temperature: expected > 0, got {self.temperature!r}")


class TaildropHead(nn.Module):
    """latents [N, K, D] -> logits [N, K] over k = 1..K (already divided by the temperature)."""

    def __init__(self, config: HeadConfig):
        super().__init__()
        self.config = config
        self.inp = nn.Linear(config.latent_dim, config.width)
        self.pos = nn.Parameter(torch.randn(config.num_latents, config.width) * 0.02)
        self.blocks = nn.ModuleList(Block(config.width, config.heads) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.width)
        self.out = nn.Linear(config.width, 1)

    def forward(self, latents: Tensor) -> Tensor:
        if latents.ndim != 3 or latents.shape[1:] != (self.config.num_latents, self.config.latent_dim):
            raise ValueError(
                f"TaildropHead: expected latents [N, {self.config.num_latents}, {self.config.latent_dim}], "
                f"got {tuple(latents.shape)}"
            )
        x = self.inp(latents) + self.pos  # [N, K, W]
        for block in self.blocks:
            x = block(x)
        return self.out(self.norm(x)).squeeze(-1) / self.config.temperature  # [N, K]

    def config_dict(self) -> dict:
        return asdict(self.config)

    @classmethod
    def from_pretrained(cls, path, *, tokenizer=None, force: bool = False) -> TaildropHead:
        """Load an exported head folder (model.safetensors + config.json, integrity-checked); see
        :mod:`vaportok_rl.tokenizer.head_io`. Any other source of a head: :func:`vaportok_rl.runs.load_head`."""
        from vaportok_rl.tokenizer.head_io import load_exported_head

        return load_exported_head(path, tokenizer=tokenizer, force=force)
