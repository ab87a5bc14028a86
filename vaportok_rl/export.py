"""Exporting a tuned taildrop head (the library side of ``vaportok-rl export``, see ``vaportok_rl.cli.export``).

An export folder holds

    model.safetensors     the head's state dict (safetensors: tensors only, no code)
    config.json           format + version, head architecture, temperature, sampling mode, reward specs and
                          weights, the training summary, the tokenizer's fingerprint, a SHA-256 of the weights
                          (weights_sha256) and of the config itself (config_sha256)
    README.md             a model card (:mod:`vaportok_rl.model_card`): what it is, how to load it, the run's
                          held-out evaluation numbers
    head.torchscript.pt   only with ``--format torchscript``: a traced TorchScript module, checked against
                          the eager head before it is written (:mod:`vaportok_rl.torchscript`)

and loads back bit for bit with ``TaildropHead.from_pretrained(DIR, tokenizer=tok)`` or :func:`load_head` (=
:func:`vaportok_rl.runs.load_head`, which also loads run folders, checkpoints and "default"); the format and its
checks live in :mod:`vaportok_rl.tokenizer.head`. Both digests are checked on load; a missing one is an error
unless ``force=True``.
The fingerprint recorded at export is compared with the tokenizer's: a head tuned on other frozen weights is
an error unless ``force=True`` (then a warning). Nothing in this module unpickles anything: weights are read
with safetensors, everything else is JSON (and YAML through a safe loader).

``RUN_DIR`` is a finished ``vaportok-rl train`` folder (``head.safetensors``, ``head_config.json``,
``summary.json``, ``config.yaml``) or one of its checkpoints (``RUN_DIR/checkpoints/step-NNNNNN``), to export an
unfinished run.

The export folder is claimed (:mod:`vaportok_rl.run_folder`, kind "export") before anything is written: a folder
holding a user's files, another kind of run or the finished export of *another* head is refused unless
``overwrite`` (``--overwrite``), which replaces only the export's own files (:data:`EXPORT_FILES`) and leaves the
rest; exporting the same head again (same weights) refreshes its config and card. Every file is first written
to a hidden staging folder inside the export folder and renamed into place only when all of them are written,
so a failure (a full disk) leaves the folder as it was -- no half-written export, and a folder the export
created itself is removed again.

About the TorchScript file: ``torch.jit.load`` does not use Python's ``pickle`` module. The archive is a zip
holding the TorchScript source of the traced module (``code/``), raw tensor data and small ``*.pkl`` records in
pickle *format*, which libtorch reads with its own C++ unpickler; that unpickler only rebuilds tensors,
containers and the TorchScript classes compiled from ``code/`` (it cannot import or call arbitrary Python
objects). Loading it still means running the TorchScript program it contains, so load such files only from
sources you trust; ``from_pretrained`` never reads it. TorchScript is deprecated upstream in favour of
``torch.export``; the file is a convenience for C++/libtorch deployment.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from vaportok_rl import __version__
from vaportok_rl.model_card import model_card
from vaportok_rl.policy import check_mode
from vaportok_rl.run_folder import LOCK, RECORD, RunFolder, RunFolderError, claim, read_record
from vaportok_rl.runs import TrainedRun, load_head, read_run
from vaportok_rl.tokenizer.head import (
    CARD_FILE,
    CONFIG_FILE,
    FORMAT,
    FORMAT_VERSION,
    TORCHSCRIPT_FILE,
    WEIGHTS_FILE,
    ExportError,
    FingerprintMismatchError,
    TaildropHead,
    build_head,
    config_digest,
    load_export_config,
)
from vaportok_rl.torchscript import save_traced, trace_head

__all__ = [
    "EXPORT_FILES",
    "export_run",
    "save_pretrained",
    # re-exported: the format's files and checks (vaportok_rl.tokenizer.head), reading runs and loading heads
    # (vaportok_rl.runs)
    "WEIGHTS_FILE",
    "TORCHSCRIPT_FILE",
    "CONFIG_FILE",
    "FORMAT",
    "FORMAT_VERSION",
    "load_export_config",
    "ExportError",
    "FingerprintMismatchError",
    "TrainedRun",
    "read_run",
    "load_head",
]

EXPORT_FILES = (WEIGHTS_FILE, TORCHSCRIPT_FILE, CARD_FILE, CONFIG_FILE)
"""What an export writes in its folder (what --overwrite may replace there), in the order they are moved into
place: config.json last, so a crash between two renames leaves digests that do not match (an error on load),
never a silently mixed export."""


# =============================================================================================== writing


def _plain(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become None (JSON has no NaN), tuples become lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)


def _reward_table(train_config: dict) -> dict[str, dict]:
    rewards = train_config.get("rewards") or {}
    out = {}
    for label, spec in rewards.items():
        if spec is None:
            continue  # dropped in the recipe
        spec = spec or {}
        out[label] = {
            "spec": spec.get("spec") or label,
            "weight": spec.get("weight", 1.0),
            "kwargs": spec.get("kwargs") or {},
        }
    return out


def _training_summary(run: TrainedRun) -> dict:
    c, s = run.train_config, run.summary
    keep = ("seed", "steps", "tokenizer", "plugin_paths", "grpo", "policy", "rollout", "data", "optim", "distill")
    summary = {k: c[k] for k in keep if k in c}
    summary["steps_done"] = run.step
    for key in ("initial_eval", "final_eval", "eval_gain", "last_train", "eval_history", "seconds", "world_size"):
        if s.get(key) is not None:
            summary[key] = s[key]
    summary["source"] = run.source.name
    return summary


def _eval_for_config(report: dict | None) -> dict | None:
    """What config.json keeps of ``--eval-json``: a ``vaportok-rl eval`` report without its bulky per-budget sweep."""
    if not report or not str(report.get("schema", "")).startswith("vaportok-eval/"):
        return report
    return {k: report[k] for k in ("schema", "setup", "at_budget") if k in report}


class _Claim:
    """The export folder, claimed: what it held before, so that a failed export leaves it as it was."""

    def __init__(self, out: Path, head_sha256: str, overwrite: bool):
        self.out = out
        self.fresh = not out.exists() or (out.is_dir() and not any(out.iterdir()))
        record = out / RECORD
        self.saved_record = record.read_bytes() if record.is_file() else None
        previous = read_record(out)
        if previous is not None:
            same = previous.get("kind") == "export" and previous.get("head_sha256") == head_sha256
        else:  # an export made before folders were claimed
            same = _is_export(out) and _export_digest(out) == head_sha256
        try:  # the old export is replaced file by file once the new one is written: claim removes nothing
            self.folder: RunFolder = claim(
                out, "export", writes=(), overwrite=overwrite or same, resumable=(), what="--out",
                head_sha256=head_sha256,
            )  # fmt: skip
        except RunFolderError as error:
            raise ExportError(str(error)) from None

    def abandon(self) -> None:
        """The export failed: drop the lock and put the folder back as it was (a folder it made: removed)."""
        self.folder.release()
        record = self.out / RECORD
        with contextlib.suppress(OSError):
            if self.saved_record is None:
                record.unlink()
            else:
                record.write_bytes(self.saved_record)
        if self.fresh:
            with contextlib.suppress(OSError):
                (self.out / LOCK).unlink()
            with contextlib.suppress(OSError):
                self.out.rmdir()  # only when empty


def head_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names, dtypes, shapes and values: the head's identity (safetensors bytes are not
    one: the order of their header's metadata varies between writes)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _export_digest(folder: Path) -> str | None:
    """:func:`head_digest` of an export folder's weights (None if they do not read)."""
    try:
        return head_digest(load_file(str(folder / WEIGHTS_FILE)))
    except Exception:  # a missing or damaged file: not the same head
        return None


def _move_into_place(staging: Path, out: Path, files: list[str]) -> None:
    """Rename the staged files over the old ones (config.json last), then drop an old export's files this one
    does not have (e.g. a TorchScript file)."""
    for name in EXPORT_FILES:
        if name in files:
            os.replace(staging / name, out / name)
    for name in EXPORT_FILES:
        if name not in files and (out / name).is_file():
            (out / name).unlink()


def _is_export(folder: Path) -> bool:
    try:
        return json.loads((folder / CONFIG_FILE).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def save_pretrained(
    head: TaildropHead,
    out: str | os.PathLike,
    *,
    tokenizer_fingerprint: str,
    sampling_mode: str = "sample",
    rewards: dict[str, dict] | None = None,
    training: dict | None = None,
    eval_results: dict | None = None,
    name: str | None = None,
    torchscript: bool = False,
    overwrite: bool = False,
    force: bool = False,
) -> Path:
    """Write ``head`` as an export folder (see the module docstring); returns ``out``.

    ``rewards`` is ``{label: {"spec", "weight", "kwargs"}}`` as in a training recipe; ``training`` a free-form
    summary (e.g. :func:`read_run`'s); ``eval_results`` extra evaluation numbers shown in the model card.
    ``overwrite`` replaces the export files in a folder that holds anything else (``force``: its older name).
    Raises :class:`ExportError` for a folder it may not write; an ``OSError`` (a full disk) leaves the folder as
    it was."""
    out = Path(out)
    overwrite = overwrite or force
    check_mode(sampling_mode)
    if not isinstance(tokenizer_fingerprint, str) or not tokenizer_fingerprint:
        raise ExportError(f"tokenizer_fingerprint: expected a non-empty string, got {tokenizer_fingerprint!r}")
    rewards = rewards or {}
    traced = trace_head(copy.deepcopy(head).eval()) if torchscript else None  # checked before anything is written
    tensors = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
    weights = safetensors_bytes(tensors, metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
    weights_sha256 = hashlib.sha256(weights).hexdigest()
    files = [WEIGHTS_FILE, CONFIG_FILE, CARD_FILE] + ([TORCHSCRIPT_FILE] if traced is not None else [])
    claimed = _Claim(out, head_digest(tensors), overwrite)  # before anything is written
    try:
        staging = Path(tempfile.mkdtemp(prefix=".export-tmp-", dir=out))  # hidden: no reader looks there
        try:
            (staging / WEIGHTS_FILE).write_bytes(weights)
            config = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "library": "vaportok-rl",
                "library_version": __version__,
                "architecture": "TaildropHead",
                "head": dataclasses.asdict(head.config),
                "temperature": head.config.temperature,
                "sampling_mode": sampling_mode,
                "output": "logits [N, K] for latents [N, K, D], already divided by the temperature; index j means "
                "keep k = j + 1 tokens; softmax gives P(k)",
                "tokenizer_fingerprint": tokenizer_fingerprint,
                "reward_weights": {label: spec.get("weight", 1.0) for label, spec in rewards.items()},
                "rewards": rewards,
                "training": training or {},
                "eval": _eval_for_config(eval_results),
                "weights_sha256": weights_sha256,
                "files": files,
            }
            config = _plain(config)
            config["config_sha256"] = config_digest(config)  # covers everything above, weights_sha256 included
            (staging / CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
            (staging / CARD_FILE).write_text(model_card(config, name=name or out.name), encoding="utf-8")
            if traced is not None:
                save_traced(traced, staging / TORCHSCRIPT_FILE)
            for child in staging.iterdir():
                os.chmod(child, 0o644)
            _move_into_place(staging, out, files)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        claimed.folder.finish(files=files)
    except BaseException:
        claimed.abandon()
        raise
    claimed.folder.release()
    return out


def export_run(
    run_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    torchscript: bool = False,
    overwrite: bool = False,
    force: bool = False,
    eval_results: dict | None = None,
) -> Path:
    """``vaportok-rl export``: read a run (or checkpoint) folder and write an export folder at ``out`` (see
    :func:`save_pretrained` for ``overwrite``; ``force`` is its older name)."""
    run = read_run(run_dir)
    head = build_head(run.head_config, run.state_dict, f"run folder {run.source}")
    rollout = run.train_config.get("rollout") or {}
    return save_pretrained(
        head,
        out,
        tokenizer_fingerprint=run.tokenizer_fingerprint,
        sampling_mode=rollout.get("mode", "sample"),
        rewards=_reward_table(run.train_config),
        training=_training_summary(run),
        eval_results=eval_results,
        name=Path(out).name,
        torchscript=torchscript,
        overwrite=overwrite or force,
    )
