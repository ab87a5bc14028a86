"""The one transformer block every model here is built from (pre-norm, SDPA with explicit boolean masks)."""

from __future__ import annotations

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


class Block(nn.Module):
    """Pre-norm transformer block. ``mask`` is a boolean attention mask, True = may attend,
    broadcastable to [N, heads, S, S] (pass [N, 1, S, S] or [N, 1, 1, S])."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        if width % heads:
            raise ValueError(f"width: {width} is not divisible by heads={heads}")
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        q, k, v = rearrange(self.qkv(self.norm1(x)), "n s (three h e) -> three n h s e", three=3, h=self.heads)
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.proj(rearrange(attn, "n h s e -> n s (h e)"))
        return x + self.mlp(self.norm2(x))
