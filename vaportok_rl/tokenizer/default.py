"""Saving and loading built-in tokenizers, and the embedded default shipped inside the package.

A tokenizer file is one safetensors file: the weights, plus metadata holding the architecture config, the
complexity statistics the head's prior was centred with, and the SHA-256 fingerprint of the frozen weights
(checked on load, so a corrupted or edited file is caught). No pickle, nothing fetched at run time.
"""

from __future__ import annotations

import json
import os
import tempfile
from importlib import resources
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

from vaportok_rl.tokenizer.model import Tokenizer, TokenizerConfig

FORMAT = "vaportok-tokenizer/1"
DEFAULT_FILE = "tokenizer_default.safetensors"


def save_tokenizer(model: Tokenizer, path: str | Path, *, extra: dict | None = None) -> Path:
    """Write ``model`` atomically to one safetensors file (temp file + rename)."""
    from vaportok_rl.config import to_dict

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "format": FORMAT,
        "config": json.dumps(to_dict(model.config)),
        "fingerprint": model.fingerprint,
        "extra": json.dumps(extra or {}),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_tokenizer_file(path: str | Path) -> Tokenizer:
    """Load a tokenizer written by :func:`save_tokenizer`; frozen (eval, no grad) and fingerprint-checked."""
    from vaportok_rl.config import from_dict

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer: no file at {path} (expected a .safetensors file from save_tokenizer)")
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
        if metadata.get("format") != FORMAT:
            raise ValueError(f"tokenizer {path}: metadata format is {metadata.get('format')!r}, expected {FORMAT!r}")
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iterator)
    model = Tokenizer(from_dict(TokenizerConfig, json.loads(metadata["config"])))
    model.load_state_dict(tensors)
    model.extra = json.loads(metadata.get("extra", "{}"))
    if model.fingerprint != metadata["fingerprint"]:
        raise ValueError(
            f"tokenizer {path}: weights do not match the recorded fingerprint "
            f"({model.fingerprint[:12]}… != {metadata['fingerprint'][:12]}…); the file is corrupted or was edited"
        )
    return freeze(model)


def freeze(model: Tokenizer) -> Tokenizer:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def default_tokenizer_path() -> Path:
    return Path(str(resources.files("vaportok_rl") / "assets" / DEFAULT_FILE))


def load_default_tokenizer() -> Tokenizer:
    """The embedded default tokenizer (weights inside the package; nothing is downloaded)."""
    path = default_tokenizer_path()
    if not path.is_file():
        raise FileNotFoundError(f"the embedded default tokenizer is missing from the install: {path}")
    return load_tokenizer_file(path)


def load_tokenizer(spec: str | Path = "default") -> Tokenizer:
    """``"default"`` -> the embedded default; a .safetensors file -> that tokenizer; a run folder -> its
    ``tokenizer.safetensors``."""
    if str(spec) == "default":
        return load_default_tokenizer()
    path = Path(spec)
    if path.is_dir():
        path = path / "tokenizer.safetensors"
    return load_tokenizer_file(path)
