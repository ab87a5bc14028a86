"""The AR prior: a small causal GPT over the quantized latents, predicting each token's code id.

As in LARP it reads quantized latent embeddings and is supervised with code ids; as in VaporTok it is
trained on retained tokens only (positions >= keep carry no loss). Because it is causal, position j sees
only tokens < j, so one pass scores every truncation at once: the top-5 accuracy for keep k is the mean
correctness over positions < k. Its top-5 accuracy is the generation-quality proxy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaportok_rl.tokenizer.blocks import Block


class ARPrior(nn.Module):
    def __init__(self, codebook_size: int, latent_dim: int, num_latents: int, width: int, layers: int, heads: int):
        super().__init__()
        self.inp = nn.Linear(latent_dim, width)
        self.bos = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.pos = nn.Parameter(torch.randn(num_latents, width) * 0.02)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, codebook_size)
        self.register_buffer("causal", torch.ones(num_latents, num_latents, dtype=torch.bool).tril(), persistent=False)

    def forward(self, latents: Tensor) -> Tensor:
        """latents [N, K, D] -> logits [N, K, V]; logits[:, j] predicts code j from latents < j."""
        N, K, _ = latents.shape
        x = torch.cat([self.bos.expand(N, -1, -1), self.inp(latents[:, :-1])], 1) + self.pos  # [N, K, W]
        for block in self.blocks:
            x = block(x, self.causal)
        return self.out(self.norm(x))

    def loss(self, latents: Tensor, codes: Tensor, kept: Tensor) -> Tensor:
        """Cross-entropy on retained positions only. kept [N, K] bool."""
        logits = self(latents)
        ce = F.cross_entropy(logits.flatten(0, 1), codes.flatten(), reduction="none").view_as(codes)
        return (ce * kept).sum() / kept.sum().clamp_min(1)
