"""SC / TC against a direct NumPy transcription of eqs. 1–5 (supplement A.1)."""

import numpy as np
import pytest
import torch

from vaportok_rl.complexity import complexity, grey_levels, spatial_complexity, temporal_complexity


def reference_sc_tc(clip: np.ndarray) -> tuple[float, float]:
    """Eqs. 1–5 with plain loops over frames. clip: [3, T, H, W] in [0, 1]."""
    _, t, h, w = clip.shape
    x = clip.astype(np.float64)
    # eq. 1 on the 0..255 scale, clamped, rounded half to even (np.round) to integer levels
    grey = np.round(np.clip((0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]) * 255.0, 0.0, 255.0))
    entropies = []
    for f in range(t):
        counts, _ = np.histogram(grey[f], bins=256, range=(0, 256))  # eq. 2
        p = counts / (h * w)
        p = p[p > 0]
        entropies.append(-np.sum(p * np.log2(p)))  # eq. 3
    sc = float(np.mean(entropies))  # eq. 4
    diff = 0.0
    for f in range(t - 1):
        diff += np.abs(grey[f + 1] - grey[f]).sum()
    tc = diff / ((t - 1) * h * w)  # eq. 5
    return sc, float(tc)


def _structured() -> list[np.ndarray]:
    t, h, w = 4, 16, 16
    const = np.full((3, t, h, w), 0.3)
    halves = np.zeros((3, t, h, w))
    halves[..., : w // 2] = 1.0
    ramp = np.broadcast_to((np.arange(h * w).reshape(h, w) / 255.0), (3, t, h, w)).copy()  # all 256 levels once
    flicker = np.zeros((3, t, h, w))
    flicker[:, 1::2] = 1.0
    ties = np.full((3, t, h, w), 0.5 / 255.0)  # grey 0.5 (up to float error) → tie rounding
    ties[:, 1] = 2.5 / 255.0
    return [const, halves, ramp, flicker, ties]


def test_matches_numpy_reference_random_and_structured():
    rng = np.random.default_rng(0)
    clips = [rng.uniform(size=(3, 5, 8, 12)), rng.uniform(size=(3, 5, 8, 12)) ** 4] + _structured()[:1]
    clips += [np.clip(rng.normal(0.5, 0.05, size=(3, 5, 8, 12)), 0, 1)]
    for clip in clips + _structured():
        sc, tc = complexity(torch.from_numpy(clip.astype(np.float32)))
        ref_sc, ref_tc = reference_sc_tc(clip.astype(np.float32))
        assert sc.item() == pytest.approx(ref_sc, abs=1e-5)
        assert tc.item() == pytest.approx(ref_tc, abs=1e-5)


def test_known_values():
    const, halves, ramp, flicker, _ = (torch.from_numpy(c).float() for c in _structured())
    assert spatial_complexity(const).item() == 0.0 and temporal_complexity(const).item() == 0.0
    assert spatial_complexity(halves).item() == pytest.approx(1.0)
    assert spatial_complexity(ramp).item() == pytest.approx(8.0)
    assert temporal_complexity(flicker).item() == pytest.approx(255.0)


def test_grey_rounds_half_to_even_after_clamping():
    x = torch.tensor([-0.5, 0.5 / 255, 1.5 / 255, 2.5 / 255, 2.0], dtype=torch.float64)
    clip = x.view(1, 1, 1, 5).expand(3, 1, 1, 5)
    assert grey_levels(clip).flatten().tolist() == [0, 0, 2, 2, 255]


def test_batched_shapes_match_per_clip():
    rng = np.random.default_rng(1)
    clips = torch.from_numpy(rng.uniform(size=(2, 3, 3, 4, 6, 6)).astype(np.float32))  # [B, L, 3, T, H, W]
    sc, tc = complexity(clips)
    assert sc.shape == tc.shape == (2, 3) and sc.dtype == torch.float32
    for b in range(2):
        for l in range(3):
            ref_sc, ref_tc = reference_sc_tc(clips[b, l].numpy())
            assert sc[b, l].item() == pytest.approx(ref_sc, abs=1e-5)
            assert tc[b, l].item() == pytest.approx(ref_tc, abs=1e-5)
    assert spatial_complexity(clips[0, 0]).shape == ()
    assert torch.equal(spatial_complexity(clips), sc) and torch.equal(temporal_complexity(clips), tc)


@pytest.mark.parametrize(
    ("shape", "fn", "match"),
    [
        ((2, 4, 4, 8, 8), spatial_complexity, r"clips must have shape \[\.\.\., C=3.*\(2, 4, 4, 8, 8\)"),
        ((8, 8, 3), spatial_complexity, r"clips must have shape.*\(8, 8, 3\)"),
        ((3, 1, 8, 8), temporal_complexity, r"clips must have T ≥ 2.*\(3, 1, 8, 8\)"),
    ],
)
def test_bad_shapes_name_the_argument(shape, fn, match):
    with pytest.raises(ValueError, match=match):
        fn(torch.zeros(shape))


def test_non_finite_and_non_tensor_rejected():
    x = torch.zeros(3, 2, 4, 4)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="clips must hold finite values.*1 NaN/inf"):
        complexity(x)
    with pytest.raises(TypeError, match="clips must be a torch.Tensor"):
        complexity(np.zeros((3, 2, 4, 4)))
