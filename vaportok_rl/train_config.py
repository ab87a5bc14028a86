"""The configuration of a GRPO run on the taildrop head: one dataclass per concern, every field documented.

A recipe is YAML whose keys are the fields below (``vaportok-rl train RECIPE --help-config`` lists them all
with types, defaults and docs); ``key.sub=VALUE`` overrides on the command line are merged on top. Defaults
are the VaporTok paper's: G = 8 samples per group, β = 0.1, μ = 2 inner iterations, ε = 0.2 / 0.28,
reward weights 1:1:1:1:1, the head's own softmax temperature (1.8 for the built-in tokenizer), loss "grpo".

Rewards are a *mapping* from a label to ``{spec, weight, kwargs}`` rather than a list, so that dotted
overrides can reach them: ``rewards.penalty.weight=2``, ``rewards.penalty.kwargs.shape=quadratic``, and
``rewards.efficiency=null`` drops a reward inherited from a base recipe (the leave-one-out ablation).

A *sweep recipe* (see :class:`SweepConfig`) names a base recipe and a list of named override sets (and/or a
``grid``); :func:`vaportok_rl.sweep.load_sweep`, the one sweep expander, turns it into full TrainConfig objects.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

from vaportok_rl.config import check_number, load_config, to_dict

__all__ = [
    "DEFAULT_REWARDS",
    "DataConfig",
    "EvalConfig",
    "GRPOConfig",
    "LogConfig",
    "OptimConfig",
    "PolicyConfig",
    "RewardSpec",
    "RolloutConfig",
    "RunSpec",
    "SweepConfig",
    "TrainConfig",
    "load_train_config",
]


def _key(owner: str, name: str) -> str:
    return f"{owner}.{name}" if owner else name


def _positive_int(owner: str, name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{_key(owner, name)}: expected a positive integer, got {value!r}")


def _non_negative_int(owner: str, name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{_key(owner, name)}: expected a non-negative integer, got {value!r}")


def _finite(
    owner: str, name: str, value: float, *, low: float | None = None, high: float | None = None, low_open: bool = False
) -> None:
    check_number(_key(owner, name), value, low=low, high=high, low_open=low_open)


# ------------------------------------------------------------------------------------------------ GRPO


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
    "enumerated": every reward must decompose over clips ([B, G, L]); each clip of a pool of ``data.videos``
    videos is scored at the keep counts of a log-spaced grid (``grid_points``; the paths of a video are the grid),
    once, cached on disk, and the head is fitted to each clip's closed-form optimum of GRPO's objective,
    π*(k) ∝ ref(k)^(β/(β+τ))·exp(u(k)/(β+τ)), u = Σ_i w_i r_i, τ = ``target_temperature``, β = ``beta``
    (issue 17: far more sample-efficient than sampling k). Steps are then optimiser steps on minibatches of
    ``rollout.videos_per_step`` pool videos; group_size, num_iterations, epsilon_*, loss_type, scale_rewards,
    reward_aggregation, credit and knob_tilts are not used."""
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
    target_temperature: float = 0.25
    """Enumerated groups: τ of the target, in reward units (dB for ``psnr``): keep counts within ~τ of a clip's
    best utility share the target's mass."""
    knob_prices: list[float] = field(default_factory=list)
    """Enumerated groups: other prices per token, in reward units, that the price knob (``vaportok_rl.budget``)
    should reach; the head's logits tilted by (p - price)/τ per token are fitted to the targets at price p too.
    The run's own price is Σ_i w_i · (the plugin's ``price_per_token``): 0.1 for psnr + token_cost at 0.1. Each >= 0."""

    def __post_init__(self) -> None:
        _positive_int("grpo", "group_size", self.group_size)
        _non_negative_int("grpo", "grid_points", self.grid_points)
        if self.grid_points == 1:
            raise ValueError("grpo.grid_points: expected 0 (every k) or an integer >= 2 (it holds 1 and K), got 1")
        _finite("grpo", "target_temperature", self.target_temperature, low=0, low_open=True)
        for i, p in enumerate(self.knob_prices):
            _finite("grpo", f"knob_prices[{i}]", p, low=0)
        _finite("grpo", "knob_beta", self.knob_beta, low=0)
        for i, t in enumerate(self.knob_tilts):
            _finite("grpo", f"knob_tilts[{i}]", t)
        if self.group_size < 2:
            raise ValueError(
                f"grpo.group_size: expected >= 2 (advantages compare paths within a group), got {self.group_size}"
            )
        _positive_int("grpo", "num_iterations", self.num_iterations)
        _finite("grpo", "beta", self.beta, low=0)
        _finite("grpo", "epsilon_low", self.epsilon_low, low=0, high=1)
        _finite("grpo", "epsilon_high", self.epsilon_high, low=0)


# ------------------------------------------------------------------------------------------------ rewards


@dataclass
class RewardSpec:
    """One reward function of the run. Its label (the key under ``rewards:``) names it in the metrics."""

    spec: str | None = None
    """Where the plugin comes from: a short name ("efficiency", a file NAME.py in plugin_paths or the
    built-ins), "path/to/file.py" or "path/to/file.py:Class", or "package.module:Class". Default: the label."""
    weight: float = 1.0
    """Weight of this reward in the advantage (see grpo.reward_aggregation); 0 keeps it logged only."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for the plugin class, e.g. {shape: quadratic} for penalty."""

    def __post_init__(self) -> None:
        if self.spec is not None and not self.spec.strip():
            raise ValueError("spec: expected a non-empty plugin spec or null (= the label)")
        _finite("", "weight", self.weight)


def _default_rewards() -> dict[str, RewardSpec | None]:
    return {name: RewardSpec() for name in DEFAULT_REWARDS}


DEFAULT_REWARDS = ("efficiency", "penalty", "diversity", "reconstruction", "generation")
"""The paper's five rewards, all built-in plugins, weighted 1:1:1:1:1."""


# ------------------------------------------------------------------------------------------------ policy, rollout, data


@dataclass
class PolicyConfig:
    """The trainable taildrop head. It starts as a copy of ``init``, else of the tokenizer's pretrained ``.head``
    when it has one; the reference policy of the KL term is a frozen copy of that starting head."""

    init: str | None = None
    """Where the head starts: null = the tokenizer's pretrained head; or a head spec as ``eval --head`` takes it
    ("default", "pretrained", an exported head folder, a GRPO run folder), e.g. the oracle-distilled head of
    ``vaportok-rl distill``. It must have been made for this tokenizer (its fingerprint is checked)."""
    temperature: float | None = None
    """Softmax temperature over k; null keeps the starting head's own (1.8 for the built-in tokenizer's head,
    the paper's value). Setting it changes the temperature of both the trained and the reference head."""
    width: int = 96
    """Width of a fresh head, used only when the tokenizer has no pretrained ``.head``."""
    layers: int = 2
    """Transformer blocks of a fresh head (tokenizer without ``.head`` only; the paper uses 2)."""
    heads: int = 4
    """Attention heads per block of a fresh head (tokenizer without ``.head`` only)."""

    def __post_init__(self) -> None:
        if self.temperature is not None:
            _finite("policy", "temperature", self.temperature, low=0, low_open=True)
        for name in ("width", "layers", "heads"):
            _positive_int("policy", name, getattr(self, name))
        if self.width % self.heads:
            raise ValueError(f"policy.width: {self.width} is not divisible by policy.heads={self.heads}")


@dataclass
class RolloutConfig:
    """How each training step's rollout is collected."""

    videos_per_step: int = 8
    """B: videos in the global batch of one step (split evenly over processes, so it must be a multiple of
    the number of processes)."""
    clips_per_video: int = 4
    """L: consecutive clips per video; one truncation decision per clip, L decisions per path."""
    mode: Literal["sample", "pre_argmax", "argmax"] = "sample"
    """How truncations are drawn: "sample" the full distribution over k, "pre_argmax" only k <= the head's
    argmax, "argmax" deterministic (no exploration: every path of a group is the same)."""
    decode_chunk: int = 256
    """Largest number of clips per decoder call when decoding the B·G·L truncations (a memory cap)."""
    encode_chunk: int = 256
    """Largest number of clips per encoder / prior call."""

    def __post_init__(self) -> None:
        for name in ("videos_per_step", "clips_per_video", "decode_chunk", "encode_chunk"):
            _positive_int("rollout", name, getattr(self, name))


@dataclass
class DataConfig:
    """Where training videos come from. Frames and frame size are the tokenizer's ``clip_shape``."""

    source: str = "synthetic"
    """"synthetic" (procedural scenes), "textures" (pans/zooms over photographs) or a folder of video files."""
    split: Literal["all", "train", "test"] = "train"
    """Image split of the "textures" source (the held-out eval uses "test"); other sources ignore it."""
    seed: int | None = None
    """Seed of the training videos; null uses the run's seed. Step s draws video i from (seed, s, i) alone, so
    the videos do not depend on how the batch is split over processes, and a resumed run sees the same ones."""
    videos: int = 256
    """Enumerated groups only: the pool of training videos (× rollout.clips_per_video clips) scored once at every
    grid point and reused by every step; sampled groups draw fresh videos every step and ignore it."""

    def __post_init__(self) -> None:
        _positive_int("data", "videos", self.videos)
        if not self.source.strip():
            raise ValueError("data.source: expected 'synthetic', 'textures' or a folder path, got ''")
        if self.seed is not None:
            _non_negative_int("data", "seed", self.seed)


@dataclass
class EvalConfig:
    """Held-out evaluation of the current head: the same videos every time (fixed seed, separate from training),
    run before the first step, every ``log.eval_every`` steps and after the last."""

    num_videos: int = 16
    """Held-out videos; 0 turns evaluation off."""
    clips_per_video: int | None = None
    """Clips per held-out video; null uses rollout.clips_per_video."""
    source: str | None = None
    """Video source of the held-out set; null uses data.source (give a separate folder for folder sources)."""
    split: Literal["all", "train", "test"] = "test"
    """Image split for the "textures" source: "test" images never appear in training with data.split "train"."""
    seed: int = 1_000_003
    """Seed of the held-out videos and of the fixed generator that samples their truncations."""

    def __post_init__(self) -> None:
        _non_negative_int("eval", "num_videos", self.num_videos)
        if self.clips_per_video is not None:
            _positive_int("eval", "clips_per_video", self.clips_per_video)
        if self.source is not None and not self.source.strip():
            raise ValueError("eval.source: expected a source or null (= data.source), got ''")
        _non_negative_int("eval", "seed", self.seed)


# ------------------------------------------------------------------------------------------------ optimiser, logging


@dataclass
class OptimConfig:
    """AdamW on the head's parameters only, with gradient clipping and a learning-rate schedule."""

    lr: float = 3e-4
    """Peak learning rate."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW (beta1, beta2)."""
    eps: float = 1e-8
    """AdamW epsilon."""
    max_grad_norm: float | None = 1.0
    """Clip the global gradient norm to this value; null does not clip (the norm is still logged)."""
    schedule: Literal["constant", "cosine", "linear"] = "constant"
    """Learning-rate shape after warmup: constant, cosine decay or linear decay to lr · min_lr_ratio at the end."""
    warmup_ratio: float = 0.0
    """Fraction of all optimiser updates (steps · grpo.num_iterations) spent in linear warmup from 0."""
    min_lr_ratio: float = 0.0
    """Final learning rate of the "cosine" and "linear" schedules as a fraction of lr."""

    def __post_init__(self) -> None:
        _finite("optim", "lr", self.lr, low=0, low_open=True)
        _finite("optim", "weight_decay", self.weight_decay, low=0)
        for i, beta in enumerate(self.betas):
            if not (isinstance(beta, float) and 0 <= beta < 1):
                raise ValueError(f"optim.betas[{i}]: expected a number in [0, 1), got {beta!r}")
        _finite("optim", "eps", self.eps, low=0)
        if self.max_grad_norm is not None:
            _finite("optim", "max_grad_norm", self.max_grad_norm, low=0, low_open=True)
        _finite("optim", "warmup_ratio", self.warmup_ratio, low=0, high=1)
        _finite("optim", "min_lr_ratio", self.min_lr_ratio, low=0, high=1)


@dataclass
class LogConfig:
    """Where and how often the run writes metrics, evaluations and checkpoints."""

    output_dir: str = "runs/grpo_default"
    """Run folder: metrics.jsonl, config.yaml, checkpoints/, summary.json, head.safetensors + head_config.json."""
    report_to: Literal["none", "wandb"] = "none"
    """Also send metrics to Weights & Biases ("wandb"). JSONL is always written. wandb runs offline unless
    the environment sets WANDB_MODE (sync later with `wandb sync OUTPUT_DIR/wandb/offline-run-*`)."""
    wandb_project: str = "vaportok-rl"
    """wandb project name."""
    run_name: str | None = None
    """Run name for wandb; null uses the output folder's name."""
    log_every: int = 1
    """Write the training metrics every this many steps."""
    eval_every: int = 50
    """Evaluate on the held-out set every this many steps (also before the first and after the last); 0 = only
    before the first and after the last."""
    checkpoint_every: int = 50
    """Save a resumable checkpoint every this many steps (and after the last); 0 = only after the last."""
    keep_checkpoints: int = 2
    """How many of the newest checkpoints to keep in output_dir/checkpoints; 0 keeps all."""

    def __post_init__(self) -> None:
        if not self.output_dir.strip():
            raise ValueError("log.output_dir: expected a folder path, got ''")
        if not self.wandb_project.strip():
            raise ValueError("log.wandb_project: expected a project name, got ''")
        _positive_int("log", "log_every", self.log_every)
        for name in ("eval_every", "checkpoint_every", "keep_checkpoints"):
            _non_negative_int("log", name, getattr(self, name))


# ------------------------------------------------------------------------------------------------ the run


@dataclass
class TrainConfig:
    """Everything one GRPO run depends on. A checkpoint carries it; ``--resume`` checks it did not change."""

    tokenizer: str = "default"
    """The frozen tokenizer: "default" (the embedded built-in weights), a tokenizer .safetensors file or a
    pretraining run folder holding tokenizer.safetensors, or "path/to/file.py:factory" /
    "package.module:factory", a callable (e.g. a class) returning a FrozenTokenizer (bring your own)."""
    seed: int = 0
    """Seed of the run: truncation sampling, a fresh head's initialisation and (unless data.seed is set) the
    training videos."""
    steps: int = 200
    """Training steps; each collects one rollout of B videos and makes grpo.num_iterations optimiser updates."""
    rewards: dict[str, RewardSpec | None] = field(default_factory=_default_rewards)
    """Reward functions by label: {label: {spec, weight, kwargs}}. The label names the reward in the metrics
    (rewards/<label>/mean) and is the plugin spec when spec is null. A recipe that sets rewards lists all of
    them (the five defaults are not merged in); a null entry drops a reward inherited from a base recipe or
    set by an earlier override."""
    plugin_paths: list[str] = field(default_factory=list)
    """Folders searched first for reward plugins given by short name or relative file path (relative folders
    are taken from the working directory). Each must exist: a missing one is an error when the rewards load,
    not skipped (a misspelt folder would otherwise fall back to a built-in of the same name)."""
    table_cache: str | None = None
    """Enumerated groups: folder of the cached reward tables (one file per reward, tokenizer, pool and grid), so a
    rerun, a new price or new weights decode nothing; null = $VAPORTOK_RL_CACHE or ~/.cache/vaportok-rl/tables."""
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    """The GRPO objective."""
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    """The trainable head."""
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    """Rollout collection."""
    data: DataConfig = field(default_factory=DataConfig)
    """Training videos."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Held-out evaluation."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimiser and schedule."""
    log: LogConfig = field(default_factory=LogConfig)
    """Outputs: metrics, evaluations, checkpoints."""

    def __post_init__(self) -> None:
        if not self.tokenizer.strip():
            raise ValueError("tokenizer: expected 'default', a folder or 'file.py:factory', got ''")
        _non_negative_int("", "seed", self.seed)
        _positive_int("", "steps", self.steps)
        active = self.active_rewards()
        if not active:
            raise ValueError("rewards: expected at least one reward (all entries are null)")
        for label in active:
            if not label or any(c.isspace() for c in label) or "/" in label:
                raise ValueError(
                    f"rewards: label {label!r} must be non-empty, without whitespace or '/' (it is a metric key)"
                )
        if all(spec.weight == 0 for spec in active.values()):
            raise ValueError("rewards: every weight is 0, so every advantage would be 0")
        for i, path in enumerate(self.plugin_paths):
            if not path.strip():
                raise ValueError(f"plugin_paths[{i}]: expected a folder path, got ''")

    def active_rewards(self) -> dict[str, RewardSpec]:
        """The rewards of the run, in recipe order, without the null (dropped) entries."""
        return {label: spec for label, spec in self.rewards.items() if spec is not None}


def load_train_config(recipe: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """A recipe file plus ``key.sub=VALUE`` overrides -> TrainConfig.

    The recipe is the base the overrides merge into; without one (``recipe=None``) the defaults are, so
    ``rewards.penalty.weight=2`` then changes one of the five default rewards instead of replacing them."""
    if recipe is None:
        return load_config(TrainConfig, None, list(overrides), base=to_dict(TrainConfig()))
    return load_config(TrainConfig, recipe, list(overrides))


# ------------------------------------------------------------------------------------------------ sweeps


@dataclass
class RunSpec:
    """One named run of a sweep: overrides applied on top of the sweep's base recipe and shared overrides."""

    name: str
    """Run name; its outputs go to <base log.output_dir>/<name> (plus /seed<k> when the sweep lists seeds)."""
    overrides: list[str] = field(default_factory=list)
    """Dotted "key=VALUE" overrides of this run, as on the command line (e.g. "rewards.efficiency=null")."""

    def __post_init__(self) -> None:
        if not self.name or any(c.isspace() for c in self.name) or "/" in self.name or self.name in (".", ".."):
            raise ValueError(f"name: expected a folder-safe run name (no whitespace or '/'), got {self.name!r}")


@dataclass
class SweepConfig:
    """A sweep recipe: named override sets over one base recipe, e.g. ::

        base: grpo_default.yaml          # relative to this file
        overrides: [steps=100]           # for every run (optional)
        seeds: [0, 1, 2]                 # each run once per seed (optional)
        runs:
          - {name: full}
          - {name: wo_efficiency, overrides: ["rewards.efficiency=null"]}

    Run ``name`` with seed ``k`` trains base ⊕ overrides ⊕ the run's overrides ⊕ ``seed=k``, writing to
    ``<log.output_dir>/<name>/seed<k>``. :func:`vaportok_rl.sweep.load_sweep` expands a ``grid:`` into ``runs`` and
    builds and validates every run's config.
    """

    base: str
    """The base training recipe; a relative path is relative to the sweep file's folder."""
    runs: list[RunSpec]
    """The runs, in order; names must be unique."""
    overrides: list[str] = field(default_factory=list)
    """Dotted "key=VALUE" overrides applied to every run before its own."""
    seeds: list[int] | None = None
    """Repeat every run once per seed (``seed=k``); null runs each once with the recipe's seed."""

    def __post_init__(self) -> None:
        if not self.base.strip():
            raise ValueError("base: expected the path of a training recipe, got ''")
        if not self.runs:
            raise ValueError("runs: expected at least one run")
        names = [run.name for run in self.runs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"runs: duplicate run names {duplicates}")
        if self.seeds is not None:
            if not self.seeds:
                raise ValueError("seeds: expected a non-empty list or null")
            for i, seed in enumerate(self.seeds):
                _non_negative_int("", f"seeds[{i}]", seed)
            if len(set(self.seeds)) != len(self.seeds):
                raise ValueError(f"seeds: duplicate seeds in {self.seeds}")
