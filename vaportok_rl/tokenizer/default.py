"""Saving and loading built-in tokenizers, the embedded default shipped inside the package, and
:func:`load_tokenizer_spec`, which turns a recipe's ``tokenizer:`` spec (built-in or bring-your-own) into a
FrozenTokenizer.

A tokenizer file is one safetensors file: the weights, plus metadata holding the architecture config, the
complexity statistics the head's prior was centred with, and the SHA-256 fingerprint of the frozen weights
(checked on load, so a corrupted or edited file is caught). No pickle, nothing fetched at run time.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import sys
import traceback
from importlib import resources
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

from vaportok_rl.checkpoint import atomic_write_file
from vaportok_rl.config import ConfigError, from_dict, to_dict
from vaportok_rl.tokenizer.model import Tokenizer, TokenizerConfig
from vaportok_rl.tokenizer.protocol import FrozenTokenizer

FORMAT = "vaportok-tokenizer/1"
DEFAULT_FILE = "tokenizer_default.safetensors"


def save_tokenizer(model: Tokenizer, path: str | Path, *, extra: dict | None = None) -> Path:
    """Write ``model`` atomically to one safetensors file (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "format": FORMAT,
        "config": json.dumps(to_dict(model.config)),
        "fingerprint": model.fingerprint,
        "extra": json.dumps(extra or {}),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return atomic_write_file(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def load_tokenizer_file(path: str | Path) -> Tokenizer:
    """Load a tokenizer written by :func:`save_tokenizer`; frozen (eval, no grad) and fingerprint-checked."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer: no file at {path} (expected a .safetensors file from save_tokenizer)")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iterator)
    except Exception as error:  # safetensors raises its own error types for truncated / corrupt files
        raise ValueError(
            f"tokenizer {path}: not a readable safetensors file ({type(error).__name__}: {error}); the file is "
            f"truncated or corrupted"
        ) from None
    if metadata.get("format") != FORMAT:
        raise ValueError(f"tokenizer {path}: metadata format is {metadata.get('format')!r}, expected {FORMAT!r}")
    try:
        model = Tokenizer(from_dict(TokenizerConfig, json.loads(metadata["config"])))
        model.load_state_dict(tensors)
        model.extra = json.loads(metadata.get("extra", "{}"))
    except (KeyError, ValueError, TypeError, RuntimeError) as error:
        raise ValueError(
            f"tokenizer {path}: its metadata or weights do not make a tokenizer ({type(error).__name__}: {error})"
        ) from None
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


def _config_error(message: str) -> Exception:
    return ConfigError(message)


def _import_file(path: Path, kind: str):
    path = path.resolve()
    name = f"_vaportok_{kind}_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise _config_error(f"{kind} {path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def load_tokenizer_spec(spec: str) -> FrozenTokenizer:
    """``"file.py:factory"`` / ``"package.module:factory"`` (a callable, e.g. a class, returning a FrozenTokenizer),
    else :func:`vaportok_rl.tokenizer.load_tokenizer` ("default", a tokenizer .safetensors file or a run folder)."""

    def failure(what: str, error: BaseException, file: str | None) -> Exception:
        """One ConfigError line: the spec, what failed, the error, and where in the user's file."""
        if isinstance(error, SyntaxError) and error.lineno is not None:
            file, line = error.filename or file, error.lineno
            detail = f"SyntaxError: {error.msg}"
        else:
            frames = [f for f in traceback.extract_tb(error.__traceback__) if file and Path(f.filename) == Path(file)]
            line = frames[-1].lineno if frames else None
            detail = f"{type(error).__name__}: {error}"
        where = f" ({file}, line {line})" if file and line else (f" ({file})" if file else "")
        return _config_error(f"tokenizer {spec!r}: {what}{where} failed with {detail}")

    target, sep, attr = spec.rpartition(":")
    if sep and attr.isidentifier() and target:
        if target.endswith(".py"):
            if not Path(target).is_file():
                raise _config_error(f"tokenizer {spec!r}: file {target} not found")
            file = str(Path(target).resolve())
            try:
                module = _import_file(Path(target), "tokenizer")
            except KeyboardInterrupt:
                raise
            except BaseException as error:  # noqa: BLE001 - a syntax error or a bug in the user's file
                raise failure(f"importing {target}", error, file) from error
        else:
            try:
                module = importlib.import_module(target)
            except ImportError as error:
                raise _config_error(f"tokenizer {spec!r}: cannot import module {target!r}: {error}") from error
            except KeyboardInterrupt:
                raise
            except BaseException as error:  # noqa: BLE001
                raise failure(f"importing module {target!r}", error, None) from error
            file = getattr(module, "__file__", None)
        factory = getattr(module, attr, None)
        if not callable(factory):
            raise _config_error(f"tokenizer {spec!r}: {attr!r} is not a callable in {target}")
        try:
            tokenizer = factory()
        except KeyboardInterrupt:
            raise
        except BaseException as error:  # noqa: BLE001 - the factory's own error, e.g. a missing weights file
            raise failure(f"the factory {attr}()", error, file) from error
    else:
        try:
            tokenizer = load_tokenizer(spec)
        except (OSError, ValueError) as error:
            raise _config_error(f"tokenizer {spec!r}: {error}") from error
    if not isinstance(tokenizer, FrozenTokenizer):
        raise _config_error(
            f"tokenizer {spec!r}: got a {type(tokenizer).__name__}, which lacks the FrozenTokenizer "
            f"members (num_latents, latent_dim, codebook_size, clip_shape, fingerprint, encode, decode, "
            f"prior_correct)"
        )
    return tokenizer
