"""The PCA floor: the bar a learned tail-drop tokenizer must clear at every k.

A closed-form linear code over whole clips: the top principal components of the training clips, kept to k
coefficients, each stored with ``bits`` uniform levels in ±3σ. A tokenizer whose first k tokens reconstruct
worse than k such coefficients is not worth truncating. ``benchmarks/pca_floor.py`` runs it on clip files;
``vaportok-rl tokenizer-report`` prints it beside the tokenizer's rows (fitted on the tokenizer's training
distribution, scored on the same held-out clips at the same k).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from vaportok_rl.metrics import psnr


@dataclass
class PCAFloor:
    """A fitted floor: mean [F], basis [F, Q] (columns in variance order), coefficient std [Q]."""

    mean: Tensor
    basis: Tensor
    std: Tensor
    bits: int

    def reconstruct(self, clips: Tensor, k: int, *, quantize: bool = True) -> Tensor:
        """clips [N, ...] -> their reconstruction from the first k coefficients, same shape."""
        x = clips.float().flatten(1)
        coef = (x - self.mean) @ self.basis[:, :k]  # [N, k]
        if quantize:
            levels = 2**self.bits - 1
            lo, hi = -3 * self.std[:k], 3 * self.std[:k]
            coef = ((coef.clamp(lo, hi) - lo) / (hi - lo) * levels).round() / levels * (hi - lo) + lo
        return (self.mean + coef @ self.basis[:, :k].T).view_as(clips)

    def psnr(self, clips: Tensor, ks: list[int], *, quantize: bool = True, chunk: int = 256) -> dict[int, float]:
        """Mean per-clip PSNR (dB) of the floor at each k."""
        out = {}
        for k in ks:
            values = [
                psnr(self.reconstruct(clips[i : i + chunk], k, quantize=quantize).clamp(0, 1), clips[i : i + chunk])
                for i in range(0, len(clips), chunk)
            ]
            out[k] = float(torch.cat(values).mean())
        return out


def fit_pca_floor(train: Tensor, max_k: int, *, bits: int = 6, seed: int = 0) -> PCAFloor:
    """Fit the floor on training clips [N, ...] (N > max_k) for k up to ``max_k``."""
    if train.shape[0] <= max_k:
        raise ValueError(f"pca floor: k={max_k} needs more than {train.shape[0]} training clips")
    if bits < 1:
        raise ValueError(f"pca floor: bits must be >= 1, got {bits}")
    x = train.float().flatten(1)
    mean = x.mean(0)
    with torch.random.fork_rng():  # svd_lowrank draws a random sketch: keep the fit reproducible
        torch.manual_seed(seed)
        _, _, basis = torch.svd_lowrank(x - mean, q=min(max_k + 32, x.shape[0]), niter=3)
    basis = basis[:, :max_k]
    std = ((x - mean) @ basis).std(0)
    return PCAFloor(mean=mean, basis=basis, std=std, bits=bits)
