"""Pretraining the built-in tokenizer, its AR prior and its taildrop head on this CPU.

The recipe (see recipes/pretrain_tiny.yaml), in order:
  1. fit the patch-PCA basis of the skip path in closed form on the training clips (seconds);
  2. train encoder + decoder with random tail-drop (nested dropout: a random k per sample, the rest masked),
     continuous bottleneck for ``warmup_steps``, then quantisation ramped in token by token (a quantizer
     active from step 0 collapses to one code), the codebook seeded from encoder outputs when it starts,
     dead codes restarted;
  3. alongside, once codes exist: the AR prior on retained tokens, and the taildrop head towards a Gaussian
     prior over k centred by the clip's spatial/temporal complexity, KL(P || prior).
Checkpoints are atomic and carry model, optimizer, RNG and data position, so ``--resume`` continues exactly.

The output folder (``log.output_dir``) is claimed before any work (vaportok_rl.run_folder): it records the run in
``vaportok-run.json`` and refuses a folder holding a user's files, another kind of run or a finished pretraining
unless ``overwrite`` (which replaces only :data:`PRETRAIN_FILES`), and a second process while one writes it. The run
writes ``checkpoint/`` (atomic), ``metrics.jsonl`` (one line per step; on resume the lines past the checkpoint's
step, left by a killed run, are dropped, so a resumed log equals an uninterrupted one) and, at the end,
``tokenizer.safetensors`` (atomic), then marks the folder finished. A full disk or an unwritable file is a
:class:`PretrainError` naming the file and the step, the previous checkpoint kept; Ctrl-C is a
:class:`PretrainInterrupted` saying which checkpoint a ``--resume`` continues from.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from tqdm import tqdm

from vaportok_rl import complexity as cx
from vaportok_rl.checkpoint import (
    atomic_write_file,
    flatten_state,
    load_checkpoint,
    save_checkpoint,
    unflatten_state,
)
from vaportok_rl.config import ConfigError, check_number, to_dict
from vaportok_rl.run_files import METRICS_FILE, TOKENIZER_FILE, read_metrics_lines
from vaportok_rl.run_folder import RECORD, RunFolder, claim, read_record
from vaportok_rl.tokenizer.default import save_tokenizer
from vaportok_rl.tokenizer.model import Tokenizer, TokenizerConfig
from vaportok_rl.tokenizer.protocol import keep_mask

KIND = "pretrain"
"""The kind of run recorded in the output folder's vaportok-run.json."""
CHECKPOINT = "checkpoint"
PRETRAIN_FILES = (CHECKPOINT, METRICS_FILE, TOKENIZER_FILE)
"""What a pretraining run writes in log.output_dir (what --overwrite may replace there)."""


class PretrainError(ConfigError):
    """A pretraining run that cannot start or go on because of its inputs or its environment (an unreadable or
    mismatched checkpoint, a full disk): the message names the file, key and step; the CLI prints it on one line and
    exits with status 2. What was computed before (the last checkpoint, metrics) is kept."""


class PretrainInterrupted(KeyboardInterrupt):
    """Ctrl-C during pretraining: the message says where the run stands and how to resume (the CLI exits with
    status 130). A KeyboardInterrupt, so code that stops on Ctrl-C still does."""


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


# ---- pieces ---------------------------------------------------------------------------------------------


def training_clips(data: PretrainDataConfig, *, frames: int, size: int, limit: int | None = None) -> torch.Tensor:
    """The training pool [N, C, T, H, W]: synthetic clips, then texture clips (train images). ``limit`` keeps a
    proportional share of each, the first clips of each source (so it is a subset of the full pool)."""
    from vaportok_rl.data import load_videos

    n_syn, n_tex = data.synthetic_clips, data.texture_clips
    if limit is not None and limit < n_syn + n_tex:
        n_syn = round(limit * n_syn / (n_syn + n_tex))
        n_tex = limit - n_syn
    L = data.clips_per_video
    parts = []
    for source, n in (("synthetic", n_syn), ("textures", n_tex)):
        if n:
            videos = load_videos(source, -(-n // L), L, seed=data.seed, frames=frames, size=size, split="train")
            parts.append(videos.flatten(0, 1)[:n])
    return torch.cat(parts)


def build_pool(config: PretrainConfig) -> torch.Tensor:
    return training_clips(config.data, frames=config.model.frames, size=config.model.size)


def heldout_clips(n: int, frames: int, size: int, source: str = "synthetic") -> torch.Tensor:
    """The first ``n`` clips of ``vaportok-rl eval``'s held-out videos of ``source`` (what the report measures)."""
    from vaportok_rl.data import heldout_videos

    videos, _ = heldout_videos(source, frames=frames, size=size, videos=-(-n // 4), clips_per_video=4)
    return videos.flatten(0, 1)[:n]


@torch.no_grad()
def fit_patch_basis(model: Tokenizer, clips: torch.Tensor) -> float:
    """Closed-form patch PCA for the skip path; returns the share of patch variance the basis keeps."""
    r = model.config.skip_rank
    patches = model.patchify(clips).flatten(0, 1).double()  # [N*P, E]
    mean = patches.mean(0)
    cov = torch.cov((patches - mean).T)
    eigvals, eigvecs = torch.linalg.eigh(cov)  # ascending
    model.patch_mean.copy_(mean.float())
    if r:
        model.patch_basis.copy_(eigvecs[:, -r:].flip(-1).T.float())
    return float(eigvals[-r:].sum() / eigvals.sum()) if r else 0.0


@torch.no_grad()
def fit_linear_path(
    model: Tokenizer, clips: torch.Tensor, per_token: list[int], scale: float, whiten: float = 1.0, first: int = 0
) -> float:
    """Initialise the skip maps as a clip-level PCA over the patch coefficients, in variance order.

    Token j's code vector starts as (scale * a_i, ..., scale * a_{i+m_j-1}, 1, 0, ...) with a_i the whitened
    PCA coefficients, m_j = per_token[j]; the decoder's skip map inverts it. The transformer's share of the
    code (pre_quant) starts at zero and grows as it learns. Returns the share of variance the components hold."""
    K, c = model.num_latents, model.config.code_dim
    if not any(per_token) or model.skip_in is None:
        return 0.0
    if max(per_token) + 1 > c:
        raise ValueError(f"optim.init_coefs_per_token: {max(per_token)} + 1 constant must fit code_dim={c}")
    coef = ((model.patchify(clips) - model.patch_mean) @ model.patch_basis.T).flatten(1).double()  # [N, P*r]
    cov = torch.cov(coef.T)
    eigvals, eigvecs = torch.linalg.eigh(cov)
    eigvals, eigvecs = eigvals.flip(0).clamp_min(1e-12), eigvecs.flip(1)  # descending
    slots = [(j, d) for j in range(K) for d in range(per_token[j])][: eigvecs.shape[1]]  # component i -> (token, dim)
    n = len(slots)
    w_in = torch.zeros(K * c, coef.shape[1], dtype=torch.float64)
    b_in = torch.zeros(K * c, dtype=torch.float64)
    w_out = torch.zeros(K, c, coef.shape[1], dtype=torch.float64)
    mean = coef.mean(0)
    # whiten < 1: components below the first detail token's first one shrink with their variance (1 = exactly 1.0)
    reference = eigvals[sum(per_token[:first])] if first < K else eigvals[0]
    shrink = (eigvals / reference).clamp_max(1.0) ** ((1.0 - whiten) / 2)
    for i, (j, d) in enumerate(slots):
        w_in[j * c + d] = scale * eigvecs[:, i] / eigvals[i].sqrt() * shrink[i]
        b_in[j * c + d] = -w_in[j * c + d] @ mean
        w_out[j, d] = eigvecs[:, i] * eigvals[i].sqrt() / scale / shrink[i]
    b_in[torch.arange(K) * c + torch.tensor(per_token)] = 1.0  # the constant component
    model.skip_in.weight.copy_(w_in.float())
    model.skip_in.bias.copy_(b_in.float())
    model.skip_out.copy_(w_out.float())
    for residual in (model.pre_quant, model.to_patch):  # the transformers start silent, then learn the rest
        residual.weight.zero_()
        residual.bias.zero_()
    # the decoder reads codes back from the latents: start skip_read as the pseudo-inverse of post_quant
    pinv = torch.linalg.pinv(model.post_quant.weight)  # [c, D]
    model.skip_read.weight.copy_(pinv)
    model.skip_read.bias.copy_(-pinv @ model.post_quant.bias)
    # the mean patch coefficients live in patch_mean already; the path starts exact for continuous codes
    return float(eigvals[:n].sum() / eigvals.sum())


def complexity_stats(sc: torch.Tensor, tc: torch.Tensor) -> dict[str, float]:
    """5th/95th percentiles of SC and TC over the pool: they map a clip's complexity into [0, 1]."""
    q = torch.tensor([0.05, 0.95])
    sc_lo, sc_hi = torch.quantile(sc, q).tolist()
    tc_lo, tc_hi = torch.quantile(tc, q).tolist()
    return {"sc_lo": sc_lo, "sc_hi": sc_hi, "tc_lo": tc_lo, "tc_hi": tc_hi}


def gaussian_prior(sc, tc, stats: dict, K: int, optim: PretrainOptimConfig) -> torch.Tensor:
    """[N] SC, TC -> [N, K] Gaussian prior over k = 1..K centred by the clip's complexity."""
    c_sc = ((sc - stats["sc_lo"]) / max(stats["sc_hi"] - stats["sc_lo"], 1e-6)).clamp(0, 1)
    c_tc = ((tc - stats["tc_lo"]) / max(stats["tc_hi"] - stats["tc_lo"], 1e-6)).clamp(0, 1)
    level = 0.5 * (c_sc + c_tc)  # [N] in [0, 1]
    center = K * (optim.head_min_center + (optim.head_max_center - optim.head_min_center) * level)
    k = torch.arange(1, K + 1, dtype=torch.float32)
    logits = -0.5 * ((k - center.unsqueeze(-1)) / (optim.head_sigma * K)) ** 2
    return logits.softmax(-1)


def lr_at(step: int, optim: PretrainOptimConfig) -> float:
    if step < optim.lr_warmup_steps:
        return optim.lr * (step + 1) / optim.lr_warmup_steps
    progress = (step - optim.lr_warmup_steps) / max(optim.steps - optim.lr_warmup_steps, 1)
    return optim.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def quant_mix(step: int, optim: PretrainOptimConfig) -> float:
    if step < optim.quant_warmup_steps:
        return 0.0
    return min(1.0, (step - optim.quant_warmup_steps + 1) / max(optim.quant_ramp_steps, 1))


@torch.no_grad()
def psnr_per_k(model: Tokenizer, clips: torch.Tensor, ks: list[int], chunk: int = 64) -> dict[int, float]:
    enc = model.encode(clips)
    out = {}
    for k in ks:
        values = []
        for i in range(0, len(clips), chunk):
            rec = model.decode(enc.latents[i : i + chunk], torch.full((len(clips[i : i + chunk]),), k))
            mse = ((rec.clamp(0, 1) - clips[i : i + chunk]) ** 2).flatten(1).mean(1).clamp_min(1e-10)
            values.append(10 * torch.log10(1 / mse))
        out[k] = float(torch.cat(values).mean())
    return out


@torch.no_grad()
def _encode_pool(model: Tokenizer, clips: torch.Tensor, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    enc = [model.encode(clips[i : i + chunk]) for i in range(0, len(clips), chunk)]
    return torch.cat([e.latents for e in enc]), torch.cat([e.codes for e in enc])


def train_prior(model: Tokenizer, clips: torch.Tensor, optim: PretrainOptimConfig, generator: torch.Generator) -> float:
    """Prior-only stage: encode the pool once, then fit the causal prior on retained tokens (random keep per
    sample, as in the main loop). Returns the last cross-entropy."""
    was_training = model.training
    model.eval()
    latents, codes = _encode_pool(model, clips)
    model.train(was_training)
    params = list(model.prior.parameters())
    opt = torch.optim.AdamW(params, lr=optim.prior_lr, weight_decay=0.0, fused=True)
    K, batch, ce = model.num_latents, 4 * optim.batch_size, float("nan")
    for step in range(optim.prior_steps):
        for group in opt.param_groups:
            group["lr"] = optim.prior_lr * 0.5 * (1 + math.cos(math.pi * step / optim.prior_steps))
        idx = torch.randint(len(latents), (batch,), generator=generator)
        keep = torch.randint(1, K + 1, (batch,), generator=generator)
        loss = model.prior.loss(latents[idx], codes[idx], keep_mask(keep, K))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, optim.max_grad_norm)
        opt.step()
        ce = loss.item()
    return ce


# ---- the run --------------------------------------------------------------------------------------------


class Pretrainer:
    def __init__(self, config: PretrainConfig, pool: torch.Tensor | None = None, evalset: torch.Tensor | None = None):
        self.config = config
        torch.manual_seed(config.seed)  # parameter initialisation only; every later draw uses self.generator
        self.model = Tokenizer(config.model)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.pool = build_pool(config) if pool is None else pool
        m = config.model
        self.evalset = heldout_clips(config.log.eval_clips, m.frames, m.size) if evalset is None else evalset
        self.step = 0
        self.sc, self.tc = cx.complexity(self.pool)  # [pool]
        self.stats = complexity_stats(self.sc, self.tc)
        basis_clips = self.pool[:2048]  # the first clips of the pool (synthetic in the shipped recipe)
        self.variance_kept = fit_patch_basis(self.model, basis_clips)
        o = config.optim
        per_token = [
            o.init_coefs_first if j < o.init_first_tokens else o.init_coefs_per_token for j in range(m.num_latents)
        ]
        self.pca_variance = fit_linear_path(
            self.model, basis_clips, per_token, o.init_scale, o.init_whiten, o.init_first_tokens
        )
        # The closed-form skip path moves slowly (Adam's ~lr-sized steps would wreck the PCA start in a few
        # dozen steps); the transformers learn at the full rate. Fused: foreach AdamW costs ~7x more here.
        skip = [p for n, p in self.model.named_parameters() if n.startswith("skip_")]
        rest = [p for n, p in self.model.named_parameters() if not n.startswith("skip_")]
        self.optimizer = torch.optim.AdamW(
            [{"params": rest, "lr_scale": 1.0}, {"params": skip, "lr_scale": o.skip_lr_scale}],
            lr=o.lr,
            betas=(0.9, 0.99),
            weight_decay=o.weight_decay,
            fused=True,
        )
        K, V = m.num_latents, m.codebook_size
        self.code_last_used = torch.zeros(V, dtype=torch.long)
        self.ks = sorted({max(1, K // 16), K // 8, K // 4, K // 2, K})
        self.tokenizer_path: Path | None = None  # where run_pretrain wrote the tokenizer

    # one optimisation step ---------------------------------------------------------------------------
    def train_step(self) -> dict[str, float]:
        cfg, model, g = self.config.optim, self.model, self.generator
        K = model.num_latents
        idx = torch.randint(len(self.pool), (cfg.batch_size,), generator=g)
        clips = self.pool[idx]  # [N, C, T, H, W]
        flip = torch.rand(cfg.batch_size, generator=g) < 0.5  # horizontal flips double the pool
        clips = torch.where(flip[:, None, None, None, None], clips.flip(-1), clips)

        mix = quant_mix(self.step, cfg)
        if mix > 0 and self.step == cfg.quant_warmup_steps:
            pick = torch.randint(len(self.pool), (min(len(self.pool), 128),), generator=g)
            self.seed_codebook(self.pool[pick])
        u = model.encode_continuous(clips)  # [N, K, c]
        q, codes, commit = model.vq(u, sample=True, mix=mix, generator=g)
        latents = model.post_quant(q)  # [N, K, D]

        full = torch.rand(cfg.batch_size, generator=g) < cfg.full_keep_prob
        keep = torch.where(full, K, torch.randint(1, K + 1, (cfg.batch_size,), generator=g))  # [N]
        rec = model.decode_train(latents, keep)
        loss_rec = F.l1_loss(rec, clips) + F.mse_loss(rec, clips)

        kept = keep_mask(keep, K)
        prior_input = latents if cfg.prior_shapes_encoder else latents.detach()
        loss_prior = model.prior.loss(prior_input, codes, kept) if mix > 0 else rec.new_zeros(())
        log_p = model.head(latents.detach()).log_softmax(-1)  # [N, K]
        prior = gaussian_prior(self.sc[idx], self.tc[idx], self.stats, K, cfg)
        loss_head = (log_p.exp() * (log_p - prior.clamp_min(1e-12).log())).sum(-1).mean()  # KL(P || prior)

        loss = loss_rec + cfg.commit_weight * commit * (mix > 0) + cfg.prior_weight * loss_prior
        loss = loss + cfg.head_weight * loss_head
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.step, cfg) * group["lr_scale"]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        self.optimizer.step()

        if mix > 0:
            self.code_last_used[codes.unique()] = self.step
            if cfg.dead_code_every and self.step % cfg.dead_code_every == 0:
                self.restart_dead_codes(u.detach())
        self.step += 1
        return {
            "step": self.step,
            "loss": float(loss.detach()),
            "rec": loss_rec.item(),
            "commit": commit.item(),
            "prior_ce": loss_prior.item(),
            "head_kl": loss_head.item(),
            "quant_mix": mix,
            "grad_norm": grad_norm.item(),
            "lr": lr_at(self.step - 1, cfg),
        }

    @torch.no_grad()
    def seed_codebook(self, clips: torch.Tensor) -> None:
        """Seed the codebook when quantisation starts (random codes collapse): spherical k-means over the
        encoder's code vectors, so codes sit where the data is and split it evenly."""
        u = self.model.encode_continuous(clips).flatten(0, 1)  # [N*K, c]
        V = self.model.codebook_size
        codebook = u[torch.randperm(len(u), generator=self.generator)[:V]].clone()
        for _ in range(10):  # Lloyd steps, assignment by cosine like the quantizer's argmax
            assign = (F.normalize(u, dim=-1) @ F.normalize(codebook, dim=-1).T).argmax(-1)
            sums = torch.zeros_like(codebook).index_add_(0, assign, u)
            counts = torch.bincount(assign, minlength=V).unsqueeze(-1)
            codebook = torch.where(counts > 0, sums / counts.clamp_min(1), codebook)
        self.model.vq.codebook.copy_(codebook)
        self.code_last_used.fill_(self.step)

    @torch.no_grad()
    def restart_dead_codes(self, u: torch.Tensor) -> None:
        dead = (self.step - self.code_last_used) >= self.config.optim.dead_code_every
        n = int(dead.sum())
        if n == 0:
            return
        u = u.flatten(0, 1)  # the codebook holds values (SVQ), so restart codes at raw encoder outputs
        pick = torch.randint(len(u), (n,), generator=self.generator)
        jitter = torch.randn(n, u.shape[-1], generator=self.generator) * 0.01 * u.std()
        self.model.vq.codebook[dead] = u[pick] + jitter
        self.code_last_used[dead] = self.step

    def tokenizer_metadata(self) -> dict:
        """What the tokenizer file records beside its weights: the complexity statistics the head's prior was
        centred with, and the training pool (tokenizer-report fits its PCA floor on the same pool)."""
        return {**self.stats, "data": to_dict(self.config.data)}

    # checkpoints -------------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        optim_skeleton = flatten_state("optim", self.optimizer.state_dict(), tensors)
        tensors["rng.generator"] = self.generator.get_state()
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["code_last_used"] = self.code_last_used
        meta = {"step": self.step, "config": to_dict(self.config), "optim": optim_skeleton, "stats": self.stats}
        save_checkpoint(path, tensors, meta)

    def load(self, path: Path) -> None:
        self.load_state(*load_checkpoint(path))

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        self.optimizer.load_state_dict(unflatten_state(meta["optim"], tensors))
        self.generator.set_state(tensors["rng.generator"])
        torch.set_rng_state(tensors["rng.torch"])
        self.code_last_used = tensors["code_last_used"].clone()
        self.step, self.stats = meta["step"], meta["stats"]


def run_pretrain(
    config: PretrainConfig, *, resume: bool = False, overwrite: bool = False, progress: bool = True
) -> Pretrainer:
    """Run the recipe into ``log.output_dir`` (see the module docstring): claim the folder, train (from its
    checkpoint with ``resume``; a folder without one starts afresh), run the prior-only stage, write
    ``tokenizer.safetensors`` and mark the folder finished. ``overwrite`` replaces what an earlier run (or the user)
    left there of :data:`PRETRAIN_FILES`. Raises RunFolderError / :class:`PretrainError` (one line each) and
    :class:`PretrainInterrupted` on Ctrl-C."""
    folder, state = claim_output(config, resume=resume, overwrite=overwrite)
    try:
        return _run(config, folder, state, progress)
    finally:
        folder.release()


def claim_output(
    config: PretrainConfig, *, resume: bool, overwrite: bool
) -> tuple[RunFolder, tuple[dict[str, torch.Tensor], dict] | None]:
    """Claim ``log.output_dir`` (vaportok_rl.run_folder); also returns the checkpoint the run continues (None: a
    fresh start). ``resume`` continues the folder's checkpoint; without one it is a fresh start, claimed as such (so
    a folder of the user's files is refused either way). A finished run is resumed only to train past its last
    step. The checkpoint is checked before the folder is claimed: a refused resume leaves its record as it was."""
    out = Path(config.log.output_dir)
    if resume and overwrite:
        raise PretrainError(f"log.output_dir {out}: --resume continues a run and --overwrite replaces it; pass one")
    previous = read_record(out) or {}
    if resume and previous.get("kind") == KIND and previous.get("status") == "finished":
        done = int(previous.get("steps", 0))
        if config.optim.steps <= done:
            raise PretrainError(
                f"--resume: log.output_dir {out} holds a pretraining run that finished at step {done}; nothing to "
                f"resume at optim.steps={config.optim.steps}: pass optim.steps=N with N > {done} to train on, or "
                f"--overwrite (without --resume) to start over"
            )
    resume = resume and (out / CHECKPOINT).is_dir() and any((out / CHECKPOINT).iterdir())
    state = _resume_state(config, out / CHECKPOINT) if resume else None
    folder = claim(
        out, KIND, writes=PRETRAIN_FILES, resume=resume, overwrite=overwrite, what="log.output_dir",
        resumable=(CHECKPOINT,), steps=config.optim.steps,
    )  # fmt: skip
    return folder, state


def _resume_state(config: PretrainConfig, ckpt: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The checkpoint's tensors and meta, checked against ``config``: only optim.steps, optim.threads and log.*
    may change when resuming, and the checkpoint may not lie past optim.steps."""
    try:
        tensors, meta = load_checkpoint(ckpt)
        step, saved = int(meta["step"]), _flat(meta["config"])
    except Exception as error:  # truncated safetensors / JSON, missing entries
        first = str(error).splitlines()[0] if str(error) else ""
        raise PretrainError(
            f"--resume: checkpoint {ckpt} is unreadable ({type(error).__name__}: {first}); pass --overwrite "
            f"(without --resume) to start over"
        ) from None
    now = _flat(json.loads(json.dumps(to_dict(config))))  # tuples as lists, as the checkpoint holds them
    free = ("optim.steps", "optim.threads")
    changed = [k for k in sorted(set(saved) | set(now)) if not k.startswith("log.") and k not in free
               and saved.get(k) != now.get(k)]  # fmt: skip
    if changed:
        shown = ", ".join(f"{k}={saved.get(k)!r} -> {now.get(k)!r}" for k in changed[:4])
        raise PretrainError(
            f"--resume: the config differs from the checkpoint's ({ckpt}) in {shown}"
            f"{f' and {len(changed) - 4} more' if len(changed) > 4 else ''}; only optim.steps, optim.threads and "
            f"log.* may change when resuming"
        )
    if step > config.optim.steps:
        raise PretrainError(
            f"--resume: the checkpoint ({ckpt}) is at step {step}, past optim.steps={config.optim.steps}; pass "
            f"optim.steps={step} or more (a run cannot be shortened after the fact)"
        )
    return tensors, meta


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def metrics_up_to(path: Path, step: int | None) -> str:
    """What a resumed run keeps of ``metrics.jsonl``: the main loop's lines up to the checkpoint's ``step`` (a
    killed run's lines past it are redone, its partial last line and its prior-stage line dropped), as written
    (lines are ``json.dumps`` of a row, so reading and dumping again gives them back). None (a fresh start) keeps
    nothing."""
    if step is None:
        return ""
    rows, _ = read_metrics_lines(path)
    return "".join(json.dumps(r) + "\n" for r in rows if r["step"] <= step and "prior_stage_steps" not in r)


def _kept(ckpt: Path, step: int | None) -> str:
    if step is None:
        return "no checkpoint was written yet: re-run the same command to start over"
    return f"the last checkpoint ({ckpt}, step {step}) is kept: re-run the same command with --resume to continue"


def _run(config: PretrainConfig, folder: RunFolder, state: tuple | None, progress: bool) -> Pretrainer:
    torch.set_num_threads(config.optim.threads)
    torch.set_flush_denormal(True)  # denormal Adam moments of the zero-initialised skip path cost 10x on CPU
    out, log, steps = folder.path, config.log, config.optim.steps
    ckpt, metrics_path, tokenizer_path = out / CHECKPOINT, out / METRICS_FILE, out / TOKENIZER_FILE
    saved, step, writing = None, 0, metrics_path  # the checkpoint's step on disk; the step; the file being written
    try:
        trainer = Pretrainer(config)
        if state is not None:
            trainer.load_state(*state)
            saved = step = trainer.step
        try:
            text = metrics_up_to(metrics_path, saved)
            atomic_write_file(metrics_path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
            with metrics_path.open("a", encoding="utf-8") as metrics_file:
                bar = tqdm(total=steps, initial=trainer.step, disable=not progress, desc="pretrain")
                t0 = time.time()
                try:
                    while trainer.step < steps:
                        row = trainer.train_step()
                        step = trainer.step
                        bar.update(1)
                        bar.set_postfix(loss=f"{row['loss']:.4f}", mix=f"{row['quant_mix']:.2f}")
                        if (log.eval_every and step % log.eval_every == 0) or step == steps:
                            psnr = psnr_per_k(trainer.model, trainer.evalset, trainer.ks)
                            row["psnr"] = {str(k): round(v, 3) for k, v in psnr.items()}
                            row["elapsed_s"] = round(time.time() - t0, 1)
                            bar.write(json.dumps(row["psnr"]))
                        writing = metrics_path
                        metrics_file.write(json.dumps(row) + "\n")
                        metrics_file.flush()
                        if (log.checkpoint_every and step % log.checkpoint_every == 0) or step == steps:
                            writing = ckpt
                            trainer.save(ckpt)
                            saved = step
                finally:
                    bar.close()
                if config.optim.prior_steps:
                    ce = train_prior(trainer.model, trainer.pool, config.optim, trainer.generator)
                    writing = metrics_path
                    row = {"step": trainer.step, "prior_stage_steps": config.optim.prior_steps, "prior_ce": ce}
                    metrics_file.write(json.dumps(row) + "\n")
                    metrics_file.flush()
            writing = tokenizer_path
            save_tokenizer(trainer.model, tokenizer_path, extra=trainer.tokenizer_metadata())
            trainer.tokenizer_path, writing = tokenizer_path, out / RECORD
            folder.finish(steps=steps, fingerprint=trainer.model.fingerprint)
        except (OSError, SafetensorError) as error:  # a full disk, a file or folder made read-only mid-run
            if isinstance(error, SafetensorError) and "I/O error" not in str(error):
                raise
            reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            raise PretrainError(
                f"log.output_dir {out}: cannot write {writing} after step {step} ({reason}); {_kept(ckpt, saved)}"
            ) from error
    except KeyboardInterrupt:
        raise PretrainInterrupted(f"interrupted (Ctrl-C) after step {step} of {steps}; {_kept(ckpt, saved)}") from None
    return trainer
