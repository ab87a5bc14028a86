"""The training loop: :func:`run_training` claims the output folder, builds the run, steps it, evaluates and
checkpoints it, and writes the tuned head and the summary. One step is :mod:`vaportok_rl.train.step`."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from safetensors import SafetensorError
from torch import nn
from tqdm.auto import tqdm

from vaportok_rl.config import ConfigError, save_yaml, to_dict
from vaportok_rl.enumerated import default_cache_dir
from vaportok_rl.heldout import HeldOutEval
from vaportok_rl.policy import NonFiniteLogits, TaildropPolicy
from vaportok_rl.resources import launcher_problem, memory_problem
from vaportok_rl.rewards import RewardError, required_needs
from vaportok_rl.run_files import RUN_CONFIG, RUN_SUMMARY
from vaportok_rl.run_folder import RunFolder
from vaportok_rl.runs import save_head
from vaportok_rl.target_fit import build_target_fit
from vaportok_rl.tokenizer.default import load_tokenizer_spec
from vaportok_rl.tokenizer.protocol import FrozenTokenizer
from vaportok_rl.train.data import training_stream
from vaportok_rl.train.errors import Diverged, TrainingError, TrainingInterrupted
from vaportok_rl.train.log import RunLog, eval_plot
from vaportok_rl.train.phases import enter_path_phase, in_path_phase, save_fitted_head
from vaportok_rl.train.setup import claim_output, largest_allocations, load_rewards, lr_factor, starting_head
from vaportok_rl.train.state import Run, kept, restore, resume_state, save_state
from vaportok_rl.train.step import PathScorer, enumerated_step, grpo_step
from vaportok_rl.train_config import TrainConfig

__all__ = ["run_training"]


def run_training(
    config: TrainConfig,
    *,
    tokenizer: FrozenTokenizer | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    kind: str = "train",
) -> dict:
    """Train the taildrop head as ``config`` says; returns the summary (also written to summary.json).

    ``tokenizer`` overrides ``config.tokenizer`` (already-built objects, e.g. in tests and sweeps). With
    ``resume``, continues from the newest checkpoint in ``log.output_dir``; ``overwrite`` replaces what a run
    writes in a folder that holds anything else (see vaportok_rl.run_folder). ``kind`` is recorded in the
    folder ("distill" for the distill front end): a folder of another kind is refused."""
    t_start = time.perf_counter()
    c = config
    problem = launcher_problem()
    if problem:
        raise ConfigError(problem)
    B, world = c.rollout.videos_per_step, int(os.environ.get("WORLD_SIZE", "1"))
    if B % world:  # before the process group starts: every process stops at once, rank 0 says why
        raise ConfigError(
            f"rollout.videos_per_step: {B} videos do not split evenly over {world} processes (WORLD_SIZE); "
            f"pick a multiple of {world}"
        )
    Bp = c.grpo.path_phase.videos_per_step
    if c.grpo.groups == "enumerated" and c.grpo.path_phase.steps and Bp % world:
        raise ConfigError(
            f"grpo.path_phase.videos_per_step: {Bp} videos do not split evenly over {world} processes (WORLD_SIZE); "
            f"pick a multiple of {world}"
        )
    force_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    accelerator = Accelerator(cpu=force_cpu or not torch.cuda.is_available())  # CUDA when there is one
    if accelerator.num_processes != world:
        raise ConfigError(
            f"accelerate sees {accelerator.num_processes} process(es) but WORLD_SIZE is {world}; launch with "
            f"torchrun --nproc_per_node P"
        )
    rank = accelerator.process_index
    mine = range(rank * (B // world), (rank + 1) * (B // world))  # this process's videos of the global batch
    # ---- the output folder: claimed by the main process (record + lock) before any work; the others wait for it
    folder, refused = None, None
    if accelerator.is_main_process:
        try:
            folder = claim_output(c, kind, resume=resume, overwrite=overwrite)
        except ConfigError as error:
            refused = str(error)
    if world > 1:  # every process learns whether the main one may write, before any work
        box = [refused]
        torch.distributed.broadcast_object_list(box, src=0)
        refused = box[0]
    if refused is not None:
        raise ConfigError(refused)
    try:
        run = build_run(c, accelerator, tokenizer, mine)
        return train(run, folder, resume=resume, progress=progress, t_start=t_start)
    except KeyboardInterrupt:
        where = kept(Path(c.log.output_dir)) if accelerator.is_main_process else ""
        raise TrainingInterrupted(f"interrupted (Ctrl-C); {where}") from None
    finally:
        if folder is not None:
            folder.release()


def build_run(c: TrainConfig, accelerator: Accelerator, tokenizer: FrozenTokenizer | None, mine: range) -> Run:
    """The frozen tokenizer, the trainable head and its frozen starting copy (the KL reference), the rewards, the
    video stream, the optimiser and schedule; the largest tensors checked against free memory first."""
    device = accelerator.device
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer_spec(c.tokenizer)
    frozen = [m for m in (tokenizer,) if isinstance(m, nn.Module)]
    for module in frozen:
        module.to(device).eval().requires_grad_(False)
    policy = TaildropPolicy(starting_head(tokenizer, c)).to(device)
    ref_policy = policy.reference_copy()
    rewards = load_rewards(c)
    if c.grpo.groups == "enumerated":  # the table cache is a folder (made on first use): not a file in the way
        cache = Path(c.table_cache or default_cache_dir())
        if cache.exists() and not cache.is_dir():
            raise ConfigError(f"table_cache {cache}: is a file, expected a folder of reward tables (or a new path)")
    for what, nbytes in largest_allocations(c, tokenizer, required_needs(rewards.values()), accelerator.num_processes):
        problem = memory_problem(what, nbytes, device)
        if problem:
            raise ConfigError(f"{problem}; lower these settings")
    stream = training_stream(c, tokenizer.clip_shape, c.rollout.videos_per_step)
    o = c.optim
    optimizer = torch.optim.AdamW(policy.parameters(), lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(c))  # stepped by hand, once per update
    if c.grpo.groups == "enumerated":  # every process fits the same targets: equal gradients, no DDP needed
        scorer, optimizer = None, accelerator.prepare(optimizer)
    else:
        scorer, optimizer = accelerator.prepare(PathScorer(policy, c.rollout.mode), optimizer)
    weights = torch.tensor([s.weight for s in c.active_rewards().values()], device=device)
    return Run(
        config=c,
        accelerator=accelerator,
        tokenizer=tokenizer,
        policy=policy,
        ref_policy=ref_policy,
        frozen=frozen,
        rewards=rewards,
        weights=weights,
        stream=stream,
        optimizer=optimizer,
        scheduler=scheduler,
        scorer=scorer,
        mine=mine,
        objective=c.grpo,
        max_grad_norm=c.optim.max_grad_norm,
    )


def train(run: Run, folder: RunFolder | None, *, resume: bool, progress: bool, t_start: float) -> dict:
    """Resume (or start) ``run``, step it to ``steps``, write the head and the summary; errors become one line
    that says what was kept (the last checkpoint) and how to go on."""
    c, output_dir = run.config, run.output_dir
    table = (
        build_fit(run, progress) if c.grpo.groups == "enumerated" else None
    )  # before restore: its targets' reference is the start
    scales, wandb_id = None, None
    if resume:
        found = resume_state(c, output_dir)
        if run.fit is not None and found[1]["step"] > c.steps:  # past the fit: the sampled phase's state
            enter_path_phase(run)
        scales, wandb_id = restore(run, found)
    if run.main:
        output_dir.mkdir(parents=True, exist_ok=True)
        save_yaml(c, output_dir / RUN_CONFIG)
    run.log = RunLog(c, output_dir, enabled=run.main, resume_step=run.start if resume else None, wandb_id=wandb_id)
    try:
        if run.main and c.eval.num_videos:
            run.evaluator = HeldOutEval(c, run.tokenizer, run.rewards, run.weights, run.accelerator.device)
    except (OSError, ValueError) as error:
        raise ConfigError(f"eval.source (held-out videos): {error}") from None
    if run.evaluator is not None and scales is not None:
        run.evaluator.set_scales(scales)
    run.step_now = run.start
    try:
        if run.start == 0:
            evaluate(run, 0)  # the starting head: what the tuned one is compared with
        train_metrics = steps(run, progress)
        summary = finish(run, folder, train_metrics, table, t_start)
    except (Diverged, NonFiniteLogits) as error:  # NaN/inf: stop before a bad head is checkpointed
        sampled_after_fit = in_path_phase(run, run.step_now)
        lr_key = "grpo.path_phase.lr" if sampled_after_fit else "optim.lr"
        lr = c.grpo.path_phase.lr if sampled_after_fit else c.optim.lr
        raise TrainingError(
            f"training diverged at step {run.step_now + 1} ({error}) with {lr_key} = {lr:g}: lower {lr_key} "
            f"(or optim.max_grad_norm); {kept(output_dir)}"
        ) from None
    except RewardError as error:  # a plugin raised (or returned a bad value) mid-training
        raise TrainingError(f"{error} (at step {run.step_now + 1}); {kept(output_dir)}") from error
    except (OSError, SafetensorError) as error:  # a full disk (safetensors reports it as its own error), ...
        raise TrainingError(disk_error(run, error)) from error
    finally:
        run.log.close()
    run.accelerator.wait_for_everyone()
    return summary


def steps(run: Run, progress: bool) -> dict[str, float]:
    """Steps ``start .. steps``: each logged, evaluated and checkpointed as log.* says; the last step's metrics
    (those a resumed run logged before its checkpoint when no step is left to take)."""
    c = run.config
    logged = [r for r in run.log.kept if "loss" in r]
    train_metrics: dict[str, float] = {k: v for k, v in logged[-1].items() if k != "step"} if logged else {}
    total = c.total_steps
    desc = "grpo" if run.fit is None else "fit (enumerated)"
    bar = tqdm(total=total, initial=run.start, disable=not (progress and run.main), desc=desc, dynamic_ncols=True)
    for step in range(run.start, total):
        run.step_now = step
        if step == c.steps and in_path_phase(run, step):  # the fit is done: sampled GRPO from the fitted head
            enter_path_phase(run)
            save_fitted_head(run)
            bar.set_description("grpo (after the fit)")
        t0 = time.perf_counter()
        lr = run.optimizer.param_groups[0]["lr"]
        fitting = run.fit is not None and not in_path_phase(run, step)
        train_metrics = enumerated_step(run, step) if fitting else grpo_step(run, step)
        train_metrics.update(lr=lr, step_time=time.perf_counter() - t0)
        done = step + 1
        ends = done in (c.steps, total)  # the end of the run, or of its fit (the fitted head is judged and kept)
        if done % c.log.log_every == 0 or ends:
            run.log.write(done, train_metrics)
        if (c.log.eval_every and done % c.log.eval_every == 0) or ends:
            evaluate(run, done)
        if (c.log.checkpoint_every and done % c.log.checkpoint_every == 0) or ends:
            save_state(run, done)
        bar.update(1)
        bar.set_postfix(reward=f"{train_metrics['reward']:.4g}", tokens=f"{train_metrics['tokens/mean']:.1f}")
    bar.close()
    return train_metrics


def build_fit(run: Run, progress: bool) -> dict:
    """Enumerated groups: score the pool on the grid (or read it from the table cache) before any step; returns
    what that cost ({clips, decodes, seconds}) and which rewards it left to the sampled phase."""
    c, t_table = run.config, time.perf_counter()
    bar = tqdm(total=c.data.videos, disable=not (progress and run.main), desc="reward table", unit="video", leave=False)
    try:
        run.fit = build_target_fit(
            c,
            run.tokenizer,
            run.rewards,
            run.ref_policy,
            rank=run.accelerator.process_index,
            world=run.accelerator.num_processes,
            gather=gather_object,
            progress=bar.update,
        )
    except RewardError as error:  # before any step: nothing was trained
        raise TrainingError(f"{error}; scoring the pool (grpo.groups: enumerated), nothing was trained") from None
    finally:
        bar.close()
    return {
        "clips": len(run.fit.latents),
        "decodes": run.fit.decodes,
        "seconds": time.perf_counter() - t_table,
        "path_rewards": run.fit.path_rewards,  # left out of the tables, tuned by grpo.path_phase
    }


def evaluate(run: Run, step: int) -> None:
    """The held-out evaluation (main process): into the history, the log, and (with wandb) a plot."""
    if run.evaluator is None:
        return
    metrics = run.evaluator(run.policy, run.ref_policy)
    run.history.append({"step": step, **metrics})
    run.log.write(step, metrics)
    if run.log.wandb is not None:  # the held-out eval plot as an image
        plot = eval_plot(run.evaluator, run.policy, run.ref_policy, run.output_dir, step)
        run.log.images(step, {"eval/tokens_vs_complexity": plot})


def finish(run: Run, folder: RunFolder | None, train_metrics: dict, table: dict | None, t_start: float) -> dict:
    """The summary; on the main process the tuned head, summary.json, and the folder's record marked finished."""
    c, history = run.config, run.history
    summary = {
        "steps": c.total_steps,
        "output_dir": str(run.output_dir),
        "world_size": run.accelerator.num_processes,
        "tokenizer_fingerprint": str(run.tokenizer.fingerprint),
        "last_train": train_metrics,
        "eval_history": history,
        "initial_eval": history[0] if history else None,
        "final_eval": history[-1] if history else None,
        "seconds": time.perf_counter() - t_start,
    }
    if table is not None:  # what the enumerated pool cost this run (0 decodes when the cache had it all)
        summary["table"] = table
    if history and history[0]["step"] == 0:
        summary["eval_gain"] = {k: history[-1][k] - history[0][k] for k in history[0] if k != "step"}
    if run.main:
        fingerprint = str(run.tokenizer.fingerprint)
        save_head(
            run.policy.head, run.output_dir, tokenizer_fingerprint=fingerprint, steps=c.total_steps, config=to_dict(c)
        )
        (run.output_dir / RUN_SUMMARY).write_text(json.dumps(summary, indent=1))
        folder.finish(steps=c.total_steps)
    return summary


def disk_error(run: Run, error: Exception) -> str:
    """One line for a write that failed mid-run: the file, the step, what was kept, the last held-out numbers."""
    where = getattr(error, "filename", None) or run.output_dir
    last = run.history[-1] if run.history else {}
    numbers = (
        f"; last held-out eval (step {last['step']}): reward {last['eval/reward']:.4g}, argmax tokens "
        f"{last['eval/argmax_tokens/mean']:.1f}"
        if "eval/reward" in last
        else ""
    )
    return (
        f"log.output_dir {run.output_dir}: cannot write {where} at step {run.step_now + 1} "
        f"({getattr(error, 'strerror', None) or error}); {kept(run.output_dir)}{numbers}"
    )
