"""The taildrop head: a distribution over how many latent tokens to keep, k in 1..K; and its export format.

Two transformer blocks read the (frozen, quantized) latent tokens; a linear read-out gives one logit per
position j, meaning "keep k = j + 1 tokens". Softmax at temperature 1.8 (the paper's) turns them into
P(k). This is the only part vaportok-rl's GRPO trains.

The exported-head format lives here too, beside the class it stores. An export folder (written by
:func:`vaportok_rl.export.save_pretrained`) holds ``model.safetensors`` (the state dict), ``config.json`` (format,
version, architecture, provenance, the tokenizer's fingerprint and two SHA-256 digests: ``weights_sha256`` of the
weights file and ``config_sha256`` of the config itself) and ``README.md``. :func:`load_exported_head` reads it
bit for bit (``TaildropHead.from_pretrained`` calls it); every other source of a head (a training run folder, a
checkpoint, "default", "pretrained") goes through :func:`vaportok_rl.runs.load_head`, which calls this for export
folders. Only safetensors and JSON are read, never pickle. Nothing here imports vaportok_rl outside ``tokenizer/``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from vaportok_rl.errors import UserError
from vaportok_rl.run_files import RUN_HEAD
from vaportok_rl.tokenizer.blocks import Block

__all__ = [
    "HeadConfig",
    "TaildropHead",
    "CARD_FILE",
    "CONFIG_FILE",
    "FORMAT",
    "FORMAT_VERSION",
    "TORCHSCRIPT_FILE",
    "WEIGHTS_FILE",
    "ExportError",
    "FingerprintMismatchError",
    "build_head",
    "config_digest",
    "head_config",
    "load_export_config",
    "load_exported_head",
    "read_json",
    "read_safetensors",
    "sha256_file",
]


@dataclass
class HeadConfig:
    """Architecture of the taildrop head."""

    latent_dim: int = 128
    """Width D of the tokenizer's latents that the head reads."""
    num_latents: int = 128
    """K: the head outputs a distribution over k in 1..K."""
    width: int = 96
    """Internal width of the head's transformer blocks."""
    layers: int = 2
    """Number of transformer blocks (the paper uses 2)."""
    heads: int = 4
    """Attention heads per block."""
    temperature: float = 1.8
    """Softmax temperature over k (the paper uses 1.8)."""

    def __post_init__(self) -> None:
        for name in ("latent_dim", "num_latents", "width", "layers", "heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"head.{name}: expected a positive integer, got {value!r}")
        if not self.temperature > 0:
            raise ValueError(f"head.temperature: expected > 0, got {self.temperature!r}")


class TaildropHead(nn.Module):
    """latents [N, K, D] -> logits [N, K] over k = 1..K (already divided by the temperature)."""

    def __init__(self, config: HeadConfig):
        super().__init__()
        self.config = config
        self.inp = nn.Linear(config.latent_dim, config.width)
        self.pos = nn.Parameter(torch.randn(config.num_latents, config.width) * 0.02)
        self.blocks = nn.ModuleList(Block(config.width, config.heads) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.width)
        self.out = nn.Linear(config.width, 1)

    def forward(self, latents: Tensor) -> Tensor:
        if latents.ndim != 3 or latents.shape[1:] != (self.config.num_latents, self.config.latent_dim):
            raise ValueError(
                f"TaildropHead: expected latents [N, {self.config.num_latents}, {self.config.latent_dim}], "
                f"got {tuple(latents.shape)}"
            )
        x = self.inp(latents) + self.pos  # [N, K, W]
        for block in self.blocks:
            x = block(x)
        return self.out(self.norm(x)).squeeze(-1) / self.config.temperature  # [N, K]

    def config_dict(self) -> dict:
        return asdict(self.config)

    @classmethod
    def from_pretrained(cls, path, *, tokenizer=None, force: bool = False) -> TaildropHead:
        """Load an exported head folder (model.safetensors + config.json, integrity-checked): see
        :func:`load_exported_head`. Any other source of a head: :func:`vaportok_rl.runs.load_head`."""
        return load_exported_head(path, tokenizer=tokenizer, force=force)


# =============================================================================================== export format

FORMAT = "vaportok-rl/taildrop-head"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
TORCHSCRIPT_FILE = "head.torchscript.pt"


class ExportError(UserError):
    """A head source (export, run or checkpoint folder) that cannot be read, or a run that cannot be exported."""


class FingerprintMismatchError(ExportError):
    """The head was tuned on a tokenizer whose weights differ from the one it is being loaded onto."""


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(f"{what}: {path} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ExportError(f"{what}: cannot read {path}: {error}") from error


def read_safetensors(path: Path, what: str) -> dict[str, Tensor]:
    if not path.is_file():
        raise ExportError(f"{what}: {path} not found")
    try:
        return load_file(str(path), device="cpu")
    except Exception as error:  # safetensors raises its own error types for truncated / corrupt files
        raise ExportError(
            f"{what}: {path} is not a readable safetensors file ({type(error).__name__}: {error})"
        ) from error


def head_config(fields: Any, where: str) -> HeadConfig:
    """A validated :class:`HeadConfig` from its recorded fields; :class:`ExportError` naming ``where`` if not."""
    if not isinstance(fields, dict):
        raise ExportError(f"{where}: expected the head architecture as a mapping, got {fields!r}")
    known = {f.name for f in dataclasses.fields(HeadConfig)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ExportError(
            f"{where}: unknown head architecture keys {unknown} (known: {sorted(known)}); "
            f"was it written by a newer vaportok-rl?"
        )
    try:
        return HeadConfig(**fields)
    except (TypeError, ValueError) as error:
        raise ExportError(f"{where}: invalid head architecture {fields}: {error}") from error


def build_head(config: HeadConfig, state_dict: dict[str, Tensor], where: str) -> TaildropHead:
    """A TaildropHead holding exactly ``state_dict`` (strict); the global RNG is left untouched.

    The shapes are checked on a ``meta``-device head first (no memory), so a recorded architecture that does not
    fit the weights (e.g. an absurd ``width``) is a clear error, never an allocation failure."""
    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in TaildropHead(config).state_dict().items()}
    except (RuntimeError, ValueError, OverflowError) as error:  # e.g. sizes that overflow any storage
        raise ExportError(
            f"{where}: the recorded architecture {dataclasses.asdict(config)} cannot be built "
            f"({type(error).__name__}: {error}); the weights do not fit it"
        ) from None
    missing, unexpected = sorted(set(expected) - set(state_dict)), sorted(set(state_dict) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state_dict) if tuple(state_dict[k].shape) != expected[k])
    if missing or unexpected or wrong:
        shapes = [f"{k}: {tuple(state_dict[k].shape)} != {expected[k]}" for k in wrong]
        raise ExportError(
            f"{where}: the weights do not fit the recorded architecture {dataclasses.asdict(config)}: "
            f"missing {missing}, unexpected {unexpected}, wrong shapes {shapes}"
        )
    with torch.random.fork_rng(devices=[]):  # nn.Module init draws from the global RNG; its values are overwritten
        head = TaildropHead(config)
    with torch.no_grad():
        for name, tensor in head.state_dict(keep_vars=True).items():
            source = state_dict[name]
            if tensor.dtype != source.dtype:  # keep the stored dtype: the round trip is bit for bit
                tensor.data = torch.empty_like(source)
            tensor.copy_(source)
    return head.eval()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def config_digest(config: dict) -> str:
    """SHA-256 of a config.json's content without its own ``config_sha256`` entry (canonical JSON: sorted keys,
    no whitespace), so any edit of the architecture, temperature, fingerprint or provenance is detected."""
    body = {k: v for k, v in config.items() if k != "config_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def export_folder(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.is_file() and p.name in (WEIGHTS_FILE, CONFIG_FILE):
        p = p.parent
    if not p.is_dir():
        raise ExportError(f"head export {p}: not found (expected a folder written by `vaportok-rl export`)")
    if not (p / CONFIG_FILE).is_file():
        hint = (
            f"; it looks like a training run folder: load it with vaportok_rl.runs.load_head, or export it with "
            f"`vaportok-rl export {p} --out DIR`"
            if (p / RUN_HEAD).is_file()
            else ""
        )
        raise ExportError(f"head export {p}: no {CONFIG_FILE}{hint}")
    return p


def load_export_config(path: str | os.PathLike) -> dict:
    """The ``config.json`` of an export folder, format-checked."""
    folder = export_folder(path)
    config = read_json(folder / CONFIG_FILE, f"head export {folder}")
    found = config.get("format") if isinstance(config, dict) else None
    if found != FORMAT:
        raise ExportError(f"head export {folder}: {CONFIG_FILE} has format {found!r}, expected {FORMAT!r}")
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ExportError(
            f"head export {folder}: format_version {version!r}; this vaportok-rl reads up to "
            f"{FORMAT_VERSION} (upgrade vaportok-rl)"
        )
    return config


def _integrity(folder: Path, config: dict, force: bool) -> None:
    """Both digests present and matching; a missing one is an error unless ``force`` (then a warning)."""
    problems = []
    expected_config = config.get("config_sha256")
    if not expected_config:
        problems.append(f"{CONFIG_FILE} records no config_sha256, so its content cannot be checked")
    elif config_digest(config) != expected_config:
        raise ExportError(
            f"head export {folder}: {CONFIG_FILE} does not match its recorded config_sha256 "
            f"({str(expected_config)[:12]}…): it was edited or corrupted (architecture, temperature or provenance "
            f"may differ from what was exported); re-export the run"
        )
    weights = folder / WEIGHTS_FILE
    expected = config.get("weights_sha256")
    if not expected:
        problems.append(f"{CONFIG_FILE} records no weights_sha256, so {WEIGHTS_FILE} cannot be checked")
    elif weights.is_file() and sha256_file(weights) != expected:
        raise ExportError(
            f"head export {folder}: {WEIGHTS_FILE} does not match the SHA-256 recorded in {CONFIG_FILE} "
            f"({str(expected)[:12]}…); the file is corrupted or was replaced"
        )
    if problems:
        message = f"head export {folder}: " + "; ".join(problems)
        if not force:
            raise ExportError(message + ". Pass force=True (CLI: --force) to load it unchecked.")
        warnings.warn(message + " (loaded unchecked: force=True).", UserWarning, stacklevel=4)


def load_exported_head(path: str | os.PathLike, tokenizer: Any = None, force: bool = False) -> TaildropHead:
    """Load an export folder as a :class:`TaildropHead` (eval mode, on the CPU), bit for bit as exported.

    ``config.json`` and ``model.safetensors`` are checked against the SHA-256 digests recorded at export (a
    missing digest is an error unless ``force=True``). ``tokenizer`` (a FrozenTokenizer, or its fingerprint as a
    string) is checked against the fingerprint the head was exported with: a mismatch raises
    :class:`FingerprintMismatchError` unless ``force=True``, which warns instead. The head's input shape
    ``[K, D]`` must match the tokenizer's in any case.
    """
    folder = export_folder(path)
    config = load_export_config(folder)
    _integrity(folder, config, force)
    architecture = head_config(config.get("head"), f"head export {folder}/{CONFIG_FILE}")
    if tokenizer is not None:
        check_tokenizer(f"head export {folder}", config.get("tokenizer_fingerprint"), architecture, tokenizer, force)
    state = read_safetensors(folder / WEIGHTS_FILE, f"head export {folder}")
    return build_head(architecture, state, f"head export {folder}")


def shape_mismatch(architecture: HeadConfig, tokenizer: Any) -> str | None:
    """The one check of a head's input shape [K, D] against a tokenizer's latents: None when they fit, else what
    each side says (callers prefix where they are and raise their own error)."""
    shape = (getattr(tokenizer, "num_latents", None), getattr(tokenizer, "latent_dim", None))
    if shape == (architecture.num_latents, architecture.latent_dim):
        return None
    return (
        f"the head reads latents [K, D] = [{architecture.num_latents}, {architecture.latent_dim}] but the tokenizer "
        f"gives [{shape[0]}, {shape[1]}]"
    )


def check_tokenizer(where: str, expected: Any, architecture: HeadConfig, tokenizer: Any, force: bool) -> None:
    """The head's recorded tokenizer fingerprint and input shape [K, D] against ``tokenizer`` (or a fingerprint)."""
    actual = tokenizer if isinstance(tokenizer, str) else getattr(tokenizer, "fingerprint", None)
    if actual is None:
        raise ExportError(
            f"{where}: the tokenizer {type(tokenizer).__name__} has no `fingerprint`; "
            f"pass a FrozenTokenizer, its fingerprint string, or tokenizer=None to skip the check"
        )
    mismatch = None if isinstance(tokenizer, str) else shape_mismatch(architecture, tokenizer)
    if mismatch:
        raise ExportError(f"{where}: {mismatch}; no force can make them fit")
    if str(actual) == str(expected):
        return
    message = (
        f"{where} was tuned on the tokenizer with fingerprint {expected}, but the given "
        f"tokenizer's fingerprint is {actual}: its frozen weights differ, so the head's decisions are "
        f"meaningless for it"
    )
    if not force:
        raise FingerprintMismatchError(message + ". Pass force=True (CLI: --force) to load it anyway.")
    warnings.warn(message + " (loaded anyway: force=True).", UserWarning, stacklevel=4)
