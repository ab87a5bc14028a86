"""GRPO maths: group-relative advantages and the clipped policy loss. Nothing else lives here.

One "path" is one sample of the policy for one video: a truncation decision (how many tokens to keep)
for each of its L clips. A batch holds B videos, G sampled paths per video (the group).

    rewards [B, G, R] ──compute_advantages──► advantages [B, G]          (path credit)
    rewards [B, G, L, R] ──compute_advantages──► advantages [B, G, L]    (decision credit)
    logp, old_logp, ref_logp [B, G, L] + advantages ──grpo_loss──► scalar loss, metrics

With *path credit* (the paper's) every decision of a path shares the path's advantage. With *decision credit*
each clip's decision is scored by its own rewards against the G decisions drawn for the same clip, so the L
decisions of a path no longer blur each other's credit; rewards that do not decompose over clips are
broadcast to every clip of their path.

The loss follows TRL's ``GRPOTrainer`` (decisions play the role of tokens): DAPO's asymmetric clipping
(``epsilon_low`` / ``epsilon_high``), the k3 KL estimator against a frozen reference policy, and the three
reductions ``grpo`` / ``dapo`` / ``dr_grpo``. Metric names match TRL's.

*Enumerated groups* (``grpo.groups: enumerated``) replace sampling by scoring every candidate keep count of a clip
(rewards that decompose over clips). The per-clip objective GRPO optimises in expectation,

    J(π) = E_{k~π}[u(k)] + τ·H(π) - β·KL(π || ref),        u(k) = Σ_i w_i r_i(k)

has a closed-form maximiser, π*(k) ∝ ref(k)^(β/(β+τ)) · exp(u(k)/(β+τ)) (:func:`group_target`), and the head is
fitted to it by cross-entropy (:func:`target_loss`), at its own price and at the price knob's other prices.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from vaportok_rl.grpo_config import GRPOConfig  # the keyword defaults are the recipe's (a plain dataclass, no I/O)

LOSS_TYPES = ("grpo", "dapo", "dr_grpo")
__all__ = ["LOSS_TYPES", "compute_advantages", "group_target", "grpo_loss", "knob_kl", "target_loss"]
SCALE_REWARDS = ("group", "batch", "none")
REWARD_AGGREGATIONS = ("sum_then_normalize", "normalize_then_sum")


def _check_shape(name: str, tensor: Tensor, expected: tuple[int, ...], what: str) -> None:
    if tuple(tensor.shape) != expected:
        raise ValueError(f"{name}: expected shape {what} = {expected}, got {tuple(tensor.shape)}")


def grpo_loss(
    logp: Tensor,
    old_logp: Tensor,
    ref_logp: Tensor | None,
    advantages: Tensor,
    mask: Tensor | None = None,
    *,
    epsilon_low: float = GRPOConfig.epsilon_low,
    epsilon_high: float = GRPOConfig.epsilon_high,
    beta: float = GRPOConfig.beta,
    loss_type: str = GRPOConfig.loss_type,
) -> tuple[Tensor, dict[str, float]]:
    """The clipped GRPO surrogate loss over truncation decisions.

    Args:
        logp: [B, G, L] log-probs of the sampled keep counts under the current policy (carries grad).
        old_logp: [B, G, L] the same under the policy that sampled them (treated as constant).
        ref_logp: [B, G, L] the same under the frozen reference policy (constant); may be ``None``
            when ``beta == 0``.
        advantages: [B, G] one advantage per path, shared by all its L decisions (path credit), or
            [B, G, L] one per decision (decision credit).
        mask: optional [B, G, L] bool, True = a real decision. Masked entries of the log-prob tensors may
            hold anything (padding, even inf/NaN): they add nothing to the loss, its gradient or metrics.
        epsilon_low, epsilon_high: the ratio is clipped to ``[1 - epsilon_low, 1 + epsilon_high]``.
        beta: weight of the KL penalty; 0 skips computing it (``kl`` is then reported as 0.0).
        loss_type: how per-decision losses are reduced to a scalar, with m the mask:
            ``"grpo"``: mean over each path's valid decisions, then mean over paths that have at least one;
            ``"dapo"``: sum over all valid decisions / number of valid decisions;
            ``"dr_grpo"``: sum over all valid decisions / (B·G·L), a constant whatever the mask.

    Per decision, with ratio = exp(logp - old_logp) and A the path's advantage::

        objective = min(ratio·A, clip(ratio, 1 - epsilon_low, 1 + epsilon_high)·A)
        kl        = exp(ref_logp - logp) - (ref_logp - logp) - 1          (k3 estimator, >= 0)
        loss      = -objective + beta·kl

    Returns:
        ``(loss, metrics)``: the scalar loss and python floats, each a mean over valid decisions:
        ``kl``; ``entropy``, the sample estimate mean(-logp) of the policy's entropy (the trainer may report
        the exact entropy of the distribution instead); ``clip_ratio/low_mean`` (ratio < 1 - epsilon_low
        and A < 0), ``clip_ratio/high_mean`` (ratio > 1 + epsilon_high and A > 0) and
        ``clip_ratio/region_mean`` (either): the fractions of decisions whose objective is clipped, so
        that they give no gradient.
    """
    # ---- validation
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type: expected one of {LOSS_TYPES}, got {loss_type!r}")
    if logp.ndim != 3:
        raise ValueError(f"logp: expected shape [B, G, L] (3 dims), got {tuple(logp.shape)}")
    B, G, L = logp.shape
    _check_shape("old_logp", old_logp, (B, G, L), "[B, G, L]")
    if advantages.ndim == 2:
        _check_shape("advantages", advantages, (B, G), "[B, G]")
        advantages = advantages.unsqueeze(-1)  # [B, G, 1], shared by the path's L decisions
    else:
        _check_shape("advantages", advantages, (B, G, L), "[B, G] or [B, G, L]")
    if ref_logp is not None:
        _check_shape("ref_logp", ref_logp, (B, G, L), "[B, G, L]")
    elif beta != 0:
        raise ValueError(f"ref_logp: required when beta != 0 (beta={beta})")
    if mask is not None:
        _check_shape("mask", mask, (B, G, L), "[B, G, L]")
        if mask.dtype != torch.bool:
            raise ValueError(f"mask: expected dtype torch.bool (True = a real decision), got {mask.dtype}")
    for name, value in (("epsilon_low", epsilon_low), ("epsilon_high", epsilon_high), ("beta", beta)):
        if not value >= 0:
            raise ValueError(f"{name}: expected a non-negative number, got {value!r}")

    # ---- masked entries are set to 0 first, so padding (even inf/NaN) cannot leak into values or grads
    if mask is None:
        mask = torch.ones(B, G, L, dtype=torch.bool, device=logp.device)  # [B, G, L]
    logp = logp.masked_fill(~mask, 0.0)  # [B, G, L]
    old_logp = old_logp.detach().masked_fill(~mask, 0.0)  # [B, G, L]
    advantages = advantages.detach().to(logp.dtype)  # [B, G, 1] or [B, G, L]
    m = mask.to(logp.dtype)  # [B, G, L]

    # ---- clipped surrogate objective
    ratio = torch.exp(logp - old_logp)  # [B, G, L]
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)  # [B, G, L]
    objective = torch.minimum(ratio * advantages, clipped * advantages)  # [B, G, L]
    per_decision = -objective  # [B, G, L]

    # ---- KL to the reference policy (k3)
    if beta != 0:
        ref_logp = ref_logp.detach().masked_fill(~mask, 0.0)  # [B, G, L]
        delta = ref_logp - logp  # [B, G, L]
        kl = torch.exp(delta) - delta - 1  # [B, G, L]
        per_decision = per_decision + beta * kl  # [B, G, L]

    # ---- reduction
    per_decision = per_decision * m  # [B, G, L]
    if loss_type == "grpo":
        count = m.sum(-1)  # [B, G] valid decisions per path
        per_path = per_decision.sum(-1) / count.clamp(min=1)  # [B, G]
        has_any = (count > 0).to(logp.dtype)  # [B, G]
        loss = (per_path * has_any).sum() / has_any.sum().clamp(min=1)
    elif loss_type == "dapo":
        loss = per_decision.sum() / m.sum().clamp(min=1)
    else:  # dr_grpo
        loss = per_decision.sum() / (B * G * L)

    # ---- metrics: means over valid decisions
    with torch.no_grad():
        n = m.sum().clamp(min=1)

        def masked_mean(x: Tensor) -> float:
            return float((x.to(logp.dtype) * m).sum() / n)

        is_low = (ratio < 1 - epsilon_low) & (advantages < 0)  # [B, G, L]
        is_high = (ratio > 1 + epsilon_high) & (advantages > 0)  # [B, G, L]
        metrics = {
            "kl": masked_mean(kl) if beta != 0 else 0.0,
            "entropy": masked_mean(-logp),
            "clip_ratio/low_mean": masked_mean(is_low),
            "clip_ratio/high_mean": masked_mean(is_high),
            "clip_ratio/region_mean": masked_mean(is_low | is_high),
        }
    return loss, metrics


def compute_advantages(
    rewards: Tensor,
    weights: Tensor | Sequence[float],
    *,
    scale_rewards: str = GRPOConfig.scale_rewards,
    reward_aggregation: str = GRPOConfig.reward_aggregation,
    eps: float = 1e-4,
) -> Tensor:
    """Group-relative advantages from several reward functions.

    Args:
        rewards: [B, G, R] one column per reward function (G >= 2 samples per group, all finite), or
            [B, G, L, R] one value per decision (decision credit): each clip (b, l) is its own group of G.
        weights: [R] one weight per reward function.
        scale_rewards: what the centred reward is divided by: ``"group"`` its group's std, ``"batch"`` the
            std over the whole batch (B·G values, TRL's behaviour; the mean is still the group's), ``"none"``
            nothing.
        reward_aggregation: when the weights are applied, see below; the default is the recipe's
            (``GRPOConfig.reward_aggregation``, ``"normalize_then_sum"``).
        eps: added to the std before dividing, so a group of equal rewards gives advantages of 0.

    With ``norm(x) = (x - mean_G x) / (std(x) + eps)`` (std per ``scale_rewards``; for ``"none"``
    ``norm(x) = x - mean_G x``):

        ``"sum_then_normalize"`` (TRL): r = Σ_i w_i r_i  [B, G];  A = norm(r).
            A reward with a large scale dominates whatever the weights.
        ``"normalize_then_sum"``: A = Σ_i w_i norm(r_i).
            Each reward is first brought to unit scale, so equal weights give equal influence even when
            the rewards' scales differ by orders of magnitude. A itself is not rescaled to unit std.

    Every std is the unbiased (Bessel-corrected, divide by n - 1) one, ``torch.std``'s default, as TRL.

    ``"batch"`` with ``"sum_then_normalize"`` gives every clip the same exchange rate between the rewards (one
    price per token across the batch, as the oracle's Lagrangian); ``"group"`` gives each group its own.

    Returns:
        advantages [B, G] (or [B, G, L]; float; the dtype of ``rewards`` if floating, else float32).
    """
    # ---- validation
    if scale_rewards not in SCALE_REWARDS:
        raise ValueError(f"scale_rewards: expected one of {SCALE_REWARDS}, got {scale_rewards!r}")
    if reward_aggregation not in REWARD_AGGREGATIONS:
        raise ValueError(f"reward_aggregation: expected one of {REWARD_AGGREGATIONS}, got {reward_aggregation!r}")
    if rewards.ndim not in (3, 4):
        raise ValueError(f"rewards: expected shape [B, G, R] or [B, G, L, R], got {tuple(rewards.shape)}")
    G, R = rewards.shape[1], rewards.shape[-1]
    if G < 2:
        raise ValueError(f"rewards: expected G >= 2 samples per group (shape [B, G, R]), got G={G}")
    if not rewards.is_floating_point():
        rewards = rewards.float()
    if not torch.isfinite(rewards).all():
        raise ValueError("rewards: expected finite values, got NaN or inf")
    weights = torch.as_tensor(weights, dtype=rewards.dtype, device=rewards.device)
    if weights.shape != (R,):
        raise ValueError(
            f"weights: expected shape [R] = ({R},), one weight per reward column of rewards, got {tuple(weights.shape)}"
        )
    if not eps >= 0:
        raise ValueError(f"eps: expected a non-negative number, got {eps!r}")

    decision = rewards.ndim == 4  # [B, G, L, R]: every (b, l) is a group of G

    def normalize(x: Tensor) -> Tensor:  # [B, G, (L,) (R)] -> same, over G (or every value for "batch")
        centred = x - x.mean(dim=1, keepdim=True)
        if scale_rewards == "group":
            return centred / (x.std(dim=1, keepdim=True) + eps)
        if scale_rewards == "batch":
            columns = x.shape[3:] if decision else x.shape[2:]  # the reward axis, if any
            return centred / (x.reshape(-1, *columns).std(dim=0) + eps)
        return centred

    if reward_aggregation == "sum_then_normalize":
        total = (rewards * weights).sum(-1)  # [B, G] or [B, G, L]
        advantages = normalize(total)
    else:  # normalize_then_sum
        advantages = (normalize(rewards) * weights).sum(-1)  # [B, G, (L,) R] -> [B, G, (L)]
    return advantages


def knob_kl(logits: Tensor, ref_logits: Tensor, tilts: Sequence[float]) -> Tensor:
    """The KL leash over the price knob: mean over tilts t and clips of KL(ref_t || π_t), exact over k.

    logits, ref_logits [N, K] over k = 1..K; π_t = softmax(logits - t·k), the policy the price knob
    (:mod:`vaportok_rl.budget`) makes at tilt t. GRPO's sampled-action KL (``beta``) only sees the k the policy
    samples at its own price; this holds the whole distribution at every listed tilt near the reference's, so
    tuning one operating point does not bend the head's other budgets."""
    if logits.shape != ref_logits.shape or logits.ndim != 2:
        raise ValueError(
            f"knob_kl: expected logits and ref_logits [N, K] alike, got {tuple(logits.shape)} and "
            f"{tuple(ref_logits.shape)}"
        )
    k = torch.arange(1, logits.shape[-1] + 1, dtype=logits.dtype, device=logits.device)
    t = torch.as_tensor(list(tilts), dtype=logits.dtype, device=logits.device)[:, None, None]  # [M, 1, 1]
    log_pi = torch.log_softmax(logits.unsqueeze(0) - t * k, dim=-1)  # [M, N, K]
    log_ref = torch.log_softmax(ref_logits.detach().unsqueeze(0) - t * k, dim=-1)  # [M, N, K]
    return (log_ref.exp() * (log_ref - log_pi)).sum(-1).mean()


def group_target(
    utility: Tensor,
    temperature: float,
    ref_logits: Tensor | None = None,
    beta: float = 0.0,  # not GRPOConfig.beta (0.1): the reference is optional (None), and beta > 0 needs it
) -> Tensor:
    """The closed-form optimum of the entropy-regularised objective over k, per clip.

    utility [N, K]: u(k) = Σ_i w_i r_i(k) for k = 1..K (every candidate scored); ``temperature`` τ > 0 in reward
    units; ref_logits [N, K] the reference policy (needed when ``beta`` > 0). Returns π* [N, K], rows summing to 1::

        log π*(k) = (β·log ref(k) + u(k)) / (β + τ) - log Z        (β = 0: softmax(u / τ))
    """
    if utility.ndim != 2:
        raise ValueError(f"utility: expected [N, K], got {tuple(utility.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature: expected a positive number, got {temperature!r}")
    if not beta >= 0:
        raise ValueError(f"beta: expected a non-negative number, got {beta!r}")
    if beta == 0:
        return torch.softmax(utility / temperature, dim=-1)  # [N, K]
    if ref_logits is None or ref_logits.shape != utility.shape:
        got = None if ref_logits is None else tuple(ref_logits.shape)
        raise ValueError(f"ref_logits: expected [N, K] = {tuple(utility.shape)} when beta > 0, got {got}")
    log_ref = torch.log_softmax(ref_logits.to(utility.dtype), dim=-1)  # [N, K]
    return torch.softmax((beta * log_ref + utility) / (beta + temperature), dim=-1)  # [N, K]


def target_loss(logits: Tensor, targets: Tensor, tilts: Tensor) -> Tensor:
    """Cross-entropy of the head's distribution to the targets at each price of the knob, mean over prices and
    clips.

    logits [N, K] (the head's, over k = 1..K); targets [M, N, K], the target at price p; tilts [M] in logit units
    per token, (p - price) / τ: the price knob (:mod:`vaportok_rl.budget`) tilts the logits by t·k, so fitting
    softmax(logits - t·k) to the target at p makes the knob move the head along the targets' own frontier."""
    M, N, K = targets.shape
    if logits.shape != (N, K) or tilts.shape != (M,):
        raise ValueError(
            f"target_loss: expected logits [N, K] = {(N, K)} and tilts [M] = ({M},), got {tuple(logits.shape)} "
            f"and {tuple(tilts.shape)}"
        )
    k = torch.arange(1, K + 1, dtype=logits.dtype, device=logits.device)
    tilted = logits.unsqueeze(0) - tilts.to(logits.dtype)[:, None, None] * k  # [M, N, K]
    log_pi = torch.log_softmax(tilted, dim=-1)  # [M, N, K]
    return -(targets.to(logits.dtype) * log_pi).sum(-1).mean()
