"""Training videos: video i of step s depends on (data seed, s, i) only, never on batch layout or process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vaportok_rl.config import ConfigError
from vaportok_rl.data import SOURCES, VideoFolder, load_videos
from vaportok_rl.rollout import derive_seed
from vaportok_rl.train_config import TrainConfig

__all__ = ["VideoStream", "training_stream"]


class VideoStream:
    """Training videos: video i of step s depends on (seed, s, i) only, never on batch layout or process.

    "synthetic" / "textures" render each video from its own derived seed; a folder is read in a fresh seeded
    permutation per pass over every whole L·T-frame window of every file (global video number s·B + i)."""

    def __init__(self, source: str, clips_per_video: int, clip_shape: tuple, *, seed: int, split: str, batch: int):
        C, T, H, W = clip_shape
        if C != 3 or H != W:
            raise ConfigError(
                f"data.source {source!r}: the video sources give square RGB clips, but the tokenizer's "
                f"clip_shape is {tuple(clip_shape)}"
            )
        self.source, self.L, self.frames, self.size = source, clips_per_video, T, H
        self.seed, self.split, self.batch = seed, split, batch
        self.folder = None
        if source not in SOURCES:
            if not Path(source).is_dir():
                raise ConfigError(f"data.source: expected one of {SOURCES} or a folder, got {source!r}")
            try:
                self.folder = VideoFolder(source, clips_per_video=clips_per_video, frames=T, size=H)
                self.folder.check()  # every file, before the first step
            except (OSError, ValueError) as error:
                raise ConfigError(f"data.source: {error}") from None

    def videos(self, step: int, indices: range) -> Tensor:
        """[len(indices), L, 3, T, H, W] in [0, 1]."""
        if self.folder is None:
            return torch.cat([self._render(derive_seed(self.seed, "train", step, i)) for i in indices])
        windows = self.folder.windows()  # every whole L·T-frame window of every file
        n = len(windows)
        out = []
        for i in indices:
            number = step * self.batch + i
            order = np.random.default_rng([self.seed, number // n]).permutation(n)
            out.append(self.folder.window(*windows[int(order[number % n])]))
        return torch.stack(out)

    def _render(self, seed: int) -> Tensor:
        """One procedural video [1, L, 3, T, H, W]."""
        return load_videos(self.source, 1, self.L, seed=seed, frames=self.frames, size=self.size, split=self.split)


def training_stream(config: TrainConfig, clip_shape: tuple, batch: int) -> VideoStream:
    """The run's training videos (data.*), ``batch`` per step: rollout.videos_per_step, or the sampled phase's."""
    d = config.data
    seed = config.seed if d.seed is None else d.seed
    return VideoStream(d.source, config.rollout.clips_per_video, clip_shape, seed=seed, split=d.split, batch=batch)
