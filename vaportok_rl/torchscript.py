"""The optional TorchScript file of an export (``--format torchscript``): the head traced, checked against the
eager head before anything is written, and saved (see :mod:`vaportok_rl.export` on what loading it means)."""

from __future__ import annotations

import warnings

import torch

from vaportok_rl.tokenizer.head import TORCHSCRIPT_FILE, ExportError, TaildropHead

TORCHSCRIPT_TOLERANCE = 1e-5
"""The largest abs difference allowed between the traced and the eager head's logits."""


def trace_head(head: TaildropHead, tolerance: float = TORCHSCRIPT_TOLERANCE) -> torch.jit.ScriptModule:
    """Trace ``head`` and check the traced module against the eager one on several batch sizes."""
    c = head.config
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(3, c.num_latents, c.latent_dim, generator=generator)
    with torch.no_grad(), warnings.catch_warnings():
        # The head's input-shape check and the fixed q/k/v unpacking are static for a given architecture, which
        # is what these tracer warnings are about; the checks below confirm the trace generalises over N.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # TorchScript is deprecated upstream (see vaportok_rl.export); the file is still what libtorch users load.
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.trace.* is deprecated", category=FutureWarning)
        traced = torch.jit.trace(head, example, check_trace=False)
        for n in (3, 1, 7):
            x = torch.randn(n, c.num_latents, c.latent_dim, generator=generator)
            diff = (traced(x) - head(x)).abs().max().item()
            if not diff <= tolerance:
                raise ExportError(
                    f"--format torchscript: the traced head differs from the eager head by {diff:.3g} "
                    f"(> {tolerance:g}) on a batch of {n} clips; not writing {TORCHSCRIPT_FILE}"
                )
    return traced


def save_traced(traced: torch.jit.ScriptModule, path) -> None:
    """``torch.jit.save`` without its deprecation warning (the file is still what libtorch users load)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.save.*deprecated", category=FutureWarning)
        torch.jit.save(traced, str(path))
