"""The supervised reference: distil the oracle's per-clip allocation at a price into the taildrop head.

With every k decoded for a pool of training clips (a full quality table, no sampling noise), the oracle at a
price λ per token keeps, for each clip, argmax_k PSNR(k) - λ·k. The head is trained towards the Boltzmann
distribution of that utility (EVATok-style router; the hard oracle k as ``temperature -> 0``)::

    target_p[n, k] = softmax_k((PSNR[n, k] - p·k) / temperature)         quality [N, K] ──► target [N, K]
    z = head(latents)                                                    [N, K] logits
    loss = mean over p in {λ} ∪ knob_prices of cross_entropy(z - (p - λ)/temperature · k, target_p)

Soft targets keep the *shape* of each clip's utility in the head's logits (z ≈ (PSNR - λ·k) / temperature + a
per-clip constant), and fitting the tilted logits at the other ``knob_prices`` too shapes them over the whole
range of budgets those prices give, so the price knob of :mod:`vaportok_rl.budget` (which tilts z by a price per
token) moves a distilled head along the oracle's own frontier, not only at λ. This is the upper reference
for what the head can represent from latents alone; GRPO may start from it.

Axis letters: N clips, K tokens, D latent width (see docs/design.md).
"""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm import tqdm

from vaportok_rl.config import ConfigError, load_config, save_yaml, to_dict
from vaportok_rl.tokenizer.head import TaildropHead
from vaportok_rl.tokenizer.protocol import Encoded, FrozenTokenizer

__all__ = [
    "DistillConfig",
    "DistillData",
    "DistillRecipe",
    "distill_head",
    "load_distill_recipe",
    "oracle_targets",
    "psnr_table",
    "run_distill",
]

TABLE_FILE = "table.safetensors"
"""The decoded training table of a distillation run folder (latents and PSNR at every k), reused on rerun."""


@dataclass
class DistillConfig:
    """How the head is fitted to the oracle's targets."""

    price: float = 0.05
    """λ, dB per token: the oracle keeps argmax_k PSNR(k) - λ·k per clip (a larger price, fewer tokens); the
    head's own argmax aims there."""
    temperature: float = 0.25
    """Of the Boltzmann targets, in dB: the oracle's k and its near-ties share the target's mass."""
    knob_prices: list[float] = field(default_factory=list)
    """Other prices (dB per token) the price knob should reach: the head's logits, tilted by
    (p - price) / temperature per token, are fitted to the oracle's targets at p too. Empty: λ alone."""
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
        for p in self.knob_prices:
            if not p >= 0:
                raise ValueError(f"distill.knob_prices: expected prices >= 0 (dB per token), got {p!r}")


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
    prices = [config.price, *(p for p in config.knob_prices if p != config.price)]
    targets = torch.stack(
        [oracle_targets(quality.double(), p, config.temperature).float() for p in prices]
    )  # [P, N, K]
    k = torch.arange(1, quality.shape[1] + 1, dtype=torch.float32)
    tilts = torch.tensor([(p - config.price) / config.temperature for p in prices]).unsqueeze(-1) * k  # [P, K]
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
        tilted = logits.unsqueeze(0) - tilts.unsqueeze(1)  # [P, b, K]: the head's distribution at each price
        loss = F.cross_entropy(tilted.flatten(0, 1), targets[:, idx].flatten(0, 1))
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
    k = torch.arange(1, q.shape[-1] + 1, dtype=torch.float64)
    return ((q - price * k).argmax(-1) + 1).numpy()


# ------------------------------------------------------------------------------------------------ the recipe


@dataclass
class DistillData:
    """The training clips whose every truncation is decoded once (N·K decodes)."""

    source: str = "mixed"
    """"synthetic", "textures", "mixed" (half each: train on what you judge) or a folder of video files."""
    split: str = "train"
    """Image split of the texture videos (the held-out eval uses "test")."""
    videos: int = 256
    """Videos to decode; N = videos × clips_per_video clips."""
    clips_per_video: int = 4
    """Clips per video."""
    seed: int = 777
    """Seed of the training videos (held-out sets use 1000003)."""

    def __post_init__(self) -> None:
        for name in ("videos", "clips_per_video"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"data.{name}: expected a positive integer, got {value!r}")
        if self.split not in ("all", "train", "test"):
            raise ValueError(f"data.split: expected 'all', 'train' or 'test', got {self.split!r}")


@dataclass
class DistillRecipe:
    """``vaportok-rl distill RECIPE``: the oracle-distilled head, the supervised reference for GRPO."""

    tokenizer: str = "default"
    """"default" or a tokenizer .safetensors / pretraining run folder."""
    init: str = "pretrained"
    """The head to start from (any form ``eval --head`` takes); "pretrained" = the tokenizer's own head."""
    data: DistillData = field(default_factory=DistillData)
    """The training clips."""
    distill: DistillConfig = field(default_factory=DistillConfig)
    """The fit."""
    decode_chunk: int = 16
    """Clips per decoder call when building the table (small chunks are fastest on a CPU)."""
    table: str | None = None
    """Where the decoded table is kept; null = <output_dir>/table.safetensors. Runs that differ only in the fit
    (another seed or price) can share one table: it is reused when made for the same tokenizer and data."""
    output_dir: str = "runs/distill"
    """Run folder: head.safetensors + head_config.json (loadable wherever a head is), table.safetensors, summary."""


def load_distill_recipe(recipe: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()) -> DistillRecipe:
    """A recipe file plus ``key.sub=VALUE`` overrides -> DistillRecipe (unknown keys are errors)."""
    if recipe is None:
        return load_config(DistillRecipe, None, list(overrides), base=to_dict(DistillRecipe()))
    return load_config(DistillRecipe, recipe, list(overrides))


def _table_key(recipe: DistillRecipe, fingerprint: str) -> str:
    return json.dumps({"tokenizer": fingerprint, "data": to_dict(recipe.data)}, sort_keys=True)


def training_table(
    recipe: DistillRecipe, tokenizer: FrozenTokenizer, *, progress: bool = True
) -> tuple[Tensor, Tensor]:
    """(latents [N, K, D], PSNR [N, K]) of the recipe's training clips, read from the run folder's table when it
    was made for the same tokenizer and data, else decoded (N·K decodes) and written there atomically."""
    from vaportok_rl.data import load_videos

    path = Path(recipe.table) if recipe.table else Path(recipe.output_dir) / TABLE_FILE
    key = _table_key(recipe, str(tokenizer.fingerprint))
    if path.is_file():
        try:
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                same = (f.metadata() or {}).get("key") == key
            if same:
                tensors = load_file(path)
                return tensors["latents"], tensors["psnr"].double()
        except Exception:  # an unreadable table is rebuilt, never trusted
            pass
    d = recipe.data
    C, T, H, W = tokenizer.clip_shape
    videos = load_videos(d.source, d.videos, d.clips_per_video, seed=d.seed, frames=T, size=H, split=d.split)
    clips = videos.flatten(0, 1)
    with torch.no_grad():
        encoded = tokenizer.encode(clips)
        N, K = len(clips), tokenizer.num_latents
        psnr = torch.empty(N, K, dtype=torch.float64)
        bar = tqdm(total=N, disable=not progress, desc="decode table", unit="clip", dynamic_ncols=True)
        step = max(1, 256 // K)  # clips per psnr_table call: ~256 decodes, so the bar moves
        for i in range(0, N, step):
            part = psnr_table(
                tokenizer, encoded.index(slice(i, i + step)), clips[i : i + step], chunk=recipe.decode_chunk
            )
            psnr[i : i + step] = part
            bar.update(len(part))
        bar.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({"latents": encoded.latents.contiguous(), "psnr": psnr.float()}, str(tmp), metadata={"key": key})
    os.replace(tmp, path)
    return encoded.latents, psnr


def run_distill(recipe: DistillRecipe, *, tokenizer: FrozenTokenizer | None = None, progress: bool = True) -> dict:
    """Build (or reuse) the training table, fit the head to the oracle's targets, write the run folder; returns
    the summary (also summary.json). The head loads wherever a head spec is taken (``policy.init``, ``eval
    --head``, ``export``)."""
    from vaportok_rl.runs import load_head, save_head, unwritable_reason
    from vaportok_rl.tokenizer import load_tokenizer_spec

    started = time.perf_counter()
    out = Path(recipe.output_dir)
    reason = unwritable_reason(out)  # before any decoding
    if reason is not None:
        raise ConfigError(f"output_dir {out}: not writable ({reason}); nothing was computed")
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer_spec(recipe.tokenizer)
    try:
        head = copy.deepcopy(load_head(recipe.init, tokenizer)).requires_grad_(True)
    except (ValueError, OSError) as error:
        raise ConfigError(f"init: {error}") from None
    t0 = time.perf_counter()
    latents, psnr = training_table(recipe, tokenizer, progress=progress)
    table_seconds = time.perf_counter() - t0
    bar = tqdm(total=recipe.distill.steps, disable=not progress, desc="distill", dynamic_ncols=True)

    def tick(step: int, loss: float) -> None:
        bar.update(1)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss:.4f}")

    losses = distill_head(head, latents, psnr, recipe.distill, progress=tick)
    bar.close()
    keep = hard_oracle_keep(psnr, recipe.distill.price)
    with torch.no_grad():
        argmax = (head(latents).argmax(-1) + 1).numpy()
    summary = {
        "clips": int(len(latents)),
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "train_oracle_tokens_mean": float(keep.mean()),
        "train_head_tokens_mean": float(argmax.mean()),
        "train_head_exact_share": float((argmax == keep).mean()),
        "table_seconds": table_seconds,
        "seconds": time.perf_counter() - started,
    }
    save_yaml(recipe, out / "config.yaml")
    save_head(
        head.eval(),
        out,
        tokenizer_fingerprint=str(tokenizer.fingerprint),
        steps=recipe.distill.steps,
        config=to_dict(recipe),
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
