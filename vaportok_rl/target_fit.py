"""One step of enumerated groups (``grpo.groups: enumerated``): the pool's closed-form targets, and the loss of a
minibatch of them.

    pool ──reward_tables (cached)──► tables {label: [N, K]} ──Σ_i w_i·──► utility u [N, K]
      ──group_target at the run's price and each knob price──► targets [M, N, K], tilts [M]
      step s: minibatch of pool videos (a fresh seeded permutation per pass) ──target_loss──► loss

The minibatch of step s depends on (seed, s) alone, so a resumed run continues bit for bit. Axis letters: M knob
prices (the run's own first), N pool clips, K tokens, D latent width, L clips per video.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from vaportok_rl.config import ConfigError
from vaportok_rl.data import SOURCES, VideoFolder, load_videos
from vaportok_rl.enumerated import (
    TableCache,
    default_cache_dir,
    keep_grid,
    path_level_rewards,
    reward_price,
    reward_tables,
)
from vaportok_rl.grpo import group_target, target_loss
from vaportok_rl.heldout import tokenizer_device
from vaportok_rl.policy import TaildropPolicy, head_logits
from vaportok_rl.reward_api import describe
from vaportok_rl.rollout import derive_seed
from vaportok_rl.tokenizer.protocol import FrozenTokenizer
from vaportok_rl.train_config import TrainConfig

__all__ = ["TargetFit", "build_target_fit", "normalize_rows", "price_targets"]


@dataclass
class TargetFit:
    """The pool and its targets; :meth:`loss` is one enumerated-groups step."""

    latents: Tensor  # [N, K, D]
    utility: Tensor  # [N, K] u(k) = Σ_i w_i r_i(k) at the run's own price
    targets: Tensor  # [M, N, K] the closed-form target at each price
    tilts: Tensor  # [M] (p - price) / τ, logit units per token; 0 first
    clips_per_video: int  # L
    videos_per_step: int  # pool videos per minibatch
    seed: int
    decodes: int  # decodes this run made for its tables (0 when every table came from the cache)
    path_rewards: list[str] = field(default_factory=list)  # rewards scoring whole paths: not in the targets

    def batch(self, step: int) -> Tensor:
        """The clip rows [b·L] of step s (b = videos_per_step): pass e = ⌊s / ⌊pool / b⌋⌋ over the pool's videos is a
        permutation of them seeded by (seed, "fit", e) alone; a minibatch never straddles two passes."""
        pool, b, L = self.latents.shape[0] // self.clips_per_video, self.videos_per_step, self.clips_per_video
        per_pass = max(1, pool // b)
        epoch, at = divmod(step, per_pass)
        order = torch.randperm(pool, generator=torch.Generator().manual_seed(derive_seed(self.seed, "fit", epoch)))
        videos = order[at * b : at * b + b]  # [b]
        return (videos[:, None] * L + torch.arange(L)).flatten()  # [b·L], rows video·L + l

    def loss(self, policy: TaildropPolicy, step: int) -> tuple[Tensor, dict[str, float]]:
        """Cross-entropy of the head to the minibatch's targets at every price, and what to log."""
        rows = self.batch(step)
        device = next(policy.parameters()).device
        logits = policy.logits(self.latents[rows].to(device))  # [b, K]
        loss = target_loss(logits, self.targets[:, rows].to(device), self.tilts.to(device))
        with torch.no_grad():
            u = self.utility[rows].to(device)  # [b, K]
            target = self.targets[0, rows].to(device)  # [b, K]
            keep = logits.argmax(-1)  # [b], k - 1
            log_pi = torch.log_softmax(logits, -1)
            metrics = {
                "loss": loss.item(),
                "kl_to_target": (target * (target.clamp_min(1e-30).log() - log_pi)).sum(-1).mean().item(),
                "reward": u.gather(1, keep[:, None]).mean().item(),
                "oracle_reward": u.max(-1).values.mean().item(),
                "tokens/mean": (keep + 1).float().mean().item(),
                "oracle_tokens/mean": (u.argmax(-1) + 1).float().mean().item(),
                "entropy": -(log_pi.exp() * log_pi).sum(-1).mean().item(),
            }
        return loss, metrics


def price_targets(
    utility: Tensor,
    price: float,
    knob_prices: Sequence[float],
    temperature: float,
    ref_logits: Tensor | None = None,
    beta: float = 0.0,  # not GRPOConfig.beta (0.1): as grpo.group_target, beta > 0 needs ref_logits (default None)
) -> tuple[Tensor, Tensor]:
    """(targets [M, N, K], tilts [M]) of utility [N, K] (at the run's own ``price``) at that price first and at each
    knob price p: the closed-form target of u(k) - (p - price)·k, its reference tilted alike, and the tilt
    (p - price) / τ that the price knob puts on the head's logits to reach it."""
    K = utility.shape[-1]
    k = torch.arange(1, K + 1, dtype=torch.float64)
    targets, tilts = [], []
    for p in [price, *(p for p in knob_prices if p != price)]:
        tilt = (p - price) / temperature  # logit units per token
        ref = None if ref_logits is None else ref_logits.double() - tilt * k
        targets.append(group_target(utility.double() - (p - price) * k, temperature, ref, beta).float())
        tilts.append(tilt)
    return torch.stack(targets), torch.tensor(tilts, dtype=torch.float32)


def build_target_fit(
    config: TrainConfig,
    tokenizer: FrozenTokenizer,
    rewards: Mapping[str, Any],
    ref_policy: TaildropPolicy,
    *,
    rank: int = 0,
    world: int = 1,
    gather: Callable[[list], list] | None = None,
    progress: Callable[[int], None] | None = None,
) -> TargetFit:
    """Score the pool (from the cache where it can), weigh the rewards, and form the targets of every price."""
    c, g, d = config, config.grpo, config.data
    C, T, H, W = tokenizer.clip_shape
    L, K = c.rollout.clips_per_video, tokenizer.num_latents
    seed = c.seed if d.seed is None else d.seed
    try:
        pool, described = _pool(d.source, d.videos, L, seed=seed, frames=T, size=H, split=d.split)  # [B, L, C, T, H, W]
    except (OSError, ValueError) as error:
        raise ConfigError(f"data (the enumerated pool of data.videos={d.videos}): {error}") from None
    grid = keep_grid(K, g.grid_points)
    device = tokenizer_device(tokenizer)
    path = path_level_rewards(tokenizer, pool[:1].to(device), rewards, c.rollout.decode_chunk, c.rollout.encode_chunk)
    _check_path_rewards(path, rewards, g.path_phase.steps)
    rewards = {label: plugin for label, plugin in rewards.items() if label not in path}  # the per-clip ones
    specs = {label: (c.active_rewards()[label].spec or label, c.active_rewards()[label].kwargs) for label in rewards}
    per_chunk = max(1, 512 // (len(grid) * L))  # ~512 reconstructions held at once
    latents, tables, decodes = reward_tables(
        tokenizer,
        lambda start, stop: pool[start:stop].to(device),
        len(pool),
        rewards,
        specs,
        grid,
        pool={**described, "clips_per_video": L},
        cache=TableCache(c.table_cache or default_cache_dir()),
        videos_per_chunk=per_chunk,
        decode_chunk=c.rollout.decode_chunk,
        encode_chunk=c.rollout.encode_chunk,
        rank=rank,
        world=world,
        gather=gather,
        progress=progress,
        interpolation=g.grid_interpolation,
    )
    weights = {label: spec.weight for label, spec in c.active_rewards().items()}
    if g.table_normalization == "clip":  # every reward in std units over its clip's K keep counts; no price
        tables = {label: normalize_rows(table) for label, table in tables.items()}
    utility = sum(weights[label] * tables[label] for label in tables)  # [N, K] float64 (the per-clip rewards)
    price = sum(weights[label] * reward_price(plugin) for label, plugin in rewards.items())
    price = price if g.table_normalization == "none" else 0.0
    ref_logits = None
    if g.beta > 0:
        device = next(ref_policy.parameters()).device
        ref_logits = head_logits(ref_policy.head, latents.to(device)).double().cpu()  # [N, K]
    targets, tilts = price_targets(utility, price, g.knob_prices, g.target_temperature, ref_logits, g.beta)
    return TargetFit(
        latents=latents,
        utility=utility.float(),
        targets=targets,
        tilts=tilts,
        path_rewards=path,
        clips_per_video=L,
        videos_per_step=min(c.rollout.videos_per_step, len(pool)),
        seed=c.seed,
        decodes=decodes,
    )


def normalize_rows(table: Tensor) -> Tensor:
    """[N, K] -> each row centred and divided by its std over k (population std; a constant row becomes 0)."""
    centred = table - table.mean(-1, keepdim=True)
    std = centred.pow(2).mean(-1, keepdim=True).sqrt()
    return torch.where(std > 0, centred / std.clamp_min(1e-30), torch.zeros_like(centred))


def _check_path_rewards(path: list[str], rewards: Mapping[str, Any], path_steps: int) -> None:
    """Rewards that score whole paths ([B, G]) are tuned by the sampled phase (grpo.path_phase) or refused, named;
    the fit needs at least one per-clip reward."""
    if not path:
        return
    named = ", ".join(f"{label!r} ({describe(rewards[label])})" for label in path)
    if not path_steps:
        raise ConfigError(
            f"reward {named} returns one value per path [B, G]; enumerated groups (grpo.groups: enumerated) score each "
            f"clip's keep counts and need per-clip rewards [B, G, L]: set grpo.path_phase.steps > 0 to tune it by "
            f"sampled GRPO after the fit, or use grpo.groups: sampled for this reward"
        )
    if len(path) == len(rewards):
        raise ConfigError(
            f"rewards: every reward ({named}) scores whole paths [B, G], so enumerated groups have nothing to fit; "
            f"add a per-clip reward [B, G, L] (e.g. psnr with token_cost) or use grpo.groups: sampled"
        )


def _pool(source: str, videos: int, L: int, *, seed: int, frames: int, size: int, split: str) -> tuple[Tensor, dict]:
    """The pool's videos [B, L, C, T, H, W] and what names them in the cache key. A folder gives every whole L·T-frame
    window of every file (at most ``videos``), named by its files' paths, sizes and modification times."""
    if source in SOURCES:
        pool = load_videos(source, videos, L, seed=seed, frames=frames, size=size, split=split)
        return pool, {"source": source, "split": split, "seed": seed, "videos": videos}
    folder = VideoFolder(source, clips_per_video=L, frames=frames, size=size)
    stats = [(str(p.relative_to(folder.root)), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.files]
    digest = hashlib.sha256(json.dumps(stats).encode()).hexdigest()
    pool = folder.segments(videos)
    return pool, {"folder": str(folder.root.resolve()), "files": digest, "videos": len(pool), "frames": frames}
