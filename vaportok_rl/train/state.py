"""A run's state between steps (:class:`Run`), its checkpoints, and resuming from the newest readable one."""

from __future__ import annotations

import dataclasses
import random
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from torch import Tensor, nn

from vaportok_rl.checkpoint import flatten_state, load_checkpoint, save_checkpoint, unflatten_state
from vaportok_rl.config import ConfigError, to_dict
from vaportok_rl.heldout import HeldOutEval
from vaportok_rl.policy import TaildropPolicy
from vaportok_rl.run_files import CHECKPOINTS
from vaportok_rl.runs import checkpoint_dirs
from vaportok_rl.target_fit import TargetFit
from vaportok_rl.tokenizer.protocol import FrozenTokenizer
from vaportok_rl.train.data import VideoStream
from vaportok_rl.train.errors import TrainingError
from vaportok_rl.train.log import RunLog
from vaportok_rl.train_config import GRPOConfig, TrainConfig

__all__ = ["CHECKPOINT_KEYS", "Run", "kept", "restore", "resume_state", "save_state"]


@dataclass(kw_only=True)
class Run:
    """Everything one training run holds between steps: built by :mod:`vaportok_rl.train.loop`, read and advanced
    by :mod:`vaportok_rl.train.step`, saved and restored here."""

    config: TrainConfig
    accelerator: Accelerator
    tokenizer: FrozenTokenizer
    policy: TaildropPolicy  # the head being trained
    ref_policy: TaildropPolicy  # its frozen starting copy: the KL reference
    frozen: list[nn.Module]  # the tokenizer's modules (checked to get no gradient)
    rewards: dict[str, Any]  # {label: plugin}, in recipe order
    weights: Tensor  # [R]
    stream: VideoStream
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scorer: nn.Module | None  # PathScorer (DDP-wrapped) for sampled groups; None for enumerated ones
    mine: range  # this process's videos of the global batch
    start: int = 0  # the step the run (re)starts at
    step_now: int = 0  # the step being taken (0-based): what an error message names
    history: list[dict] = field(default_factory=list)  # held-out evaluations so far
    evaluator: HeldOutEval | None = None
    log: RunLog | None = None
    fit: TargetFit | None = None  # enumerated groups: the pool's targets
    objective: GRPOConfig | None = None  # the sampled steps' GRPO settings: grpo, or grpo.path_phase's after a fit
    max_grad_norm: float | None = None  # the gradient clip of the steps being taken (None: none)

    @property
    def output_dir(self) -> Path:
        return Path(self.config.log.output_dir)

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process


CHECKPOINT_KEYS = ("step", "config", "optimizer", "scheduler", "rng", "eval_history", "eval_scales", "wandb_id")


def save_state(run: Run, step: int) -> None:
    """Checkpoint ``RUN/checkpoints/step-NNNNNN`` (atomic; main process only): head, reference head, optimiser,
    scheduler, RNG states, data position (= the step), eval history; older ones beyond log.keep_checkpoints go."""
    if not run.main:
        return
    c, policy, ref_policy = run.config, run.policy, run.ref_policy
    tensors = {f"head.{k}": v for k, v in policy.head.state_dict().items()}
    tensors.update({f"ref_head.{k}": v for k, v in ref_policy.head.state_dict().items()})
    rng_tensors, rng_meta = _rng_state()
    tensors.update(rng_tensors)
    meta = {
        "step": step,
        "config": to_dict(c),
        "head_config": dataclasses.asdict(policy.head.config),
        "optimizer": flatten_state("optimizer", run.optimizer.state_dict(), tensors),
        "scheduler": flatten_state("scheduler", run.scheduler.state_dict(), tensors),
        "rng": rng_meta,
        "data_position": {"step": step, "videos_seen": step * c.rollout.videos_per_step},
        "eval_history": run.history,
        "eval_scales": None if run.evaluator is None else run.evaluator.scales.tolist(),
        "wandb_id": run.log.wandb_id,
        "tokenizer_fingerprint": str(run.tokenizer.fingerprint),
    }
    save_checkpoint(run.output_dir / CHECKPOINTS / f"step-{step:06d}", tensors, meta)
    if c.log.keep_checkpoints:
        for old in checkpoint_dirs(run.output_dir)[: -c.log.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)


def restore(run: Run, found: tuple[dict[str, Tensor], dict] | None = None) -> tuple[list[float] | None, str | None]:
    """Load the newest readable checkpoint (or ``found``, :func:`resume_state`'s answer) into ``run`` (head,
    reference, optimiser, scheduler, RNG states, step, eval history); returns what the evaluator and the log need
    back (eval scales, wandb id)."""
    tensors, meta = found or resume_state(run.config, run.output_dir)
    run.policy.head.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("head.")})
    run.ref_policy.head.load_state_dict({k[9:]: v for k, v in tensors.items() if k.startswith("ref_head.")})
    run.optimizer.load_state_dict(unflatten_state(meta["optimizer"], tensors))
    run.scheduler.load_state_dict(unflatten_state(meta["scheduler"], tensors))
    _set_rng_state(tensors, meta["rng"])
    run.start, run.history = meta["step"], meta["eval_history"]
    return meta["eval_scales"], meta["wandb_id"]


def resume_state(config: TrainConfig, output_dir: Path) -> tuple[dict[str, Tensor], dict]:
    """The newest *readable* checkpoint's tensors and meta. A newer one that is truncated or corrupted (a crash
    or a full disk while the filesystem wrote it) is skipped with a warning naming it; none readable is an error
    naming them all."""
    found = checkpoint_dirs(output_dir)
    if not found:
        raise ConfigError(f"--resume: no checkpoint in {output_dir / CHECKPOINTS}")
    skipped = []
    for path in reversed(found):
        try:
            tensors, meta = load_checkpoint(path)
            missing = [k for k in CHECKPOINT_KEYS if k not in meta] + [k for k in ("rng.torch",) if k not in tensors]
            if missing:
                raise ValueError(f"missing entries {missing}")
        except Exception as error:  # truncated safetensors / JSON, missing keys: try the previous checkpoint
            skipped.append(f"{path} ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})")
            continue
        break
    else:
        raise TrainingError(f"--resume: no readable checkpoint in {output_dir / CHECKPOINTS}: {'; '.join(skipped)}")
    if skipped:
        warnings.warn(
            f"--resume: skipped unreadable checkpoint(s) {'; '.join(skipped)}; resuming from {path} "
            f"(step {meta['step']})",
            RuntimeWarning,
            stacklevel=3,
        )
    total = config.total_steps
    if meta["step"] > total:
        past = f"steps={total}" if total == config.steps else f"steps + grpo.path_phase.steps = {total}"
        raise ConfigError(
            f"--resume: the newest checkpoint ({path}) is at step {meta['step']}, past {past}; pass "
            f"steps={meta['step'] - total + config.steps} or more (a run cannot be shortened after the fact)"
        )
    saved, now = dict(meta["config"]), to_dict(config)
    changed = [k for k in sorted(set(saved) | set(now)) if k not in ("log", "steps") and saved.get(k) != now.get(k)]
    if changed:
        raise ConfigError(
            f"--resume: the config differs from the checkpoint's ({path}) in {changed}; only "
            f"'steps' and 'log.*' may change when resuming"
        )
    return tensors, meta


def kept(output_dir: Path) -> str:
    found = checkpoint_dirs(output_dir)
    if not found:
        return "no checkpoint was written yet"
    return f"the last checkpoint ({found[-1]}) is kept: re-run with --resume to continue from it"


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
