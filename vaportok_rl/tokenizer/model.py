"""The built-in holistic 1D video tokenizer (LARP-style) with a per-sample tail-drop mask.

clips [N, C, T, H, W] ──patchify 4x8x8──► patches [N, P, E] ──► encoder over [patches ⊕ K latent queries]
   ──► K latents ──► stochastic cosine VQ (factorised, low-dim codebook) ──► quantized latents [N, K, D]
   ──► decoder over [P mask queries ⊕ first k latents] (per-sample attention mask) ──► patches ──► clip

A staged design, because a plain patch transformer learns almost nothing beyond colour in a CPU budget (a
probe of plain patch transformers at this size got little past each patch's mean colour): a linear *skip path*
runs beside both transformers. Its basis is a closed-form patch PCA fitted on the training clips before step
0; on the encoder side every token reads a linear map of the clip's patch coefficients, on the decoder side
every kept token adds a linear map of its code vector to the patch coefficients. The transformers learn the
non-linear rest. Both paths respect the tail-drop mask, so tokens past k cannot touch the output.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from vaportok_rl.tokenizer.blocks import Block
from vaportok_rl.tokenizer.head import HeadConfig, TaildropHead
from vaportok_rl.tokenizer.prior import ARPrior
from vaportok_rl.tokenizer.protocol import Encoded, keep_mask
from vaportok_rl.tokenizer.protocol import check_clips as check_clip_batch


@dataclass
class TokenizerConfig:
    """Architecture of the built-in tokenizer, its AR prior and its taildrop head."""

    channels: int = 3
    """C: colour channels of a clip."""
    frames: int = 16
    """T: frames per clip."""
    size: int = 32
    """H = W: frame size in pixels."""
    patch: tuple[int, int, int] = (4, 8, 8)
    """Patch size (frames, height, width); the paper uses 4x8x8."""
    num_latents: int = 128
    """K: latent tokens per clip (the longest sequence; keep counts lie in 1..K)."""
    width: int = 128
    """D: transformer width of encoder and decoder, and the width of the quantized latents."""
    encoder_layers: int = 4
    """Transformer blocks in the encoder."""
    decoder_layers: int = 4
    """Transformer blocks in the decoder."""
    heads: int = 4
    """Attention heads per block."""
    codebook_size: int = 1024
    """V: number of codes."""
    code_dim: int = 4
    """Dimension of the factorised codebook (LARP uses 8; 4 = up to three PCA coefficients + a constant)."""
    vq_temperature: float = 0.0002
    """Softmax temperature over cosine similarities when sampling codes in training (eval takes the argmax)."""
    skip_rank: int = 32
    """Rank of the patch-PCA basis of the linear skip path (0 disables the skip path)."""
    prior_layers: int = 2
    """Transformer blocks in the AR prior."""
    prior_width: int = 128
    """Width of the AR prior."""
    head_width: int = 96
    """Width of the taildrop head."""
    head_layers: int = 2
    """Transformer blocks of the taildrop head (the paper uses 2)."""
    head_temperature: float = 1.8
    """Softmax temperature of the taildrop head (the paper uses 1.8)."""

    def __post_init__(self) -> None:
        self.patch = tuple(self.patch)
        if len(self.patch) != 3:
            raise ValueError(f"patch: expected 3 sizes (frames, height, width), got {self.patch!r}")
        for name, full, p in (("frames", self.frames, self.patch[0]), ("size", self.size, self.patch[1])):
            if full % p:
                raise ValueError(f"{name}: {full} is not divisible by the patch size {p}")
        if self.size % self.patch[2]:
            raise ValueError(f"size: {self.size} is not divisible by the patch width {self.patch[2]}")
        if self.skip_rank < 0 or self.skip_rank > self.patch_dim:
            raise ValueError(f"skip_rank: expected 0..{self.patch_dim}, got {self.skip_rank}")
        if self.vq_temperature <= 0:
            raise ValueError(f"vq_temperature: expected > 0, got {self.vq_temperature}")

    @property
    def grid(self) -> tuple[int, int, int]:
        return (self.frames // self.patch[0], self.size // self.patch[1], self.size // self.patch[2])

    @property
    def num_patches(self) -> int:
        t, h, w = self.grid
        return t * h * w

    @property
    def patch_dim(self) -> int:
        return self.channels * self.patch[0] * self.patch[1] * self.patch[2]

    def head_config(self) -> HeadConfig:
        return HeadConfig(
            latent_dim=self.width,
            num_latents=self.num_latents,
            width=self.head_width,
            layers=self.head_layers,
            temperature=self.head_temperature,
        )


class CosineVQ(nn.Module):
    """Stochastic vector quantisation on cosine similarity (SVQ, as in LARP / AdapTok) with a factorised codebook.

    The code is *chosen* by cosine similarity in a low-dim space (code_dim): sampled from
    softmax(cos / temperature) in training, the argmax at evaluation; the quantized value is the codebook
    vector itself, z_q = C[idx] (AdapTok eq. 1), with straight-through gradients. Because selection ignores
    only the norm, an encoder with a constant component (a bias) still resolves magnitudes by direction.
    ``mix`` in [0, 1] is the share of tokens quantized (a warm-up ramps it from 0: quantizing from step 0
    collapses to one code).
    """

    def __init__(self, codebook_size: int, code_dim: int, temperature: float):
        super().__init__()
        self.temperature = temperature
        self.codebook = nn.Parameter(F.normalize(torch.randn(codebook_size, code_dim), dim=-1))

    def forward(self, u: Tensor, *, sample: bool, mix: float = 1.0, generator: torch.Generator | None = None):
        cos = F.normalize(u, dim=-1) @ F.normalize(self.codebook, dim=-1).T  # [N, K, V]
        if sample:
            uniform = torch.rand(cos.shape, generator=generator).clamp(1e-9, 1 - 1e-9)
            codes = (cos / self.temperature - torch.log(-torch.log(uniform))).argmax(-1)  # Gumbel-max sampling
        else:
            codes = cos.argmax(-1)
        q = self.codebook[codes]  # [N, K, c]
        commit = F.mse_loss(u, q.detach()) + F.mse_loss(q, u.detach())
        q_st = u + (q - u).detach()
        if mix < 1.0:  # warm-up: a random share of tokens stays continuous
            quantize = torch.rand(u.shape[:2], generator=generator) < mix
            q_st = torch.where(quantize.unsqueeze(-1), q_st, u)
        return q_st, codes, commit


class Tokenizer(nn.Module):
    """The built-in FrozenTokenizer. Training-time ``forward`` returns reconstructions and losses;
    ``encode`` / ``decode`` / ``prior_correct`` are the frozen, no-grad protocol."""

    def __init__(self, config: TokenizerConfig):
        super().__init__()
        self.config = config
        c = config
        P, E, K, D = c.num_patches, c.patch_dim, c.num_latents, c.width
        self.num_latents, self.latent_dim, self.codebook_size = K, D, c.codebook_size
        self.clip_shape = (c.channels, c.frames, c.size, c.size)

        self.patch_embed = nn.Linear(E, D)
        self.patch_pos = nn.Parameter(torch.randn(P, D) * 0.02)
        self.latent_queries = nn.Parameter(torch.randn(K, D) * 0.02)
        self.encoder = nn.ModuleList(Block(D, c.heads) for _ in range(c.encoder_layers))
        self.enc_norm = nn.LayerNorm(D)
        self.pre_quant = nn.Linear(D, c.code_dim)
        self.vq = CosineVQ(c.codebook_size, c.code_dim, c.vq_temperature)
        self.post_quant = nn.Linear(c.code_dim, D)

        self.mask_queries = nn.Parameter(torch.randn(P, D) * 0.02)
        self.latent_pos = nn.Parameter(torch.randn(K, D) * 0.02)
        self.decoder = nn.ModuleList(Block(D, c.heads) for _ in range(c.decoder_layers))
        self.dec_norm = nn.LayerNorm(D)
        self.to_patch = nn.Linear(D, E)

        r = c.skip_rank
        # Patch-PCA basis (fitted in closed form before training; buffers, not trained) and the linear
        # skip maps: patch coefficients -> every token's code vector, every kept code -> patch coefficients.
        self.register_buffer("patch_mean", torch.zeros(E))
        self.register_buffer("patch_basis", torch.zeros(max(r, 1), E))
        self.skip_in = nn.Linear(P * r, K * c.code_dim) if r else None
        self.skip_read = nn.Linear(D, c.code_dim) if r else None
        self.skip_out = nn.Parameter(torch.zeros(K, c.code_dim, P * r)) if r else None
        if r:
            nn.init.normal_(self.skip_in.weight, std=(P * r) ** -0.5)
            nn.init.zeros_(self.skip_in.bias)

        self.prior = ARPrior(c.codebook_size, D, K, c.prior_width, c.prior_layers, c.heads)
        self.head = TaildropHead(c.head_config())
        self._fingerprint: str | None = None

    # ---- shapes -------------------------------------------------------------------------------------
    def patchify(self, clips: Tensor) -> Tensor:
        pt, ph, pw = self.config.patch
        return rearrange(clips, "n c (t pt) (h ph) (w pw) -> n (t h w) (c pt ph pw)", pt=pt, ph=ph, pw=pw)

    def unpatchify(self, patches: Tensor) -> Tensor:
        pt, ph, pw = self.config.patch
        t, h, w = self.config.grid
        return rearrange(
            patches, "n (t h w) (c pt ph pw) -> n c (t pt) (h ph) (w pw)", t=t, h=h, w=w, pt=pt, ph=ph, pw=pw
        )

    def check_clips(self, clips: Tensor) -> None:
        """One clear ValueError for clips this tokenizer cannot encode (layout, dtype, value range); see
        :func:`~vaportok_rl.tokenizer.protocol.check_clips`."""
        check_clip_batch(clips, self.clip_shape, dtype=self.patch_embed.weight.dtype)

    # ---- encoder --------------------------------------------------------------------------------------
    def encode_continuous(self, clips: Tensor) -> Tensor:
        """clips [N, C, T, H, W] float in [0, 1] -> pre-quantisation code vectors u [N, K, code_dim].

        Checked here (not only in ``encode``): pretraining calls this directly, and 0..255 or integer clips
        would otherwise train or encode garbage without an error."""
        self.check_clips(clips)
        patches = self.patchify(clips)  # [N, P, E]
        N, P = patches.shape[:2]
        x = torch.cat([self.patch_embed(patches) + self.patch_pos, self.latent_queries.expand(N, -1, -1)], 1)
        for block in self.encoder:
            x = block(x)
        u = self.pre_quant(self.enc_norm(x[:, P:]))  # [N, K, c]
        if self.skip_in is not None:
            coef = (patches - self.patch_mean) @ self.patch_basis.T  # [N, P, r]
            u = u + rearrange(self.skip_in(coef.flatten(1)), "n (k c) -> n k c", k=self.num_latents)
        return u

    # ---- decoder --------------------------------------------------------------------------------------
    def decode_train(self, latents: Tensor, keep: Tensor) -> Tensor:
        """Differentiable decode: latents [N, K, D], keep [N] -> clips [N, C, T, H, W]."""
        N, K, _ = latents.shape
        P = self.config.num_patches
        kept = keep_mask(keep, K)  # [N, K]
        # Every position sees all mask queries and the kept latents; dropped latents are never keys.
        keys = torch.cat([kept.new_ones(N, P), kept], 1)  # [N, P + K]
        attn_mask = keys[:, None, None, :]  # [N, 1, 1, P + K]
        x = torch.cat([self.mask_queries.expand(N, -1, -1), latents + self.latent_pos], 1)
        x = x * torch.cat([kept.new_ones(N, P), kept], 1).unsqueeze(-1)  # dropped rows carry nothing either
        for block in self.decoder:
            x = block(x, attn_mask)
        patches = self.to_patch(self.dec_norm(x[:, :P])) + self.patch_mean  # [N, P, E]
        if self.skip_out is not None:
            q = self.skip_read(latents) * kept.unsqueeze(-1)  # [N, K, c]
            coef = torch.einsum("nkc,kcf->nf", q, self.skip_out)  # [N, P*r]
            patches = patches + rearrange(coef, "n (p r) -> n p r", p=P) @ self.patch_basis
        return self.unpatchify(patches)

    # ---- the FrozenTokenizer protocol -----------------------------------------------------------------
    @torch.no_grad()
    def encode(self, clips: Tensor) -> Encoded:
        u = self.encode_continuous(clips)  # checks clips
        q, codes, _ = self.vq(u, sample=False)
        return Encoded(latents=self.post_quant(q), codes=codes)

    @torch.no_grad()
    def decode(self, latents: Tensor, keep: Tensor) -> Tensor:
        return self.decode_train(latents, keep)

    @torch.no_grad()
    def prior_correct(self, encoded: Encoded, topk: int = 5) -> Tensor:
        logits = self.prior(encoded.latents)  # [N, K, V]
        top = logits.topk(topk, dim=-1).indices  # [N, K, topk]
        return (top == encoded.codes.unsqueeze(-1)).any(-1)

    @property
    def fingerprint(self) -> str:
        """SHA-256 over the frozen weights (the taildrop head excluded: it is what GRPO tunes), computed once.
        An exported head records it, so loading a head onto another tokenizer is caught."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for name, tensor in sorted(self.state_dict().items()):
                if name.startswith("head."):
                    continue
                h.update(name.encode())
                h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint
