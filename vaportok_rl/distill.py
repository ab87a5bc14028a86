"""``vaportok-rl distill``: the head fitted to the per-clip PSNR oracle at a price per token (EVATok-style router).

Not a second learning path: a distill recipe is a front end for enumerated groups (``grpo.groups: enumerated``
in :mod:`vaportok_rl.train`) with the ``psnr`` and ``token_cost`` plugins, u(k) = PSNR(k) - price·k, β = 0.
Each clip of the pool is scored on the grid once (cached), and the head is fitted to the Boltzmann targets
softmax_k(u(k) / temperature) at the recipe's price and at each knob price, so the price knob of
:mod:`vaportok_rl.budget` moves it along the oracle's own frontier. :func:`distill_config` is the translation;
the run folder is a training run folder (config.yaml holds the TrainConfig it ran).

Axis letters: N clips, K tokens, D latent width (see docs/design.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from vaportok_rl.config import ConfigError, check_number, load_config, to_dict
from vaportok_rl.tokenizer.protocol import FrozenTokenizer
from vaportok_rl.train import run_training
from vaportok_rl.train_config import (
    DataConfig,
    EvalConfig,
    GRPOConfig,
    LogConfig,
    OptimConfig,
    PolicyConfig,
    RewardSpec,
    RolloutConfig,
    TrainConfig,
)

__all__ = ["DistillConfig", "DistillData", "DistillRecipe", "distill_config", "load_distill_recipe", "run_distill"]


@dataclass
class DistillConfig:
    """How the head is fitted to the oracle's targets."""

    price: float = 0.05
    """λ, dB per token: the oracle keeps argmax_k PSNR(k) - λ·k per clip (a larger price, fewer tokens); the
    head's own argmax aims there."""
    temperature: float = GRPOConfig.target_temperature
    """Of the Boltzmann targets, in dB: the oracle's k and its near-ties share the target's mass."""
    knob_prices: list[float] = field(default_factory=list)
    """Other prices (dB per token) the price knob should reach: the head's logits, tilted by
    (p - price) / temperature per token, are fitted to the oracle's targets at p too. Empty: λ alone."""
    steps: int = 600  # not TrainConfig.steps (200): a step here is one cheap minibatch of cached targets
    """Optimiser steps."""
    batch: int = 128
    """Clips per step."""
    # lr and weight_decay are not OptimConfig's (3e-4, 0): a supervised fit to fixed targets, not policy-gradient steps
    lr: float = 1e-3
    """AdamW learning rate."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    seed: int = TrainConfig.seed
    """Seeds the minibatch order."""

    def __post_init__(self) -> None:
        for name in ("price", "weight_decay"):
            check_number(f"distill.{name}", getattr(self, name), low=0)
        for name in ("temperature", "lr"):
            check_number(f"distill.{name}", getattr(self, name), low=0, low_open=True)
        for name in ("steps", "batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"distill.{name}: expected a positive integer, got {value!r}")
        for i, p in enumerate(self.knob_prices):
            check_number(f"distill.knob_prices[{i}]", p, low=0)  # dB per token


# ------------------------------------------------------------------------------------------------ the recipe


@dataclass
class DistillData:
    """The training clips whose every truncation is decoded once (N·K decodes)."""

    source: str = "mixed"  # not DataConfig.source ("synthetic"): train on what eval judges (both sources)
    """"synthetic", "textures", "mixed" (half each: train on what you judge) or a folder of video files."""
    split: str = DataConfig.split
    """Image split of the texture videos (the held-out eval uses "test")."""
    videos: int = DataConfig.videos
    """Videos to decode; N = videos × clips_per_video clips."""
    clips_per_video: int = RolloutConfig.clips_per_video
    """Clips per video."""
    seed: int = 777  # not DataConfig.seed (null = the run's seed): the pool stays the same whatever distill.seed
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

    tokenizer: str = TrainConfig.tokenizer
    """"default" or a tokenizer .safetensors / pretraining run folder."""
    init: str = "pretrained"  # PolicyConfig.init's null spelt as a head spec: the tokenizer's own head
    """The head to start from (any form ``eval --head`` takes); "pretrained" = the tokenizer's own head."""
    data: DistillData = field(default_factory=DistillData)
    """The training clips."""
    distill: DistillConfig = field(default_factory=DistillConfig)
    """The fit."""
    decode_chunk: int = 16  # not RolloutConfig.decode_chunk (256, a memory cap): small chunks are fastest on a CPU
    """Clips per decoder call when scoring the grid (small chunks are fastest on a CPU)."""
    grid_points: int = GRPOConfig.grid_points
    """Keep counts decoded per clip, log-spaced over 1..K (PSNR interpolated in log k between them); 0 = every k.
    16 points match every k along the price knob at 1/8 of its decodes, not at the head's own budget
    (benchmarks/grid_cost.py)."""
    grid_interpolation: Literal["log_k", "step"] = GRPOConfig.grid_interpolation
    """How PSNR is read between grid points: "log_k" (linear in log k) or "step" (the value at the point below)."""
    table_cache: str | None = TrainConfig.table_cache
    """Folder of cached reward tables; null = $VAPORTOK_RL_CACHE or ~/.cache/vaportok-rl/tables. Runs that differ
    only in the fit (another seed, price or temperature) decode nothing again."""
    output_dir: str = "runs/distill"  # not LogConfig.output_dir: a distill run is not a GRPO run
    """Run folder: head.safetensors + head_config.json (loadable wherever a head is), config.yaml, metrics,
    checkpoints, summary."""

    def __post_init__(self) -> None:
        if isinstance(self.grid_points, bool) or not isinstance(self.grid_points, int) or self.grid_points < 0:
            raise ValueError(f"grid_points: expected 0 (every k) or an integer >= 2, got {self.grid_points!r}")
        if self.grid_points == 1:
            raise ValueError("grid_points: expected 0 (every k) or an integer >= 2 (the grid holds 1 and K), got 1")
        if isinstance(self.decode_chunk, bool) or not isinstance(self.decode_chunk, int) or self.decode_chunk < 1:
            raise ValueError(f"decode_chunk: expected a positive integer, got {self.decode_chunk!r}")


def load_distill_recipe(recipe: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()) -> DistillRecipe:
    """A recipe file plus ``key.sub=VALUE`` overrides -> DistillRecipe (unknown keys are errors)."""
    if recipe is None:
        return load_config(DistillRecipe, None, list(overrides), base=to_dict(DistillRecipe()))
    return load_config(DistillRecipe, recipe, list(overrides))


def distill_config(recipe: DistillRecipe) -> TrainConfig:
    """The enumerated-groups training run a distill recipe stands for."""
    d, f = recipe.data, recipe.distill
    if f.batch % d.clips_per_video:
        raise ConfigError(
            f"distill.batch: {f.batch} clips do not split into videos of data.clips_per_video={d.clips_per_video}"
        )
    return TrainConfig(
        tokenizer=recipe.tokenizer,
        seed=f.seed,
        steps=f.steps,
        rewards={"psnr": RewardSpec(weight=1.0), "token_cost": RewardSpec(weight=f.price)},
        table_cache=recipe.table_cache,
        grpo=GRPOConfig(
            groups="enumerated",
            grid_points=recipe.grid_points,
            grid_interpolation=recipe.grid_interpolation,
            target_temperature=f.temperature,
            knob_prices=list(f.knob_prices),
            beta=0.0,
        ),
        policy=PolicyConfig(init=recipe.init),
        rollout=RolloutConfig(
            videos_per_step=f.batch // d.clips_per_video,
            clips_per_video=d.clips_per_video,
            decode_chunk=recipe.decode_chunk,
        ),
        data=DataConfig(source=d.source, split=d.split, seed=d.seed, videos=d.videos),
        eval=EvalConfig(num_videos=0),
        optim=OptimConfig(lr=f.lr, weight_decay=f.weight_decay, max_grad_norm=None),
        log=LogConfig(output_dir=recipe.output_dir, eval_every=0, checkpoint_every=200),
    )


def run_distill(
    recipe: DistillRecipe,
    *,
    tokenizer: FrozenTokenizer | None = None,
    progress: bool = True,
    resume: bool = False,
    overwrite: bool = False,
) -> dict:
    """Run :func:`distill_config` of the recipe; returns the training summary (also summary.json). The head loads
    wherever a head spec is taken (``policy.init``, ``eval --head``, ``export``)."""
    try:
        config = distill_config(recipe)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    summary = run_training(
        config, tokenizer=tokenizer, progress=progress, resume=resume, overwrite=overwrite, kind="distill"
    )
    return {**summary, "distill": to_dict(recipe)}
