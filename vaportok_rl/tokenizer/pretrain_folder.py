"""The output folder of a tokenizer pretraining run (``log.output_dir``): what a run writes there, claiming it
(vaportok_rl.run_folder), the checkpoint a ``--resume`` continues from (checked against the config), the lines of
``metrics.jsonl`` a resumed run keeps, and :class:`PretrainError`, the one-line error of a run that cannot start or
go on."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from vaportok_rl.checkpoint import load_checkpoint
from vaportok_rl.config import ConfigError, to_dict
from vaportok_rl.run_files import METRICS_FILE, TOKENIZER_FILE, read_metrics_lines
from vaportok_rl.run_folder import RunFolder, RunFolderError, claim, refuse_finished_resume
from vaportok_rl.tokenizer.pretrain_config import PretrainConfig

__all__ = ["CHECKPOINT", "KIND", "PRETRAIN_FILES", "PretrainError", "claim_output", "kept_message", "metrics_up_to"]

KIND = "pretrain"
"""The kind of run recorded in the output folder's vaportok-run.json."""
CHECKPOINT = "checkpoint"
PRETRAIN_FILES = (CHECKPOINT, METRICS_FILE, TOKENIZER_FILE)
"""What a pretraining run writes in log.output_dir (what --overwrite may replace there)."""


class PretrainError(ConfigError):
    """A pretraining run that cannot start or go on because of its inputs or its environment (an unreadable or
    mismatched checkpoint, a full disk): the message names the file, key and step; the CLI prints it on one line and
    exits with status 2. What was computed before (the last checkpoint, metrics) is kept."""


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
    if resume:
        try:
            refuse_finished_resume(out, KIND, config.optim.steps, steps_key="optim.steps", what="log.output_dir")
        except RunFolderError as error:
            raise PretrainError(str(error)) from None
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


def kept_message(ckpt: Path, step: int | None) -> str:
    """What an interrupted or failed run leaves to continue from: the checkpoint at ``step`` (None: none yet)."""
    if step is None:
        return "no checkpoint was written yet: re-run the same command to start over"
    return f"the last checkpoint ({ckpt}, step {step}) is kept: re-run the same command with --resume to continue"
