"""Clips from a folder of real videos, read with PyAV.

``VideoFolder(root)`` lists the .mp4 / .avi / .webm files under ``root`` (recursive, sorted by path). Item ``i`` is
float32 ``[L, 3, T, H, W]`` in [0, 1]: the first ``L·T`` frames of the file's first video stream, each centre-cropped
to a square and resized to ``size × size`` (bilinear with antialiasing), cut into ``L`` consecutive clips of ``T``
frames. :meth:`VideoFolder.windows` lists every whole ``L·T``-frame window of every file and
:meth:`VideoFolder.window` reads one (training draws from all of them: all of a user's footage, not its first
seconds); :meth:`VideoFolder.segments` decodes them all at once (the pool of enumerated groups). Files that cannot
be decoded, have no video stream, or are too short raise ``ValueError`` naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

__all__ = ["VIDEO_EXTENSIONS", "VideoFolder", "count_video_frames", "read_video_frames", "write_video"]

VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".avi", ".webm")


def read_video_frames(path: str | os.PathLike, max_frames: int) -> np.ndarray:
    """Decode up to ``max_frames`` RGB frames of the first video stream → uint8 [N, h, w, 3] (N ≤ max_frames)."""
    frames = [frame.to_ndarray(format="rgb24") for frame in _decoded(path, max_frames)]
    if not frames:
        return np.zeros((0, 0, 0, 3), dtype=np.uint8)
    return np.stack(frames)


def count_video_frames(path: str | os.PathLike) -> int:
    """The number of frames of the first video stream, decoded one by one and none kept (a stream's frame count
    metadata is often missing or wrong)."""
    return sum(1 for _ in _decoded(path, None))


def _decoded(path: str | os.PathLike, max_frames: int | None) -> Iterator[Any]:
    """PyAV frames of the first video stream (at most ``max_frames``), or ``ValueError`` naming the file."""
    import av  # PyAV loads FFmpeg's libraries: only when a video file is read

    path = Path(path)
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as e:
        raise ValueError(f"{path}: cannot open as a video file ({type(e).__name__}: {e})") from e
    done = 0
    try:
        if not container.streams.video:
            raise ValueError(f"{path}: has no video stream (streams: {[s.type for s in container.streams]})")
        for frame in container.decode(container.streams.video[0]):
            yield frame
            done += 1
            if max_frames is not None and done >= max_frames:
                break
    except av.FFmpegError as e:
        raise ValueError(f"{path}: cannot decode video after {done} frames ({type(e).__name__}: {e})") from e
    finally:
        container.close()


def _to_square(frames: np.ndarray, size: int) -> torch.Tensor:
    """uint8 [N, h, w, 3] → float32 [N, 3, size, size] in [0, 1]: centre crop to a square, antialiased resize."""
    _, h, w, _ = frames.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    x = torch.from_numpy(np.ascontiguousarray(frames[:, top : top + side, left : left + side]))
    x = x.permute(0, 3, 1, 2).to(torch.float32) / 255.0
    if side != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp_(0.0, 1.0)


class VideoFolder(Dataset):
    """Dataset of ``[L, 3, T, H, W]`` clip sequences, one per video file under ``root``."""

    def __init__(self, root: str | os.PathLike, *, clips_per_video: int = 4, frames: int = 16, size: int = 32):
        for name, val in (("clips_per_video", clips_per_video), ("frames", frames), ("size", size)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{name} must be an int ≥ 1, got {val!r}")
        self.root = Path(root)
        if not self.root.exists():
            raise FileNotFoundError(f"video folder {self.root} does not exist")
        if not self.root.is_dir():
            raise NotADirectoryError(f"video folder {self.root} is not a directory")
        self.files: list[Path] = sorted(
            p for p in self.root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
        )
        if not self.files:
            raise ValueError(
                f"video folder {self.root} holds no {'/'.join(VIDEO_EXTENSIONS)} files (searched recursively)"
            )
        self.clips_per_video = clips_per_video
        self.frames = frames
        self.size = size
        self._windows: list[tuple[int, int]] | None = None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        """File ``index``'s first ``L·T`` frames as ``[L, 3, T, H, W]``."""
        return self.window(index, 0)

    def window(self, index: int, w: int) -> torch.Tensor:
        """Whole window ``w`` (frames ``w·L·T .. (w+1)·L·T``) of file ``index`` as ``[L, 3, T, H, W]``."""
        path = self.files[index]
        need = self.clips_per_video * self.frames
        frames = read_video_frames(path, (w + 1) * need)[w * need :]
        if len(frames) < need:
            which = f" (window {w})" if w else ""
            raise ValueError(
                f"{path}: needs ≥ {(w + 1) * need} frames for {self.clips_per_video} clips of {self.frames}{which}, "
                f"has {w * need + len(frames)}"
            )
        x = _to_square(frames, self.size)  # [L·T, 3, H, W]
        x = x.reshape(self.clips_per_video, self.frames, 3, self.size, self.size)
        return x.permute(0, 2, 1, 3, 4).contiguous()  # [L, 3, T, H, W]

    def windows(self) -> list[tuple[int, int]]:
        """(file index, window) of every whole ``L·T``-frame window of every file, in file then time order (each
        file's frames counted once, then remembered)."""
        if self._windows is None:
            need = self.clips_per_video * self.frames
            counts = [count_video_frames(path) for path in self.files]
            self._windows = [(i, w) for i, n in enumerate(counts) for w in range(n // need)]
        return self._windows

    def segments(self, max_videos: int | None = None) -> torch.Tensor:
        """Every whole ``L·T``-frame window of every file, in file order then time order: float32
        ``[S, L, 3, T, H, W]`` (at most ``max_videos`` of them). Each file is decoded once; frames past its last
        whole window are left out, and a file shorter than one window gives none. ``ValueError`` naming the folder
        when no file gives a window, and naming a file that cannot be decoded."""
        need = self.clips_per_video * self.frames
        out: list[torch.Tensor] = []
        for path in self.files:
            if max_videos is not None and len(out) >= max_videos:
                break
            frames = read_video_frames(path, 1 << 30)
            whole = len(frames) // need
            if whole == 0:
                continue
            x = _to_square(frames[: whole * need], self.size)  # [whole·L·T, 3, H, W]
            x = x.reshape(whole, self.clips_per_video, self.frames, 3, self.size, self.size)
            out.extend(x.permute(0, 1, 3, 2, 4, 5))  # whole × [L, 3, T, H, W]
        if not out:
            raise ValueError(
                f"video folder {self.root}: no file holds {need} frames ({self.clips_per_video} clips of {self.frames})"
            )
        return torch.stack(out[:max_videos]).contiguous()

    def check(self) -> None:
        """Decode every file once, counting its whole windows (what training will read): ``ValueError`` naming every
        unusable file (zero-byte, not a video, no video stream, too short), so a bad file fails before the first
        step, not at the step that reaches it."""
        bad, need = [], self.clips_per_video * self.frames
        counts = []
        for path in self.files:
            try:
                counts.append(count_video_frames(path))
                if counts[-1] < need:
                    raise ValueError(
                        f"{path}: needs ≥ {need} frames for {self.clips_per_video} clips of {self.frames}, has "
                        f"{counts[-1]}"
                    )
            except Exception as error:  # noqa: BLE001 - any decoder failure makes the file unusable
                bad.append(str(error) if str(path) in str(error) else f"{path}: {type(error).__name__}: {error}")
        if bad:
            shown = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
            raise ValueError(
                f"video folder {self.root}: {len(bad)} of {len(self.files)} file(s) unusable: {shown}. Remove or "
                f"replace them"
            )
        self._windows = [(i, w) for i, n in enumerate(counts) for w in range(n // need)]

    def __repr__(self) -> str:
        return (
            f"VideoFolder({str(self.root)!r}, {len(self)} files, clips_per_video={self.clips_per_video}, "
            f"frames={self.frames}, size={self.size})"
        )


def _pick_codec(suffix: str) -> str:
    import av  # PyAV loads FFmpeg's libraries: only when a video file is read

    preferences: Sequence[str] = ("libvpx-vp9", "libvpx") if suffix == ".webm" else ("libx264", "mpeg4")
    for name in preferences:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # noqa: BLE001 - any failure means the codec is unavailable in this PyAV build
            continue
    raise RuntimeError(f"this PyAV build has none of the encoders {list(preferences)} for {suffix} files")


def write_video(
    path: str | os.PathLike, frames: np.ndarray | torch.Tensor, fps: int = 8, codec: str | None = None
) -> Path:
    """Write uint8 RGB frames ``[T, H, W, 3]`` to ``path`` with PyAV (yuv420p, so H and W must be even).

    The codec defaults to libx264 (else mpeg4) for .mp4/.avi and libvpx-vp9 (else libvpx) for .webm.
    """
    import av  # PyAV loads FFmpeg's libraries: only when a video file is read

    path = Path(path)
    arr = frames.detach().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] < 1:
        raise ValueError(f"frames must have shape [T ≥ 1, H, W, 3] (uint8 RGB), got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 RGB in 0..255, got dtype {arr.dtype}")
    _, h, w, _ = arr.shape
    if h % 2 or w % 2:
        raise ValueError(f"frames must have even height and width for yuv420p, got {h}×{w}")
    codec = codec or _pick_codec(path.suffix.lower())
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for frame in arr:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
