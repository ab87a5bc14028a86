"""What a run decides before its first step: the output folder it may write, the head it starts from, its
rewards, its optimiser and schedule, and whether its largest tensors fit in memory."""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path

import torch

from vaportok_rl.config import ConfigError
from vaportok_rl.enumerated import keep_grid
from vaportok_rl.resources import tensor_bytes
from vaportok_rl.reward_loading import load_rewards  # the one resolution of reward specs (re-exported)
from vaportok_rl.rollout import derive_seed
from vaportok_rl.run_files import (
    CHECKPOINTS,
    FIT_HEAD,
    METRICS_FILE,
    RUN_CONFIG,
    RUN_HEAD,
    RUN_HEAD_CONFIG,
    RUN_SUMMARY,
)
from vaportok_rl.run_folder import RunFolder, RunFolderError, claim, refuse_finished_resume
from vaportok_rl.runs import load_head
from vaportok_rl.tokenizer.head import HeadConfig, TaildropHead, shape_mismatch
from vaportok_rl.tokenizer.protocol import FrozenTokenizer
from vaportok_rl.train_config import TrainConfig

__all__ = ["RUN_FILES", "claim_output", "largest_allocations", "load_rewards", "lr_factor", "starting_head"]

RUN_FILES = (RUN_CONFIG, METRICS_FILE, CHECKPOINTS, RUN_SUMMARY, RUN_HEAD, RUN_HEAD_CONFIG, FIT_HEAD, "plots", "wandb")
"""What a training run writes in log.output_dir (what --overwrite may replace there)."""


def claim_output(c: TrainConfig, kind: str, *, resume: bool, overwrite: bool) -> RunFolder:
    """Claim ``log.output_dir`` for this run (vaportok_rl.run_folder): a user's files, another kind of run or a
    finished run are refused unless ``overwrite``; a finished run is resumed only to train past its last step."""
    output_dir = Path(c.log.output_dir)
    try:
        if resume:
            refuse_finished_resume(output_dir, kind, c.total_steps, what="log.output_dir")
        return claim(output_dir, kind, writes=RUN_FILES, resume=resume, overwrite=overwrite, what="log.output_dir")
    except RunFolderError as error:
        raise ConfigError(str(error)) from None


def starting_head(tokenizer: FrozenTokenizer, config: TrainConfig) -> TaildropHead:
    """A trainable copy of ``policy.init`` (any form :func:`~vaportok_rl.runs.load_head` reads), else of the
    tokenizer's pretrained ``.head``, else a fresh head sized from the protocol."""
    pretrained = getattr(tokenizer, "head", None)
    if config.policy.init is not None:
        try:
            head = load_head(config.policy.init, tokenizer)
        except (ValueError, OSError) as err:
            raise ConfigError(f"policy.init: {err}") from None
    elif isinstance(pretrained, TaildropHead):
        head = copy.deepcopy(pretrained)
    else:
        p = config.policy
        head_config = HeadConfig(
            latent_dim=tokenizer.latent_dim,
            num_latents=tokenizer.num_latents,
            width=p.width,
            layers=p.layers,
            heads=p.heads,
        )
        with torch.random.fork_rng(devices=[]):  # nn.Module init draws from the global RNG: seed it, leave it as is
            torch.manual_seed(derive_seed(config.seed, "head-init"))
            head = TaildropHead(head_config)
    if config.policy.temperature is not None:
        head.config = dataclasses.replace(head.config, temperature=config.policy.temperature)
    mismatch = shape_mismatch(head.config, tokenizer)
    if mismatch:
        where = f"policy.init {config.policy.init}" if config.policy.init else "the tokenizer's own .head"
        raise ConfigError(f"{where}: {mismatch}")
    return head.requires_grad_(True).train()


def lr_factor(config: TrainConfig):
    """update index u (0-based, over steps · μ updates) -> multiplier of optim.lr."""
    o = config.optim
    total = config.steps * config.grpo.num_iterations
    warmup = round(o.warmup_ratio * total)

    def factor(u: int) -> float:
        if u < warmup:
            return (u + 1) / warmup
        if o.schedule == "constant":
            return 1.0
        progress = min(1.0, (u - warmup) / max(1, total - warmup))
        shape = 0.5 * (1 + math.cos(math.pi * progress)) if o.schedule == "cosine" else 1.0 - progress
        return o.min_lr_ratio + (1 - o.min_lr_ratio) * shape

    return factor


def largest_allocations(c: TrainConfig, tokenizer: FrozenTokenizer, needs: set, world: int) -> list[tuple[str, int]]:
    """The biggest tensors a run holds at once, estimated before any work: the decoded paths of a step (gathered
    over processes, plus this process's own), of one enumerated chunk, and of a held-out evaluation (with their
    repeated targets)."""
    clip, G, L = tuple(tokenizer.clip_shape), c.grpo.group_size, c.rollout.clips_per_video
    decoded = "reconstructions" in needs
    out = []
    if decoded and c.grpo.groups == "sampled":
        B = c.rollout.videos_per_step
        what = f"a step's decoded paths (rollout.videos_per_step {B} × grpo.group_size {G} × clips_per_video {L})"
        out.append((what, tensor_bytes(B + B // world, G, L, *clip)))
    if decoded and c.grpo.groups == "enumerated" and c.grpo.path_phase.steps:
        B = c.grpo.path_phase.videos_per_step
        what = f"a sampled step's decoded paths (grpo.path_phase.videos_per_step {B} × grpo.group_size {G} × {L})"
        out.append((what, tensor_bytes(B + B // world, G, L, *clip)))
    if decoded and c.grpo.groups == "enumerated":
        points = len(keep_grid(tokenizer.num_latents, c.grpo.grid_points))
        out.append(
            (
                f"an enumerated chunk (grpo.grid_points {points} × clips_per_video {L})",
                tensor_bytes(4, points, L, *clip),
            )
        )
    Be, Le = c.eval.num_videos, c.eval.clips_per_video or L
    copies = 2 * G if decoded else 0  # the sampled paths and their repeated targets
    what = f"the held-out evaluation (eval.num_videos {Be} × grpo.group_size {G} × clips_per_video {Le})"
    out.append((what, tensor_bytes(Be, 1 + copies, Le, *clip)))
    return out
