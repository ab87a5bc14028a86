"""The group rollout: everything the rewards and the GRPO loss need from one batch of videos.

    videos [B, L, C, T, H, W] ──encode (once, no grad)──► Encoded, N = B·L clips, row n = b·L + l
                              ──policy (head once per clip)──► keep [B, G, L]
                              ──one batched decode of all B·G·L truncations──► reconstructions
                              ──one causal prior pass per clip──► prior_correct [B, L, K]

Work is only done for what the rewards ask for (``needs``): a run with efficiency and penalty alone never
touches the decoder. Axis letters: docs/design.md.

Randomness: ``collect_rollout`` takes either one generator for all B·L clips, or one generator per video
(:func:`video_generators`), so that a video's G paths depend on that video's seed alone, never on the videos
before it in the batch or on how the batch is split over processes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from einops import rearrange, repeat
from torch import Tensor

from vaportok_rl.complexity import complexity
from vaportok_rl.policy import TaildropPolicy, check_mode
from vaportok_rl.tokenizer.protocol import Encoded, FrozenTokenizer, check_clips
from vaportok_rl.train_config import RolloutConfig  # the chunk defaults are the recipe's

NEEDS = frozenset({"reconstructions", "prior_correct"})


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed that depends on ``parts`` only (e.g. (seed, "sample", step, video index))."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def video_generators(seed: int, kind: str, step: int, indices: range, device: torch.device) -> list[torch.Generator]:
    """One generator per video i in ``indices``, seeded by (seed, kind, step, i) alone: pass them to
    :func:`collect_rollout` as ``generator``."""
    return [torch.Generator(device=device).manual_seed(derive_seed(seed, kind, step, i)) for i in indices]


@dataclass(kw_only=True)
class Rollout:
    """One batch of B videos × G sampled paths × L clip decisions. Rewards read it; nothing mutates it."""

    videos: Tensor  # [B, L, C, T, H, W] in [0, 1]
    encoded: Encoded  # N = B·L clips, row n = b·L + l
    keep: Tensor  # [B, G, L] long in 1..K
    reconstructions: Tensor | None  # [B, G, L, C, T, H, W], None unless a reward needs them
    prior_correct: Tensor | None  # [B, L, K] bool, None unless a reward needs it
    sc: Tensor  # [B, L] spatial complexity
    tc: Tensor  # [B, L] temporal complexity
    old_logp: Tensor  # [B, G, L] log-probs under the sampling policy (no grad)
    ref_logp: Tensor  # [B, G, L] log-probs under the frozen reference (no grad)
    num_latents: int  # K
    mode: str = "sample"  # the mode that drew keep (its log-probs use it); the full support: needs no max_keep
    max_keep: Tensor | None = None  # [B, L] the support cut k* used by mode "pre_argmax", else None
    logits: Tensor | None = None  # [N, K] the sampling head's logits (no grad): its entropy without another pass
    ref_logits: Tensor | None = None  # [N, K] the reference head's logits (no grad): the knob KL's anchor

    def __post_init__(self) -> None:
        if self.videos.ndim != 6:
            raise ValueError(f"Rollout.videos: expected [B, L, C, T, H, W], got shape {tuple(self.videos.shape)}")
        if self.keep.ndim != 3:
            raise ValueError(f"Rollout.keep: expected [B, G, L], got shape {tuple(self.keep.shape)}")
        B, G, L = self.keep.shape
        K = self.num_latents
        expected = {
            "videos": (self.videos.shape[:2], (B, L), "[B, L, ...]"),
            "sc": (self.sc.shape, (B, L), "[B, L]"),
            "tc": (self.tc.shape, (B, L), "[B, L]"),
            "old_logp": (self.old_logp.shape, (B, G, L), "[B, G, L]"),
            "ref_logp": (self.ref_logp.shape, (B, G, L), "[B, G, L]"),
            "encoded.latents": (self.encoded.latents.shape[:2], (B * L, K), "[B·L, K, D]"),
        }
        if self.reconstructions is not None:
            expected["reconstructions"] = (self.reconstructions.shape[:3], (B, G, L), "[B, G, L, C, T, H, W]")
        if self.prior_correct is not None:
            expected["prior_correct"] = (self.prior_correct.shape, (B, L, K), "[B, L, K]")
        if self.max_keep is not None:
            expected["max_keep"] = (self.max_keep.shape, (B, L), "[B, L]")
        for name, (got, want, what) in expected.items():
            if tuple(got) != want:
                raise ValueError(f"Rollout.{name}: expected {what} = {want} (from keep [B, G, L]), got {tuple(got)}")
        if self.keep.dtype != torch.long or self.keep.min() < 1 or self.keep.max() > K:
            raise ValueError(
                f"Rollout.keep: expected long values in 1..{K}, got {self.keep.dtype} in "
                f"{int(self.keep.min())}..{int(self.keep.max())}"
            )
        check_mode(self.mode)

    @property
    def B(self) -> int:
        return self.keep.shape[0]

    @property
    def G(self) -> int:
        return self.keep.shape[1]

    @property
    def L(self) -> int:
        return self.keep.shape[2]


def _check_chunk(name: str, chunk: int) -> None:
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"{name}: expected a positive integer (clips per call), got {chunk!r}")


def encode_videos(tokenizer: FrozenTokenizer, videos: Tensor, chunk: int = RolloutConfig.encode_chunk) -> Encoded:
    """videos [B, L, C, T, H, W] float in [0, 1] -> Encoded of the N = B·L clips (row n = b·L + l), ``chunk``
    clips per call. The videos are checked here (layout, dtype, range), so a bring-your-own tokenizer that
    checks nothing still rejects 0..255 or integer pixels with one clear error."""
    _check_chunk("chunk", chunk)
    check_clips(videos, tokenizer.clip_shape, name="videos", lead="B, L")
    clips = rearrange(videos, "b l c t h w -> (b l) c t h w")  # [N, C, T, H, W]
    with torch.no_grad():
        parts = [tokenizer.encode(clips[i : i + chunk]) for i in range(0, len(clips), chunk)]
    return Encoded(latents=torch.cat([p.latents for p in parts]), codes=torch.cat([p.codes for p in parts]))


def decode_paths(
    tokenizer: FrozenTokenizer, encoded: Encoded, keep: Tensor, chunk: int = RolloutConfig.decode_chunk
) -> Tensor:
    """Decode every truncation of every path: keep [B, G, L] -> reconstructions [B, G, L, C, T, H, W].

    A (clip, k) pair that several paths share is decoded once (a sharp policy draws the same k often); the
    distinct pairs share batched decoder passes (the tokenizer masks each sample's tail) of at most ``chunk``
    clips, and the latents are gathered per call, never repeated all at once."""
    _check_chunk("chunk", chunk)
    B, G, L = keep.shape
    K = encoded.latents.shape[1]
    if len(encoded) != B * L:
        raise ValueError(f"encoded: expected B·L = {B}·{L} = {B * L} clips (from keep [B, G, L]), got {len(encoded)}")
    clip_of_path = repeat(torch.arange(B * L, device=keep.device), "(b l) -> (b g l)", b=B, g=G)  # [B·G·L]
    keep_flat = rearrange(keep, "b g l -> (b g l)")  # [B·G·L]
    pairs, inverse = torch.unique(clip_of_path * (K + 1) + keep_flat, return_inverse=True)  # [U], [B·G·L]
    clip_u, keep_u = pairs // (K + 1), pairs % (K + 1)  # [U] each
    with torch.no_grad():
        parts = [
            tokenizer.decode(encoded.latents[clip_u[i : i + chunk]], keep_u[i : i + chunk])
            for i in range(0, len(pairs), chunk)
        ]
    return rearrange(torch.cat(parts)[inverse], "(b g l) c t h w -> b g l c t h w", b=B, g=G)


def group_log_prob(
    policy: TaildropPolicy,
    latents: Tensor | None,
    keep: Tensor,
    mode: str = "sample",  # the full support (not RolloutConfig.mode: "pre_argmax" would need max_keep)
    max_keep: Tensor | None = None,
    *,
    logits: Tensor | None = None,
) -> Tensor:
    """log P(keep) for every decision: latents [B·L, K, D], keep [B, G, L], max_keep [B, L] -> [B, G, L].

    The head runs once per clip, not once per sample (not at all when its ``logits`` [B·L, K] are given); grad
    flows if the policy has any."""
    B, G, L = keep.shape
    keep_gn = rearrange(keep, "b g l -> g (b l)")  # [G, N], sample dim first, batch shape [N]
    max_keep_n = None if max_keep is None else rearrange(max_keep, "b l -> (b l)")  # [N]
    logp = policy.log_prob(latents, keep_gn, mode, max_keep_n, logits=logits)  # [G, N]
    return rearrange(logp, "g (b l) -> b g l", b=B)


def rollout_log_prob(policy: TaildropPolicy, rollout: Rollout) -> Tensor:
    """[B, G, L] log-probs of the rollout's decisions under ``policy``, on the support they were drawn from.

    The trainer's current log-probs come from here, so they match ``old_logp`` / ``ref_logp`` exactly."""
    return group_log_prob(policy, rollout.encoded.latents, rollout.keep, rollout.mode, rollout.max_keep)


def collect_rollout(
    tokenizer: FrozenTokenizer,
    policy: TaildropPolicy,
    ref_policy: TaildropPolicy,
    videos: Tensor,
    *,
    group_size: int,
    mode: str,
    needs: set[str] | frozenset[str],
    generator: torch.Generator | Sequence[torch.Generator] | None,
    decode_chunk: int = RolloutConfig.decode_chunk,
    encode_chunk: int = RolloutConfig.encode_chunk,
    encoded: Encoded | None = None,
) -> Rollout:
    """Sample ``group_size`` paths per video and gather what the rewards ``needs``.

    videos [B, L, C, T, H, W]; ``encoded`` (N = B·L, row n = b·L + l) skips the encoder when given.
    ``generator`` is the only source of randomness and must live on the latents' device: one generator for all
    clips, or a sequence of B generators, video b's L clips (rows b·L .. b·L + L - 1) drawing from the b-th.
    """
    check_mode(mode)
    unknown = set(needs) - NEEDS
    if unknown:
        raise ValueError(f"needs: unknown entries {sorted(unknown)}; expected a subset of {sorted(NEEDS)}")
    if not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size: expected a positive integer, got {group_size!r}")
    if videos.ndim != 6:
        raise ValueError(f"videos: expected [B, L, C, T, H, W], got shape {tuple(videos.shape)}")
    B, L = videos.shape[:2]
    G, K = group_size, tokenizer.num_latents
    if encoded is None:
        encoded = encode_videos(tokenizer, videos, encode_chunk)
    elif len(encoded) != B * L:
        raise ValueError(f"encoded: expected B·L = {B}·{L} = {B * L} clips, got {len(encoded)}")
    latents = encoded.latents  # [N, K, D]

    # ---- one pass of each head serves the whole rollout: sampling, old and reference log-probs
    with torch.no_grad():
        logits, ref_logits = policy.logits(latents), ref_policy.logits(latents)  # [N, K] each
    # ---- sample G paths per video; pre_argmax fixes its support cut now so every later log-prob shares it
    max_keep_n = logits.argmax(-1) + 1 if mode == "pre_argmax" else None  # [N]
    keep_gn = _sample_paths(policy, logits, mode, generator, G, L, max_keep_n)  # [G, N]
    keep = rearrange(keep_gn, "g (b l) -> b g l", b=B)  # [B, G, L]
    max_keep = None if max_keep_n is None else rearrange(max_keep_n, "(b l) -> b l", b=B)  # [B, L]

    with torch.no_grad():
        old_logp = group_log_prob(policy, None, keep, mode, max_keep, logits=logits)  # [B, G, L]
        ref_logp = group_log_prob(ref_policy, None, keep, mode, max_keep, logits=ref_logits)  # [B, G, L]
        sc, tc = complexity(videos)  # [B, L] each

    reconstructions = decode_paths(tokenizer, encoded, keep, decode_chunk) if "reconstructions" in needs else None

    prior_correct = _prior_correct(tokenizer, encoded, B, encode_chunk) if "prior_correct" in needs else None

    return Rollout(
        videos=videos,
        encoded=encoded,
        keep=keep,
        reconstructions=reconstructions,
        prior_correct=prior_correct,
        sc=sc,
        tc=tc,
        old_logp=old_logp,
        ref_logp=ref_logp,
        num_latents=K,
        mode=mode,
        max_keep=max_keep,
        logits=logits,
        ref_logits=ref_logits,
    )


def _sample_paths(
    policy: TaildropPolicy,
    logits: Tensor,
    mode: str,
    generator: torch.Generator | Sequence[torch.Generator] | None,
    G: int,
    L: int,
    max_keep: Tensor | None,
) -> Tensor:
    """keep [G, N] drawn from the head's ``logits`` [N, K]: from one generator, or video b's L clips (rows
    b·L .. b·L + L - 1) from the b-th of a sequence of B generators."""
    if not isinstance(generator, Sequence):
        return policy.sample(None, mode, generator, num_samples=G, max_keep=max_keep, logits=logits)
    B = len(logits) // L
    if len(generator) != B:
        raise ValueError(f"generator: expected one generator per video (B = {B}), got {len(generator)}")
    rows = [slice(b * L, (b + 1) * L) for b in range(B)]
    return torch.cat(
        [
            policy.sample(
                None, mode, g, num_samples=G, max_keep=None if max_keep is None else max_keep[r], logits=logits[r]
            )
            for r, g in zip(rows, generator, strict=True)
        ],
        dim=-1,
    )


def _prior_correct(tokenizer: FrozenTokenizer, encoded: Encoded, B: int, chunk: int) -> Tensor:
    """[B, L, K] bool: the AR prior's top-k hits. The prior is causal: one pass per clip scores every keep count
    at once (protocol.prior_accuracy)."""
    with torch.no_grad():
        parts = [tokenizer.prior_correct(encoded.index(slice(i, i + chunk))) for i in range(0, len(encoded), chunk)]
    return rearrange(torch.cat(parts), "(b l) k -> b l k", b=B)  # [B, L, K]
