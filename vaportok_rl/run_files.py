"""The names of the files a run folder holds, once, and the one reader of ``metrics.jsonl``.

Every module that writes or reads a run folder (training, distill, pretraining, sweeps, eval, export) takes
these names from here; a command's own report files (a sweep's table, an eval's report) are named once in the
module that writes them. This module sits at the bottom of the package (the tokenizer layer reads it too).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = [
    "CHECKPOINTS",
    "CHECKPOINT_META",
    "CHECKPOINT_TENSORS",
    "FIT_HEAD",
    "METRICS_FILE",
    "RUN_CONFIG",
    "RUN_HEAD",
    "RUN_HEAD_CONFIG",
    "RUN_SUMMARY",
    "TOKENIZER_FILE",
    "read_metrics_lines",
]

METRICS_FILE = "metrics.jsonl"  # one JSON object per line, each with an integer "step"
RUN_CONFIG = "config.yaml"  # the resolved config
RUN_SUMMARY = "summary.json"  # a finished run's summary
RUN_HEAD = "head.safetensors"  # a training run's tuned head (state dict)
RUN_HEAD_CONFIG = "head_config.json"  # its HeadConfig and provenance
CHECKPOINTS = "checkpoints"  # a training run's checkpoint folders, step-NNNNNN
FIT_HEAD = "fit"  # an enumerated run's fitted head (head files) when sampled steps follow (grpo.path_phase)
CHECKPOINT_TENSORS = "tensors.safetensors"  # inside a checkpoint folder
CHECKPOINT_META = "meta.json"  # inside a checkpoint folder
TOKENIZER_FILE = "tokenizer.safetensors"  # a pretraining run's tokenizer


def read_metrics_lines(path: str | os.PathLike) -> tuple[list[dict], list[int]]:
    """The JSON objects of a metrics.jsonl file that carry an integer ``step``, and the (1-based) numbers of the
    lines that are not one (a partial last line left by a killed run, or a corrupted line): those are skipped,
    never fatal. A missing file reads as empty."""
    path = Path(path)
    records, bad = [], []
    if not path.is_file():
        return records, bad
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            bad.append(number)
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
        else:
            bad.append(number)
    return records, bad
