"""The recipe of the GRPO objective (``grpo:`` in a training recipe): :class:`GRPOConfig`, the one source of its
defaults. The maths that reads it (:mod:`vaportok_rl.grpo`) takes its keyword defaults from here, so a library call
and a recipe with nothing set do the same thing. Light on purpose: dataclasses and the config checks only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from vaportok_rl.config import check_non_negative_int, check_number, check_positive_int

__all__ = ["GRPOConfig", "PathPhaseConfig"]


@dataclass
class PathPhaseConfig:
    """Enumerated groups, then sampled GRPO in the same run (issue 17, item 6). A reward that scores whole paths
    ([B, G]: diversity, a per-video budget) cannot be tabulated per clip: the run first fits the head to the per-clip
    rewards' targets (``steps`` fit steps, the path-level rewards left out), then takes ``grpo.path_phase.steps``
    steps of sampled GRPO on *every* reward from the fitted head, which becomes the KL reference. That phase uses
    grpo's sampled settings (group_size, num_iterations, epsilon_*, loss_type, scale_rewards, reward_aggregation,
    credit) and the fields below; the price knob's other prices (``grpo.knob_prices``) are held where the fitted
    head had them (the knob KL at their tilts)."""

    steps: int = 0
    """Sampled GRPO steps after the fit; 0 = none (then a [B, G] reward stops the run before training, named)."""
    lr: float = 1.0e-4
    """AdamW learning rate of the sampled phase (constant); betas, eps and weight decay are optim's."""
    beta: float = 0.02
    """Weight of the k3 KL penalty towards the fitted head on the sampled keep counts."""
    knob_beta: float = 1.0
    """Weight of the exact KL to the fitted head at each knob price's tilt (0 turns it off): the path-level rewards
    tune the run's own operating point, not the others."""
    videos_per_step: int = 8
    """B of the sampled phase: fresh training videos per step (data.source), G paths each."""
    max_grad_norm: float | None = 1.0
    """Gradient-norm clip of the sampled phase (null = none); the fit's is optim.max_grad_norm."""

    def __post_init__(self) -> None:
        check_non_negative_int("grpo.path_phase.steps", self.steps)
        check_number("grpo.path_phase.lr", self.lr, low=0, low_open=True)
        check_number("grpo.path_phase.beta", self.beta, low=0)
        check_number("grpo.path_phase.knob_beta", self.knob_beta, low=0)
        check_positive_int("grpo.path_phase.videos_per_step", self.videos_per_step)
        if self.max_grad_norm is not None:
            check_number("grpo.path_phase.max_grad_norm", self.max_grad_norm, low=0, low_open=True)


@dataclass
class GRPOConfig:
    """The GRPO objective (see :func:`vaportok_rl.grpo.grpo_loss` and :func:`~vaportok_rl.grpo.compute_advantages`)."""

    group_size: int = 8
    """G: truncation paths sampled per video; advantages compare the G paths of one video (paper: 8)."""
    num_iterations: int = 2
    """μ: optimisation passes over each rollout; the first is on-policy, later ones use the clipped ratio (paper: 2)."""
    beta: float = 0.1
    """Weight of the k3 KL penalty towards the initial head (paper: 0.1); 0 turns the reference off."""
    epsilon_low: float = 0.2
    """The ratio is clipped below at 1 - epsilon_low (paper: 0.2)."""
    epsilon_high: float = 0.28
    """The ratio is clipped above at 1 + epsilon_high (paper: 0.28, DAPO's clip-higher)."""
    loss_type: Literal["grpo", "dapo", "dr_grpo"] = "grpo"
    """Reduction of the per-decision losses: "grpo" mean per path then over paths; "dapo" sum / number of
    decisions; "dr_grpo" sum / (B·G·L). Without masks all three coincide up to a constant factor."""
    scale_rewards: Literal["group", "batch", "none"] = "group"
    """What centred rewards are divided by: the std of their group ("group"), of the whole global batch
    ("batch", TRL's option) or nothing ("none", Dr. GRPO)."""
    reward_aggregation: Literal["sum_then_normalize", "normalize_then_sum"] = "normalize_then_sum"
    """When the reward weights apply. "normalize_then_sum" (default): every reward is normalised within its
    group first, then the weighted sum is the advantage, so a weight is the reward's share of the advantage
    whatever its units. The five built-ins differ in scale by orders of magnitude (reconstruction is -MSE
    ~1e-2, penalty is a sum over clips of up to L, efficiency lies in [0, 1)), so under "sum_then_normalize"
    (TRL's behaviour: weighted sum, then normalise) the largest-scale reward would decide every advantage
    and the paper's 1:1:1:1:1 weights would mean nothing."""
    credit: Literal["path", "decision"] = "path"
    """Who an advantage belongs to. "path" (the paper's): one advantage per sampled path, shared by its L clip
    decisions. "decision": rewards that decompose over clips (they return [B, G, L], e.g. ``psnr`` and
    ``token_cost``) give each clip's decision its own advantage against the G decisions drawn for that clip;
    path-level rewards are broadcast to their clips."""
    knob_tilts: list[float] = field(default_factory=list)
    """Price-knob tilts (logit units per token; see ``vaportok_rl.budget``) at which the head's distribution is
    held near the starting head's by ``knob_beta``: GRPO tunes one operating point, this keeps the others. For a
    head from ``vaportok-rl distill`` the tilt of price p is (p - distill.price) / distill.temperature."""
    knob_beta: float = 0.0
    """Weight of the exact KL to the starting head at each of ``knob_tilts`` (0 turns it off)."""
    groups: Literal["sampled", "enumerated"] = "sampled"
    """How a video's paths are chosen. "sampled" (the paper's): G keep counts drawn from the head every step.
    "enumerated": the rewards that decompose over clips ([B, G, L]; those that score whole paths go to
    ``path_phase``) are tabulated: each clip of a pool of ``data.videos`` videos is scored at the keep counts of a
    log-spaced grid (``grid_points``; the paths of a video are the grid), once, cached on disk, and the head is
    fitted to each clip's closed-form optimum of GRPO's objective,
    π*(k) ∝ ref(k)^(β/(β+τ))·exp(u(k)/(β+τ)), u = Σ_i w_i r_i, τ = ``target_temperature``, β = ``beta``
    (issue 17: far more sample-efficient than sampling k). Steps are then optimiser steps on minibatches of
    ``rollout.videos_per_step`` pool videos; group_size, num_iterations, epsilon_*, loss_type, scale_rewards,
    reward_aggregation and credit serve only ``path_phase`` (sampled steps after the fit, for rewards that score
    whole paths); knob_tilts and knob_beta are not used."""
    grid_points: int = 16
    """Enumerated groups: keep counts scored per clip, log-spaced over 1..K with both ends (rewards that read
    reconstructions are interpolated in log k between them; the others are scored at every k, at no decode
    cost); 0 = every k. On the default tokenizer 16 points keep 95-97 % of the every-k head's savings along the
    price knob at 1/8 of its decodes, 74-86 % at the head's own budget (benchmarks/grid_cost.py)."""
    grid_interpolation: Literal["log_k", "step"] = "log_k"
    """Enumerated groups: how a reward scored on the grid is read between its points: "log_k" linear in log k,
    "step" the value at the grid point at or below k (for a quality that never falls with k, a lower bound: the
    utility then peaks at grid points, never on a ramp between them). Measured worse than "log_k" along the price
    knob on the default tokenizer (benchmarks/grid_cost.py, README)."""
    table_normalization: Literal["none", "clip"] = "none"
    """Enumerated groups: how each reward's table enters the utility u = Σ_i w_i r_i. "none": in its own units, so
    weights are exchange rates (psnr in dB, token_cost's weight a price in dB per token). "clip": each reward's
    values over a clip's K keep counts are centred and divided by their std (a constant row stays 0), the
    enumerated counterpart of normalize_then_sum with group scaling: a weight is the reward's share whatever its
    units (the paper's 1:1:1:1:1 recipe, recipes/vaportok_paper_enumerated.yaml). target_temperature is then in
    std units, and knob_prices are unavailable (no reward's units are the utility's)."""
    target_temperature: float = 0.25
    """Enumerated groups: τ of the target, in reward units (dB for ``psnr``): keep counts within ~τ of a clip's
    best utility share the target's mass."""
    knob_prices: list[float] = field(default_factory=list)
    """Enumerated groups: other prices per token, in reward units, that the price knob (``vaportok_rl.budget``)
    should reach; the head's logits tilted by (p - price)/τ per token are fitted to the targets at price p too.
    The run's own price is Σ_i w_i · (the plugin's ``price_per_token``): 0.1 for psnr + token_cost at 0.1. Each >= 0."""
    path_phase: PathPhaseConfig = field(default_factory=PathPhaseConfig)
    """Enumerated groups: sampled GRPO after the fit, in the same run, for rewards that score whole paths."""

    def __post_init__(self) -> None:
        check_positive_int("grpo.group_size", self.group_size)
        check_non_negative_int("grpo.grid_points", self.grid_points)
        if self.grid_points == 1:
            raise ValueError("grpo.grid_points: expected 0 (every k) or an integer >= 2 (it holds 1 and K), got 1")
        check_number("grpo.target_temperature", self.target_temperature, low=0, low_open=True)
        for i, p in enumerate(self.knob_prices):
            check_number(f"grpo.knob_prices[{i}]", p, low=0)
        check_number("grpo.knob_beta", self.knob_beta, low=0)
        for i, t in enumerate(self.knob_tilts):
            check_number(f"grpo.knob_tilts[{i}]", t)
        if self.group_size < 2:
            raise ValueError(
                f"grpo.group_size: expected >= 2 (advantages compare paths within a group), got {self.group_size}"
            )
        check_positive_int("grpo.num_iterations", self.num_iterations)
        check_number("grpo.beta", self.beta, low=0)
        check_number("grpo.epsilon_low", self.epsilon_low, low=0, high=1)
        check_number("grpo.epsilon_high", self.epsilon_high, low=0)
        if self.table_normalization == "clip" and self.knob_prices:
            raise ValueError(
                f"grpo.knob_prices: {self.knob_prices} are prices in a reward's units, but table_normalization: clip "
                f"puts every reward in std units; use [] (the price knob still moves the head) or normalization none"
            )
        if self.path_phase.steps and self.groups != "enumerated":
            raise ValueError(
                f"grpo.path_phase.steps: {self.path_phase.steps} sampled steps after an enumerated fit need "
                f"grpo.groups: enumerated (got {self.groups!r}); with sampled groups every step is already sampled"
            )
