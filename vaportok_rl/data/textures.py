"""Real-texture clips: smooth camera pans and zooms over the photographs that scikit-image ships.

Images (all load offline from the scikit-image wheel; grey images are repeated to RGB, the RGBA logo is
composited on white):

* train (16): astronaut, camera, coffee, rocket, coins, moon, text, clock, immunohistochemistry, brick, grass,
  colorwheel, logo, retina, cell, microaneurysms
* test (6): chelsea, page, hubble_deep_field, gravel, motorcycle_left, motorcycle_right
  (the two stereo views of the motorcycle are near-duplicates, so both are held out together)

Video ``i`` uses its own generator ``np.random.default_rng([seed, i])``: it picks an image of the split, an initial
crop (side log-uniform in [0.08, 0.6] of the image's shorter side, centre uniform where the crop fits), a pan velocity
(0 to 2 output px/frame, random direction) that slowly turns (≤ 0.02 rad/frame), and, half of the time, a zoom drift
(|d log side / d frame| ≤ 0.01). The crop bounces off the image borders (and the zoom off its bounds), so the path
stays inside the photograph for any length. Frames are rendered with bilinear ``grid_sample`` at size × size from
a box-filtered image pyramid level with 1 to 2 source pixels per output pixel (little aliasing). With
``clips_per_video = L`` the L clips are consecutive pieces of one continuous camera path.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "TRAIN_IMAGES",
    "TEST_IMAGES",
    "ALL_IMAGES",
    "texture_images",
    "load_texture_image",
    "texture_videos",
    "texture_clips",
]

TRAIN_IMAGES: tuple[str, ...] = (
    "astronaut",
    "camera",
    "coffee",
    "rocket",
    "coins",
    "moon",
    "text",
    "clock",
    "immunohistochemistry",
    "brick",
    "grass",
    "colorwheel",
    "logo",
    "retina",
    "cell",
    "microaneurysms",
)
TEST_IMAGES: tuple[str, ...] = ("chelsea", "page", "hubble_deep_field", "gravel", "motorcycle_left", "motorcycle_right")
ALL_IMAGES: tuple[str, ...] = TRAIN_IMAGES + TEST_IMAGES

_MIN_CROP, _MAX_CROP = 0.08, 0.6  # crop side as a fraction of the shorter image side (log-uniform)
_MAX_PAN = 2.0  # output px/frame
_MAX_TURN = 0.02  # rad/frame
_MAX_ZOOM_RATE = 0.01  # |d log side / d frame|


def texture_images(split: str = "all") -> tuple[str, ...]:
    """Names of the images of a split: "train", "test" or "all"."""
    splits = {"train": TRAIN_IMAGES, "test": TEST_IMAGES, "all": ALL_IMAGES}
    if split not in splits:
        raise ValueError(f"split must be one of {sorted(splits)}, got {split!r}")
    return splits[split]


def _raw_image(name: str) -> np.ndarray:
    import skimage.data  # scikit-image is slow to import: only when a texture video is built

    if name in ("motorcycle_left", "motorcycle_right"):
        left, right, _ = skimage.data.stereo_motorcycle()
        return left if name == "motorcycle_left" else right
    if name not in ALL_IMAGES:
        raise ValueError(f"unknown texture image {name!r}; expected one of {list(ALL_IMAGES)}")
    return getattr(skimage.data, name)()


@functools.cache
def load_texture_image(name: str) -> torch.Tensor:
    """One image as float32 [3, H, W] in [0, 1] (grey → RGB, RGBA composited on white). Cached."""
    img = _raw_image(name)
    img = img.astype(np.float32) / (255.0 if img.dtype == np.uint8 else 1.0)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    elif img.shape[-1] == 4:
        alpha = img[..., 3:]
        img = img[..., :3] * alpha + (1.0 - alpha)
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).clamp_(0.0, 1.0)


@functools.cache
def _pyramid(name: str) -> tuple[torch.Tensor, ...]:
    """Box-filtered pyramid [1, 3, H_k, W_k] of an image, halving until the shorter side is < 64 px."""
    levels = [load_texture_image(name)[None]]
    while min(levels[-1].shape[-2:]) >= 128:
        h, w = levels[-1].shape[-2:]
        levels.append(F.interpolate(levels[-1], size=(h // 2, w // 2), mode="area"))
    return tuple(levels)


def _bounce(x0: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Reflect positions x0 into [lo, hi] (triangle wave); lo ≥ hi gives the midpoint."""
    span = np.maximum(hi - lo, 1e-9)
    u = np.mod(x0 - lo, 2.0 * span)
    out = lo + span - np.abs(u - span)
    return np.where(hi - lo > 1e-9, out, 0.5 * (lo + hi))


def _render_video(
    seed: int, i: int, names: tuple[str, ...], num_clips: int, frames: int, size: int
) -> tuple[np.ndarray, dict]:
    rng = np.random.default_rng([seed, i])
    name = names[int(rng.integers(len(names)))]
    h0, w0 = load_texture_image(name).shape[-2:]
    short = min(h0, w0)
    n = num_clips * frames
    t = np.arange(n, dtype=np.float64)

    # Crop side (level-0 px) along the path: log-uniform start, optional drift, bounced within its bounds.
    log_lo, log_hi = math.log(_MIN_CROP * short), math.log(0.95 * short)
    log_side0 = rng.uniform(math.log(_MIN_CROP * short), math.log(_MAX_CROP * short))
    zoom_rate = rng.uniform(-_MAX_ZOOM_RATE, _MAX_ZOOM_RATE) if rng.uniform() < 0.5 else 0.0
    side = np.exp(_bounce(log_side0 + zoom_rate * t, np.float64(log_lo), np.float64(log_hi)))  # [n]

    # Camera centre: pan speed in output px/frame → level-0 px via the current crop side; slowly turning heading.
    speed = rng.uniform(0.0, _MAX_PAN)
    heading = rng.uniform(0, 2 * np.pi) + rng.uniform(-_MAX_TURN, _MAX_TURN) * t
    step = speed * side / size  # [n] level-0 px per frame
    dx = np.concatenate([[0.0], np.cumsum((step * np.cos(heading))[:-1])])
    dy = np.concatenate([[0.0], np.cumsum((step * np.sin(heading))[:-1])])
    cx0 = rng.uniform(side[0] / 2, w0 - side[0] / 2)
    cy0 = rng.uniform(side[0] / 2, h0 - side[0] / 2)
    cx = _bounce(cx0 + dx, side / 2, w0 - side / 2)
    cy = _bounce(cy0 + dy, side / 2, h0 - side / 2)

    # Sampling grid [1, n·size, size, 2] in normalised coordinates (align_corners=False: -1/+1 = outer pixel edges).
    offs = (np.arange(size) + 0.5) / size - 0.5  # [size] fraction of the crop side
    gx = (cx[:, None] + side[:, None] * offs[None]) / w0 * 2 - 1  # [n, size]
    gy = (cy[:, None] + side[:, None] * offs[None]) / h0 * 2 - 1
    grid = np.stack(np.broadcast_arrays(gx[:, None, :], gy[:, :, None]), axis=-1)  # [n, size(y), size(x), 2]
    grid = torch.from_numpy(grid.reshape(1, n * size, size, 2).astype(np.float32))

    # Pyramid level with 1 to 2 source px per output px at the smallest crop of the path.
    pyr = _pyramid(name)
    level = int(np.clip(math.floor(math.log2(max(side.min() / size, 1.0))), 0, len(pyr) - 1))
    out = F.grid_sample(pyr[level], grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    # numpy for the small reshuffles: tiny multi-threaded torch ops stall when the cores are shared.
    video = out.numpy().reshape(3, num_clips, frames, size, size).transpose(1, 0, 2, 3, 4)  # [L, 3, T, H, W]
    info = {"image": name, "crop": float(side[0] / short), "pan_speed": float(speed), "zoom_rate": float(zoom_rate)}
    return video, info


def texture_videos(
    num_videos: int,
    clips_per_video: int = 1,
    *,
    seed: int,
    frames: int = 16,
    size: int = 32,
    split: str = "all",
) -> tuple[torch.Tensor, dict]:
    """Camera pans and zooms over real photographs.

    Returns:
        videos: float32 [B, L, 3, T, H, W] in [0, 1]; video i depends only on (seed, i) and the split.
        info: ``image`` (list of B names), ``crop`` [B] (initial crop side / shorter image side), ``pan_speed`` [B]
            (output px/frame), ``zoom_rate`` [B] (d log side / d frame), ``split`` (the split name).
    """
    for arg, val, lo in (
        ("num_videos", num_videos, 0),
        ("clips_per_video", clips_per_video, 1),
        ("frames", frames, 1),
        ("size", size, 2),
        ("seed", seed, 0),
    ):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < lo:
            raise ValueError(f"{arg} must be an int ≥ {lo}, got {val!r}")
    names = texture_images(split)
    out = np.empty((num_videos, clips_per_video, 3, frames, size, size), dtype=np.float32)
    infos = []
    for i in range(num_videos):
        out[i], info = _render_video(int(seed), i, names, clips_per_video, frames, size)
        infos.append(info)
    np.clip(out, 0.0, 1.0, out=out)
    meta = {
        "image": [inf["image"] for inf in infos],
        "crop": np.array([inf["crop"] for inf in infos], dtype=np.float32),
        "pan_speed": np.array([inf["pan_speed"] for inf in infos], dtype=np.float32),
        "zoom_rate": np.array([inf["zoom_rate"] for inf in infos], dtype=np.float32),
        "split": split,
    }
    return torch.from_numpy(out), meta


def texture_clips(n: int, *, seed: int, frames: int = 16, size: int = 32, split: str = "all") -> torch.Tensor:
    """``n`` independent texture clips, float32 [n, 3, T, H, W] in [0, 1] (videos with L = 1, flattened)."""
    videos, _ = texture_videos(n, 1, seed=seed, frames=frames, size=size, split=split)
    return videos[:, 0]
