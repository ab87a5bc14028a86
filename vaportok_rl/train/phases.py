"""The two phases of an enumerated run (issue 17, item 6). Steps ``0 .. steps`` fit the head to the per-clip rewards'
closed-form targets; with ``grpo.path_phase.steps`` > 0, steps ``steps .. total_steps`` are sampled GRPO on every
reward, the path-level ones ([B, G]: diversity, a per-video budget) included, from the fitted head, which becomes
the KL reference. :func:`enter_path_phase` is the switch; it is a function of the fitted head and the config alone,
so a run resumed past it rebuilds the same optimiser, stream and objective before loading their state."""

from __future__ import annotations

import dataclasses

import torch

from vaportok_rl.config import to_dict
from vaportok_rl.run_files import FIT_HEAD
from vaportok_rl.runs import save_head
from vaportok_rl.train.data import training_stream
from vaportok_rl.train.state import Run
from vaportok_rl.train.step import PathScorer

__all__ = ["enter_path_phase", "in_path_phase", "save_fitted_head"]


def in_path_phase(run: Run, step: int) -> bool:
    """Step ``step`` (0-based) is a sampled step after an enumerated fit."""
    return run.fit is not None and step >= run.config.steps


def enter_path_phase(run: Run) -> None:
    """From the fitted head on: sampled GRPO with the fitted head as the KL reference, at the run's own price, the
    knob's other prices held where the fit put them (a resumed run then loads the checkpoint's state over this)."""
    c, p = run.config, run.config.grpo.path_phase
    run.ref_policy.head.load_state_dict(run.policy.head.state_dict())
    tilts = [t for t in run.fit.tilts.tolist() if t != 0.0]  # the knob prices' tilts; 0 is the run's own price
    run.objective = dataclasses.replace(c.grpo, beta=p.beta, knob_beta=p.knob_beta if tilts else 0.0, knob_tilts=tilts)
    world, rank, B = run.accelerator.num_processes, run.accelerator.process_index, p.videos_per_step
    run.mine = range(rank * (B // world), (rank + 1) * (B // world))
    run.stream = training_stream(c, run.tokenizer.clip_shape, B)
    o = c.optim
    optimizer = torch.optim.AdamW(
        run.policy.parameters(), lr=p.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay
    )
    run.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda update: 1.0)  # constant
    run.max_grad_norm = p.max_grad_norm
    run.scorer, run.optimizer = run.accelerator.prepare(PathScorer(run.policy, c.rollout.mode), optimizer)


def save_fitted_head(run: Run) -> None:
    """The head at the end of the fit, into ``RUN/fit`` (main process), to be judged (and exported) beside the final
    one. Called at the switch only: a run resumed past it keeps the one written then."""
    if run.main:
        c, fingerprint = run.config, str(run.tokenizer.fingerprint)
        head_dir = run.output_dir / FIT_HEAD
        save_head(run.policy.head, head_dir, tokenizer_fingerprint=fingerprint, steps=c.steps, config=to_dict(c))
