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

This module holds the loop (:class:`Pretrainer`, :func:`run_pretrain`); its pieces live beside it and are
importable from here too: the recipe's dataclasses (``pretrain_config``), the training pool (``pretrain_data``), the
held-out clips and PSNR per k (``pretrain_eval``), the skip path's closed-form start (``skip_init``), the schedules
and the head's Gaussian prior (``pretrain_objective``), the prior-only stage (``prior_stage``) and the output folder:
claim, resume, kept metrics, :class:`PretrainError` (``pretrain_folder``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from tqdm import tqdm

from vaportok_rl import complexity as cx
from vaportok_rl.checkpoint import atomic_write_file, flatten_state, load_checkpoint, save_checkpoint, unflatten_state
from vaportok_rl.config import to_dict
from vaportok_rl.run_files import METRICS_FILE, TOKENIZER_FILE
from vaportok_rl.run_folder import RECORD, RunFolder
from vaportok_rl.tokenizer.default import save_tokenizer
from vaportok_rl.tokenizer.model import Tokenizer
from vaportok_rl.tokenizer.pretrain_config import (
    PretrainConfig,
    PretrainDataConfig,
    PretrainLogConfig,
    PretrainOptimConfig,
)
from vaportok_rl.tokenizer.pretrain_data import build_pool, training_clips
from vaportok_rl.tokenizer.pretrain_eval import heldout_clips, psnr_per_k
from vaportok_rl.tokenizer.pretrain_folder import (
    CHECKPOINT,
    KIND,
    PRETRAIN_FILES,
    PretrainError,
    claim_output,
    kept_message,
    metrics_up_to,
)
from vaportok_rl.tokenizer.pretrain_objective import complexity_stats, gaussian_prior, lr_at, quant_mix
from vaportok_rl.tokenizer.prior_stage import train_prior
from vaportok_rl.tokenizer.protocol import keep_mask
from vaportok_rl.tokenizer.skip_init import fit_linear_path, fit_patch_basis

__all__ = [  # this module's own names, and the pieces it is built from (their home modules named above)
    "CHECKPOINT",
    "KIND",
    "PRETRAIN_FILES",
    "PretrainConfig",
    "PretrainDataConfig",
    "PretrainError",
    "PretrainInterrupted",
    "PretrainLogConfig",
    "PretrainOptimConfig",
    "Pretrainer",
    "build_pool",
    "claim_output",
    "complexity_stats",
    "fit_linear_path",
    "fit_patch_basis",
    "gaussian_prior",
    "heldout_clips",
    "lr_at",
    "metrics_up_to",
    "psnr_per_k",
    "quant_mix",
    "run_pretrain",
    "train_prior",
    "training_clips",
]


class PretrainInterrupted(KeyboardInterrupt):
    """Ctrl-C during pretraining: the message says where the run stands and how to resume (the CLI exits with
    status 130). A KeyboardInterrupt, so code that stops on Ctrl-C still does."""


class Pretrainer:
    """The state of a pretraining run: the model with its closed-form start, the optimizer, the generator every
    draw comes from, the pool and held-out clips, and the step; ``train_step`` advances it, ``save`` / ``load``
    checkpoint it."""

    def __init__(self, config: PretrainConfig, pool: torch.Tensor | None = None, evalset: torch.Tensor | None = None):
        self.config = config
        torch.manual_seed(config.seed)  # parameter initialisation only; every later draw uses self.generator
        self.model = Tokenizer(config.model)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.pool = build_pool(config) if pool is None else pool
        m = config.model
        self.evalset = heldout_clips(config.log.eval_clips, m.frames, m.size) if evalset is None else evalset
        self.step = 0
        self.sc, self.tc = cx.complexity(self.pool)  # [N] each, N = the pool's clips
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
        u = model.encode_continuous(clips)  # [N, K, code_dim]
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
        u = self.model.encode_continuous(clips).flatten(0, 1)  # [N·K, code_dim]
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
                f"log.output_dir {out}: cannot write {writing} after step {step} ({reason}); "
                f"{kept_message(ckpt, saved)}"
            ) from error
    except KeyboardInterrupt:
        raise PretrainInterrupted(
            f"interrupted (Ctrl-C) after step {step} of {steps}; {kept_message(ckpt, saved)}"
        ) from None
    return trainer
