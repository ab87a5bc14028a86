"""Synthetic videos with controllable spatial and temporal complexity.

Every video is drawn from its own generator, ``np.random.default_rng([seed, i])``, so video ``i`` depends only on
``(seed, i)``: the first ``n`` videos are identical whatever ``num_videos`` is. Events of later clips and the pixel
noise of each clip come from separate streams (``[seed, i, 1]`` and ``[seed, i, 2, l]``), so the first clip of a
video is also the same whatever ``clips_per_video`` is.

Scene (all geometry in units of ``size``, so a scene looks the same at any resolution):

* background: smooth two-colour gradient along a random direction (a gentle cosine ramp so it can pan forever),
  plus, with probability ``0.3 + 0.7·spatial``, a sinusoidal grating whose contrast (≤ 0.35) and frequency
  (1 to 8 cycles per image) grow with the spatial level;
* ``Binomial(5, 0.1 + 0.8·spatial)`` shapes (0 to 5): soft discs, rotated rectangles, Gaussian blobs; each may
  carry its own grating (probability ``spatial``);
* motion: each shape moves linearly, bouncing off the borders, at ``temporal · U(0.6, 1) · 2 px/frame`` at size
  32 (scaled with size); rectangles rotate slowly; the background pans at ``temporal · U(0.2, 0.5) px/frame``;
* edges are anti-aliased with a 1 px smoothstep on the signed distance (no hard aliasing);
* Gaussian noise, σ ~ U(0, 0.01·spatial) by default (``noise=False`` turns it off, a float fixes σ ≤ 0.02).

With ``clips_per_video = L > 1`` the scene continues across clips (same objects, continuous positions); at each
later clip the speed of the whole scene may change (×U(0.5, 1.6), probability 0.5) and a new object may fade in
(probability 0.35), so consecutive clips differ in complexity.

Clips are float32 ``[C=3, T, H, W]`` in [0, 1]; videos ``[L, C, T, H, W]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["synthetic_videos", "synthetic_clips"]

_MAX_SHAPES = 5
_BASE_SPEED = 2.0  # px/frame at size 32 for temporal level 1
_BASE_PAN = 0.5  # px/frame at size 32 for temporal level 1
_FADE_FRAMES = 4
_NOISE_BANK_SIZE = 1 << 20
_noise_bank: np.ndarray | None = None


def _noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal float32 noise of `shape`, deterministic in `rng`.

    Drawing ~50k normals per clip dominated generation time, so clips that fit take a slice at a random offset of a
    fixed bank of 2^20 normals (drawn once from seed 0x5EED), with a random sign; bigger clips draw directly.
    """
    global _noise_bank
    n = int(np.prod(shape))
    if n > _NOISE_BANK_SIZE // 4:
        return rng.standard_normal(shape, dtype=np.float32)
    if _noise_bank is None:
        _noise_bank = np.random.default_rng(0x5EED).standard_normal(_NOISE_BANK_SIZE, dtype=np.float32)
    start = int(rng.integers(_NOISE_BANK_SIZE - n + 1))
    sign = np.float32(1.0 if rng.uniform() < 0.5 else -1.0)
    return (sign * _noise_bank[start : start + n]).reshape(shape)


def _levels(value: float | Sequence[float] | np.ndarray | None, n: int, name: str) -> np.ndarray | None:
    """Validate a control level argument: None, a float, or an array of length n, all in [0, 1]."""
    if value is None:
        return None
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(
            f"{name} must be None, a float or an array of shape ({n},) (one per video), got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)) or arr.min(initial=0.0) < 0.0 or arr.max(initial=0.0) > 1.0:
        raise ValueError(f"{name} levels must lie in [0, 1], got values in [{arr.min()}, {arr.max()}]")
    return arr


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _bounce(p0: float, disp: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Position of a point starting at p0 moved by disp [L·T], reflected between lo and hi (triangle wave)."""
    span = hi - lo
    u = np.mod(p0 - lo + disp, 2.0 * span)
    return lo + span - np.abs(u - span)


def _draw_shape(rng: np.random.Generator, s: float, m: float, size: int) -> dict:
    """Draw the parameters of one shape (in px units at this size)."""
    scale = size / 32.0
    kind = int(rng.integers(3))  # 0 disc, 1 rectangle, 2 Gaussian blob
    angle = rng.uniform(0, 2 * np.pi)
    speed = m * rng.uniform(0.6, 1.0) * _BASE_SPEED * scale
    shape = {
        "kind": kind,
        "pos": rng.uniform(0.15, 0.85, size=2) * size,  # (x, y)
        "vel": speed * np.array([np.cos(angle), np.sin(angle)]),
        "colour": rng.uniform(0.05, 0.95, size=3).astype(np.float32),
        "radius": rng.uniform(0.1, 0.25) * size,
        "half": rng.uniform(0.08, 0.22, size=2) * size,
        "theta": rng.uniform(0, np.pi),
        "omega": m * rng.uniform(-0.05, 0.05),
        "sigma": rng.uniform(0.06, 0.15) * size,
        "amp": rng.uniform(0.6, 1.0),
        # own grating texture
        "textured": rng.uniform() < s,
        "tex_freq": (1.0 + 7.0 * s * rng.uniform(0.3, 1.0)) / size,  # cycles per px
        "tex_dir": rng.uniform(0, np.pi),
        "tex_contrast": s * rng.uniform(0.2, 0.5),
        "tex_phase": rng.uniform(0, 2 * np.pi),
    }
    return shape


def _render_shape(
    img: np.ndarray,
    sh: dict,
    xx: np.ndarray,
    yy: np.ndarray,
    disp: np.ndarray,
    t: np.ndarray,
    fade: np.ndarray | None,
    size: int,
) -> None:
    """Composite one shape onto img [3, L·T, H, W] in place. xx, yy: [H, W] pixel centres; disp: [L·T] displacement."""
    lo, hi = 0.05 * size, 0.95 * size
    cx = _bounce(sh["pos"][0], sh["vel"][0] * disp, lo, hi).astype(np.float32)  # [L·T]
    cy = _bounce(sh["pos"][1], sh["vel"][1] * disp, lo, hi).astype(np.float32)
    dx = xx[None, :1, :] - cx[:, None, None]  # [L·T, 1, W] (x varies along W only)
    dy = yy[None, :, :1] - cy[:, None, None]  # [L·T, H, 1]
    if sh["kind"] == 0:
        sd = np.sqrt(dx * dx + dy * dy) - float(sh["radius"])
        alpha = _smoothstep(0.5 - sd)
    elif sh["kind"] == 1:
        th = (sh["theta"] + sh["omega"] * t).astype(np.float32)[:, None, None]  # [L·T, 1, 1]
        c, s_ = np.cos(th), np.sin(th)
        qx = np.abs(c * dx + s_ * dy) - float(sh["half"][0])  # [L·T, H, W]
        qy = np.abs(-s_ * dx + c * dy) - float(sh["half"][1])
        outside = np.sqrt(np.maximum(qx, 0.0) ** 2 + np.maximum(qy, 0.0) ** 2)
        sd = outside + np.minimum(np.maximum(qx, qy), 0.0)
        alpha = _smoothstep(0.5 - sd)
    else:
        inv = np.float32(-0.5 / sh["sigma"] ** 2)
        alpha = np.float32(sh["amp"]) * np.exp(inv * dx * dx) * np.exp(inv * dy * dy)  # separable
    alpha = alpha.astype(np.float32)
    if fade is not None:
        alpha *= fade[:, None, None]
    colour = sh["colour"][:, None, None, None]  # [3, 1, 1, 1]
    if sh["textured"]:
        k = 2 * np.pi * sh["tex_freq"]
        ax = (k * np.cos(sh["tex_dir"]) * dx).astype(np.float32)  # [L·T, 1, W]
        ay = (k * np.sin(sh["tex_dir"]) * dy + sh["tex_phase"]).astype(np.float32)  # [L·T, H, 1]
        # sin(ax + ay) = sin ax cos ay + cos ax sin ay: transcendentals on [L·T, 1, W] and [L·T, H, 1] only
        wave = np.float32(sh["tex_contrast"]) * (np.sin(ax) * np.cos(ay) + np.cos(ax) * np.sin(ay))
        colour = np.clip(colour + wave[None], 0.0, 1.0)
    img *= 1.0 - alpha[None]
    img += alpha[None] * colour


def _clip_events(
    seed: int, i: int, num_clips: int, frames: int, s: float, m: float, size: int
) -> tuple[np.ndarray, list[tuple[int, dict]], np.ndarray]:
    """Events of clips 1..L-1 from their own stream ``[seed, i, 1]``: per-clip speed multipliers [L] (clip 0 always
    ×1), the shapes fading in (clip, shape), and the displacement along time [L·T] (continuous across clips)."""
    evt = np.random.default_rng([seed, i, 1])
    mult = np.ones(num_clips)
    entering: list[tuple[int, dict]] = []
    for clip in range(1, num_clips):
        if evt.uniform() < 0.5:
            mult[clip] = mult[clip - 1] * evt.uniform(0.5, 1.6)
        else:
            mult[clip] = mult[clip - 1]
        if evt.uniform() < 0.35:
            entering.append((clip, _draw_shape(evt, s, m, size)))
    per_frame = np.repeat(mult, frames).astype(np.float32)
    disp = np.concatenate([[0.0], np.cumsum(per_frame[:-1])]).astype(np.float32)  # [L·T]
    return mult, entering, disp


def _travelling_cos(
    k: float, direction: float, phase: float, xx: np.ndarray, yy: np.ndarray, pan: np.ndarray
) -> np.ndarray:
    """cos(k·((x, y) − pan_t)·(cos d, sin d) + phase) as float32 [L·T, H, W]; xx, yy: [H, W], pan: [2, L·T]."""
    ux, uy = np.cos(direction), np.sin(direction)
    a = k * (xx * ux + yy * uy) + phase  # [H, W]
    b = k * (pan[0] * ux + pan[1] * uy)  # [L·T]
    ca, sa = np.cos(a).astype(np.float32), np.sin(a).astype(np.float32)
    cb, sb = np.cos(b).astype(np.float32), np.sin(b).astype(np.float32)
    return ca[None] * cb[:, None, None] + sa[None] * sb[:, None, None]


def _background(
    rng: np.random.Generator, s: float, m: float, size: int, xx: np.ndarray, yy: np.ndarray, disp: np.ndarray
) -> np.ndarray:
    """The panning background [3, L·T, H, W]: a cosine ramp between two colours along a random direction, plus
    (probability 0.3 + 0.7·s) a tinted grating. Both are cos(k·(x·d) − k·shift_t + φ); cos(a − b) = cos a cos b +
    sin a sin b keeps transcendental calls off [L·T, H, W]. Every parameter is drawn, used or not."""
    scale = size / 32.0
    c0 = rng.uniform(0.05, 0.95, size=3).astype(np.float32)
    c1 = rng.uniform(0.05, 0.95, size=3).astype(np.float32)
    g_dir = rng.uniform(0, 2 * np.pi)
    g_phase = rng.uniform(0, 2 * np.pi)
    pan_dir = rng.uniform(0, 2 * np.pi)
    pan_speed = m * rng.uniform(0.4, 1.0) * _BASE_PAN * scale  # 0.2 to 0.5 px/frame at level 1
    pan = pan_speed * np.stack([np.cos(pan_dir) * disp, np.sin(pan_dir) * disp])  # [2, L·T] (x, y) shift

    w = 0.5 - 0.5 * _travelling_cos(np.pi / (1.5 * size), g_dir, g_phase, xx, yy, pan)  # [L·T, H, W] in [0, 1]
    img = c0[:, None, None, None] + (c1 - c0)[:, None, None, None] * w[None]  # [3, L·T, H, W]

    bg_textured = rng.uniform() < 0.3 + 0.7 * s
    bg_freq = (1.0 + 7.0 * s * rng.uniform(0.3, 1.0)) / size
    bg_dir = rng.uniform(0, np.pi)
    bg_contrast = s * rng.uniform(0.1, 0.35)
    bg_phase = rng.uniform(0, 2 * np.pi)
    tint = rng.uniform(0.5, 1.0, size=3).astype(np.float32)
    if bg_textured and bg_contrast > 0:
        wave = _travelling_cos(2 * np.pi * bg_freq, bg_dir, bg_phase, xx, yy, pan)
        img += (bg_contrast * tint)[:, None, None, None] * wave[None]
    return img


def _add_noise(video: np.ndarray, rng: np.random.Generator, noise: bool | float, s: float, seed: int, i: int) -> float:
    """Add Gaussian noise to ``video`` [L, 3, T, H, W] in place, each clip's from its own stream ``[seed, i, 2, l]``;
    σ ~ U(0, 0.01·s) from ``rng`` when ``noise`` is True, none when False, else ``noise``. Returns σ."""
    if noise is True:
        sigma = rng.uniform(0.0, 0.01 * s)
    elif noise is False:
        sigma = 0.0
    else:
        sigma = float(noise)
    if sigma > 0:
        for clip in range(video.shape[0]):
            nrng = np.random.default_rng([seed, i, 2, clip])
            video[clip] += np.float32(sigma) * _noise(nrng, video[clip].shape)
    return sigma


def _render_video(
    seed: int,
    i: int,
    num_clips: int,
    frames: int,
    size: int,
    spatial: float | None,
    temporal: float | None,
    noise: bool | float,
) -> tuple[np.ndarray, dict]:
    """Video ``i`` of ``seed`` [L, 3, T, H, W] in [0, 1] and its info (the levels, σ, shape counts, speeds)."""
    rng = np.random.default_rng([seed, i])
    s_draw, m_draw = rng.uniform(), rng.uniform()  # always drawn, so fixing a level leaves the rest unchanged
    s = s_draw if spatial is None else float(spatial)
    m = m_draw if temporal is None else float(temporal)

    # Coordinates: pixel centres [H, W], global frame index [L·T].
    coords = np.arange(size, dtype=np.float32) + 0.5
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    t = np.arange(num_clips * frames, dtype=np.float32)
    mult, entering, disp = _clip_events(seed, i, num_clips, frames, s, m, size)
    img = _background(rng, s, m, size, xx, yy, disp)  # [3, L·T, H, W]

    # Shapes present from the first frame.
    n_shapes = int(rng.binomial(_MAX_SHAPES, 0.1 + 0.8 * s))
    for _ in range(n_shapes):
        _render_shape(img, _draw_shape(rng, s, m, size), xx, yy, disp, t, None, size)
    # Shapes fading in at the start of a later clip.
    for clip, sh in entering:
        fade = np.clip((t - clip * frames + 1) / _FADE_FRAMES, 0.0, 1.0).astype(np.float32)
        _render_shape(img, sh, xx, yy, disp, t, fade, size)

    video = img.reshape(3, num_clips, frames, size, size).transpose(1, 0, 2, 3, 4)  # [L, 3, T, H, W]
    video = np.ascontiguousarray(video)
    sigma = _add_noise(video, rng, noise, s, seed, i)  # noise drawn per clip from its own stream
    np.clip(video, 0.0, 1.0, out=video)
    info = {
        "spatial": s,
        "temporal": m,
        "noise_sigma": sigma,
        "num_shapes": n_shapes,
        "num_entering": len(entering),
        "speed_mult": mult.astype(np.float32),
    }
    return video, info


def synthetic_videos(
    num_videos: int,
    clips_per_video: int = 1,
    *,
    seed: int,
    frames: int = 16,
    size: int = 32,
    spatial: float | Sequence[float] | np.ndarray | None = None,
    temporal: float | Sequence[float] | np.ndarray | None = None,
    noise: bool | float = True,
) -> tuple[torch.Tensor, dict]:
    """Generate ``num_videos`` synthetic videos of ``clips_per_video`` clips.

    Args:
        num_videos: B, number of videos.
        clips_per_video: L, consecutive clips per video (the scene continues across clips).
        seed: non-negative int; video i depends only on (seed, i).
        frames, size: T and H = W of each clip.
        spatial, temporal: control levels in [0, 1]; None draws one per video uniformly in [0, 1], a float fixes all,
            an array of shape (B,) fixes each video.
        noise: True → σ ~ U(0, 0.01·spatial) per video; False → none; a float in [0, 0.02] fixes σ.

    Returns:
        videos: float32 tensor [B, L, 3, T, H, W] in [0, 1].
        info: dict of numpy arrays: ``spatial`` [B], ``temporal`` [B], ``noise_sigma`` [B], ``num_shapes`` [B]
            (shapes from the first frame), ``num_entering`` [B] (shapes fading in later), ``speed_mult`` [B, L].
    """
    for name, val, lo in (
        ("num_videos", num_videos, 0),
        ("clips_per_video", clips_per_video, 1),
        ("frames", frames, 2),
        ("size", size, 4),
        ("seed", seed, 0),
    ):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < lo:
            raise ValueError(f"{name} must be an int ≥ {lo}, got {val!r}")
    if not isinstance(noise, bool) and not (0.0 <= float(noise) <= 0.02):
        raise ValueError(f"noise must be True, False or a σ in [0, 0.02], got {noise!r}")
    sp = _levels(spatial, num_videos, "spatial")
    tp = _levels(temporal, num_videos, "temporal")

    out = np.empty((num_videos, clips_per_video, 3, frames, size, size), dtype=np.float32)
    infos = []
    for i in range(num_videos):
        out[i], info = _render_video(
            int(seed),
            i,
            clips_per_video,
            frames,
            size,
            None if sp is None else sp[i],
            None if tp is None else tp[i],
            noise,
        )
        infos.append(info)
    meta = {
        "spatial": np.array([inf["spatial"] for inf in infos], dtype=np.float32),
        "temporal": np.array([inf["temporal"] for inf in infos], dtype=np.float32),
        "noise_sigma": np.array([inf["noise_sigma"] for inf in infos], dtype=np.float32),
        "num_shapes": np.array([inf["num_shapes"] for inf in infos], dtype=np.int64),
        "num_entering": np.array([inf["num_entering"] for inf in infos], dtype=np.int64),
        "speed_mult": np.array([inf["speed_mult"] for inf in infos], dtype=np.float32).reshape(
            num_videos, clips_per_video
        ),
    }
    return torch.from_numpy(out), meta


def synthetic_clips(
    n: int,
    *,
    seed: int,
    frames: int = 16,
    size: int = 32,
    spatial: float | Sequence[float] | np.ndarray | None = None,
    temporal: float | Sequence[float] | np.ndarray | None = None,
    noise: bool | float = True,
) -> torch.Tensor:
    """``n`` independent synthetic clips, float32 [n, 3, T, H, W] in [0, 1] (videos with L = 1, flattened)."""
    videos, _ = synthetic_videos(
        n, 1, seed=seed, frames=frames, size=size, spatial=spatial, temporal=temporal, noise=noise
    )
    return videos[:, 0]
