"""The tokenizer pretraining recipe as dataclasses: which clips (:class:`PretrainDataConfig`), the optimisation
(:class:`PretrainOptimConfig`), logging and checkpoints (:class:`PretrainLogConfig`), and the run that holds them
with the model's architecture (:class:`PretrainConfig`). Each checks its values on construction, naming the key."""

from __future__ import annotations

from dataclasses import dataclass, field

from vaportok_rl.config import check_number
from vaportok_rl.tokenizer.model import TokenizerConfig

__all__ = ["PretrainConfig", "PretrainDataConfig", "PretrainLogConfig", "PretrainOptimConfig"]


def _at_least(key: str, value: int, low: int, meaning: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{key}: expected an integer >= {low}{meaning}, got {value!r}")


@dataclass
class PretrainDataConfig:
    """Which clips the tokenizer learns from."""

    synthetic_clips: int = 8192
    """Synthetic clips in the training pool (drawn with seed ``seed``)."""
    texture_clips: int = 2048
    """Real-texture clips (pans/zooms over scikit-image photographs, train split) in the pool."""
    seed: int = 0
    """Seed of the training pool (the held-out report set uses other seeds)."""
    clips_per_video: int = 1
    """Consecutive clips drawn per video (4 = the clips GRPO and eval see: the scene continues, motion varies)."""

    def __post_init__(self) -> None:
        if self.synthetic_clips < 0 or self.texture_clips < 0 or self.synthetic_clips + self.texture_clips < 64:
            raise ValueError(
                f"synthetic_clips + texture_clips: expected at least 64 clips, got "
                f"{self.synthetic_clips} + {self.texture_clips}"
            )
        if self.clips_per_video < 1:
            raise ValueError(f"clips_per_video: expected >= 1, got {self.clips_per_video}")


@dataclass
class PretrainOptimConfig:
    """Optimisation of the tokenizer pretraining."""

    steps: int = 3000
    """Optimizer steps."""
    batch_size: int = 32
    """Clips per step."""
    lr: float = 1e-3
    """Peak AdamW learning rate (cosine decay to 10 % after a linear warm-up)."""
    lr_warmup_steps: int = 100
    """Linear learning-rate warm-up steps."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    quant_warmup_steps: int = 300
    """Steps with a continuous bottleneck before quantisation starts."""
    quant_ramp_steps: int = 400
    """Steps over which the share of quantized tokens ramps from 0 to 1."""
    full_keep_prob: float = 0.2
    """Share of samples that keep all K tokens; the rest keep k ~ U{1..K}."""
    commit_weight: float = 0.25
    """Weight of the VQ commitment + codebook loss."""
    prior_weight: float = 0.1
    """Weight of the AR-prior cross-entropy."""
    prior_shapes_encoder: bool = False
    """Let the prior's cross-entropy reach the encoder through the straight-through latents, as LARP does, so the
    encoder learns codes the prior can predict; False trains the prior on detached latents."""
    head_weight: float = 0.1
    """Weight of KL(P || Gaussian prior) for the taildrop head (reads detached latents)."""
    head_sigma: float = 0.12
    """Std of the Gaussian prior over k, as a fraction of K."""
    head_min_center: float = 0.15
    """Centre of the Gaussian prior for the simplest clip, as a fraction of K."""
    head_max_center: float = 0.9
    """Centre of the Gaussian prior for the most complex clip, as a fraction of K."""
    init_coefs_per_token: int = 2
    """Skip-path initialisation: tokens past ``init_first_tokens`` start out carrying this many clip-PCA
    coefficients each, in variance order, so the linear path begins as a quantized PCA (0: random skip maps)."""
    init_first_tokens: int = 0
    """Skip-path initialisation: the first tokens carry ``init_coefs_first`` coefficients each (few, precisely
    quantized: the coarse structure), the later ones ``init_coefs_per_token`` (more, coarser: the detail)."""
    init_coefs_first: int = 1
    """Coefficients per token for the first ``init_first_tokens`` tokens."""
    skip_lr_scale: float = 0.02
    """Learning-rate multiplier of the skip path's parameters (its closed-form start is already good)."""
    init_whiten: float = 1.0
    """Skip-path initialisation: how far the detail tokens' coefficients are whitened. 1 = every coefficient at
    unit scale (each detail token spreads over the whole codebook); a < 1 scales coefficient i by
    (λ_i / λ_ref)^((1 - a) / 2) below the first detail coefficient's variance λ_ref, so low-variance late tokens
    gather on few codes (cheaper to predict, as their share of the error is small)."""
    init_scale: float = 0.5
    """Skip-path initialisation: whitened PCA coefficients are scaled by this next to a constant component of
    1, so cosine code selection resolves their magnitude."""
    prior_steps: int = 0
    """After the main loop: steps of AR-prior-only training on the frozen tokenizer's codes (the prior sees only
    detached latents anyway; alone it can take a larger rate and batch)."""
    prior_lr: float = 2e-3
    """Peak learning rate of the prior-only stage (cosine decay)."""
    dead_code_every: int = 100
    """Restart codes unused for this many steps with recent encoder outputs (0: never)."""
    threads: int = 2
    """torch.set_num_threads for the run."""

    def __post_init__(self) -> None:
        _at_least("optim.steps", self.steps, 1)
        _at_least("optim.batch_size", self.batch_size, 2)
        for name in ("lr_warmup_steps", "quant_warmup_steps", "quant_ramp_steps", "prior_steps"):
            _at_least(f"optim.{name}", getattr(self, name), 0)
        for name in ("init_coefs_per_token", "init_first_tokens", "init_coefs_first"):
            _at_least(f"optim.{name}", getattr(self, name), 0)
        _at_least("optim.dead_code_every", self.dead_code_every, 0, " (0 = never)")
        _at_least("optim.threads", self.threads, 1)
        for name in ("lr", "max_grad_norm", "head_sigma", "init_scale", "prior_lr"):  # rates, norms, divisors
            check_number(f"optim.{name}", getattr(self, name), low=0, low_open=True)
        for name in ("weight_decay", "commit_weight", "prior_weight", "head_weight", "skip_lr_scale"):
            check_number(f"optim.{name}", getattr(self, name), low=0)
        for name in ("full_keep_prob", "head_min_center", "head_max_center", "init_whiten"):  # shares of 1 or of K
            check_number(f"optim.{name}", getattr(self, name), low=0, high=1)


@dataclass
class PretrainLogConfig:
    """Where and how often the run reports and saves."""

    output_dir: str = "runs/pretrain"
    """Folder for checkpoints, metrics.jsonl and the exported tokenizer."""
    eval_every: int = 250
    """Evaluate PSNR at k = K/16 .. K on held-out clips every this many steps and after the last; 0 = only after
    the last."""
    eval_clips: int = 64
    """Held-out clips used by the in-training evaluation."""
    checkpoint_every: int = 250
    """Write an atomic checkpoint every this many steps and after the last; 0 = only after the last."""

    def __post_init__(self) -> None:
        _at_least("log.eval_every", self.eval_every, 0, " (0 = only after the last step)")
        _at_least("log.checkpoint_every", self.checkpoint_every, 0, " (0 = only after the last step)")
        _at_least("log.eval_clips", self.eval_clips, 1)


@dataclass
class PretrainConfig:
    """A tokenizer pretraining run."""

    model: TokenizerConfig = field(default_factory=TokenizerConfig)
    """Architecture of tokenizer, prior and head."""
    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    """Training clips."""
    optim: PretrainOptimConfig = field(default_factory=PretrainOptimConfig)
    """Optimisation."""
    log: PretrainLogConfig = field(default_factory=PretrainLogConfig)
    """Logging and checkpoints."""
    seed: int = 0
    """Seed of initialisation and of every random draw in training."""

    def __post_init__(self) -> None:
        o, m = self.optim, self.model
        used = {  # which of the two counts some token starts with (none without a skip path)
            "init_coefs_first": m.skip_rank > 0 and o.init_first_tokens > 0,
            "init_coefs_per_token": m.skip_rank > 0 and o.init_first_tokens < m.num_latents,
        }
        code_dim = m.code_dim
        for name in ("init_coefs_per_token", "init_coefs_first"):
            value = getattr(o, name)
            if used[name] and value + 1 > code_dim:  # the coefficients and a constant component share a code vector
                raise ValueError(
                    f"optim.{name}: expected at most model.code_dim - 1 = {code_dim - 1} coefficients per token "
                    f"(one component of each code vector is a constant), got {value}"
                )
