"""Video sources. Every source yields float32 videos ``[B, L, 3, T, H, W]`` in [0, 1].

* ``synthetic``: procedural scenes with controllable spatial / temporal complexity (:mod:`.synthetic`);
* ``textures``: camera pans and zooms over scikit-image's photographs, with a named train/test split (:mod:`.textures`);
* a folder of .mp4 / .avi / .webm files read with PyAV (:mod:`.video_folder`).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .synthetic import synthetic_clips, synthetic_videos
from .textures import TEST_IMAGES, TRAIN_IMAGES, texture_clips, texture_images, texture_videos
from .video_folder import VideoFolder, write_video

__all__ = [
    "synthetic_videos",
    "synthetic_clips",
    "texture_videos",
    "texture_clips",
    "texture_images",
    "TRAIN_IMAGES",
    "TEST_IMAGES",
    "VideoFolder",
    "write_video",
    "load_videos",
    "heldout_videos",
    "SOURCES",
    "HELDOUT_SEED",
]

SOURCES = ("synthetic", "textures", "mixed")
"""The procedural sources (anything else is a folder of video files)."""

HELDOUT_SEED = 1_000_003
"""Seed of the held-out videos every judge uses (``eval``, ``tokenizer-report``); training draws other seeds."""


def load_videos(
    source: str | os.PathLike,
    num_videos: int,
    clips_per_video: int = 1,
    *,
    seed: int,
    frames: int = 16,
    size: int = 32,
    split: str = "all",
) -> torch.Tensor:
    """Load ``num_videos`` videos of ``clips_per_video`` clips from a source → float32 ``[B, L, 3, T, H, W]``.

    ``source`` is "synthetic", "textures", "mixed" (video i is a synthetic one when ``seed + i`` is even, a
    texture one otherwise: train on what you judge) or a folder path. ``split`` ("all" | "train" | "test")
    selects the texture images; synthetic videos have no split (use another ``seed`` for held-out data) and a
    folder is taken as is, so both ignore it. A folder gives its first ``num_videos`` files in sorted order
    (``seed`` unused) and must hold
    at least that many.
    """
    if split not in ("all", "train", "test"):
        raise ValueError(f"split must be 'all', 'train' or 'test', got {split!r}")
    if isinstance(source, str) and source == "synthetic":
        return synthetic_videos(num_videos, clips_per_video, seed=seed, frames=frames, size=size)[0]
    if isinstance(source, str) and source == "mixed":
        synthetic = [i for i in range(num_videos) if (seed + i) % 2 == 0]
        textures = [i for i in range(num_videos) if (seed + i) % 2 == 1]
        out = torch.empty(num_videos, clips_per_video, 3, frames, size, size)
        if synthetic:
            out[synthetic] = synthetic_videos(len(synthetic), clips_per_video, seed=seed, frames=frames, size=size)[0]
        if textures:
            out[textures] = texture_videos(
                len(textures), clips_per_video, seed=seed, frames=frames, size=size, split=split
            )[0]
        return out
    if isinstance(source, str) and source == "textures":
        return texture_videos(num_videos, clips_per_video, seed=seed, frames=frames, size=size, split=split)[0]
    if not Path(source).is_dir():
        raise ValueError(f"source must be 'synthetic', 'textures' or an existing folder of videos, got {str(source)!r}")
    dataset = VideoFolder(source, clips_per_video=clips_per_video, frames=frames, size=size)
    if len(dataset) < num_videos:
        raise ValueError(f"video folder {source} holds {len(dataset)} video files, fewer than num_videos={num_videos}")
    if num_videos == 0:
        return torch.empty(0, clips_per_video, 3, frames, size, size)
    return torch.stack([dataset[i] for i in range(num_videos)])


def heldout_videos(
    data: str | os.PathLike,
    *,
    frames: int,
    size: int,
    videos: int = 32,
    clips_per_video: int = 4,
    seed: int = HELDOUT_SEED,
) -> tuple[torch.Tensor, dict]:
    """The held-out set of ``vaportok-rl eval`` and ``tokenizer-report``: ``videos`` videos of ``clips_per_video``
    clips → ``([B, L, 3, T, H, W], meta)``. Textures (and the texture half of "mixed") come from the test images,
    never seen in training; a folder gives its first ``videos`` files (fewer if it holds fewer). ``meta`` holds
    ``data``, ``split``, ``videos`` and ``seed``. Raises ValueError naming ``data`` when it is neither a source nor
    a readable folder."""
    folder = str(data) not in SOURCES
    if folder and not Path(data).is_dir():
        raise ValueError(f"data: {str(data)!r} is not one of {SOURCES} or an existing folder of videos")
    split = None if folder else "test" if str(data) in ("textures", "mixed") else "all"
    try:
        if folder:
            videos = min(videos, len(VideoFolder(data, clips_per_video=clips_per_video, frames=frames, size=size)))
        clips = load_videos(
            str(data), videos, clips_per_video, seed=seed, frames=frames, size=size, split=split or "all"
        )
    except ValueError as error:
        raise ValueError(f"data: {error}") from None
    return clips, {"data": str(data), "split": split, "videos": videos, "seed": seed}
