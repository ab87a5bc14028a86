"""Training the taildrop head: ``vaportok-rl train RECIPE [key=value ...] [--resume | --overwrite]``.

The package, one concern a module (docs/design.md):

    loop.py     run_training: claim the output folder, build the run, step it, evaluate, checkpoint, finish
    step.py     one step: grpo_step (sampled groups, GRPO) and enumerated_step (closed-form targets), update
    state.py    Run (what a run holds between steps), checkpoints, resuming from the newest readable one
    setup.py    what is decided before step 1: output folder, starting head, rewards, optimiser, memory
    log.py      metrics.jsonl and wandb
    data.py     the training video stream
    errors.py   TrainingError (one line, exit 2), TrainingInterrupted (Ctrl-C, exit 130), Diverged

One training step, on one screen in :func:`vaportok_rl.train.step.grpo_step`:

    B videos ──encode once──► sample G truncation paths per video with the current head ──► keep [B, G, L]
      ──(batched decode / prior pass if a reward needs them)──► every reward [B, G] ──► rewards [B, G, R]
      ──compute_advantages──► advantages [B, G] ──► μ × (log-probs [B, G, L] → grpo_loss → AdamW step)

Only the head learns: the tokenizer (and its AR prior) is frozen, the reference of the KL term is a frozen copy
of the starting head. Axis letters: docs/design.md.

Determinism and processes. Training video i of step s is drawn from (data seed, s, i) alone, and its G paths
from a generator seeded by (seed, s, i) alone. Under ``torchrun --nproc_per_node P`` each process takes the
B/P consecutive videos of the same global batch; the rollouts are gathered so that every reward and every
advantage sees the whole global batch (a batch-level reward such as diversity, or ``scale_rewards: batch``,
gives the same values as in one process), and each process optimises the loss of its own videos. DDP averages
the gradients of the P equal shards, which is the gradient of the global batch's loss for all three loss types
(no masks, equal shards). So P processes train the same head as one process with the same global batch, up to
float summation order. Resuming from a checkpoint continues bit for bit.

Outputs in ``log.output_dir``:
    config.yaml                     the resolved config
    metrics.jsonl                   one JSON object per line, always written (see below)
    checkpoints/step-NNNNNN/        atomic, pickle-free: head, reference head, optimizer, scheduler, RNG states,
                                    data position (the step), eval history, config
    summary.json                    initial and final held-out evaluation, last training metrics, timings
    head.safetensors, head_config.json   the tuned head (state dict; its HeadConfig and provenance)
    wandb/                          when ``log.report_to: wandb`` (offline unless WANDB_MODE is set)

metrics.jsonl lines have ``step`` (updates done: 0 = before training) and either the training keys

    reward, reward_std                    mean over the batch / mean within-group std of Σ_i w_i r_i (raw rewards)
    rewards/<label>/mean, .../std         each reward's mean and std over the B·G paths
    frac_reward_zero_std                  fraction of groups where every reward is constant (advantages all 0)
    tokens/mean, tokens/std               kept tokens per clip over the B·G·L decisions
    loss, kl, clip_ratio/low_mean, clip_ratio/high_mean, clip_ratio/region_mean   grpo_loss's, mean over μ
    entropy                               exact entropy of the head's distribution, mean over clips
    grad_norm                             global gradient norm before clipping, mean over μ updates
    lr, step_time                         learning rate of the step's first update; wall seconds of the step

or the held-out evaluation keys (fixed videos and generators; see :class:`vaportok_rl.heldout.HeldOutEval`)

    eval/reward, eval/reward_std, eval/rewards/<label>/mean|std, eval/objective, eval/tokens/mean,
    eval/argmax_tokens/mean, eval/argmax_psnr, eval/psnr (when rewards decode)
"""

from vaportok_rl.train.data import VideoStream
from vaportok_rl.train.errors import Diverged, TrainingError, TrainingInterrupted
from vaportok_rl.train.loop import run_training
from vaportok_rl.train.setup import RUN_FILES, load_rewards, lr_factor, starting_head

__all__ = [
    "RUN_FILES",
    "Diverged",
    "TrainingError",
    "TrainingInterrupted",
    "VideoStream",
    "load_rewards",
    "lr_factor",
    "run_training",
    "starting_head",
]
