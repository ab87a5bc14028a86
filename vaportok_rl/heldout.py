"""Held-out evaluation of a taildrop head, in one place: what training logs and what sweeps report.

- :class:`HeldOutEval`: the trainer's periodic evaluation (``eval/*`` keys of metrics.jsonl): the current head's
  G sampled paths per fixed held-out video, scored by the run's rewards, plus the argmax head's tokens and PSNR.
- :func:`evaluate_head`: a (finished) head's argmax keep counts on the same held-out videos: tokens, PSNR, MSE,
  LPIPS and the AR prior's top-5 accuracy on the kept tokens (the sweep's results.csv columns).
- :func:`held_out_videos`: those videos, drawn exactly as the trainer draws them.
- :func:`reward_metrics`: the TRL-named summaries of every reward of a rollout [B, G, R], scored by
  :func:`~vaportok_rl.reward_calling.score` (re-exported here; the trainer uses both for its training batches too).

The budgeted comparison against allocators and the oracle is a different question (``vaportok_rl.judge``,
``vaportok-rl eval``). Axis letters: docs/design.md.
"""

from __future__ import annotations

from typing import Any

import torch
from einops import rearrange, repeat
from torch import Tensor

from vaportok_rl.data import load_videos
from vaportok_rl.metrics import psnr, shared_lpips
from vaportok_rl.policy import TaildropPolicy
from vaportok_rl.reward_calling import score
from vaportok_rl.rewards import required_needs
from vaportok_rl.rollout import collect_rollout, encode_videos, video_generators
from vaportok_rl.tokenizer.protocol import FrozenTokenizer, prior_accuracy
from vaportok_rl.train_config import TrainConfig

__all__ = ["HeldOutEval", "evaluate_head", "held_out_videos", "reward_metrics", "score"]


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
        ).to(device)  # [B, L, C, T, H, W]
        self.encoded = encode_videos(tokenizer, self.videos, config.rollout.encode_chunk)
        self.needs = required_needs(rewards.values())
        self.scales: Tensor | None = None  # σ_i [R], fixed at the first call

    def set_scales(self, scales: list[float]) -> None:
        self.scales = torch.tensor(scales, device=self.weights.device)

    @torch.no_grad()
    def __call__(self, policy: TaildropPolicy, ref_policy: TaildropPolicy) -> dict[str, float]:
        c, device = self.config, self.videos.device
        Be = self.videos.shape[0]
        rollout = collect_rollout(
            self.tokenizer,
            policy,
            ref_policy,
            self.videos,
            group_size=c.grpo.group_size,
            mode=c.rollout.mode,
            needs=self.needs,
            generator=video_generators(c.eval.seed, "eval-sample", 0, range(Be), device),
            decode_chunk=c.rollout.decode_chunk,
            encode_chunk=c.rollout.encode_chunk,
            encoded=self.encoded,
        )
        R = score(self.rewards, rollout)  # [B, G, R]
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
        keep_star, recon_star = argmax_decode(self.tokenizer, policy, self.encoded, c.rollout.decode_chunk)
        metrics["eval/argmax_tokens/mean"] = keep_star.float().mean().item()
        metrics["eval/argmax_psnr"] = psnr(recon_star, clips).mean().item()
        return metrics

    def _spread(self, R: Tensor) -> Tensor:
        g = self.config.grpo
        if g.reward_aggregation == "sum_then_normalize" or g.scale_rewards == "none":
            return torch.ones(R.shape[-1], device=R.device)
        spread = R.std(dim=1).mean(0) if g.scale_rewards == "group" else R.flatten(0, 1).std(dim=0)  # [R]
        return torch.where(spread > 1e-6, spread, torch.ones_like(spread))  # a constant reward: units of 1


def tokenizer_device(tokenizer) -> Any:
    """Where a tokenizer's weights live (CPU for one without parameters)."""
    params = getattr(tokenizer, "parameters", None)
    if callable(params):
        for p in params():
            return p.device
    return torch.device("cpu")


@torch.no_grad()
def argmax_decode(tokenizer: FrozenTokenizer, policy: TaildropPolicy, encoded, chunk: int) -> tuple[Tensor, Tensor]:
    """The argmax head's keep counts [N] and reconstructions [N, C, T, H, W], decoded ``chunk`` clips per call:
    what both evaluations below report on."""
    keep = policy.argmax_keep(encoded.latents)  # [N]
    recon = torch.cat(
        [tokenizer.decode(encoded.latents[i : i + chunk], keep[i : i + chunk]) for i in range(0, len(keep), chunk)]
    )
    return keep, recon


def held_out_videos(config: TrainConfig, tokenizer):
    """The run's held-out videos [B, L, C, T, H, W], exactly as the trainer's evaluation draws them (16 videos
    when the run turned evaluation off)."""
    e = config.eval
    _, T, H, _ = tuple(tokenizer.clip_shape)
    return load_videos(
        e.source or config.data.source,
        e.num_videos or 16,
        e.clips_per_video or config.rollout.clips_per_video,
        seed=e.seed,
        frames=T,
        size=H,
        split=e.split,
    )


def evaluate_head(head, config: TrainConfig, tokenizer, lpips_metric=None, videos=None) -> dict[str, float]:
    """A head's argmax keep counts on the run's held-out videos: tokens (mean, std), PSNR, MSE, LPIPS, prior
    top-5 accuracy on the kept tokens. ``videos`` [B, L, C, T, H, W] defaults to :func:`held_out_videos`."""
    device = tokenizer_device(tokenizer)
    videos = (held_out_videos(config, tokenizer) if videos is None else videos).to(device)
    chunk = config.rollout.decode_chunk
    with torch.no_grad():
        encoded = encode_videos(tokenizer, videos, config.rollout.encode_chunk)
        keep, recon = argmax_decode(tokenizer, TaildropPolicy(head.to(device)), encoded, chunk)
        clips = rearrange(videos, "b l c t h w -> (b l) c t h w")
        mse = (recon.float() - clips.float()).pow(2).flatten(1).mean(1)  # [N]
        metric = lpips_metric if lpips_metric is not None else shared_lpips(device)
        lpips = metric(recon.clamp(0, 1), clips)  # [N]
        top5 = prior_accuracy(tokenizer.prior_correct(encoded, 5), keep)  # [N]
    return {
        "tokens": keep.float().mean().item(),
        "tokens_std": keep.float().std().item() if len(keep) > 1 else 0.0,
        "psnr": psnr(recon, clips).mean().item(),
        "mse": mse.mean().item(),
        "lpips": lpips.mean().item(),
        "prior_top5": top5.mean().item(),
        "num_clips": len(keep),
    }
