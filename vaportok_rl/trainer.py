"""GRPO on the taildrop head: ``vaportok-rl train RECIPE [key=value ...] [--resume] [--help-config]``.

One training step, on one screen in :func:`run_training`:

    B videos ──encode once──► sample G truncation paths per video with the current head ──► keep [B, G, L]
      ──(batched decode / prior pass if a reward needs them)──► every reward [B, G] ──► rewards [B, G, R]
      ──compute_advantages──► advantages [B, G] ──► μ × (log-probs [B, G, L] → grpo_loss → AdamW step)

Only the head learns: the tokenizer (and its AR prior) is frozen, the reference of the KL term is a frozen copy
of the starting head. Axis letters follow DESIGN.md.

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

or the held-out evaluation keys (fixed videos and generator; see :class:`HeldOutEval`)

    eval/reward, eval/reward_std, eval/rewards/<label>/mean|std, eval/objective, eval/tokens/mean,
    eval/argmax_tokens/mean, eval/argmax_psnr, eval/psnr (when rewards decode)
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import importlib
import importlib.util
import json
import math
import os
import random
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from einops import rearrange, repeat
from safetensors.torch import save_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from vaportok_rl.checkpoint import flatten_state, load_checkpoint, save_checkpoint, unflatten_state
from vaportok_rl.config import ConfigError, describe, save_yaml, to_dict
from vaportok_rl.data import load_videos
from vaportok_rl.grpo import compute_advantages, grpo_loss
from vaportok_rl.metrics import psnr
from vaportok_rl.policy import TaildropPolicy
from vaportok_rl.rewards import RewardError, check_reward_output, load_reward, required_needs
from vaportok_rl.rollout import Rollout, collect_rollout, encode_videos, group_log_prob
from vaportok_rl.tokenizer.head import HeadConfig, TaildropHead
from vaportok_rl.tokenizer.protocol import Encoded, FrozenTokenizer
from vaportok_rl.train_config import TrainConfig, load_train_config

__all__ = ["HeldOutEval", "derive_seed", "load_tokenizer_spec", "run_training", "save_head", "cli"]

METRICS_FILE = "metrics.jsonl"
CHECKPOINTS = "checkpoints"


# =============================================================================================== seeds and data


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed that depends on ``parts`` only (e.g. (seed, "sample", step, video index))."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


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
        if source not in ("synthetic", "textures", "mixed"):
            from vaportok_rl.data import VideoFolder

            if not Path(source).is_dir():
                raise ConfigError(f"data.source: expected 'synthetic', 'textures' or a folder, got {source!r}")
            self.folder = VideoFolder(source, clips_per_video=clips_per_video, frames=T, size=H)

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


def _import_file(path: Path, kind: str):
    path = path.resolve()
    name = f"_vaportok_{kind}_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{kind} {path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def load_tokenizer_spec(spec: str) -> FrozenTokenizer:
    """``"file.py:factory"`` / ``"package.module:factory"`` (a callable, e.g. a class, returning a FrozenTokenizer),
    else :func:`vaportok_rl.tokenizer.load_tokenizer` ("default", a tokenizer .safetensors file or a run folder)."""
    target, sep, attr = spec.rpartition(":")
    if sep and attr.isidentifier() and target:
        if target.endswith(".py"):
            if not Path(target).is_file():
                raise ConfigError(f"tokenizer {spec!r}: file {target} not found")
            module = _import_file(Path(target), "tokenizer")
        else:
            try:
                module = importlib.import_module(target)
            except ImportError as error:
                raise ConfigError(f"tokenizer {spec!r}: cannot import module {target!r}: {error}") from error
        factory = getattr(module, attr, None)
        if not callable(factory):
            raise ConfigError(f"tokenizer {spec!r}: {attr!r} is not a callable in {target}")
        tokenizer = factory()
    else:
        from vaportok_rl.tokenizer import load_tokenizer

        try:
            tokenizer = load_tokenizer(spec)
        except (OSError, ValueError) as error:
            raise ConfigError(f"tokenizer {spec!r}: {error}") from error
    if not isinstance(tokenizer, FrozenTokenizer):
        raise ConfigError(
            f"tokenizer {spec!r}: got a {type(tokenizer).__name__}, which lacks the FrozenTokenizer "
            f"members (num_latents, latent_dim, codebook_size, clip_shape, fingerprint, encode, decode, "
            f"prior_correct)"
        )
    return tokenizer


def starting_head(tokenizer: FrozenTokenizer, config: TrainConfig) -> TaildropHead:
    """A trainable copy of ``policy.init``, else of the tokenizer's pretrained ``.head``, else a fresh head sized
    from the protocol."""
    pretrained = getattr(tokenizer, "head", None)
    if config.policy.init is not None:
        from vaportok_rl.evaluation import EvalError, load_head_spec

        try:
            head = copy.deepcopy(load_head_spec(config.policy.init, tokenizer))
        except (EvalError, ValueError, OSError) as err:
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
    """What DDP wraps: forward = the log-probs [B, G, L] of a rollout's decisions under the policy, with grad.
    (Going through DDP's forward is what makes backward all-reduce the gradients.)"""

    def __init__(self, policy: TaildropPolicy, mode: str):
        super().__init__()
        self.policy, self.mode = policy, mode

    def forward(self, latents: Tensor, keep: Tensor, max_keep: Tensor | None = None) -> Tensor:
        return group_log_prob(self.policy, latents, keep, self.mode, max_keep)


class PerVideoSampling(TaildropPolicy):
    """The policy (same head), drawing each video's G paths from that video's own generator.

    :func:`~vaportok_rl.rollout.collect_rollout` samples all B·L clips (row n = b·L + l) with one generator, so
    a video's paths would depend on the videos before it in the batch, and a 2-process run would differ from
    a 1-process one. This override of ``sample`` draws rows b·L .. b·L + L - 1 from ``generators[b]``."""

    def __init__(self, policy: TaildropPolicy, generators: list[torch.Generator], clips_per_video: int):
        super().__init__(policy.head)
        self.generators, self.clips_per_video = generators, clips_per_video

    def sample(self, latents, mode="sample", generator=None, num_samples=None, max_keep=None):
        L = self.clips_per_video
        if latents.shape[0] != L * len(self.generators):
            raise ValueError(f"PerVideoSampling: expected {len(self.generators)}·{L} clips, got {latents.shape[0]}")
        parts = []
        for b, video_generator in enumerate(self.generators):
            rows = slice(b * L, (b + 1) * L)
            cut = None if max_keep is None else max_keep[rows]
            parts.append(super().sample(latents[rows], mode, video_generator, num_samples, cut))
        return torch.cat(parts, dim=-1)  # [N] or [num_samples, N]


def sample_generators(seed: int, kind: str, step: int, indices: range, device: torch.device) -> list[torch.Generator]:
    return [torch.Generator(device=device).manual_seed(derive_seed(seed, kind, step, i)) for i in indices]


# =============================================================================================== rewards


def load_rewards(config: TrainConfig) -> dict[str, Any]:
    """{label: plugin instance} for the active rewards, in recipe order."""
    search = [Path(p) for p in config.plugin_paths]
    return {
        label: load_reward(spec.spec or label, spec.kwargs, search_paths=search)
        for label, spec in config.active_rewards().items()
    }


@torch.no_grad()
def score(rewards: dict[str, Any], rollout: Rollout, credit: str = "path") -> Tensor:
    """Every reward on the rollout, each checked: [B, G, R] float32 for ``credit="path"`` (a per-clip reward
    [B, G, L] is averaged over its L clips), [B, G, L, R] for ``"decision"`` (a path reward is broadcast to
    each of its clips)."""
    B, G, L = rollout.B, rollout.G, rollout.L
    columns = []
    for plugin in rewards.values():
        value = check_reward_output(plugin, plugin(rollout), B, G, L).float().to(rollout.keep.device)
        if credit == "decision":
            value = value if value.ndim == 3 else repeat(value, "b g -> b g l", l=L)  # [B, G, L]
        elif value.ndim == 3:
            value = value.mean(-1)  # [B, G]
        columns.append(value)
    return torch.stack(columns, dim=-1)


def reward_metrics(R: Tensor, weights: Tensor, labels: list[str], prefix: str = "") -> dict[str, float]:
    """TRL-named summaries of rewards R [B, G, R] (or per decision [B, G, L, R]: path values = mean over L)."""
    if R.ndim == 4:
        R = R.mean(2)  # [B, G, R]
    total = (R * weights).sum(-1)  # [B, G], raw weighted sum
    metrics = {f"{prefix}reward": total.mean().item(), f"{prefix}reward_std": total.std(dim=1).mean().item()}
    for i, label in enumerate(labels):
        metrics[f"{prefix}rewards/{label}/mean"] = R[..., i].mean().item()
        metrics[f"{prefix}rewards/{label}/std"] = R[..., i].std().item()
    return metrics


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
    )


# =============================================================================================== held-out evaluation


class HeldOutEval:
    """The current head on fixed held-out videos: same sampling mode, G paths per video from fixed generators.

    ``eval/reward`` is the mean of Σ_i w_i r_i over paths (raw rewards). ``eval/objective`` is
    Σ_i w_i · mean(r_i) / σ_i with σ_i the reward's spread as the advantages see it (mean within-group std for
    scale_rewards "group", std over the batch for "batch"), measured once on the *starting* head and then held
    fixed: the held-out value of what "normalize_then_sum" optimises, in the starting head's units (σ_i = 1 under
    "sum_then_normalize" or "none", where it equals eval/reward). Also: sampled tokens per clip, the argmax
    head's tokens per clip and its PSNR (dB, mean over clips), and the sampled paths' PSNR when rewards decode.
    """

    def __init__(
        self, config: TrainConfig, tokenizer: FrozenTokenizer, rewards: dict, weights: Tensor, device: torch.device
    ):
        e, C_T_H_W = config.eval, tuple(tokenizer.clip_shape)
        self.config, self.tokenizer, self.rewards, self.weights = config, tokenizer, rewards, weights
        self.L = e.clips_per_video or config.rollout.clips_per_video
        source = e.source or config.data.source
        self.videos = load_videos(
            source, e.num_videos, self.L, seed=e.seed, frames=C_T_H_W[1], size=C_T_H_W[2], split=e.split
        ).to(device)  # [Be, L, C, T, H, W]
        self.encoded = encode_videos(tokenizer, self.videos, config.rollout.encode_chunk)
        self.needs = required_needs(rewards.values())
        self.scales: Tensor | None = None  # σ_i [R], fixed at the first call

    def set_scales(self, scales: list[float]) -> None:
        self.scales = torch.tensor(scales, device=self.weights.device)

    @torch.no_grad()
    def __call__(self, policy: TaildropPolicy, ref_policy: TaildropPolicy) -> dict[str, float]:
        c, device = self.config, self.videos.device
        Be = self.videos.shape[0]
        generators = sample_generators(c.eval.seed, "eval-sample", 0, range(Be), device)
        rollout = collect_rollout(
            self.tokenizer,
            PerVideoSampling(policy, generators, self.L),
            ref_policy,
            self.videos,
            group_size=c.grpo.group_size,
            mode=c.rollout.mode,
            needs=self.needs,
            generator=None,
            decode_chunk=c.rollout.decode_chunk,
            encode_chunk=c.rollout.encode_chunk,
            encoded=self.encoded,
        )
        R = score(self.rewards, rollout)  # [Be, G, R]
        if self.scales is None:
            self.scales = self._spread(R)
        metrics = reward_metrics(R, self.weights, list(self.rewards), "eval/")
        metrics["eval/objective"] = float((self.weights * R.mean(dim=(0, 1)) / self.scales).sum())
        metrics["eval/tokens/mean"] = rollout.keep.float().mean().item()
        clips = rearrange(self.videos, "b l c t h w -> (b l) c t h w")  # [N, C, T, H, W]
        if rollout.reconstructions is not None:  # the sampled paths' PSNR, when the rewards decoded them anyway
            recon = rearrange(rollout.reconstructions, "b g l c t h w -> (b g l) c t h w")
            targets = repeat(self.videos, "b l c t h w -> (b g l) c t h w", g=c.grpo.group_size)
            metrics["eval/psnr"] = psnr(recon, targets).mean().item()
        keep_star = policy.argmax_keep(self.encoded.latents)  # [N]
        chunk = c.rollout.decode_chunk
        recon_star = torch.cat(
            [
                self.tokenizer.decode(self.encoded.latents[i : i + chunk], keep_star[i : i + chunk])
                for i in range(0, len(keep_star), chunk)
            ]
        )
        metrics["eval/argmax_tokens/mean"] = keep_star.float().mean().item()
        metrics["eval/argmax_psnr"] = psnr(recon_star, clips).mean().item()
        return metrics

    def _spread(self, R: Tensor) -> Tensor:
        g = self.config.grpo
        if g.reward_aggregation == "sum_then_normalize" or g.scale_rewards == "none":
            return torch.ones(R.shape[-1], device=R.device)
        spread = R.std(dim=1).mean(0) if g.scale_rewards == "group" else R.flatten(0, 1).std(dim=0)  # [R]
        return torch.where(spread > 1e-6, spread, torch.ones_like(spread))  # a constant reward: units of 1


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


def checkpoint_dirs(output_dir: Path) -> list[Path]:
    """Complete checkpoints in output_dir, oldest first."""
    root = output_dir / CHECKPOINTS
    found = [p for p in root.glob("step-*") if (p / "meta.json").is_file() and (p / "tensors.safetensors").is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


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
        if not enabled:
            return
        lines = []
        if resume_step is not None and self.path.is_file():  # drop what a killed run logged after its checkpoint
            lines = [
                ln for ln in self.path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= resume_step
            ]
        self.path.write_text("".join(ln + "\n" for ln in lines))
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


def save_head(head: TaildropHead, output_dir: str | Path, **provenance: Any) -> Path:
    """Write ``head.safetensors`` (the state dict) and ``head_config.json`` ({"head": HeadConfig fields, ...})."""
    output_dir = Path(output_dir)
    tmp = output_dir / ".head.safetensors.tmp"
    save_file({k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}, tmp)
    os.replace(tmp, output_dir / "head.safetensors")
    info = {"head": dataclasses.asdict(head.config), **provenance}
    (output_dir / ".head_config.json.tmp").write_text(json.dumps(info, indent=1))
    os.replace(output_dir / ".head_config.json.tmp", output_dir / "head_config.json")
    return output_dir / "head.safetensors"


def _resume_state(config: TrainConfig, output_dir: Path) -> tuple[dict[str, Tensor], dict]:
    found = checkpoint_dirs(output_dir)
    if not found:
        raise ConfigError(f"--resume: no checkpoint in {output_dir / CHECKPOINTS}")
    tensors, meta = load_checkpoint(found[-1])
    saved, now = dict(meta["config"]), to_dict(config)
    changed = [k for k in sorted(set(saved) | set(now)) if k not in ("log", "steps") and saved.get(k) != now.get(k)]
    if changed:
        raise ConfigError(
            f"--resume: the config differs from the checkpoint's ({found[-1]}) in {changed}; only "
            f"'steps' and 'log.*' may change when resuming"
        )
    return tensors, meta


# =============================================================================================== the run


def run_training(
    config: TrainConfig, *, tokenizer: FrozenTokenizer | None = None, resume: bool = False, progress: bool = True
) -> dict:
    """Train the taildrop head with GRPO as ``config`` says; returns the summary (also written to summary.json).

    ``tokenizer`` overrides ``config.tokenizer`` (already-built objects, e.g. in tests and sweeps). With
    ``resume``, continues from the newest checkpoint in ``log.output_dir``."""
    t_start = time.perf_counter()
    c, g = config, config.grpo
    output_dir = Path(c.log.output_dir)
    force_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    accelerator = Accelerator(cpu=force_cpu or not torch.cuda.is_available())  # CUDA when there is one
    if accelerator.num_processes != int(os.environ.get("WORLD_SIZE", "1")):
        raise RuntimeError(
            f"accelerate sees {accelerator.num_processes} process(es) but WORLD_SIZE is "
            f"{os.environ['WORLD_SIZE']}; launch with torchrun --nproc_per_node P"
        )
    device, main = accelerator.device, accelerator.is_main_process
    world, rank = accelerator.num_processes, accelerator.process_index
    B, L, G = c.rollout.videos_per_step, c.rollout.clips_per_video, g.group_size
    if B % world:
        raise ConfigError(f"rollout.videos_per_step: {B} videos do not split evenly over {world} processes")
    mine = range(rank * (B // world), (rank + 1) * (B // world))  # this process's videos of the global batch
    if not resume and checkpoint_dirs(output_dir):
        raise ConfigError(
            f"log.output_dir {output_dir} already holds checkpoints: pass --resume to continue that run, "
            f"or choose another log.output_dir"
        )

    # ---- the frozen tokenizer; the trainable head; its frozen starting copy as the KL reference
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer_spec(c.tokenizer)
    frozen = [m for m in (tokenizer,) if isinstance(m, nn.Module)]
    for module in frozen:
        module.to(device).eval().requires_grad_(False)
    policy = TaildropPolicy(starting_head(tokenizer, c)).to(device)
    ref_policy = policy.reference_copy()
    rewards = load_rewards(c)
    labels, needs = list(rewards), required_needs(rewards.values())
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
    evaluator = HeldOutEval(c, tokenizer, rewards, weights, device) if main and c.eval.num_videos else None
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

    if start == 0:
        evaluate(0)  # the starting head: what the tuned one is compared with
    rollout_kwargs = dict(
        group_size=G,
        mode=c.rollout.mode,
        needs=needs,
        generator=None,
        decode_chunk=c.rollout.decode_chunk,
        encode_chunk=c.rollout.encode_chunk,
    )
    advantage_kwargs = dict(scale_rewards=g.scale_rewards, reward_aggregation=g.reward_aggregation)
    loss_kwargs = dict(epsilon_low=g.epsilon_low, epsilon_high=g.epsilon_high, beta=g.beta, loss_type=g.loss_type)
    bar = tqdm(total=c.steps, initial=start, disable=not (progress and main), desc="grpo", dynamic_ncols=True)
    train_metrics: dict[str, float] = {}
    for step in range(start, c.steps):
        t0 = time.perf_counter()
        # ---- 1. rollout with the current head: this process's videos, G paths each, old and reference log-probs
        videos = stream.videos(step, mine).to(device)  # [B/P, L, C, T, H, W]
        sampler = PerVideoSampling(policy, sample_generators(c.seed, "sample", step, mine, device), L)
        with torch.no_grad():
            rollout = collect_rollout(tokenizer, sampler, ref_policy, videos, **rollout_kwargs)
            # ---- 2. rewards [B, G, R] and advantages [B, G] over the global batch; this process keeps its rows
            everyone = gather_rollout(accelerator, rollout)
            R = score(rewards, everyone, g.credit)  # [B, G, R] or [B, G, L, R]
            advantages = compute_advantages(R, weights, **advantage_kwargs)[mine.start : mine.stop]  # [B/P, G, (L)]
            max_keep = None if rollout.max_keep is None else rearrange(rollout.max_keep, "b l -> (b l)")
            entropy = policy.entropy(rollout.encoded.latents, c.rollout.mode, max_keep).mean()  # exact

        # ---- 3. μ optimisation passes over the rollout; only the head's parameters have gradients
        lr = optimizer.param_groups[0]["lr"]
        sums: dict[str, float] = {}
        for _ in range(g.num_iterations):
            logp = scorer(rollout.encoded.latents, rollout.keep, rollout.max_keep)  # [B/P, G, L]
            loss, metrics = grpo_loss(logp, rollout.old_logp, rollout.ref_logp, advantages, **loss_kwargs)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)  # DDP: gradients averaged over the P equal shards = the global batch's
            if step == start:
                _check_only_head_learns(policy, ref_policy, frozen)
            grad_norm = accelerator.clip_grad_norm_(policy.parameters(), o.max_grad_norm or math.inf)
            optimizer.step()
            scheduler.step()
            for key, value in {"loss": loss.item(), **metrics, "grad_norm": float(grad_norm)}.items():
                sums[key] = sums.get(key, 0.0) + value / g.num_iterations

        # ---- 4. metrics (loss metrics averaged over processes), evaluation, checkpoint
        del sums["entropy"]  # grpo_loss's sample estimate; the exact one is logged
        local = torch.tensor([*sums.values(), entropy.item()], dtype=torch.float64, device=device)
        averaged = accelerator.reduce(local, "mean").tolist() if world > 1 else local.tolist()
        train_metrics = {
            **reward_metrics(R, weights, labels),
            "frac_reward_zero_std": _constant_groups(R).float().mean().item(),
            "tokens/mean": everyone.keep.float().mean().item(),
            "tokens/std": everyone.keep.float().std().item(),
            **dict(zip([*sums, "entropy"], averaged, strict=True)),
            "lr": lr,
            "step_time": time.perf_counter() - t0,
        }
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
    if history and history[0]["step"] == 0:
        summary["eval_gain"] = {k: history[-1][k] - history[0][k] for k in history[0] if k != "step"}
    if main:
        save_head(
            policy.head, output_dir, tokenizer_fingerprint=str(tokenizer.fingerprint), steps=c.steps, config=to_dict(c)
        )
        (output_dir / "summary.json").write_text(json.dumps(summary, indent=1))
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


# =============================================================================================== CLI


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vaportok-rl train",
        description="GRPO-tune the taildrop head of a frozen tokenizer. Multi-process: "
        "torchrun --standalone --nproc_per_node P -m vaportok_rl.cli train RECIPE ...",
        epilog="Overrides are dotted config keys, e.g. steps=50 grpo.beta=0 rewards.efficiency=null "
        "rewards.penalty.kwargs.shape=quadratic. --help-config lists every key.",
    )
    parser.add_argument("recipe", nargs="?", help="YAML recipe, e.g. recipes/grpo_default.yaml")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in log.output_dir")
    parser.add_argument("--help-config", action="store_true", help="list every config key with type, default, doc")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.help_config:
        print(describe(TrainConfig))
        return 0
    if args.recipe is None:
        parser.error("a recipe is required (e.g. recipes/grpo_default.yaml)")
    if "=" in args.recipe:
        parser.error(f"the first argument must be a recipe file, got the override {args.recipe!r}")
    try:
        config = load_train_config(args.recipe, args.overrides)
        summary = run_training(config, resume=args.resume, progress=not args.no_progress)
    except (ConfigError, RewardError) as error:
        print(f"vaportok-rl train: error: {error}", file=sys.stderr)
        return 2
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    final = summary.get("final_eval") or {}
    if final:
        print(
            f"held-out reward {summary['initial_eval']['eval/reward']:.4g} -> {final['eval/reward']:.4g}, "
            f"argmax tokens {final['eval/argmax_tokens/mean']:.1f}, argmax PSNR {final['eval/argmax_psnr']:.2f} dB"
        )
    print(f"wrote {Path(config.log.output_dir) / 'summary.json'}")
    return 0
