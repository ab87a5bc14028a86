"""Spatial and temporal complexity of clips, exactly as eqs. 1–5 of the VaporTok supplement (section A.1).

Input clips are ``[..., C=3, T, H, W]`` with RGB values in [0, 1]. Each frame is converted to grey on the 0..255
scale and quantised to integer levels:

    g = round(clamp(255 · (0.299 R + 0.587 G + 0.114 B), 0, 255))          (eq. 1, computed in float64)

where ``round`` is round-half-to-even (``torch.round`` / ``np.round``). Then

* SC = mean over frames of the Shannon entropy (log2, bits) of the 256-bin histogram of g_t   (eqs. 2–4), in [0, 8];
* TC = mean over (T − 1)·H·W of |g_{t+1} − g_t| on the integer grey levels                    (eq. 5), in [0, 255].

Both are vectorised over all leading axes (no Python loop over clips or frames) and return ``[...]``
(``clips.shape[:-4]``) in the input's floating dtype (float32 for non-float inputs).
"""

from __future__ import annotations

import torch

__all__ = ["grey_levels", "spatial_complexity", "temporal_complexity", "complexity"]

_LUMA = (0.299, 0.587, 0.114)


def _check(clips: torch.Tensor, name: str = "clips", min_frames: int = 1) -> None:
    if not isinstance(clips, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [..., 3, T, H, W], got {type(clips).__name__}")
    if clips.ndim < 4 or clips.shape[-4] != 3:
        raise ValueError(f"{name} must have shape [..., C=3, T, H, W] (RGB in [0, 1]), got shape {tuple(clips.shape)}")
    t, h, w = clips.shape[-3:]
    if t < min_frames or h < 1 or w < 1:
        raise ValueError(f"{name} must have T ≥ {min_frames} frames and H, W ≥ 1, got shape {tuple(clips.shape)}")
    if clips.is_floating_point() and not bool(torch.isfinite(clips).all()):
        bad = int((~torch.isfinite(clips)).sum())
        raise ValueError(f"{name} must hold finite values in [0, 1], found {bad} NaN/inf values")


def _out_dtype(clips: torch.Tensor) -> torch.dtype:
    return clips.dtype if clips.is_floating_point() else torch.float32


def grey_levels(clips: torch.Tensor) -> torch.Tensor:
    """Integer grey levels (eq. 1): ``[..., 3, T, H, W]`` in [0, 1] → int64 ``[..., T, H, W]`` in 0..255."""
    _check(clips)
    x = clips.to(torch.float64)
    r, g, b = x.unbind(dim=-4)
    grey = (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b) * 255.0
    return torch.round(grey.clamp(0.0, 255.0)).to(torch.int64)


def _sc_from_grey(grey: torch.Tensor) -> torch.Tensor:
    """Mean frame entropy (eqs. 2–4) of integer grey levels [..., T, H, W] → float64 [...]."""
    *lead, t, h, w = grey.shape
    frames = grey.reshape(-1, h * w)  # [N·T, H·W]
    offsets = torch.arange(frames.shape[0], device=grey.device).unsqueeze(1) * 256
    counts = torch.bincount((frames + offsets).reshape(-1), minlength=frames.shape[0] * 256)
    p = counts.reshape(-1, 256).to(torch.float64) / (h * w)  # [N·T, 256]
    entropy = -torch.special.xlogy(p, p).sum(dim=1) / torch.log(torch.tensor(2.0, dtype=torch.float64))
    return entropy.reshape(*lead, t).mean(dim=-1)


def _tc_from_grey(grey: torch.Tensor) -> torch.Tensor:
    """Mean absolute frame difference (eq. 5) of integer grey levels [..., T, H, W] → float64 [...]."""
    diff = (grey[..., 1:, :, :] - grey[..., :-1, :, :]).abs()
    return diff.to(torch.float64).mean(dim=(-3, -2, -1))


def spatial_complexity(clips: torch.Tensor) -> torch.Tensor:
    """SC (eqs. 1–4) of clips ``[..., 3, T, H, W]`` in [0, 1] → ``[...]``, bits in [0, 8]."""
    _check(clips)
    return _sc_from_grey(grey_levels(clips)).to(_out_dtype(clips))


def temporal_complexity(clips: torch.Tensor) -> torch.Tensor:
    """TC (eqs. 1, 5) of clips ``[..., 3, T, H, W]`` (T ≥ 2) in [0, 1] → ``[...]``, grey levels in [0, 255]."""
    _check(clips, min_frames=2)
    return _tc_from_grey(grey_levels(clips)).to(_out_dtype(clips))


def complexity(clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(SC, TC) of clips ``[..., 3, T, H, W]`` (T ≥ 2), sharing one grey conversion."""
    _check(clips, min_frames=2)
    grey = grey_levels(clips)
    dtype = _out_dtype(clips)
    return _sc_from_grey(grey).to(dtype), _tc_from_grey(grey).to(dtype)
