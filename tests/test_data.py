"""Video sources: synthetic, textures, video folders, and the load_videos dispatcher."""

import numpy as np
import pytest
import torch

from vaportok_rl.complexity import complexity
from vaportok_rl.data import (
    TEST_IMAGES,
    TRAIN_IMAGES,
    VideoFolder,
    load_videos,
    synthetic_clips,
    synthetic_videos,
    texture_clips,
    texture_images,
    texture_videos,
    write_video,
)
from vaportok_rl.train.data import VideoStream

SMALL = {"frames": 6, "size": 16}


# ---------------------------------------------------------------- synthetic


def test_synthetic_shape_range_and_info():
    videos, info = synthetic_videos(3, 2, seed=0, **SMALL)
    assert videos.shape == (3, 2, 3, 6, 16, 16) and videos.dtype == torch.float32
    assert videos.min() >= 0.0 and videos.max() <= 1.0
    assert info["spatial"].shape == info["temporal"].shape == (3,)
    assert np.all((info["spatial"] >= 0) & (info["spatial"] <= 1))
    assert info["speed_mult"].shape == (3, 2)
    assert synthetic_clips(4, seed=0, **SMALL).shape == (4, 3, 6, 16, 16)


def test_synthetic_deterministic_and_prefix_stable():
    a, info_a = synthetic_videos(4, 2, seed=7, **SMALL)
    b, _ = synthetic_videos(4, 2, seed=7, **SMALL)
    assert torch.equal(a, b)
    prefix, info_p = synthetic_videos(2, 2, seed=7, **SMALL)
    assert torch.equal(prefix, a[:2])
    np.testing.assert_array_equal(info_p["spatial"], info_a["spatial"][:2])
    one_clip, _ = synthetic_videos(4, 1, seed=7, **SMALL)
    assert torch.equal(one_clip[:, 0], a[:, 0])  # first clip independent of clips_per_video
    assert not torch.equal(synthetic_videos(4, 2, seed=8, **SMALL)[0], a)


def test_synthetic_fixed_levels():
    _, info = synthetic_videos(3, seed=0, spatial=0.25, temporal=[0.0, 0.5, 1.0], **SMALL)
    np.testing.assert_allclose(info["spatial"], 0.25)
    np.testing.assert_allclose(info["temporal"], [0.0, 0.5, 1.0])
    with pytest.raises(ValueError, match=r"spatial levels must lie in \[0, 1\]"):
        synthetic_videos(2, seed=0, spatial=1.5, **SMALL)
    with pytest.raises(ValueError, match=r"temporal must be .* shape \(2,\)"):
        synthetic_videos(2, seed=0, temporal=[0.1, 0.2, 0.3], **SMALL)
    with pytest.raises(ValueError, match="seed must be an int"):
        synthetic_videos(2, seed=-1, **SMALL)


def test_synthetic_levels_drive_complexity():
    kw = {"seed": 3, "frames": 8, "size": 16}
    sc_lo, _ = complexity(synthetic_clips(24, spatial=0.1, **kw))
    sc_hi, _ = complexity(synthetic_clips(24, spatial=0.9, **kw))
    assert sc_hi.mean() > sc_lo.mean() + 0.5
    _, tc_lo = complexity(synthetic_clips(24, temporal=0.1, **kw))
    _, tc_hi = complexity(synthetic_clips(24, temporal=0.9, **kw))
    assert tc_hi.mean() > 2 * tc_lo.mean()
    _, tc_still = complexity(synthetic_clips(8, temporal=0.0, noise=False, **kw))
    assert tc_still.max() == 0.0  # no motion, no noise → identical frames


# ---------------------------------------------------------------- textures


def test_texture_split_is_disjoint_and_named():
    assert set(TRAIN_IMAGES).isdisjoint(TEST_IMAGES)
    assert set(texture_images("all")) == set(TRAIN_IMAGES) | set(TEST_IMAGES)
    assert {"motorcycle_left", "motorcycle_right"} <= set(TEST_IMAGES)  # near-duplicate pair held out together
    with pytest.raises(ValueError, match="split must be one of"):
        texture_images("val")


def test_texture_videos_deterministic_in_range_and_split():
    videos, info = texture_videos(3, 2, seed=1, split="test", **SMALL)
    assert videos.shape == (3, 2, 3, 6, 16, 16) and videos.dtype == torch.float32
    assert videos.min() >= 0.0 and videos.max() <= 1.0
    assert set(info["image"]) <= set(TEST_IMAGES)
    again, _ = texture_videos(2, 2, seed=1, split="test", **SMALL)
    assert torch.equal(again, videos[:2])
    assert texture_clips(2, seed=1, split="test", **SMALL).shape == (2, 3, 6, 16, 16)
    _, info_train = texture_videos(4, seed=1, split="train", **SMALL)
    assert set(info_train["image"]) <= set(TRAIN_IMAGES)


# ---------------------------------------------------------------- video folders


def _frames(t: int, h: int = 24, w: int = 40, value: int = 0) -> np.ndarray:
    x = np.zeros((t, h, w, 3), dtype=np.uint8)
    x[..., 0] = np.linspace(0, 255, t, dtype=np.uint8)[:, None, None]
    x[..., 1] = value
    return x


def test_video_folder_reads_videos(tmp_path):
    (tmp_path / "sub").mkdir()
    write_video(tmp_path / "b.mp4", _frames(10, value=200))
    write_video(tmp_path / "sub" / "a.mp4", _frames(9, value=60))
    (tmp_path / "notes.txt").write_text("not a video")
    ds = VideoFolder(tmp_path, clips_per_video=2, frames=4, size=8)
    assert [p.name for p in ds.files] == ["b.mp4", "a.mp4"]  # sorted by path, recursive, videos only
    item = ds[0]
    assert item.shape == (2, 3, 4, 8, 8) and item.dtype == torch.float32
    assert item.min() >= 0.0 and item.max() <= 1.0
    assert item[:, 1].mean().item() == pytest.approx(200 / 255, abs=0.03)  # green channel survives the codec
    assert item[1, 0].mean() > item[0, 0].mean()  # red ramps up over time
    batch = load_videos(tmp_path, 2, 2, seed=0, frames=4, size=8)
    assert batch.shape == (2, 2, 3, 4, 8, 8)
    with pytest.raises(ValueError, match="holds 2 video files, fewer than num_videos=3"):
        load_videos(tmp_path, 3, 2, seed=0, frames=4, size=8)


def test_video_folder_bad_files_name_the_file(tmp_path):
    (tmp_path / "fake.mp4").write_text("this is text, not a video")
    write_video(tmp_path / "short.mp4", _frames(5))
    ds = VideoFolder(tmp_path, clips_per_video=2, frames=4, size=8)
    with pytest.raises(ValueError, match=r"fake\.mp4: cannot open as a video file"):
        ds[0]
    with pytest.raises(ValueError, match=r"short\.mp4: needs ≥ 8 frames for 2 clips of 4, has 5"):
        ds[1]


def test_video_folder_empty_or_missing(tmp_path):
    with pytest.raises(ValueError, match="holds no .mp4/.avi/.webm files"):
        VideoFolder(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        VideoFolder(tmp_path / "nope")
    with pytest.raises(ValueError, match="even height and width"):
        write_video(tmp_path / "odd.mp4", _frames(2, h=7))


# ---------------------------------------------------------------- dispatcher


def test_load_videos_dispatch():
    syn = load_videos("synthetic", 2, 2, seed=0, **SMALL)
    assert torch.equal(syn, synthetic_videos(2, 2, seed=0, **SMALL)[0])
    tex = load_videos("textures", 2, 1, seed=0, split="train", **SMALL)
    assert torch.equal(tex, texture_videos(2, 1, seed=0, split="train", **SMALL)[0])
    with pytest.raises(ValueError, match="source must be 'synthetic', 'textures' or an existing folder"):
        load_videos("syntetic", 1, seed=0)


def test_video_folder_segments_are_every_whole_window_of_every_file(tmp_path):
    write_video(tmp_path / "a.mp4", _frames(20, value=60))  # 2 whole windows of 2 clips × 4 frames, 4 frames left
    write_video(tmp_path / "b.mp4", _frames(9, value=200))  # 1 window
    write_video(tmp_path / "c.mp4", _frames(5))  # too short: none
    ds = VideoFolder(tmp_path, clips_per_video=2, frames=4, size=8)
    segments = ds.segments()
    assert segments.shape == (3, 2, 3, 4, 8, 8)
    assert torch.allclose(segments[0], ds[0], atol=1e-6)  # the first window is what item 0 has always been
    assert segments[1, 0, 0].mean() > segments[0, 1, 0].mean()  # a's second window is later: redder
    assert segments[2, :, 1].mean().item() == pytest.approx(200 / 255, abs=0.03)  # then b
    assert ds.segments(max_videos=2).shape[0] == 2
    (tmp_path / "a.mp4").unlink()
    (tmp_path / "b.mp4").unlink()
    with pytest.raises(ValueError, match="no file holds 8 frames"):
        VideoFolder(tmp_path, clips_per_video=2, frames=4, size=8).segments()


def test_training_draws_every_whole_window_of_every_file(tmp_path):
    """Issue 17, item 8: a folder as data.source yields all of a user's footage, not each file's first L·T frames."""
    write_video(tmp_path / "a.mp4", _frames(20, value=60))  # 2 whole windows of 2 clips × 4 frames
    write_video(tmp_path / "b.mp4", _frames(9, value=200))  # 1 window
    ds = VideoFolder(tmp_path, clips_per_video=2, frames=4, size=8)
    assert ds.windows() == [(0, 0), (0, 1), (1, 0)]
    segments = ds.segments()
    for s, (i, w) in enumerate(ds.windows()):
        assert torch.allclose(ds.window(i, w), segments[s], atol=1e-6)
    with pytest.raises(ValueError, match=r"a\.mp4: needs ≥ 24 frames for 2 clips of 4 \(window 2\), has 20"):
        ds.window(0, 2)
    stream = VideoStream(str(tmp_path), 2, (3, 4, 8, 8), seed=0, split="train", batch=3)
    drawn = stream.videos(0, range(3))  # one pass over the 3 windows, in a seeded order
    assert sorted(_index_of(v, segments) for v in drawn) == [0, 1, 2]


def _index_of(video: torch.Tensor, segments: torch.Tensor) -> int:
    return int(((segments - video).abs().flatten(1).amax(1) < 1e-6).nonzero()[0])
