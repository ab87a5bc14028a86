"""One training step. Sampled groups (GRPO), top to bottom in :func:`grpo_step`:

    B videos ──encode once──► sample G truncation paths per video with the current head ──► keep [B, G, L]
      ──(batched decode / prior pass if a reward needs them)──► every reward [B, G] ──► rewards [B, G, R]
      ──compute_advantages──► advantages [B, G] ──► μ × (log-probs [B, G, L] → grpo_loss → AdamW step)

Enumerated groups (:func:`enumerated_step`): one AdamW step of the head towards the pool's closed-form targets
(:mod:`vaportok_rl.target_fit`). Only the head learns; the tokenizer and the reference head are frozen.
Axis letters: docs/design.md (P processes, each holding B/P videos of the global batch).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from accelerate import Accelerator
from einops import rearrange
from torch import Tensor, nn

from vaportok_rl.grpo import compute_advantages, grpo_loss, knob_kl
from vaportok_rl.heldout import reward_metrics, score
from vaportok_rl.policy import TaildropPolicy
from vaportok_rl.rewards import required_needs
from vaportok_rl.rollout import Rollout, collect_rollout, group_log_prob, video_generators
from vaportok_rl.tokenizer.protocol import Encoded
from vaportok_rl.train.errors import Diverged
from vaportok_rl.train.state import Run

__all__ = ["PathScorer", "enumerated_step", "gather_rollout", "grpo_step", "update"]


def grpo_step(run: Run, step: int) -> dict[str, float]:
    c, g, device = run.config, run.objective, run.accelerator.device
    # ---- 1. rollout with the current head: this process's videos, G paths each, old and reference log-probs
    videos = run.stream.videos(step, run.mine).to(device)  # [B/P, L, C, T, H, W]
    generators = video_generators(c.seed, "sample", step, run.mine, device)  # video i's paths: (seed, step, i) only
    with torch.no_grad():
        rollout = collect_rollout(
            run.tokenizer,
            run.policy,
            run.ref_policy,
            videos,
            group_size=g.group_size,
            mode=c.rollout.mode,
            needs=required_needs(run.rewards.values()),
            generator=generators,
            decode_chunk=c.rollout.decode_chunk,
            encode_chunk=c.rollout.encode_chunk,
        )
        # ---- 2. rewards, advantages (per path or decision) of the global batch; this process keeps its rows
        everyone = gather_rollout(run.accelerator, rollout)
        R = score(run.rewards, everyone, g.credit)  # [B, G, R] or [B, G, L, R]
        advantages = compute_advantages(
            R, run.weights, scale_rewards=g.scale_rewards, reward_aggregation=g.reward_aggregation
        )[run.mine.start : run.mine.stop]  # [B/P, G, (L)]
        max_keep = None if rollout.max_keep is None else rearrange(rollout.max_keep, "b l -> (b l)")  # [B/P·L]
        entropy = run.policy.entropy(None, c.rollout.mode, max_keep, logits=rollout.logits).mean()  # exact

    # ---- 3. μ optimisation passes over the rollout; only the head's parameters have gradients
    sums: dict[str, float] = {}
    for _ in range(g.num_iterations):
        logp, logits = run.scorer(rollout.encoded.latents, rollout.keep, rollout.max_keep)  # [B/P, G, L], [B/P·L, K]
        loss, metrics = grpo_loss(
            logp,
            rollout.old_logp,
            rollout.ref_logp,
            advantages,
            epsilon_low=g.epsilon_low,
            epsilon_high=g.epsilon_high,
            beta=g.beta,
            loss_type=g.loss_type,
        )
        if g.knob_beta and g.knob_tilts:  # the knob KL: the other operating points stay where the start had them
            kl = knob_kl(logits, rollout.ref_logits, g.knob_tilts)
            loss, metrics = loss + g.knob_beta * kl, {**metrics, "knob_kl": kl.item()}
        grad_norm = update(run, loss, first=step == run.start)
        for key, value in {"loss": loss.item(), **metrics, "grad_norm": grad_norm}.items():
            sums[key] = sums.get(key, 0.0) + value / g.num_iterations

    # ---- 4. metrics (loss metrics averaged over processes)
    del sums["entropy"]  # grpo_loss's sample estimate; the exact one is logged
    local = torch.tensor([*sums.values(), entropy.item()], dtype=torch.float64, device=device)
    averaged = run.accelerator.reduce(local, "mean").tolist() if run.accelerator.num_processes > 1 else local.tolist()
    return {
        **reward_metrics(R, run.weights, list(run.rewards)),
        "frac_reward_zero_std": constant_groups(R).float().mean().item(),
        "tokens/mean": everyone.keep.float().mean().item(),
        "tokens/std": everyone.keep.float().std().item(),
        **dict(zip([*sums, "entropy"], averaged, strict=True)),
    }


def enumerated_step(run: Run, step: int) -> dict[str, float]:
    """Every process fits the same minibatch of the same (gathered) pool: the heads stay equal without DDP."""
    loss, metrics = run.fit.loss(run.policy, step)
    return {**metrics, "grad_norm": update(run, loss, first=step == run.start)}


def update(run: Run, loss: Tensor, *, first: bool) -> float:
    """One AdamW update of the head; returns the gradient norm before clipping. A non-finite loss, gradient or
    weight raises :class:`~vaportok_rl.train.errors.Diverged` before it can reach a checkpoint."""
    run.optimizer.zero_grad(set_to_none=True)
    run.accelerator.backward(loss)  # DDP: gradients averaged over the P equal shards = the global batch's
    if first:
        check_only_head_learns(run.policy, run.ref_policy, run.frozen)
    max_norm = run.max_grad_norm or math.inf
    grad_norm = float(run.accelerator.clip_grad_norm_(run.policy.parameters(), max_norm))
    if not (math.isfinite(loss.item()) and math.isfinite(grad_norm)):
        raise Diverged(f"loss {loss.item():.4g}, gradient norm {grad_norm:.4g}")
    run.optimizer.step()
    run.scheduler.step()
    if not all(bool(torch.isfinite(p).all()) for p in run.policy.parameters()):  # the head is small: cheap
        raise Diverged("the update made the head's weights non-finite")
    return grad_norm


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


def constant_groups(R: Tensor) -> Tensor:
    """[B] (or [B, L] per decision) bool: every reward is constant over the group's G paths (up to rounding), so
    its advantages are 0."""
    return (R.std(dim=1) <= 1e-7 * (1 + R.mean(dim=1).abs())).all(-1)


def check_only_head_learns(policy: TaildropPolicy, ref_policy: TaildropPolicy, frozen: list[nn.Module]) -> None:
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
