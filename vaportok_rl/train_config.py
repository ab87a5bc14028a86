"""The configuration of a GRPO run on the taildrop head: one dataclass per concern, every field documented.

A recipe is YAML whose keys are the fields below (``vaportok-rl train RECIPE --help-config`` lists them all
with types, defaults and docs); ``key.sub=VALUE`` overrides on the command line are merged on top. Defaults
are the VaporTok paper's: G = 8 samples per group, β = 0.1, μ = 2 inner iterations, ε = 0.2 / 0.28,
reward weights 1:1:1:1:1, the head's own softmax temperature (1.8 for the built-in tokenizer), loss "grpo".

Rewards are a *mapping* from a label to ``{spec, weight, kwargs}`` rather than a list, so that dotted
overrides can reach them: ``rewards.penalty.weight=2``, ``rewards.penalty.kwargs.shape=quadratic``, and
``rewards.efficiency=null`` drops a reward inherited from a base recipe (the leave-one-out ablation).

:class:`GRPOConfig` (the objective) lives in :mod:`vaportok_rl.grpo_config` and the sweep recipe's :class:`SweepConfig`
and :class:`RunSpec` in :mod:`vaportok_rl.sweep_config`; all are importable from here.

A *sweep recipe* (see :class:`SweepConfig`) names a base recipe and a list of named override sets (and/or a
``grid``); :func:`vaportok_rl.sweep.load_sweep`, the one sweep expander, turns it into full TrainConfig objects.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

from vaportok_rl.config import check_non_negative_int, check_number, check_positive_int, load_config, to_dict
from vaportok_rl.grpo_config import GRPOConfig
from vaportok_rl.sweep_config import RunSpec, SweepConfig
from vaportok_rl.tokenizer.head import HeadConfig  # a fresh head's architecture defaults are the head's own

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
        check_number("weight", self.weight)


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
    width: int = HeadConfig.width
    """Width of a fresh head, used only when the tokenizer has no pretrained ``.head``."""
    layers: int = HeadConfig.layers
    """Transformer blocks of a fresh head (tokenizer without ``.head`` only; the paper uses 2)."""
    heads: int = HeadConfig.heads
    """Attention heads per block of a fresh head (tokenizer without ``.head`` only)."""

    def __post_init__(self) -> None:
        if self.temperature is not None:
            check_number("policy.temperature", self.temperature, low=0, low_open=True)
        for name in ("width", "layers", "heads"):
            check_positive_int(f"policy.{name}", getattr(self, name))
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
            check_positive_int(f"rollout.{name}", getattr(self, name))


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
        check_positive_int("data.videos", self.videos)
        if not self.source.strip():
            raise ValueError("data.source: expected 'synthetic', 'textures' or a folder path, got ''")
        if self.seed is not None:
            check_non_negative_int("data.seed", self.seed)


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
        check_non_negative_int("eval.num_videos", self.num_videos)
        if self.clips_per_video is not None:
            check_positive_int("eval.clips_per_video", self.clips_per_video)
        if self.source is not None and not self.source.strip():
            raise ValueError("eval.source: expected a source or null (= data.source), got ''")
        check_non_negative_int("eval.seed", self.seed)


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
        check_number("optim.lr", self.lr, low=0, low_open=True)
        check_number("optim.weight_decay", self.weight_decay, low=0)
        for i, beta in enumerate(self.betas):
            if not (isinstance(beta, float) and 0 <= beta < 1):
                raise ValueError(f"optim.betas[{i}]: expected a number in [0, 1), got {beta!r}")
        check_number("optim.eps", self.eps, low=0)
        if self.max_grad_norm is not None:
            check_number("optim.max_grad_norm", self.max_grad_norm, low=0, low_open=True)
        check_number("optim.warmup_ratio", self.warmup_ratio, low=0, high=1)
        check_number("optim.min_lr_ratio", self.min_lr_ratio, low=0, high=1)


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
        check_positive_int("log.log_every", self.log_every)
        for name in ("eval_every", "checkpoint_every", "keep_checkpoints"):
            check_non_negative_int(f"log.{name}", getattr(self, name))


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
    """Training steps; each collects one rollout of B videos and makes grpo.num_iterations optimiser updates (with
    enumerated groups: one optimiser step towards the targets; grpo.path_phase.steps sampled steps may follow)."""
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
        check_non_negative_int("seed", self.seed)
        check_positive_int("steps", self.steps)
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

    @property
    def total_steps(self) -> int:
        """Every step of the run: ``steps``, plus the sampled ones after an enumerated fit (grpo.path_phase)."""
        return self.steps + (self.grpo.path_phase.steps if self.grpo.groups == "enumerated" else 0)

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
