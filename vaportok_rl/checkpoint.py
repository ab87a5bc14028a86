"""Atomic, pickle-free checkpoints: tensors in safetensors, everything else in JSON.

A checkpoint is a folder ``ckpt/`` holding ``tensors.safetensors`` and ``meta.json``. It is written to a
temporary sibling folder and renamed into place, so a crash mid-write leaves the previous checkpoint intact.
Optimizer and scheduler states are flattened into tensors + JSON (no pickle anywhere).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import Tensor

from vaportok_rl.run_files import CHECKPOINT_META as META
from vaportok_rl.run_files import CHECKPOINT_TENSORS as TENSORS


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling folder to fill; on success it replaces ``path`` in one rename (the old folder,
    if any, is moved away first: os.replace cannot replace a non-empty folder). On error nothing changes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700
        old = None
        if path.exists():
            old = path.parent / f".{path.name}.old-{os.getpid()}"
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_file(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """``write(tmp)`` fills a temporary sibling file that then replaces ``path`` in one rename: a crash or a full
    disk mid-write leaves the previous file (or none) in place, never a truncated one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_checkpoint(path: str | Path, tensors: dict[str, Tensor], meta: dict[str, Any]) -> Path:
    with atomic_folder(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp / TENSORS)
        (tmp / META).write_text(json.dumps(meta, indent=1, sort_keys=True))
    return Path(path)


def load_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    path = Path(path)
    if not (path / TENSORS).is_file() or not (path / META).is_file():
        raise FileNotFoundError(f"checkpoint {path}: expected {TENSORS} and {META} inside, found neither or one")
    return load_file(path / TENSORS), json.loads((path / META).read_text())


# ---- flattening helpers: nested state dicts <-> flat tensors + JSON ------------------------------------


def flatten_state(prefix: str, state: Any, tensors: dict[str, Tensor]) -> Any:
    """Move every tensor of a nested dict/list into ``tensors`` under a dotted key; return the JSON skeleton."""
    if isinstance(state, Tensor):
        tensors[prefix] = state
        return {"__tensor__": prefix}
    if isinstance(state, dict):
        # [key, value] pairs keep int keys (optimizer state is keyed by parameter index) through JSON
        return {"__dict__": [[k, flatten_state(f"{prefix}.{k}", v, tensors)] for k, v in state.items()]}
    if isinstance(state, (list, tuple)):
        return {"__list__": [flatten_state(f"{prefix}.{i}", v, tensors) for i, v in enumerate(state)]}
    return state


def unflatten_state(skeleton: Any, tensors: dict[str, Tensor]) -> Any:
    if isinstance(skeleton, dict) and "__tensor__" in skeleton:
        return tensors[skeleton["__tensor__"]]
    if isinstance(skeleton, dict) and "__dict__" in skeleton:
        return {k: unflatten_state(v, tensors) for k, v in skeleton["__dict__"]}
    if isinstance(skeleton, dict) and "__list__" in skeleton:
        return [unflatten_state(v, tensors) for v in skeleton["__list__"]]
    return skeleton
