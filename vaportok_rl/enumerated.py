"""Enumerated groups: every candidate keep count of a clip scored once, by the recipe's own reward plugins.

Sampling k is the expensive way to learn a reward that decomposes over clips: a clip's G sampled counts say
little about the other K - G. Here the G paths of a video are a *grid* of keep counts instead (path g keeps
grid[g] tokens on every clip), decoded in the same batched pass as a sampled rollout and scored by the plugins
unchanged, through the same :class:`~vaportok_rl.rollout.Rollout`::

    pool videos [B, L, C, T, H, W] ──encode──► latents [N, K, D]                      (N = B·L, row n = b·L + l)
      ──Rollout with keep[b, g, l] = grid[g]──► each reward [B, Q, L] ──interpolate in log k──► table [N, K]

A reward that needs no decode (``token_cost``) or only the prior (one causal pass covers every k) is scored at
every k exactly; only rewards that read reconstructions are scored on the log-spaced grid and interpolated in
log k between its points (exact at the points). The per-reward tables are cached on disk under a key made of
everything they depend on (tokenizer fingerprint, pool, grid, plugin spec, kwargs and source file), so a rerun,
a new price or new weights on the same rewards decode nothing. The head is then fitted to the closed-form
target of :func:`vaportok_rl.grpo.group_target`.

Axis letters (docs/design.md): B pool videos, L clips per video, N = B·L clips, Q grid points (the group: G = Q),
K tokens, D latent width.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange, repeat
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from vaportok_rl.checkpoint import atomic_write_file
from vaportok_rl.complexity import complexity
from vaportok_rl.rewards import RewardError, call_reward, describe
from vaportok_rl.rollout import Rollout, decode_paths, encode_videos
from vaportok_rl.tokenizer.protocol import Encoded, FrozenTokenizer
from vaportok_rl.train_config import GRPOConfig, RolloutConfig  # the defaults are the recipe's

__all__ = [
    "INTERPOLATIONS",
    "TableCache",
    "decodes",
    "default_cache_dir",
    "interpolate_log_k",
    "keep_grid",
    "path_level_rewards",
    "reward_key",
    "reward_price",
    "reward_tables",
    "scored_grid",
]

CACHE_ENV = "VAPORTOK_RL_CACHE"
"""Environment variable naming the table cache folder (default ``~/.cache/vaportok-rl/tables``)."""


def default_cache_dir() -> Path:
    """``$VAPORTOK_RL_CACHE`` if set, else ``~/.cache/vaportok-rl/tables``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "vaportok-rl" / "tables").expanduser()


# ================================================================================================ the grid


def keep_grid(K: int, points: int) -> Tensor:
    """Q distinct keep counts, log-spaced over 1..K and holding both ends; ``points`` 0 (or >= K): every k.

    Rounding a geometric sequence repeats small counts, so each point is pushed up past its predecessor and then,
    from the top, down below its successor: the result is strictly increasing, starts at 1, ends at K."""
    if isinstance(points, bool) or not isinstance(points, int) or points < 0 or points == 1:
        raise ValueError(f"grid points: expected 0 (every k) or an integer >= 2, got {points!r}")
    if points == 0 or points >= K:
        return torch.arange(1, K + 1)
    grid = np.rint(np.geomspace(1, K, points)).astype(np.int64)
    for i in range(1, points):
        grid[i] = max(grid[i], grid[i - 1] + 1)
    grid[-1] = K
    for i in range(points - 2, -1, -1):
        grid[i] = min(grid[i], grid[i + 1] - 1)
    return torch.from_numpy(grid)


INTERPOLATIONS = ("log_k", "step")
"""How a reward scored on the grid is read between grid points: "log_k" linear in log k; "step" the value at the
grid point at or below k (a quality that never falls with k is then under-, never over-estimated)."""


def interpolate_log_k(values: Tensor, grid: Tensor, K: int, how: str = GRPOConfig.grid_interpolation) -> Tensor:
    """values [..., Q] at keep counts ``grid`` [Q] (increasing, 1 and K included) -> [..., K] at every k, linear in
    log k between neighbouring grid points (``how="step"``: the value at the grid point at or below k); exact at the
    grid points."""
    grid = torch.as_tensor(grid, dtype=torch.long)
    if values.shape[-1] != len(grid) or int(grid[0]) != 1 or int(grid[-1]) != K or bool((grid.diff() <= 0).any()):
        raise ValueError(f"grid: expected increasing keep counts from 1 to K={K} matching values [..., Q], got {grid}")
    if how not in INTERPOLATIONS:
        raise ValueError(f"interpolation: expected one of {INTERPOLATIONS}, got {how!r}")
    if len(grid) == K:
        return values
    if how == "step":
        below = torch.searchsorted(grid, torch.arange(1, K + 1), right=True) - 1  # [K], the grid point at or below k
        return values[..., below]
    log_k = torch.arange(1, K + 1, dtype=torch.float64).log()  # [K]
    log_g = grid.double().log()  # [Q]
    right = torch.searchsorted(log_g, log_k, right=False).clamp(1, len(grid) - 1)  # [K], the point at or above
    left = right - 1
    w = ((log_k - log_g[left]) / (log_g[right] - log_g[left])).to(values.dtype)  # [K] in [0, 1]
    return values[..., left] * (1 - w) + values[..., right] * w  # [..., K]


# ================================================================================================ prices and keys


def decodes(plugin: Any) -> bool:
    """Whether the plugin reads reconstructions (then each k it scores costs a decode)."""
    return "reconstructions" in getattr(plugin, "needs", ())


def scored_grid(plugin: Any, grid: Tensor, K: int) -> Tensor:
    """The keep counts a plugin is scored at: the grid if it reads reconstructions, else every k (it costs no
    decode, so its table is exact)."""
    return torch.as_tensor(grid, dtype=torch.long) if decodes(plugin) else torch.arange(1, K + 1)


def reward_price(plugin: Any) -> float:
    """The reward units the plugin charges per kept token (its ``price_per_token``, 0 if it declares none):
    ``token_cost`` returns -k and charges 1; a plugin that folds a price into its value declares it, so the
    quality it measures is value + price·k."""
    price = getattr(plugin, "price_per_token", 0.0)
    if isinstance(price, bool) or not isinstance(price, int | float) or not math.isfinite(price):
        raise RewardError(f"{describe(plugin)}: price_per_token must be a finite number, got {price!r}")
    return float(price)


def _file_digest(obj: Any) -> str:
    try:
        return hashlib.sha256(Path(inspect.getfile(type(obj))).read_bytes()).hexdigest()
    except (TypeError, OSError):
        return ""


def reward_key(plugin: Any, spec: str, kwargs: Mapping, *, tokenizer: str, pool: Mapping, grid: Sequence[int]) -> str:
    """The cache key of one reward's table: everything its values depend on (not its label or weight)."""
    cls = type(plugin)
    return json.dumps(
        {
            "tokenizer": tokenizer,
            "pool": dict(pool),
            "grid": [int(k) for k in grid],
            "spec": spec,
            "kwargs": dict(kwargs),
            "class": f"{cls.__module__.split('_vaportok_reward_')[-1]}.{cls.__qualname__}",
            "source_sha256": _file_digest(plugin),
        },
        sort_keys=True,
        default=str,
    )


class TableCache:
    """Per-reward tables on disk, one safetensors file per key (its SHA-256), the full key in its metadata.

    A file whose metadata does not hold the same key, or that cannot be read, is never trusted: it is recomputed."""

    def __init__(self, folder: str | os.PathLike | None):
        self.folder = None if folder is None else Path(folder)

    def _path(self, key: str) -> Path | None:
        digest = hashlib.sha256(key.encode()).hexdigest()[:24]
        return None if self.folder is None else self.folder / f"table-{digest}.safetensors"

    def get(self, key: str) -> Tensor | None:
        path = self._path(key)
        if path is None or not path.is_file():
            return None
        try:
            with safe_open(str(path), "pt") as f:
                if (f.metadata() or {}).get("key") != key:
                    return None
                return f.get_tensor("values")
        except Exception:  # a truncated or foreign file: recompute
            return None

    def put(self, key: str, values: Tensor) -> None:
        path = self._path(key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_file(path, lambda tmp: save_file({"values": values.contiguous()}, str(tmp), metadata={"key": key}))


# ================================================================================================ scoring


def _grid_rollout(
    tokenizer: FrozenTokenizer,
    videos: Tensor,
    encoded: Encoded,
    keep_values: Tensor,
    prior_correct: Tensor | None,
    decode: bool,
    decode_chunk: int,
) -> Rollout:
    """A rollout whose path g keeps keep_values[g] tokens on every clip of every video: keep [B, Q, L]."""
    B, L = videos.shape[:2]
    keep = repeat(keep_values.to(videos.device), "q -> b q l", b=B, l=L).contiguous()  # [B, Q, L]
    sc, tc = complexity(videos)  # [B, L] each
    zeros = torch.zeros(keep.shape, device=videos.device)  # no policy drew these paths
    return Rollout(
        videos=videos,
        encoded=encoded,
        keep=keep,
        reconstructions=decode_paths(tokenizer, encoded, keep, decode_chunk) if decode else None,
        prior_correct=prior_correct,
        sc=sc,
        tc=tc,
        old_logp=zeros,
        ref_logp=zeros,
        num_latents=tokenizer.num_latents,
    )


def _score_per_clip(label: str, plugin: Any, rollout: Rollout) -> Tensor:
    """The plugin's [B, Q, L] values on a grid rollout, or a RewardError naming it."""
    value = call_reward(label, plugin, rollout)
    if value.ndim != 3:
        raise RewardError(
            f"reward {label!r} ({describe(plugin)}) returns one value per path [B, G]; enumerated groups "
            f"(grpo.groups: enumerated) score each clip's keep counts and need a per-clip reward [B, G, L]; "
            f"use grpo.groups: sampled for this reward"
        )
    return value.float().cpu()  # [B, Q, L]


@torch.no_grad()
def path_level_rewards(
    tokenizer: FrozenTokenizer, videos: Tensor, rewards: Mapping[str, Any], decode_chunk: int, encode_chunk: int
) -> list[str]:
    """The labels of the rewards that score whole paths ([B, G]), found by scoring ``videos`` [b, L, C, T, H, W] (one
    pool video is enough) at keep counts 1 and K: they cannot be tabulated per clip (grpo.path_phase tunes them)."""
    K = tokenizer.num_latents
    decode = any(decodes(plugin) for plugin in rewards.values())
    encoded, correct = _encode_with_prior(tokenizer, videos, rewards.values(), encode_chunk)
    rollout = _grid_rollout(tokenizer, videos, encoded, torch.tensor([1, K]), correct, decode, decode_chunk)
    return [label for label, plugin in rewards.items() if call_reward(label, plugin, rollout).ndim == 2]


@torch.no_grad()
def reward_tables(
    tokenizer: FrozenTokenizer,
    videos: Callable[[int, int], Tensor],
    num_videos: int,
    rewards: Mapping[str, Any],
    specs: Mapping[str, tuple[str, Mapping]],
    grid: Tensor,
    *,
    pool: Mapping,
    cache: TableCache,
    videos_per_chunk: int = 4,
    decode_chunk: int = 16,  # DistillRecipe's (CPU-sized; distill imports this module), not RolloutConfig's 256
    encode_chunk: int = RolloutConfig.encode_chunk,
    rank: int = 0,
    world: int = 1,
    gather: Callable[[list], list] | None = None,
    progress: Callable[[int], None] | None = None,
    interpolation: str = GRPOConfig.grid_interpolation,
) -> tuple[Tensor, dict[str, Tensor], int]:
    """(latents [N, K, D], {label: table [N, K]}, decodes made) of the pool, every reward's table cached under its
    :func:`reward_key` (``specs[label]`` = (spec, kwargs); ``pool`` describes the videos).

    ``videos(start, stop)`` gives pool videos [stop - start, L, C, T, H, W]. Rewards that read reconstructions
    are scored on ``grid`` and interpolated in log k; the others at every k. Work is split in chunks of
    ``videos_per_chunk`` videos, chunk c done by process c mod ``world`` and shared by ``gather`` (each process's
    list -> all processes' items, e.g. ``accelerate.utils.gather_object``), so P processes compute bit for bit what
    one does.
    ``progress(videos_done)`` is called after each chunk of this process; ``interpolation`` (:data:`INTERPOLATIONS`)
    reads the grid between its points."""
    K = tokenizer.num_latents
    keys, cached = _cached_tables(tokenizer, rewards, specs, grid, pool, cache)
    missing = [label for label, v in cached.items() if v is None]
    decoded = [label for label in missing if decodes(rewards[label])]
    chunks = [(s, min(s + videos_per_chunk, num_videos)) for s in range(0, num_videos, videos_per_chunk)]
    mine = []  # (chunk index, latents [b·L, K, D], {label: [b, Q_label, L]}): chunk c is process c mod P's
    for c, (start, stop) in enumerate(chunks):
        if c % world != rank:
            continue
        part = videos(start, stop)  # [b, L, C, T, H, W]
        mine.append((c, *_score_chunk(tokenizer, part, rewards, missing, decoded, grid, decode_chunk, encode_chunk)))
        if progress is not None:
            progress(stop - start)
    everyone = mine if world == 1 or gather is None else gather(mine)
    ordered = sorted(everyone, key=lambda item: item[0])  # chunk order, whoever computed them
    latents = torch.cat([lat for _, lat, _ in ordered])  # [N, K, D]
    tables: dict[str, Tensor] = {}
    for label in rewards:
        if cached[label] is None:
            raw = torch.cat([rearrange(vals[label], "b q l -> (b l) q") for _, _, vals in ordered])  # [N, Q]
            if rank == 0:
                cache.put(keys[label], raw)
        else:
            raw = cached[label]
        if raw.shape[0] != latents.shape[0]:
            raise RewardError(f"reward {label!r}: cached table holds {raw.shape[0]} clips, expected {len(latents)}")
        tables[label] = interpolate_log_k(raw.double(), scored_grid(rewards[label], grid, K), K, interpolation)
    made = len(latents) * len(grid) if decoded else 0  # decodes this call made (the cached rewards cost none)
    return latents, tables, made


def _cached_tables(
    tokenizer: FrozenTokenizer,
    rewards: Mapping[str, Any],
    specs: Mapping[str, tuple[str, Mapping]],
    grid: Tensor,
    pool: Mapping,
    cache: TableCache,
) -> tuple[dict[str, str], dict[str, Tensor | None]]:
    """Every reward's cache key, and its cached table [N, Q] (None where it must be computed): a table at every
    k serves any grid, read at the grid's columns."""
    K, fingerprint = tokenizer.num_latents, str(tokenizer.fingerprint)
    keys = {
        label: reward_key(
            plugin, *specs[label], tokenizer=fingerprint, pool=pool, grid=scored_grid(plugin, grid, K).tolist()
        )
        for label, plugin in rewards.items()
    }
    cached = {label: cache.get(keys[label]) for label in rewards}
    for label, plugin in rewards.items():
        if cached[label] is None and decodes(plugin) and len(grid) < K:
            every_k = list(range(1, K + 1))
            full = reward_key(plugin, *specs[label], tokenizer=fingerprint, pool=pool, grid=every_k)
            table = cache.get(full)
            cached[label] = None if table is None else table[:, torch.as_tensor(grid) - 1]
    return keys, cached


def _encode_with_prior(
    tokenizer: FrozenTokenizer, videos: Tensor, plugins: Iterable[Any], encode_chunk: int
) -> tuple[Encoded, Tensor | None]:
    """Videos [b, L, C, T, H, W] encoded once, and the prior's correctness [b, L, K] when a plugin needs it (the prior
    is causal: one pass per clip scores every keep count), else None."""
    encoded = encode_videos(tokenizer, videos, encode_chunk)
    if not any("prior_correct" in getattr(plugin, "needs", ()) for plugin in plugins):
        return encoded, None
    return encoded, rearrange(tokenizer.prior_correct(encoded), "(b l) k -> b l k", b=len(videos))


def _score_chunk(
    tokenizer: FrozenTokenizer,
    part: Tensor,
    rewards: Mapping[str, Any],
    missing: list[str],
    decoded: list[str],
    grid: Tensor,
    decode_chunk: int,
    encode_chunk: int,
) -> tuple[Tensor, dict[str, Tensor]]:
    """One chunk of pool videos [b, L, C, T, H, W]: (latents [b·L, K, D], {label: [b, Q_label, L]}) for the
    rewards still ``missing``: those that decode on ``grid``, the others at every k."""
    encoded, correct = _encode_with_prior(tokenizer, part, [rewards[label] for label in missing], encode_chunk)
    values: dict[str, Tensor] = {}
    cheap = [label for label in missing if label not in decoded]
    every_k = torch.arange(1, tokenizer.num_latents + 1)
    for labels, points, decode in ((decoded, grid, True), (cheap, every_k, False)):
        if labels:
            rollout = _grid_rollout(tokenizer, part, encoded, points, correct, decode, decode_chunk)
            values.update({label: _score_per_clip(label, rewards[label], rollout) for label in labels})
    return encoded.latents.cpu(), values
