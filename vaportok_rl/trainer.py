"""GRPO on the taildrop head: ``vaportok-rl train RECIPE [key=value ...] [--resume] [--help-config]``.

One training step, on one screen in :func:`run_training`:

    B videos ──encode once──► sample G truncation paths per video with the current head ──► keep [B, G, L]
      ──(batched decode / prior pass if a reward needs them)──► every reward [B, G] ──► rewards [B, G, R]
      ──compute_advantages──► advantages [B, G] ──► μ × (log-probs [B, G, L] → grpo_loss → AdamW step)

Only the head learns: the tokenizer (and its AR prior) is frozen, the reference of the KL term is a frozen copy
of the starting head. Axis letters: docs/design.md.

Determinism and processes. Training video i of step s is drawn from (data seed, s, i) alone, and its G paths
from a generator seeded by (seed, s, i) alone. Under ``torchrun --nproc_per_node P`` each process takes the
B/P consecutive videos of the same global batch; the rollouts are gathered so that every reward and every
advantage sees the whole global batch (a batch-level reward such as diversity, or ``scale_rewards: batch``,
gives the same values as in one process), and each process optimises the loss of its own videos. DDP averages
the gradients of the P equal shards, which is the gradient of the global batch's loss for all three loss types
(no masks, equal shards). So P processes train the same head as one process with the same global batch, up to
float summation order. Resuming from a checkpoint continues bit for bit.

Outputs in ``log.output_dir``:
    config.yaml                     the resolved config
    metrics.jsonl                   one JSON object per line, always written (see below)
    checkpoints/step-NNNNNN/        atomic, pickle-free: head, reference head, optimizer, scheduler, RNG states,
                                    data position (the step), eval history, config
    summary.json                    initial and final held-out evaluation, last training metrics, timings
    head.safetensors, head_config.json   the tuned head (state dict; its HeadConfig and provenance)
    wandb/                          when ``log.report_to: wandb`` (offline unless WANDB_MODE is set)

metrics.jsonl lines have ``step`` (updates done: 0 = before training) and either the training keys

    reward, reward_std                    mean over the batch / mean within-group std of Σ_i w_i r_i (raw rewards)
    rewards/<label>/mean, .../std         each reward's mean and std over the B·G paths
    frac_reward_zero_std                  fraction of groups where every reward is constant (advantages all 0)
    tokens/mean, tokens/std               kept tokens per clip over the B·G·L decisions
    loss, kl, clip_ratio/low_mean, clip_ratio/high_mean, clip_ratio/region_mean   grpo_loss's, mean over μ
    entropy                               exact entropy of the head's distribution, mean over clips
    grad_norm                             global gradient norm before clipping, mean over μ updates
    lr, step_time                         learning rate of the step's first update; wall seconds of the step

or the held-out evaluation keys (fixed videos and generators; see :class:`vaportok_rl.heldout.HeldOutEval`)

    eval/reward, eval/reward_std, eval/rewards/<label>/mean|std, eval/objective, eval/tokens/mean,
    eval/argmax_tokens/mean, eval/argmax_psnr, eval/psnr (when rewards decode)
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import random
import secrets
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from einops import rearrange
from safetensors import SafetensorError
from torch import Tensor, nn
from tqdm.auto import tqdm

from vaportok_rl.checkpoint import flatten_state, load_checkpoint, save_checkpoint, unflatten_state
from vaportok_rl.config import ConfigError, save_yaml, to_dict
from vaportok_rl.data import SOURCES, load_videos
from vaportok_rl.enumerated import keep_grid
from vaportok_rl.grpo import compute_advantages, grpo_loss, knob_kl
from vaportok_rl.heldout import HeldOutEval, reward_metrics, score
from vaportok_rl.policy import NonFiniteLogits, TaildropPolicy
from vaportok_rl.resources import launcher_problem, memory_problem, tensor_bytes
from vaportok_rl.rewards import RewardError, load_reward, required_needs
from vaportok_rl.rollout import Rollout, collect_rollout, derive_seed, group_log_prob, video_generators
from vaportok_rl.run_folder import RunFolder, RunFolderError, claim, read_record
from vaportok_rl.runs import (
    CHECKPOINTS,
    METRICS_FILE,
    RUN_CONFIG,
    RUN_HEAD,
    RUN_HEAD_CONFIG,
    RUN_SUMMARY,
    checkpoint_dirs,
    load_head,
    read_metrics_lines,
    save_head,
)
from vaportok_rl.target_fit import build_target_fit
from vaportok_rl.tokenizer.default import load_tokenizer_spec
from vaportok_rl.tokenizer.head import HeadConfig, TaildropHead
from vaportok_rl.tokenizer.protocol import Encoded, FrozenTokenizer
from vaportok_rl.train_config import TrainConfig

__all__ = [
    "RUN_FILES",
    "TrainingError",
    "TrainingInterrupted",
    "VideoStream",
    "lr_factor",
    "run_training",
    "starting_head",
]


class TrainingError(ConfigError):
    """A run that cannot start or go on because of its inputs or its environment (unwritable output folder, full
    disk, an unreadable video, a reward plugin raising): the message names the file, plugin and step. The CLI
    prints it on one line and exits with status 2; what was computed before (checkpoints, metrics) is kept."""


class Diverged(ArithmeticError):
    """A non-finite loss, gradient or weight (caught in run_training, re-raised as a TrainingError)."""


class TrainingInterrupted(TrainingError):
    """Ctrl-C: the message says where the run stands and how to resume (the CLI exits with status 130)."""


RUN_FILES = (RUN_CONFIG, METRICS_FILE, CHECKPOINTS, RUN_SUMMARY, RUN_HEAD, RUN_HEAD_CONFIG, "plots", "wandb")
"""What a training run writes in log.output_dir (what --overwrite may replace there)."""


# =============================================================================================== seeds and data


class VideoStream:
    """Training videos: video i of step s depends on (seed, s, i) only, never on batch layout or process.

    "synthetic" / "textures" render each video from its own derived seed; a folder is read in a fresh seeded
    permutation per pass over its files (global video number s·B + i)."""

    def __init__(self, source: str, clips_per_video: int, clip_shape: tuple, *, seed: int, split: str, batch: int):
        C, T, H, W = clip_shape
        if C != 3 or H != W:
            raise ConfigError(
                f"data.source {source!r}: the video sources give square RGB clips, but the tokenizer's "
                f"clip_shape is {tuple(clip_shape)}"
            )
        self.source, self.L, self.frames, self.size = source, clips_per_video, T, H
        self.seed, self.split, self.batch = seed, split, batch
        self.folder = None
        if source not in SOURCES:
            from vaportok_rl.data import VideoFolder

            if not Path(source).is_dir():
                raise ConfigError(f"data.source: expected one of {SOURCES} or a folder, got {source!r}")
            try:
                self.folder = VideoFolder(source, clips_per_video=clips_per_video, frames=T, size=H)
                self.folder.check()  # every file, before the first step
            except (OSError, ValueError) as error:
                raise ConfigError(f"data.source: {error}") from None

    def videos(self, step: int, indices: range) -> Tensor:
        """[len(indices), L, 3, T, H, W] in [0, 1]."""
        if self.folder is None:
            return torch.cat([self._render(derive_seed(self.seed, "train", step, i)) for i in indices])
        n = len(self.folder)
        out = []
        for i in indices:
            number = step * self.batch + i
            order = np.random.default_rng([self.seed, number // n]).permutation(n)
            out.append(self.folder[int(order[number % n])])
        return torch.stack(out)

    def _render(self, seed: int) -> Tensor:
        """One procedural video [1, L, 3, T, H, W]."""
        return load_videos(self.source, 1, self.L, seed=seed, frames=self.frames, size=self.size, split=self.split)


# =============================================================================================== tokenizer and head


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
    if (head.config.num_latents, head.config.latent_dim) != (tokenizer.num_latents, tokenizer.latent_dim):
        raise ConfigError(
            f"the tokenizer's head reads [K, D] = [{head.config.num_latents}, {head.config.latent_dim}] "
            f"but the tokenizer gives [{tokenizer.num_latents}, {tokenizer.latent_dim}]"
        )
    return head.requires_grad_(True).train()


class PathScorer(nn.Module):
    """What DDP wraps: forward = the log-probs [B, G, L] of a rollout's decisions under the policy, with grad, and
    the head's logits [B·L, K] they come from (the knob KL reads them: one head pass per μ pass). (Going through
    DDP's forward is what makes backward all-reduce the gradients.)"""

    def __init__(self, policy: TaildropPolicy, mode: str):
        super().__init__()
        self.policy, self.mode = policy, mode

    def forward(self, latents: Tensor, keep: Tensor, max_keep: Tensor | None = None) -> tuple[Tensor, Tensor]:
        logits = self.policy.logits(latents)  # [B·L, K]
        return group_log_prob(self.policy, None, keep, self.mode, max_keep, logits=logits), logits


# =============================================================================================== rewards


def load_rewards(config: TrainConfig) -> dict[str, Any]:
    """{label: plugin instance} for the active rewards, in recipe order."""
    search = [Path(p) for p in config.plugin_paths]
    return {
        label: load_reward(spec.spec or label, spec.kwargs, search_paths=search)
        for label, spec in config.active_rewards().items()
    }


def gather_rollout(accelerator: Accelerator, rollout: Rollout) -> Rollout:
    """The global batch's rollout: every process's videos in rank order (rank r holds videos r·B/P ..)."""
    if accelerator.num_processes == 1:
        return rollout

    def cat(x: Tensor | None) -> Tensor | None:
        return None if x is None else accelerator.gather(x.contiguous())

    prior = rollout.prior_correct
    return dataclasses.replace(
        rollout,
        videos=cat(rollout.videos),
        encoded=Encoded(latents=cat(rollout.encoded.latents), codes=cat(rollout.encoded.codes)),
        keep=cat(rollout.keep),
        reconstructions=cat(rollout.reconstructions),
        prior_correct=None if prior is None else cat(prior.to(torch.uint8)).bool(),
        sc=cat(rollout.sc),
        tc=cat(rollout.tc),
        old_logp=cat(rollout.old_logp),
        ref_logp=cat(rollout.ref_logp),
        max_keep=cat(rollout.max_keep),
        logits=cat(rollout.logits),
        ref_logits=cat(rollout.ref_logits),
    )


# =============================================================================================== checkpoints and logs


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


def _rng_state() -> tuple[dict[str, Tensor], dict]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    py = random.getstate()
    return tensors, {"numpy": [kind, keys.tolist(), pos, has_gauss, gauss], "python": [py[0], list(py[1]), py[2]]}


def _set_rng_state(tensors: dict[str, Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k[9:]))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    kind, keys, pos, has_gauss, gauss = meta["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, state, gauss_next = meta["python"]
    random.setstate((version, tuple(state), gauss_next))


class RunLog:
    """metrics.jsonl (always) and wandb (``log.report_to: wandb``), main process only."""

    def __init__(
        self, config: TrainConfig, output_dir: Path, *, enabled: bool, resume_step: int | None, wandb_id: str | None
    ):
        self.enabled, self.path, self.wandb, self.wandb_id = enabled, output_dir / METRICS_FILE, None, wandb_id
        self.kept: list[dict] = []
        if not enabled:
            return
        records = []
        if resume_step is not None and self.path.is_file():  # drop what a killed run logged after its checkpoint
            records, bad = read_metrics_lines(self.path)
            if bad:
                warnings.warn(
                    f"{self.path}: dropped unreadable line(s) {bad} (a partial line left by a killed run); the "
                    f"lines up to the resumed step {resume_step} are kept",
                    RuntimeWarning,
                    stacklevel=3,
                )
            records = [r for r in records if r["step"] <= resume_step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in records))
        self.kept = records  # what a resumed run logged before its checkpoint
        if config.log.report_to == "wandb":
            import wandb

            self.wandb_id = wandb_id or secrets.token_hex(4)
            self.wandb = wandb.init(
                project=config.log.wandb_project,
                name=config.log.run_name or output_dir.name,
                dir=str(output_dir),
                config=to_dict(config),
                id=self.wandb_id,
                resume="allow",
                mode=os.environ.get("WANDB_MODE", "offline"),
            )  # offline unless the user says

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)

    def images(self, step: int, paths: dict[str, Path]) -> None:
        """Log PNG files as wandb images (added for issue 6; the JSONL file has no images)."""
        if self.wandb is not None:
            import wandb

            self.wandb.log({key: wandb.Image(str(path)) for key, path in paths.items()}, step=step)

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()


def _eval_plot(
    evaluator: HeldOutEval, policy: TaildropPolicy, ref_policy: TaildropPolicy, output_dir: Path, step: int
) -> Path:
    """Added for issue 6 (wandb images): kept tokens of the argmax head vs the held-out clips' SC / TC, next to
    the starting head's, written to output_dir/plots/eval-NNNNNN.png."""
    from vaportok_rl.complexity import complexity
    from vaportok_rl.plots import tokens_vs_complexity

    with torch.no_grad():
        keep = policy.argmax_keep(evaluator.encoded.latents).cpu().numpy()  # [N]
        start = ref_policy.argmax_keep(evaluator.encoded.latents).cpu().numpy()  # [N]
    videos = evaluator.videos.cpu()  # [B, L, C, T, H, W]
    if videos.shape[3] >= 2:
        sc, tc = (x.flatten().numpy() for x in complexity(videos))
    else:  # one-frame clips have no temporal complexity
        sc, tc = complexity(videos.repeat_interleave(2, dim=3))[0].flatten().numpy(), np.zeros(len(keep))
    path = output_dir / "plots" / f"eval-{step:06d}.png"
    title = f"held-out clips, step {step}"
    tokens_vs_complexity(keep, sc, tc, policy.num_latents, path, title=title, label="current", compare={"start": start})
    return path


CHECKPOINT_KEYS = ("step", "config", "optimizer", "scheduler", "rng", "eval_history", "eval_scales", "wandb_id")


def _resume_state(config: TrainConfig, output_dir: Path) -> tuple[dict[str, Tensor], dict]:
    """The newest *readable* checkpoint's tensors and meta. A newer one that is truncated or corrupted (a crash
    or a full disk while the filesystem wrote it) is skipped with a warning naming it; none readable is an error
    naming them all."""
    found = checkpoint_dirs(output_dir)
    if not found:
        raise ConfigError(f"--resume: no checkpoint in {output_dir / CHECKPOINTS}")
    skipped = []
    for path in reversed(found):
        try:
            tensors, meta = load_checkpoint(path)
            missing = [k for k in CHECKPOINT_KEYS if k not in meta] + [k for k in ("rng.torch",) if k not in tensors]
            if missing:
                raise ValueError(f"missing entries {missing}")
        except Exception as error:  # truncated safetensors / JSON, missing keys: try the previous checkpoint
            skipped.append(f"{path} ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})")
            continue
        break
    else:
        raise TrainingError(f"--resume: no readable checkpoint in {output_dir / CHECKPOINTS}: {'; '.join(skipped)}")
    if skipped:
        warnings.warn(
            f"--resume: skipped unreadable checkpoint(s) {'; '.join(skipped)}; resuming from {path} "
            f"(step {meta['step']})",
            RuntimeWarning,
            stacklevel=3,
        )
    if meta["step"] > config.steps:
        raise ConfigError(
            f"--resume: the newest checkpoint ({path}) is at step {meta['step']}, past steps={config.steps}; pass "
            f"steps={meta['step']} or more (a run cannot be shortened after the fact)"
        )
    saved, now = dict(meta["config"]), to_dict(config)
    changed = [k for k in sorted(set(saved) | set(now)) if k not in ("log", "steps") and saved.get(k) != now.get(k)]
    if changed:
        raise ConfigError(
            f"--resume: the config differs from the checkpoint's ({path}) in {changed}; only "
            f"'steps' and 'log.*' may change when resuming"
        )
    return tensors, meta


def _largest_allocations(c: TrainConfig, tokenizer: FrozenTokenizer, needs: set, world: int) -> list[tuple[str, int]]:
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


def _kept(output_dir: Path) -> str:
    found = checkpoint_dirs(output_dir)
    if not found:
        return "no checkpoint was written yet"
    return f"the last checkpoint ({found[-1]}) is kept: re-run with --resume to continue from it"


# =============================================================================================== the run


def run_training(
    config: TrainConfig,
    *,
    tokenizer: FrozenTokenizer | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    kind: str = "train",
) -> dict:
    """Train the taildrop head with GRPO as ``config`` says; returns the summary (also written to summary.json).

    ``tokenizer`` overrides ``config.tokenizer`` (already-built objects, e.g. in tests and sweeps). With
    ``resume``, continues from the newest checkpoint in ``log.output_dir``; ``overwrite`` replaces what a run
    writes in a folder that holds anything else (see vaportok_rl.run_folder). ``kind`` is recorded in the
    folder ("distill" for the distill front end): a folder of another kind is refused."""
    t_start = time.perf_counter()
    c = config
    output_dir = Path(c.log.output_dir)
    problem = launcher_problem()
    if problem:
        raise ConfigError(problem)
    B, world = c.rollout.videos_per_step, int(os.environ.get("WORLD_SIZE", "1"))
    if B % world:  # before the process group starts: every process stops at once, rank 0 says why
        raise ConfigError(
            f"rollout.videos_per_step: {B} videos do not split evenly over {world} processes (WORLD_SIZE); "
            f"pick a multiple of {world}"
        )
    force_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    accelerator = Accelerator(cpu=force_cpu or not torch.cuda.is_available())  # CUDA when there is one
    if accelerator.num_processes != int(os.environ.get("WORLD_SIZE", "1")):
        raise ConfigError(
            f"accelerate sees {accelerator.num_processes} process(es) but WORLD_SIZE is "
            f"{os.environ['WORLD_SIZE']}; launch with torchrun --nproc_per_node P"
        )
    main, rank = accelerator.is_main_process, accelerator.process_index
    mine = range(rank * (B // world), (rank + 1) * (B // world))  # this process's videos of the global batch
    # ---- the output folder: claimed by the main process (record + lock) before any work; the others wait for it
    folder, refused = None, None
    if main:
        try:
            folder = claim_output(c, kind, resume=resume, overwrite=overwrite)
        except ConfigError as error:
            refused = str(error)
    if world > 1:  # every process learns whether the main one may write, before any work
        box = [refused]
        torch.distributed.broadcast_object_list(box, src=0)
        refused = box[0]
    if refused is not None:
        raise ConfigError(refused)
    try:
        return _train(c, folder, accelerator, tokenizer, resume, progress, t_start, mine)
    except KeyboardInterrupt:
        raise TrainingInterrupted(f"interrupted (Ctrl-C); {_kept(output_dir)}" if main else "interrupted") from None
    finally:
        if folder is not None:
            folder.release()


def claim_output(c: TrainConfig, kind: str, *, resume: bool, overwrite: bool) -> RunFolder:
    """Claim ``log.output_dir`` for this run (vaportok_rl.run_folder): a user's files, another kind of run or a
    finished run are refused unless ``overwrite``; a finished run is resumed only to train past its last step."""
    output_dir = Path(c.log.output_dir)
    previous = read_record(output_dir) or {}
    if (
        resume
        and previous.get("kind") == kind
        and previous.get("status") == "finished"
        and c.steps <= int(previous.get("steps", 0))
    ):
        raise ConfigError(
            f"--resume: log.output_dir {output_dir} holds a run that finished at step {previous.get('steps')}; "
            f"nothing to resume at steps={c.steps}: pass steps=N with N > {previous.get('steps')} to train on, "
            f"or --overwrite (without --resume) to start over"
        )
    try:
        return claim(output_dir, kind, writes=RUN_FILES, resume=resume, overwrite=overwrite, what="log.output_dir")
    except RunFolderError as error:
        raise ConfigError(str(error)) from None


def _train(
    c: TrainConfig,
    folder: RunFolder | None,
    accelerator: Accelerator,
    tokenizer: FrozenTokenizer | None,
    resume: bool,
    progress: bool,
    t_start: float,
    mine: range,
) -> dict:
    g, output_dir = c.grpo, Path(c.log.output_dir)
    device, main = accelerator.device, accelerator.is_main_process
    world, rank = accelerator.num_processes, accelerator.process_index
    B, L, G = c.rollout.videos_per_step, c.rollout.clips_per_video, g.group_size

    # ---- the frozen tokenizer; the trainable head; its frozen starting copy as the KL reference
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer_spec(c.tokenizer)
    frozen = [m for m in (tokenizer,) if isinstance(m, nn.Module)]
    for module in frozen:
        module.to(device).eval().requires_grad_(False)
    policy = TaildropPolicy(starting_head(tokenizer, c)).to(device)
    ref_policy = policy.reference_copy()
    rewards = load_rewards(c)
    labels, needs = list(rewards), required_needs(rewards.values())
    for what, nbytes in _largest_allocations(c, tokenizer, needs, world):
        problem = memory_problem(what, nbytes, device)
        if problem:
            raise ConfigError(f"{problem}; lower these settings")
    weights = torch.tensor([s.weight for s in c.active_rewards().values()], device=device)
    stream = VideoStream(
        c.data.source,
        L,
        tokenizer.clip_shape,
        seed=c.seed if c.data.seed is None else c.data.seed,
        split=c.data.split,
        batch=B,
    )

    o = c.optim
    optimizer = torch.optim.AdamW(policy.parameters(), lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(c))  # stepped by hand, once per update
    if g.groups == "enumerated":  # every process fits the same targets: equal gradients, no DDP needed
        scorer, optimizer = None, accelerator.prepare(optimizer)
    else:
        scorer, optimizer = accelerator.prepare(PathScorer(policy, c.rollout.mode), optimizer)

    # ---- resume: head, reference, optimiser, scheduler, RNG states, data position (= the step), eval history
    start, history, scales, wandb_id = 0, [], None, None
    if resume:
        tensors, meta = _resume_state(c, output_dir)
        policy.head.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("head.")})
        ref_policy.head.load_state_dict({k[9:]: v for k, v in tensors.items() if k.startswith("ref_head.")})
        optimizer.load_state_dict(unflatten_state(meta["optimizer"], tensors))
        scheduler.load_state_dict(unflatten_state(meta["scheduler"], tensors))
        _set_rng_state(tensors, meta["rng"])
        start, history, scales, wandb_id = meta["step"], meta["eval_history"], meta["eval_scales"], meta["wandb_id"]
    if main:
        output_dir.mkdir(parents=True, exist_ok=True)
        save_yaml(c, output_dir / "config.yaml")
    log = RunLog(c, output_dir, enabled=main, resume_step=start if resume else None, wandb_id=wandb_id)
    try:
        evaluator = HeldOutEval(c, tokenizer, rewards, weights, device) if main and c.eval.num_videos else None
    except (OSError, ValueError) as error:
        raise ConfigError(f"eval.source (held-out videos): {error}") from None
    if evaluator is not None and scales is not None:
        evaluator.set_scales(scales)

    def evaluate(step: int) -> None:
        if evaluator is not None:
            metrics = evaluator(policy, ref_policy)
            history.append({"step": step, **metrics})
            log.write(step, metrics)
            if log.wandb is not None:  # added for the wandb item of issue 6: the held-out eval plot as an image
                plot = _eval_plot(evaluator, policy, ref_policy, output_dir, step)
                log.images(step, {"eval/tokens_vs_complexity": plot})

    def checkpoint(step: int) -> None:
        if not main:
            return
        tensors = {f"head.{k}": v for k, v in policy.head.state_dict().items()}
        tensors.update({f"ref_head.{k}": v for k, v in ref_policy.head.state_dict().items()})
        rng_tensors, rng_meta = _rng_state()
        tensors.update(rng_tensors)
        meta = {
            "step": step,
            "config": to_dict(c),
            "head_config": dataclasses.asdict(policy.head.config),
            "optimizer": flatten_state("optimizer", optimizer.state_dict(), tensors),
            "scheduler": flatten_state("scheduler", scheduler.state_dict(), tensors),
            "rng": rng_meta,
            "data_position": {"step": step, "videos_seen": step * B},
            "eval_history": history,
            "eval_scales": None if evaluator is None else evaluator.scales.tolist(),
            "wandb_id": log.wandb_id,
            "tokenizer_fingerprint": str(tokenizer.fingerprint),
        }
        save_checkpoint(output_dir / CHECKPOINTS / f"step-{step:06d}", tensors, meta)
        if c.log.keep_checkpoints:
            for old in checkpoint_dirs(output_dir)[: -c.log.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)

    rollout_kwargs = dict(
        group_size=G,
        mode=c.rollout.mode,
        needs=needs,
        decode_chunk=c.rollout.decode_chunk,
        encode_chunk=c.rollout.encode_chunk,
    )
    advantage_kwargs = dict(scale_rewards=g.scale_rewards, reward_aggregation=g.reward_aggregation)
    loss_kwargs = dict(epsilon_low=g.epsilon_low, epsilon_high=g.epsilon_high, beta=g.beta, loss_type=g.loss_type)

    def update(loss: Tensor, first: bool) -> float:
        """One AdamW update of the head; returns the gradient norm before clipping."""
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)  # DDP: gradients averaged over the P equal shards = the global batch's
        if first:
            _check_only_head_learns(policy, ref_policy, frozen)
        grad_norm = accelerator.clip_grad_norm_(policy.parameters(), o.max_grad_norm or math.inf)
        if not (math.isfinite(loss.item()) and math.isfinite(float(grad_norm))):
            raise Diverged(f"loss {loss.item():.4g}, gradient norm {float(grad_norm):.4g}")
        optimizer.step()
        scheduler.step()
        if not all(bool(torch.isfinite(p).all()) for p in policy.parameters()):  # the head is small: cheap
            raise Diverged("the update made the head's weights non-finite")
        return float(grad_norm)

    def sampled_step(step: int) -> dict[str, float]:
        # ---- 1. rollout with the current head: this process's videos, G paths each, old and reference log-probs
        videos = stream.videos(step, mine).to(device)  # [B/P, L, C, T, H, W]
        generators = video_generators(c.seed, "sample", step, mine, device)  # video i's paths: (seed, step, i) only
        with torch.no_grad():
            rollout = collect_rollout(tokenizer, policy, ref_policy, videos, generator=generators, **rollout_kwargs)
            # ---- 2. rewards, advantages (per path or decision) of the global batch; this process keeps its rows
            everyone = gather_rollout(accelerator, rollout)
            R = score(rewards, everyone, g.credit)  # [B, G, R] or [B, G, L, R]
            advantages = compute_advantages(R, weights, **advantage_kwargs)[mine.start : mine.stop]  # [B/P, G, (L)]
            max_keep = None if rollout.max_keep is None else rearrange(rollout.max_keep, "b l -> (b l)")
            entropy = policy.entropy(None, c.rollout.mode, max_keep, logits=rollout.logits).mean()  # exact
            leash = bool(g.knob_beta and g.knob_tilts)

        # ---- 3. μ optimisation passes over the rollout; only the head's parameters have gradients
        sums: dict[str, float] = {}
        for _ in range(g.num_iterations):
            logp, logits = scorer(rollout.encoded.latents, rollout.keep, rollout.max_keep)  # [B/P, G, L], [B/P·L, K]
            loss, metrics = grpo_loss(logp, rollout.old_logp, rollout.ref_logp, advantages, **loss_kwargs)
            if leash:  # the knob KL: the other operating points stay where the starting head had them
                kl = knob_kl(logits, rollout.ref_logits, g.knob_tilts)
                loss, metrics = loss + g.knob_beta * kl, {**metrics, "knob_kl": kl.item()}
            grad_norm = update(loss, step == start)
            for key, value in {"loss": loss.item(), **metrics, "grad_norm": grad_norm}.items():
                sums[key] = sums.get(key, 0.0) + value / g.num_iterations

        # ---- 4. metrics (loss metrics averaged over processes)
        del sums["entropy"]  # grpo_loss's sample estimate; the exact one is logged
        local = torch.tensor([*sums.values(), entropy.item()], dtype=torch.float64, device=device)
        averaged = accelerator.reduce(local, "mean").tolist() if world > 1 else local.tolist()
        return {
            **reward_metrics(R, weights, labels),
            "frac_reward_zero_std": _constant_groups(R).float().mean().item(),
            "tokens/mean": everyone.keep.float().mean().item(),
            "tokens/std": everyone.keep.float().std().item(),
            **dict(zip([*sums, "entropy"], averaged, strict=True)),
        }

    def enumerated_step(step: int) -> dict[str, float]:
        # every process fits the same minibatch of the same (gathered) pool: the heads stay equal without DDP
        loss, metrics = fit.loss(policy, step)
        return {**metrics, "grad_norm": update(loss, step == start)}

    step = start
    try:
        fit = None
        if g.groups == "enumerated":  # score the pool on the grid (or read it from the cache) before any step
            bar = tqdm(
                total=c.data.videos, disable=not (progress and main), desc="reward table", unit="video", leave=False
            )
            t_table = time.perf_counter()
            try:
                fit = build_target_fit(
                    c,
                    tokenizer,
                    rewards,
                    ref_policy,
                    rank=rank,
                    world=world,
                    gather=gather_object,
                    progress=bar.update,
                )
            except RewardError as error:  # before any step: nothing was trained
                bar.close()
                log.close()
                raise TrainingError(
                    f"{error}; scoring the pool (grpo.groups: enumerated), nothing was trained"
                ) from None
            bar.close()
            table = {"clips": len(fit.latents), "decodes": fit.decodes, "seconds": time.perf_counter() - t_table}
        if start == 0:
            evaluate(0)  # the starting head: what the tuned one is compared with
        desc = "grpo" if fit is None else "fit (enumerated)"
        bar = tqdm(total=c.steps, initial=start, disable=not (progress and main), desc=desc, dynamic_ncols=True)
        # the last training line before the checkpoint: the summary of a run resumed at its last step still has it
        logged = [r for r in log.kept if "loss" in r]
        train_metrics: dict[str, float] = {k: v for k, v in logged[-1].items() if k != "step"} if logged else {}
        for step in range(start, c.steps):
            t0 = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            train_metrics = enumerated_step(step) if fit is not None else sampled_step(step)
            train_metrics.update(lr=lr, step_time=time.perf_counter() - t0)

            # ---- evaluation, checkpoint
            done = step + 1
            if done % c.log.log_every == 0 or done == c.steps:
                log.write(done, train_metrics)
            if (c.log.eval_every and done % c.log.eval_every == 0) or done == c.steps:
                evaluate(done)
            if (c.log.checkpoint_every and done % c.log.checkpoint_every == 0) or done == c.steps:
                checkpoint(done)
            bar.update(1)
            bar.set_postfix(reward=f"{train_metrics['reward']:.4g}", tokens=f"{train_metrics['tokens/mean']:.1f}")
        bar.close()

        # ---- the tuned head and the summary
        summary = {
            "steps": c.steps,
            "output_dir": str(output_dir),
            "world_size": world,
            "tokenizer_fingerprint": str(tokenizer.fingerprint),
            "last_train": train_metrics,
            "eval_history": history,
            "initial_eval": history[0] if history else None,
            "final_eval": history[-1] if history else None,
            "seconds": time.perf_counter() - t_start,
        }
        if fit is not None:  # what the enumerated pool cost this run (0 decodes when the cache had it all)
            summary["table"] = table
        if history and history[0]["step"] == 0:
            summary["eval_gain"] = {k: history[-1][k] - history[0][k] for k in history[0] if k != "step"}
        if main:
            save_head(
                policy.head,
                output_dir,
                tokenizer_fingerprint=str(tokenizer.fingerprint),
                steps=c.steps,
                config=to_dict(c),
            )
            (output_dir / "summary.json").write_text(json.dumps(summary, indent=1))
            folder.finish(steps=c.steps)
    except (Diverged, NonFiniteLogits) as error:  # NaN/inf: stop before a bad head is checkpointed
        log.close()
        raise TrainingError(
            f"training diverged at step {step + 1} ({error}) with optim.lr = {c.optim.lr:g}: lower optim.lr "
            f"(or optim.max_grad_norm); {_kept(output_dir)}"
        ) from None
    except RewardError as error:  # a plugin raised (or returned a bad value) mid-training
        log.close()
        raise TrainingError(f"{error} (at step {step + 1}); {_kept(output_dir)}") from error
    except (OSError, SafetensorError) as error:  # a full disk (safetensors reports it as its own error), ...
        log.close()
        where = getattr(error, "filename", None) or output_dir
        last = history[-1] if history else {}
        numbers = (
            f"; last held-out eval (step {last['step']}): reward {last['eval/reward']:.4g}, argmax tokens "
            f"{last['eval/argmax_tokens/mean']:.1f}"
            if "eval/reward" in last
            else ""
        )
        raise TrainingError(
            f"log.output_dir {output_dir}: cannot write {where} at step {step + 1} "
            f"({getattr(error, 'strerror', None) or error}); "
            f"{_kept(output_dir)}{numbers}"
        ) from error
    log.close()
    accelerator.wait_for_everyone()
    return summary


def _constant_groups(R: Tensor) -> Tensor:
    """[B] (or [B, L] per decision) bool: every reward is constant over the group's G paths (up to rounding), so
    its advantages are 0."""
    return (R.std(dim=1) <= 1e-7 * (1 + R.mean(dim=1).abs())).all(-1)


def _check_only_head_learns(policy: TaildropPolicy, ref_policy: TaildropPolicy, frozen: list[nn.Module]) -> None:
    """After the first backward: every head parameter has a gradient, nothing else does."""
    missing = [n for n, p in policy.named_parameters() if p.grad is None]
    leaked = [
        n for m in [ref_policy, *frozen] for n, p in m.named_parameters() if p.requires_grad or p.grad is not None
    ]
    if missing or leaked:
        raise RuntimeError(
            f"only the head may learn: head parameters without gradient {missing}, "
            f"frozen parameters with gradient or requires_grad {leaked}"
        )
