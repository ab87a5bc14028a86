#!/usr/bin/env python3
"""The PCA floor: PSNR of a variance-ordered linear basis fitted in closed form, kept to k components.

A tail-drop tokenizer that does not beat this at every k is not yet worth truncating.

    python benchmarks/pca_floor.py --train train.pt --test test.pt --k 8,16,32,64,128 --bits 6

--train / --test: clips with values in [0, 1], shape [N, C, T, H, W] (any shape with N first works),
saved with torch.save (a tensor) or numpy.save. Prints a table and, last, one JSON line.
"""

import argparse
import json
import sys

import torch


def load(path: str) -> torch.Tensor:
    if path.endswith(".npy"):
        import numpy as np

        return torch.from_numpy(np.load(path, allow_pickle=False))
    x = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(x, torch.Tensor):
        sys.exit(f"{path}: expected a tensor, got {type(x).__name__}")
    return x


def psnr(rec: torch.Tensor, ref: torch.Tensor) -> float:
    mse = ((rec.clamp(0, 1) - ref) ** 2).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(1 / mse)).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--k", default="8,16,32,64,128")
    ap.add_argument("--bits", type=int, default=6, help="uniform levels 2**bits per coefficient in ±3σ")
    args = ap.parse_args()
    train, test = load(args.train).float().flatten(1), load(args.test).float().flatten(1)
    if train.shape[1] != test.shape[1]:
        sys.exit(f"train clips have {train.shape[1]} values each, test clips {test.shape[1]}")
    ks = sorted(int(k) for k in args.k.split(","))
    if ks[-1] >= train.shape[0]:
        sys.exit(f"k={ks[-1]} needs more than {train.shape[0]} training clips")
    mean = train.mean(0)
    _, _, basis = torch.svd_lowrank(train - mean, q=min(ks[-1] + 32, train.shape[0]), niter=3)
    coef = (test - mean) @ basis
    sd = ((train - mean) @ basis).std(0)
    levels = 2**args.bits
    lo, hi = -3 * sd, 3 * sd
    coef_q = ((coef.clamp(lo, hi) - lo) / (hi - lo) * (levels - 1)).round() / (levels - 1) * (hi - lo) + lo
    out = {"k": ks, "continuous": [], f"{args.bits}bit": []}
    for k in ks:
        out["continuous"].append(round(psnr(mean + coef[:, :k] @ basis[:, :k].T, test), 2))
        out[f"{args.bits}bit"].append(round(psnr(mean + coef_q[:, :k] @ basis[:, :k].T, test), 2))
    print("k            " + " ".join(f"{k:>7}" for k in ks))
    for name in ("continuous", f"{args.bits}bit"):
        print(f"{name:<12} " + " ".join(f"{v:>7.2f}" for v in out[name]))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
