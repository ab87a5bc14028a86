"""Training run folders: what ``vaportok-rl train`` writes and everything that reads it back, in one place.

A run folder (``log.output_dir``) holds::

    config.yaml                  the resolved TrainConfig
    metrics.jsonl                one JSON object per line (see vaportok_rl.train)
    checkpoints/step-NNNNNN/     tensors.safetensors + meta.json (vaportok_rl.checkpoint; atomic, pickle-free)
    summary.json                 initial / final held-out evaluation, last training metrics, timings
    head.safetensors             the tuned head's state dict (written last)
    head_config.json             {"head": HeadConfig fields, "tokenizer_fingerprint", "steps", "config"}

:func:`load_head` is the one way to load a head from any of its forms: an export folder (via
:mod:`vaportok_rl.tokenizer.head`), a run folder, a checkpoint folder, ``"default"`` (the GRPO-tuned head
shipped in the package) or ``"pretrained"`` (the tokenizer's own ``.head``). Only safetensors and JSON (and YAML
through a safe loader) are read.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import Tensor

from vaportok_rl.checkpoint import META, TENSORS, atomic_write_file
from vaportok_rl.config import load_yaml  # a yaml.SafeLoader: no Python objects are constructed
from vaportok_rl.run_files import (
    CHECKPOINTS,
    METRICS_FILE,
    RUN_CONFIG,
    RUN_HEAD,
    RUN_HEAD_CONFIG,
    RUN_SUMMARY,
    read_metrics_lines,
)
from vaportok_rl.tokenizer.head import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    ExportError,
    HeadConfig,
    TaildropHead,
    build_head,
    check_tokenizer,
    head_config,
    load_exported_head,
    read_json,
    read_safetensors,
)

__all__ = [
    "CHECKPOINTS",
    "DEFAULT_HEAD_DIR",
    "DISTILLED_HEAD_DIR",
    "METRICS_FILE",
    "TrainedRun",
    "checkpoint_dirs",
    "load_head",
    "read_metrics_lines",
    "read_run",
    "save_head",
]

DEFAULT_HEAD_DIR = Path(__file__).resolve().parent / "assets" / "head_default"
DISTILLED_HEAD_DIR = Path(__file__).resolve().parent / "assets" / "head_distilled"
"""The oracle-distilled head shipped in the package (``vaportok-rl distill recipes/distill_default.yaml``): the
supervised reference, and where ``recipes/grpo_default.yaml`` starts GRPO."""
SHIPPED_HEADS = ("default", "distilled")
"""Head specs that name a head in the package; their folders are read from the two constants above at call time
(a dict would freeze them at import, and tests point them elsewhere)."""


# =============================================================================================== checkpoints


def checkpoint_dirs(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoint folders (both files present) in ``output_dir/checkpoints``, oldest first. Whether
    their content is readable is checked when they are loaded (see :mod:`vaportok_rl.train.state`)."""
    root = Path(output_dir) / CHECKPOINTS
    found = [p for p in root.glob("step-*") if (p / META).is_file() and (p / TENSORS).is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]) if p.name.split("-")[1].isdigit() else -1)


# =============================================================================================== the tuned head


def save_head(head: TaildropHead, output_dir: str | Path, **provenance: Any) -> Path:
    """Write ``head.safetensors`` (the state dict) and ``head_config.json`` ({"head": HeadConfig fields, ...})."""
    output_dir = Path(output_dir)
    state = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
    atomic_write_file(output_dir / RUN_HEAD, lambda tmp: save_file(state, tmp))
    info = {"head": dataclasses.asdict(head.config), **provenance}
    atomic_write_file(output_dir / RUN_HEAD_CONFIG, lambda tmp: tmp.write_text(json.dumps(info, indent=1)))
    return output_dir / RUN_HEAD


@dataclass
class TrainedRun:
    """What an export (or a head load) needs from a training run or one of its checkpoints."""

    source: Path  # the run folder or checkpoint folder read
    state_dict: dict[str, Tensor]  # the head's weights
    head_config: HeadConfig
    tokenizer_fingerprint: str
    train_config: dict[str, Any] = field(default_factory=dict)  # the resolved TrainConfig as a dict ({} if unknown)
    summary: dict[str, Any] = field(default_factory=dict)  # summary.json ({} if absent)
    step: int | None = None  # optimiser steps behind the head


def read_run(run_dir: str | os.PathLike) -> TrainedRun:
    """Read a finished training run folder, or a checkpoint folder ``RUN/checkpoints/step-NNNNNN``."""
    path = Path(run_dir)
    if not path.is_dir():
        raise ExportError(f"run folder {path}: not found (expected the log.output_dir of a `vaportok-rl train` run)")
    if (path / META).is_file() and (path / TENSORS).is_file():
        return _read_checkpoint(path)
    if not (path / RUN_HEAD).is_file():
        checkpoints = checkpoint_dirs(path)
        hint = (
            (
                f"; the run has not finished, but its newest checkpoint can be exported: "
                f"`vaportok-rl export {checkpoints[-1]} --out DIR`"
            )
            if checkpoints
            else ""
        )
        raise ExportError(f"run folder {path}: no {RUN_HEAD} (the trainer writes it after the last step){hint}")
    info = read_json(path / RUN_HEAD_CONFIG, f"run folder {path}")
    if not isinstance(info, dict) or "head" not in info:
        raise ExportError(f"run folder {path}: {RUN_HEAD_CONFIG} has no 'head' entry (the head's architecture)")
    summary = read_json(path / RUN_SUMMARY, f"run folder {path}") if (path / RUN_SUMMARY).is_file() else {}
    train_config = info.get("config")
    if not train_config and (path / RUN_CONFIG).is_file():
        train_config = load_yaml(path / RUN_CONFIG)
    fingerprint = info.get("tokenizer_fingerprint") or summary.get("tokenizer_fingerprint")
    if not fingerprint:
        raise ExportError(
            f"run folder {path}: no tokenizer_fingerprint in {RUN_HEAD_CONFIG} or {RUN_SUMMARY}; "
            f"without it a loaded head cannot be checked against its tokenizer"
        )
    return TrainedRun(
        source=path,
        state_dict=read_safetensors(path / RUN_HEAD, f"run folder {path}"),
        head_config=head_config(info["head"], f"{path / RUN_HEAD_CONFIG}"),
        tokenizer_fingerprint=str(fingerprint),
        train_config=dict(train_config or {}),
        summary=dict(summary),
        step=info.get("steps", summary.get("steps")),
    )


def _read_checkpoint(path: Path) -> TrainedRun:
    meta = read_json(path / META, f"checkpoint {path}")
    tensors = read_safetensors(path / TENSORS, f"checkpoint {path}")
    state = {k[len("head.") :]: v for k, v in tensors.items() if k.startswith("head.")}
    if not isinstance(meta, dict) or not state or "head_config" not in meta or not meta.get("tokenizer_fingerprint"):
        raise ExportError(
            f"checkpoint {path}: expected head.* tensors, 'head_config' and 'tokenizer_fingerprint' "
            f"in {META}; is it a vaportok-rl GRPO checkpoint?"
        )
    history = meta.get("eval_history") or []
    summary = {
        "steps": meta.get("step"),
        "eval_history": history,
        "initial_eval": history[0] if history else None,
        "final_eval": history[-1] if history else None,
    }
    return TrainedRun(
        source=path,
        state_dict=state,
        head_config=head_config(meta["head_config"], str(path / META)),
        tokenizer_fingerprint=str(meta["tokenizer_fingerprint"]),
        train_config=dict(meta.get("config") or {}),
        summary=summary,
        step=meta.get("step"),
    )


def load_head(source: str | os.PathLike, tokenizer: Any = None, force: bool = False) -> TaildropHead:
    """The one loader of a taildrop head, from any of its forms (eval mode, on the CPU, bit for bit):

    - an export folder (``model.safetensors`` + ``config.json``, or either file in it): integrity- and
      fingerprint-checked by :func:`~vaportok_rl.tokenizer.head.load_exported_head`;
    - a training run folder (``head.safetensors`` + ``head_config.json``) or one of its checkpoint folders
      (``tensors.safetensors`` + ``meta.json``);
    - ``"default"``: the GRPO-tuned head shipped in the package (an export folder); ``"distilled"``: the
      oracle-distilled head shipped beside it;
    - ``"pretrained"``: a copy of ``tokenizer.head`` (the tokenizer's own prior-pretrained head).

    ``tokenizer`` (a FrozenTokenizer or its fingerprint string; None skips the check) must match the fingerprint
    recorded with the head unless ``force=True`` (then a warning); its latent shape [K, D] must fit the head's in
    any case. Raises :class:`~vaportok_rl.tokenizer.head.ExportError` naming the file.
    """
    spec = str(source)
    if spec == "pretrained":
        head = getattr(tokenizer, "head", None)
        if not isinstance(head, TaildropHead):
            raise ExportError(
                f"head 'pretrained' needs a tokenizer with a pretrained TaildropHead as .head; this "
                f"{type(tokenizer).__name__} has none. Expected 'default' or a head folder"
            )
        return copy.deepcopy(head).eval()
    if spec in SHIPPED_HEADS:
        path = DEFAULT_HEAD_DIR if spec == "default" else DISTILLED_HEAD_DIR
        if not (path / WEIGHTS_FILE).is_file():
            made_by = "train recipes/grpo_default.yaml" if spec == "default" else "distill recipes/distill_default.yaml"
            raise ExportError(
                f"head {spec!r} is shipped at {path}, which is missing from this install. Make one (vaportok-rl "
                f"{made_by}) and export it (vaportok-rl export RUN --out {path}), pass a run or export folder, or "
                "use 'pretrained'"
            )
    else:
        path = Path(spec)
        if path.is_file() and path.name in (RUN_HEAD, WEIGHTS_FILE, CONFIG_FILE, RUN_HEAD_CONFIG):
            path = path.parent
        if not path.is_dir():
            raise ExportError(
                f"head {spec!r}: not 'default', 'distilled', 'pretrained' or an existing folder; expected an exported "
                f"head folder (model.safetensors + config.json), a GRPO run folder (head.safetensors + "
                f"head_config.json) or a checkpoint folder (tensors.safetensors + meta.json)"
            )
    if (path / CONFIG_FILE).is_file() or (path / WEIGHTS_FILE).is_file():
        return load_exported_head(path, tokenizer=tokenizer, force=force)
    if (path / RUN_HEAD).is_file() or (path / META).is_file() or (path / CHECKPOINTS).is_dir():
        run = read_run(path)
        where = f"run folder {run.source}" if run.source.name[:5] != "step-" else f"checkpoint {run.source}"
        if tokenizer is not None:
            check_tokenizer(where, run.tokenizer_fingerprint, run.head_config, tokenizer, force)
        return build_head(run.head_config, run.state_dict, where)
    raise ExportError(
        f"head {str(path)!r}: holds neither model.safetensors + config.json (an exported head) nor "
        "head.safetensors + head_config.json (a GRPO run folder) nor a checkpoint (tensors.safetensors + meta.json)"
    )
